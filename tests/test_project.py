"""tailguard.toml: validated up front, errors that name the key and the reason."""

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.errors import ConfigError, TailguardError
from tailguard.project import load_config

GOOD = """
[data]
builtin = "fortunes"

[model]
kind = "ngram"
"""


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (GOOD + "\n[policy]\nreal_fraction = 1.5\n", "policy.real_fraction", "must be a number in"),
        (GOOD + "\n[loop]\nrounds = 0\n", "loop.rounds", "greater than or equal"),
        (GOOD + "\n[loop]\nround = 3\n", "loop.round", "unknown key"),
        ("[model]\nkind = 'ngram'\n[data]\n", "data", "name the human data"),
        ("[data]\nbuiltin = 'fortunes'\n[model]\nentry = 'nocolon'\n", "model", "module:function"),
        (GOOD + "\n[dial]\nminimum = 0\n", "dial.minimum", "must be a number in (0, 1]"),
        (GOOD + "\n[dial]\nfloor = 0.1\n", "dial", "`floor` is now called `minimum`"),
        (GOOD + "\n[loop]\nrounds = '3'\n", "loop.rounds", "valid integer"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, key, words):
    path = tmp_path / "tailguard.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"key '{key}'" in str(err.value) and words in str(err.value)
    assert str(path) in str(err.value)


def test_malformed_toml_and_missing_file(tmp_path):
    path = tmp_path / "tailguard.toml"
    path.write_text("[data\nbuiltin = 1")
    with pytest.raises(TailguardError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


def test_run_refuses_a_bad_config_before_touching_the_ledger(tmp_path):
    path = tmp_path / "tailguard.toml"
    path.write_text(GOOD.replace('kind = "ngram"', 'kind = "lstm"'))
    ledger = tmp_path / "l.duckdb"
    result = CliRunner().invoke(app, ["run", str(path), "--ledger", str(ledger)])
    assert result.exit_code == 2
    assert "unknown model 'lstm'" in result.output and "ngram" in result.output


def test_run_with_a_users_entry_point(tmp_path, monkeypatch):
    (tmp_path / "my_model.py").write_text(
        "from tailguard.lab.models import NGram\n"
        "def build(order=2):\n"
        "    return {'train': lambda manifest, records: NGram(order=order).fit(records),\n"
        "            'generate': lambda m, n, r, s: m.sample_texts(n, s)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "tailguard.toml"
    path.write_text(
        "[data]\nbuiltin = 'fortunes'\n[model]\nentry = 'my_model:build'\n"
        "[model.params]\norder = 2\n[loop]\nrounds = 1\nn_generate = 200\n"
    )
    ledger = tmp_path / "l.duckdb"
    result = CliRunner().invoke(app, ["run", str(path), "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    from tailguard.ledger import Ledger

    with Ledger.open(ledger, read_only=True) as led:
        assert led.manifests() == [0, 1]
        assert led.count(origin="synthetic", generation=1) > 0


def test_a_fill_gaps_policy_keeps_the_real_fraction_the_config_names(frozen):
    """`[policy] name = "fill_gaps"` with a `real_fraction` plans with it; without one it
    keeps its natural share (the anchored default is not slipped in)."""
    from tailguard.config import ProjectConfig
    from tailguard.project import build_loop

    def loop_for(policy: dict):
        raw = {"model": {"kind": "ngram"}, "policy": {"name": "fill_gaps", **policy}}
        return build_loop(ProjectConfig.model_validate(raw), frozen)

    assert loop_for({"real_fraction": 0.5}).policy.real_fraction == 0.5
    assert loop_for({}).policy.real_fraction is None
    assert loop_for({"real_fraction": 0.5}).policy.name == "fill_gaps"
