"""The one model of tailguard.toml: keys named in errors, defaults read from their owners."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.config import VERIFIER_SPECS, ProjectConfig, load_config, validate
from tailguard.errors import ConfigError, check_fraction
from tailguard.gate import KINDS, Gate, gate_from_config
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix import Accumulate, Anchored, Dial
from tailguard.monitor import Monitor

runner = CliRunner()


def _gate(*verifiers: str) -> str:
    return "".join(f"[[gate.verifiers]]\n{v}\n" for v in verifiers)


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        (_gate('kind = "quality"', 'kind = "near_duplicate"\nthreshold = "high"'),
         "gate.verifiers.1.threshold", "valid number"),
        (_gate('kind = "near_duplicate"\nshingle = "x"'), "gate.verifiers.0.shingle",
         "valid integer"),
        (_gate('kind = "sentiment"'), "gate.verifiers.0", "'sentiment'"),
        (_gate('kind = "quality"\nmin_word = 3'), "gate.verifiers.0.min_word", "unknown key"),
        (_gate('kind = "quality"') + '[gate]\nengine = "gpu"\n', "gate.engine", "'ray'"),
        ("[gate]\nbatchsize = 3\n" + _gate('kind = "quality"'), "gate.batchsize", "unknown key"),
        ("[audit]\nhuman_floor = 1.5\n", "audit.human_floor", "must be a number in [0, 1]"),
    ],
)  # fmt: skip
def test_errors_name_the_key(tmp_path, toml, key, words):
    path = tmp_path / "tailguard.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: key {key!r}" in str(err.value) and words in str(err.value)


def test_a_broken_or_non_utf8_file_is_a_named_error_with_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tailguard.toml").write_bytes(b"[project]\nledger = '\xff\xfe'\n")
    for args in (["audit"], ["gate", "--round", "1"], ["run"], ["monitor"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        assert "tailguard.toml" in result.output and "UTF-8" in result.output
        assert "Traceback" not in result.output
    (tmp_path / "tailguard.toml").write_text("[gate\n")
    result = runner.invoke(app, ["audit"])
    assert result.exit_code == 2 and "line 1" in result.output and "not valid TOML" in result.output


def test_every_default_is_read_from_its_class():
    c = ProjectConfig()
    assert c.policy.real_fraction == Anchored.REAL_FRACTION
    assert inspect.signature(Anchored).parameters["real_fraction"].default == Anchored.REAL_FRACTION
    assert (c.dial.start, c.dial.minimum, c.dial.maximum, c.dial.step, c.dial.patience) == (
        Dial.START, Dial.MINIMUM, Dial.MAXIMUM, Dial.STEP, Dial.PATIENCE
    )  # fmt: skip
    assert Dial().params()["minimum"] == Dial.MINIMUM and Dial.START == Anchored.REAL_FRACTION
    assert c.audit.human_floor == Ledger.AUDIT_FLOOR
    assert inspect.signature(Ledger.audit).parameters["floor"].default == Ledger.AUDIT_FLOOR
    assert (c.loop.n_generate, c.loop.batch_size, c.loop.seed, c.loop.run) == (
        Loop.N_GENERATE, Loop.BATCH_SIZE, Loop.SEED, Loop.RUN
    )  # fmt: skip
    assert c.monitor.preset == Monitor.PRESET
    gate = validate({"gate": {"verifiers": [{"kind": "quality"}]}}).gate
    assert (gate.batch_size, gate.parallel_min) == (Gate.BATCH_SIZE, Gate.PARALLEL_MIN)
    data = validate({"data": {"builtin": "fortunes"}}).data
    assert data.holdout == Ledger.HOLDOUT


def test_a_changed_class_default_reaches_the_config(monkeypatch):
    monkeypatch.setattr(Dial, "MINIMUM", 0.11)
    monkeypatch.setattr(Ledger, "AUDIT_FLOOR", 0.33)
    c = ProjectConfig()
    assert c.dial.minimum == 0.11 and c.audit.human_floor == 0.33


def test_verifier_specs_cover_every_kind_and_every_parameter():
    assert set(VERIFIER_SPECS) == set(KINDS)
    for kind, spec in VERIFIER_SPECS.items():
        taken = set(inspect.signature(KINDS[kind]).parameters)
        given = {f.alias or name for name, f in spec.model_fields.items()} - {"kind", "name"}
        given = {"fn" if g == "entry" else g for g in given}  # a judge's function by import path
        assert given == taken, kind


def test_a_verifier_left_at_its_defaults_gets_the_class_defaults():
    g = gate_from_config({"gate": {"verifiers": [{"kind": "near_duplicate", "reference": "none"}]}})
    default = inspect.signature(type(g.verifiers[0])).parameters["threshold"].default
    assert g.verifiers[0].threshold == default


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch, small_human):
    project = tmp_path / "project"
    project.mkdir()
    (project / "rules.toml").write_text('[[rule]]\nname = "x"\nforbid = "spam"\n')
    (project / "tailguard.toml").write_text(
        '[project]\nledger = "store/l.duckdb"\n\n' + _gate('kind = "rules"\nrules = "rules.toml"')
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(project / "tailguard.toml")
    assert config.ledger_path == project / "store" / "l.duckdb"
    (project / "store").mkdir()
    with Ledger.open(config.ledger_path) as led:
        led.add_records(small_human)
        led.freeze_reservoir("main")
    result = runner.invoke(
        app, ["gate", "--round", "1", "--config", str(project / "tailguard.toml")]
    )
    # the ledger and the rules file were both found from another directory
    assert "nothing to gate" in result.output, result.output
    assert not (elsewhere / "store").exists()


def test_loop_refuses_a_dial_with_a_policy_it_cannot_turn(small_human):
    with Ledger.open(":memory:") as led, pytest.raises(ConfigError, match=r"dial.*'accumulate'"):
        Loop(
            led,
            train=lambda m, r: None,
            generate=lambda m, n, r, s: ([], []),
            policy=Accumulate(),
            dial=Dial(),
            monitor=Monitor(),
        )


@pytest.mark.parametrize(
    ("value", "zero", "one", "ok"),
    [(0.0, False, True, False), (0.0, True, True, True), (1.0, True, False, False),
     (1.0, False, True, True), (True, True, True, False), ("0.5", True, True, False),
     (0.5, False, False, True)],
)  # fmt: skip
def test_one_fraction_validator(value, zero, one, ok):
    if ok:
        assert check_fraction(value, "x", zero=zero, one=one) == float(value)
    else:
        with pytest.raises(ConfigError, match=r"^x must be a number in"):
            check_fraction(value, "x", zero=zero, one=one)


def test_old_dial_history_still_replays():
    dial = Dial(start=0.3, minimum=0.2, maximum=0.5, step=0.1, patience=1)
    decision = dial.decide(1, [])
    old = dict(decision.evidence)
    params = dict(old["dial"])
    params["floor"], params["ceiling"] = params.pop("minimum"), params.pop("maximum")
    old["dial"] = params
    row = {"run": "main", "round": 1, "real_fraction": decision.real_fraction, "evidence": old}
    resumed = Dial.resume([row])
    assert (resumed.minimum, resumed.maximum) == (0.2, 0.5)
    assert Dial.from_state(params, dial.state).params() == dial.params()


def test_gate_refuses_a_missing_configured_ledger_instead_of_creating_one(tmp_path, monkeypatch):
    (tmp_path / "tailguard.toml").write_text(
        '[project]\nledger = "none/l.duckdb"\n' + _gate('kind = "quality"')
    )
    monkeypatch.chdir(tmp_path.parent)
    result = runner.invoke(app, ["gate", "-r", "1", "--config", str(tmp_path / "tailguard.toml")])
    assert result.exit_code == 2 and "no ledger at" in result.output
    assert not (tmp_path / "none").exists()


def test_screen_section_defaults_come_from_the_screener_and_unknown_keys_are_refused():
    from tailguard.screen import Screener

    c = ProjectConfig()
    assert (c.screen.near_threshold, c.screen.precision) == (
        Screener.NEAR_THRESHOLD,
        Screener.PRECISION,
    )
    assert validate({"screen": {"threshold": 0.7}}, source="t").screen.threshold == 0.7
    with pytest.raises(ConfigError, match="screen.near"):
        validate({"screen": {"near": 0.7}}, source="t")
    with pytest.raises(ConfigError, match="screen.precision"):
        validate({"screen": {"precision": 1.5}}, source="t")


def test_the_readme_remedies_toml_is_a_valid_config(tmp_path):
    import re

    readme = Path(__file__).resolve().parents[1] / "README.md"
    block = next(
        b for b in re.findall(r"```toml\n(.*?)```", readme.read_text(), re.S) if "fill_gaps" in b
    )
    (tmp_path / "tailguard.toml").write_text(block)
    config = load_config(tmp_path / "tailguard.toml")
    assert config.policy.name == "fill_gaps" and config.screen.precision == 0.9
    assert set(config.gate.references) == {"eval"} and config.gate.earlier_generations


def test_the_evaluation_sample_is_capped_unless_set(tmp_path):
    from tailguard.cli.ledger_cmds import baseline_size

    def loop(**kw):
        with Ledger.open(":memory:") as led:
            return Loop(led, train=lambda m, r: None, generate=lambda m, n, r, s: [],
                        policy=Anchored(real_fraction=0.2), **kw)  # fmt: skip

    assert loop(n_generate=500).n_sample == 500  # small rounds: every text is evaluated
    assert loop(n_generate=1_000_000).n_sample == Loop.N_SAMPLE == 20_000
    assert loop(n_generate=1_000_000, n_sample=50_000).n_sample == 50_000
    (tmp_path / "tailguard.toml").write_text("[loop]\nn_generate = 300000\n")
    assert baseline_size(load_config(tmp_path / "tailguard.toml")) == 20_000
    (tmp_path / "tailguard.toml").write_text("[loop]\nn_generate = 300000\nn_sample = 4000\n")
    config = load_config(tmp_path / "tailguard.toml")
    assert baseline_size(config) == 4000 == config.loop.n_sample
    (tmp_path / "tailguard.toml").write_text("[loop]\nn_sample = 0\n")
    with pytest.raises(ConfigError, match="n_sample"):
        load_config(tmp_path / "tailguard.toml")


def test_one_builder_maps_a_policy_section_to_its_policy():
    """`[policy]` and `mix`'s options go through `PolicySection.policy`: a key left out
    keeps the policy's own default, a key given reaches the policy, a bad value is named."""
    from tailguard.config import PolicySection, policy_section
    from tailguard.mix.policies import POLICIES, Anchored

    for name in POLICIES:
        assert PolicySection(name=name).policy().name == name
    assert PolicySection().policy().real_fraction == Anchored.REAL_FRACTION
    for name in ("anchored", "fill_gaps"):
        assert policy_section(name=name, real_fraction=0.35).policy().real_fraction == 0.35
    assert PolicySection(name="fill_gaps").policy().real_fraction is None
    assert policy_section(name="anchored", reservoir=None).model_fields_set == {"name"}
    with pytest.raises(ConfigError, match=r"mix options: key 'real_fraction'"):
        policy_section("mix options", real_fraction=1.5)


def test_a_verifier_is_registered_once_and_its_spec_names_its_class():
    """One registry (`gate.section.SPECS`): the config's kinds, the gate's classes and
    each spec's `kind` agree, and a spec whose kind is not its verifier's is refused."""
    from typing import ClassVar, Literal

    from tailguard.gate.section import SPECS, VerifierSpec, _kind
    from tailguard.gate.verifiers import Quality

    assert [VERIFIER_SPECS[k].VERIFIER for k in KINDS] == [KINDS[k] for k in KINDS]
    assert [s.VERIFIER.kind for s in SPECS] == list(VERIFIER_SPECS)

    class Misnamed(VerifierSpec):
        kind: Literal["rules"]
        VERIFIER: ClassVar[type] = Quality

    with pytest.raises(TypeError, match="kind 'rules', its verifier 'quality'"):
        _kind(Misnamed)
