"""Every parameter set is declared once: a verifier's in its ``__init__``, from which
the config's ``[[gate.verifiers]]`` tables are built."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import Field

from tailguard.config import load_config
from tailguard.errors import ConfigError
from tailguard.gate import KINDS, Verifier, gate_from_config, verdicts
from tailguard.gate.section import VERIFIER_SPECS, register, unregister
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
