"""Every parameter set is declared once: a verifier's in its ``__init__``, a lab
experiment's in ``LabConfig``; the config, the gate and the CLI are built from them."""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from tailguard import lab
from tailguard.cli import app, lab_cmds
from tailguard.config import load_config
from tailguard.errors import ConfigError
from tailguard.gate import KINDS, Verifier, gate_from_config, verdicts
from tailguard.gate.section import VERIFIER_SPECS, register, unregister
from tailguard.lab.config import COMMANDS, LabConfig, setting
from tailguard.records import make_records


class Shouting(Verifier):
    """Fails a text with more than ``max_capitals`` capital letters (a toy verifier)."""

    kind = "shouting"
    version = "1"
    codes = ("shouting",)

    def __init__(
        self,
        *,
        max_capitals: Annotated[int, Field(ge=0, le=100)] = 3,
        bounds: tuple[float, float] = (0.0, 1.0),
        lexicon: str | Path | None = None,
    ) -> None:
        self.max_capitals, self.bounds, self.lexicon = max_capitals, tuple(bounds), lexicon

    def verify(self, batch: pa.Table) -> pa.Table:
        caps = pc.count_substring_regex(batch.column("content"), "[A-Z]").to_numpy()
        return verdicts(np.asarray(caps) <= self.max_capitals, "shouting")


@pytest.fixture
def shouting():
    spec = register(Shouting)  # the one registration
    yield spec
    unregister(Shouting.kind)


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tailguard.toml"
    path.write_text('[[gate.verifiers]]\nkind = "shouting"\n' + body)
    return path


def test_a_new_verifier_is_one_class_and_one_registration(tmp_path, shouting):
    path = _file(tmp_path, 'max_capitals = 2\nbounds = [0.5, 2]\nlexicon = "words.txt"\n')
    config = load_config(path)
    gate = gate_from_config(config)
    (verifier,) = gate.verifiers
    assert isinstance(verifier, Shouting) and KINDS["shouting"] is Shouting
    assert verifier.max_capitals == 2 and verifier.bounds == (0.5, 2.0)
    assert verifier.lexicon == tmp_path / "words.txt"  # a Path parameter: the config's folder
    records = make_records(
        ["quiet words", "LOUD words"], origin="synthetic", source="t", generator="g",
        generation=1, round=1,
    )  # fmt: skip
    assert gate.run(records).accepted.tolist() == [True, False]
    sent = pickle.loads(pickle.dumps(config))  # as a worker process receives it
    assert sent.gate.verifiers[0].max_capitals == 2
    left_out = gate_from_config(load_config(_file(tmp_path, ""))).verifiers[0]
    assert left_out.max_capitals == 3 and left_out.lexicon is None  # the class's defaults


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("max_capitals = 101\n", "key 'gate.verifiers.0.max_capitals': Input should be less "
         "than or equal to 100"),
        ('max_capitals = "two"\n', "key 'gate.verifiers.0.max_capitals': Input should be a "
         "valid integer"),
        ("bounds = [1.0]\n", "key 'gate.verifiers.0.bounds': List should have at least 2"),
        ("max_capital = 2\n", "key 'gate.verifiers.0.max_capital': unknown key"),
    ],
)  # fmt: skip
def test_a_registered_verifier_s_parameters_are_validated_with_their_key(
    tmp_path, shouting, body, message
):
    path = _file(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: {message}" in str(err.value)


def test_a_kind_is_registered_once_and_can_be_forgotten(tmp_path):
    with pytest.raises(TypeError, match="'quality' is registered already"):
        register(type("Quality2", (Verifier,), {"kind": "quality"}))
    register(Shouting)
    try:
        assert "shouting" in VERIFIER_SPECS
    finally:
        unregister(Shouting.kind)
    with pytest.raises(ConfigError, match="Input tag 'shouting' found using 'kind'"):
        load_config(_file(tmp_path, ""))


# -- the lab: LabConfig is the one declaration of an experiment's settings -----------------


@dataclass(frozen=True)
class Tempered(LabConfig):
    """A lab configuration with one more setting: nothing else is written for it."""

    temperature: float = setting(1.0, help="How hot the model samples.")


class Captured(Exception):
    """Raised where the experiment would start, carrying the configuration it got."""

    def __init__(self, config: LabConfig) -> None:
        super().__init__("captured")
        self.config = config


def _capture(monkeypatch, target: str, where: str) -> None:
    def stop(*args, **kwargs):
        config = args[0] if where == "first" else args[1][0][0]
        raise Captured(config)

    module, _, name = target.rpartition(".")
    monkeypatch.setattr(importlib.import_module(module), name, stop)


SMALL = {"model": "gaussian", "volume": 40, "reservoir_size": 100, "seeds": 1}


@pytest.mark.parametrize(
    ("command", "target", "where"),
    [
        ("run", "tailguard.lab.experiment.run_jobs", "first"),
        ("frontier", "tailguard.lab.experiment.run", "first"),
        ("recovery", "tailguard.lab.pool.map_jobs", "jobs"),
    ],
)
def test_a_new_lab_field_reaches_run_frontier_and_recovery(monkeypatch, command, target, where):
    _capture(monkeypatch, target, where)
    with pytest.raises(Captured) as got:
        getattr(lab, command)(Tempered(**SMALL), temperature=0.25, workers=1, progress=False)
    assert isinstance(got.value.config, Tempered) and got.value.config.temperature == 0.25
    assert got.value.config.volume == 40  # the given configuration, not the command's defaults


@pytest.mark.parametrize("command", ["run", "frontier", "recovery"])
def test_every_lab_command_refuses_an_unknown_setting(command):
    with pytest.raises(ConfigError, match="unknown lab setting 'temperature'; the settings are"):
        getattr(lab, command)(temperature=0.25, progress=False)


@pytest.mark.parametrize(
    ("command", "setting_", "message"),
    [
        ("frontier", {"strategies": "replace"}, "lab frontier sets 'strategies' itself"),
        ("frontier", {"real_fraction": 0.5}, "lab frontier sets 'real_fraction' itself"),
        ("recovery", {"generations": 3}, "lab recovery sets 'generations' itself"),
    ],
)
def test_a_setting_a_command_sets_itself_is_refused(command, setting_, message):
    with pytest.raises(ConfigError, match=message):
        getattr(lab, command)(**setting_, progress=False)


def _options(command: str) -> dict[str, tuple[str, ...]]:
    group = typer.main.get_command(app).commands["lab"]  # type: ignore[attr-defined]
    return {p.name: tuple(p.opts) for p in group.commands[command].params}


@pytest.mark.parametrize(
    ("command", "own"),
    [
        ("run", {"workers", "out"}),
        ("frontier", {"fractions", "verifier_quality", "workers", "out"}),
        ("recovery", {"k", "routes", "metric", "workers"}),
    ],
)
def test_the_lab_commands_options_are_labconfig_s_fields(command, own):
    options = _options(command)
    settings = {f.name for f in fields(LabConfig)} - set(COMMANDS[command].fixed)
    assert set(options) == settings | own
    for f in fields(LabConfig):
        if f.name in settings and f.name not in own:
            flags = f.metadata["option"].flags or (f"--{f.name.replace('_', '-')}",)
            assert options[f.name] == flags


def test_a_new_field_becomes_a_command_line_option(monkeypatch):
    monkeypatch.setattr(lab_cmds, "LabConfig", Tempered)
    got = {}

    @lab_cmds.lab_settings("run")
    def command(settings: dict, seed_note: str = typer.Option("x", "--seed-note")) -> None:
        got.update(settings)

    small = typer.Typer()
    small.command()(command)
    result = CliRunner().invoke(small, ["--temperature", "0.5", "--volume", "policy"])
    assert result.exit_code == 0, result.output
    assert got == {"temperature": 0.5, "volume": None}  # only what was given, read
    bad = CliRunner().invoke(small, ["--temperature", "warm"])
    assert bad.exit_code == 2 and "--temperature" in bad.output
