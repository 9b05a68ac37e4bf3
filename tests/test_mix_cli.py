"""`tailguard mix` and `tailguard dial show` against a real ledger file."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.ledger import Ledger
from tailguard.mix import Anchored, Dial, Evidence, plan
from tailguard.records import make_records

runner = CliRunner()


@pytest.fixture
def ledger_path(tmp_path):
    path = tmp_path / "ledger.duckdb"
    rng = np.random.default_rng(0)
    with Ledger.open(path) as led:
        led.add_records(
            make_records(
                [f"human example {i}" for i in range(200)],
                origin="human",
                source="people",
                label=[("common", "rare")[int(x)] for x in rng.random(200) < 0.1],
            )
        )
        led.freeze_reservoir(holdout=0.1, seed=0)
        synthetic = make_records(
            [f"synthetic example {i}" for i in range(600)],
            origin="synthetic",
            source="model",
            generator="m0",
            generation=1,
            round=1,
        )
        led.add_records(synthetic)
        led.set_status(synthetic["id"].slice(0, 500), "accepted", round=1)
        led.set_status(synthetic["id"].slice(500), "rejected", round=1)
    return path


def test_mix_plans_stores_and_prints(ledger_path):
    result = runner.invoke(
        app,
        [
            "mix",
            "--round",
            "1",
            "--policy",
            "anchored",
            "--real-fraction",
            "0.25",
            "--reservoir",
            "share",
            "--batch-size",
            "32",
            "--seed",
            "3",
            "--ledger",
            str(ledger_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "composition" in result.output and "digest" in result.output
    with Ledger.open(ledger_path, read_only=True) as led:
        manifest = led.manifest(1)
        holdout = set(led.reservoir().holdout_ids.to_pylist())
        pool = led.training_pool(1)
        (row,) = led.round_summary().to_pylist()
    # the printed composition is the ledger's round summary
    assert f"{row['human']:,} human ({row['human_share']:.1%}" in result.output
    assert f"{row['synthetic']:,} synthetic slots" in result.output
    assert row["human"] == manifest.slots.num_rows - row["synthetic"] and row["new_human"] > 0
    slots = manifest.slots
    human = pc.equal(slots["origin"], "human").to_numpy(zero_copy_only=False)
    assert (np.bincount(slots["batch"].to_numpy(), weights=human) == 8).all()
    assert not holdout & set(slots["id"].to_pylist())
    assert slots.filter(pc.equal(slots["origin"], "synthetic")).num_rows >= 500
    # the CLI's plan is the library's plan
    share = Anchored(real_fraction=0.25, reservoir="share")
    again = plan(pool, share, round=1, batch_size=32, seed=3)
    assert again.digest == manifest.digest


def test_mix_refuses_bad_input_and_writes_nothing(ledger_path):
    for args in (
        ["--real-fraction", "1.5"],
        ["--batch-size", "0"],
        ["--policy", "nope"],
        ["--real-fraction", "0.01"],
    ):
        result = runner.invoke(app, ["mix", "--round", "1", "--ledger", str(ledger_path), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "error" in result.output.lower()
    result = runner.invoke(
        app, ["mix", "--round", "0", "--policy", "replace", "--ledger", str(ledger_path)]
    )
    assert result.exit_code == 2 and "no eligible" in result.output
    with Ledger.open(ledger_path, read_only=True) as led:
        assert led.manifests() == []


def test_mix_refuses_an_unfrozen_reservoir(tmp_path):
    path = tmp_path / "fresh.duckdb"
    with Ledger.open(path) as led:
        led.add_records(make_records(["a", "b"], origin="human", source="people"))
    result = runner.invoke(app, ["mix", "--round", "0", "--ledger", str(path)])
    assert result.exit_code == 2 and "not frozen" in result.output
    with Ledger.open(path, read_only=True) as led:
        assert led.manifests() == []


def test_dial_show_prints_the_stored_history(ledger_path):
    dial = Dial(start=0.2, watch=["tail_coverage"])
    with Ledger.open(ledger_path) as led:
        for r, degraded in enumerate([False, True], start=1):
            d = dial.decide(
                r,
                [
                    Evidence(
                        metric="tail_coverage",
                        value=0.7,
                        baseline=0.8,
                        relative_change=-0.125,
                        threshold=0.1,
                        degraded=degraded,
                    )
                ],
            )
            led.write_decision(
                run="main",
                round=d.round,
                real_fraction=d.real_fraction,
                reason=d.reason,
                evidence=d.evidence,
            )
        resumed = Dial.resume(led.decisions(run="main"))
    assert resumed.state == dial.state
    result = runner.invoke(app, ["dial", "show", "--ledger", str(ledger_path)])
    assert result.exit_code == 0, result.output
    assert "25%" in result.output and "tail_coverage" in result.output
    assert "realised" in result.output  # no manifest yet: the share realised shows "-"
    result = runner.invoke(app, ["dial", "show", "--json", "--ledger", str(ledger_path)])
    assert json.loads(result.output)[1]["real_fraction"] == 0.25
