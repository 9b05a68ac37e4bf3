"""Paths through the CLI that a user combines: each leaves a project the next command
continues (regression tests for projects that were once stuck for good)."""

from __future__ import annotations

import json

import pyarrow.compute as pc
from conftest import run_cli

from tailguard.ledger import Ledger
from tailguard.monitor import UNLABELLED

LOOP_TOML = """
[project]
ledger = "{ledger}"
[data]
builtin = "fortunes"
[model]
kind = "ngram"
[loop]
rounds = 1
n_generate = 200
"""


def test_human_texts_without_labels_do_not_stop_the_loop(tmp_path):
    """Texts ingested without a label (as `screen` also adds them) join the training pool;
    the model then writes some unlabelled samples, which the label metrics count as the
    class UNLABELLED instead of refusing the round."""
    ledger = tmp_path / "l.duckdb"
    toml = tmp_path / "tailguard.toml"
    toml.write_text(LOOP_TOML.format(ledger=ledger))
    assert run_cli("run", str(toml)).exit_code == 0
    texts = tmp_path / "many.jsonl"
    texts.write_text(
        "".join(json.dumps({"text": f"a new human line {i} on cats and dogs"}) + "\n"
                for i in range(300))
    )  # fmt: skip
    ingest = run_cli("ingest", str(texts), "--round", "2", "--ledger", str(ledger))
    assert ingest.exit_code == 0, ingest.output
    resumed = run_cli("run", str(toml), "--resume", "--rounds", "2")
    assert resumed.exit_code in (0, 1), resumed.output
    with Ledger.open(ledger, read_only=True) as led:
        assert led.manifests() == [0, 1, 2]
        metrics = led.metrics()
    rows = metrics.filter(pc.equal(metrics["sample"], "model")).to_pylist()
    assert {r["round"] for r in rows} == {0, 1, 2}
    # the label metrics are still measured in the round with unlabelled samples
    assert {"tail_recall", "label_tv"} <= {r["metric"] for r in rows if r["round"] == 2}


def test_a_missing_label_counts_as_its_own_class():
    import pyarrow as pa

    from tailguard.monitor import _labels_or_none

    filled = _labels_or_none(pa.array(["a", None, "b", None]))
    assert filled.to_pylist() == ["a", UNLABELLED, "b", UNLABELLED]
    assert _labels_or_none(pa.array([None, None], pa.string())) is None
