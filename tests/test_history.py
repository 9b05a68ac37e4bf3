"""History is append-only: a trained round's manifest and an evaluated round's metrics
are never replaced; replacements before that are logged; exports keep provenance;
labels conflict loudly and are corrected only by `relabel`, which keeps the old one."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.errors import InputError, ReservoirError
from tailguard.ledger import Ledger
from tailguard.mix import plan
from tailguard.mix.policies import Anchored, HumanOnly
from tailguard.records import make_records

runner = CliRunner()


def _synthetic(led, n=20, round_=1):
    recs = make_records(
        [f"synthetic text number {i} of round {round_}" for i in range(n)],
        origin="synthetic",
        source="model",
        generator="m",
        generation=round_,
        round=round_,
    )
    led.add_records(recs)
    led.set_status(recs["id"], "accepted", round=round_)
    return recs


def _metrics(run, round_, value):
    return pa.table(
        {
            "run": [run],
            "round": pa.array([round_], pa.int32()),
            "sample": ["model"],
            "metric": ["distinct_2"],
            "value": [value],
            "higher_is_better": [True],
        }
    )


def test_a_trained_manifest_is_never_replaced(frozen):
    m0 = plan(frozen.training_pool(0), HumanOnly(), round=0, batch_size=8, seed=0)
    frozen.write_manifest(m0)
    _synthetic(frozen)
    m1 = plan(frozen.training_pool(1), Anchored(real_fraction=0.5), round=1, batch_size=8, seed=0)
    frozen.write_manifest(m1)
    # Before training, re-planning is allowed and logged (old and new digest, who, when).
    m1b = plan(frozen.training_pool(1), Anchored(real_fraction=0.5), round=1, batch_size=8, seed=1)
    frozen.write_manifest(m1b)
    (entry,) = frozen.history().to_pylist()
    assert (entry["kind"], entry["round"], entry["old"], entry["new"]) == (
        "manifest",
        1,
        m1.digest,
        m1b.digest,
    )
    assert "@" in entry["changed_by"] and entry["changed_at"] is not None
    frozen.mark_stage("main", 1, "train")
    with pytest.raises(InputError, match="append-only"):
        frozen.write_manifest(m1)
    assert frozen.manifest(1).digest == m1b.digest
    # Round 0 is followed by round 1: its manifest is closed too.
    with pytest.raises(InputError, match="manifest of round 0.*of round 1"):
        frozen.write_manifest(
            plan(frozen.training_pool(0), HumanOnly(), round=0, batch_size=8, seed=9)
        )


def test_metrics_are_closed_once_a_later_round_exists(frozen):
    frozen.write_metrics(_metrics("main", 1, 0.5))
    frozen.write_metrics(_metrics("main", 1, 0.6))  # re-evaluated before round 2: logged
    assert [h["kind"] for h in frozen.history().to_pylist()] == ["metrics"]
    frozen.write_metrics(_metrics("main", 2, 0.7))
    with pytest.raises(InputError, match="append-only"):
        frozen.write_metrics(_metrics("main", 1, 0.1))
    values = frozen.metrics("main").to_pydict()["value"]
    assert values == [0.6, 0.7]
    with pytest.raises(InputError, match=">= 0"):
        frozen.write_metrics(_metrics("main", -1, 0.1))


def test_the_audit_shows_replaced_versions(frozen, tmp_path):
    from tailguard.ledger import Ledger

    path = tmp_path / "l.duckdb"
    with Ledger.open(path) as led:
        led.add_records(frozen.records())
        led.freeze_reservoir()
        for seed in (0, 1):
            led.write_manifest(
                plan(led.training_pool(0), HumanOnly(), round=0, batch_size=8, seed=seed)
            )
    out = runner.invoke(app, ["audit", "--json", "--ledger", str(path)])
    (row,) = json.loads(out.output)["rounds"]
    assert [v["kind"] for v in row["revisions"]] == ["manifest"]
    assert row["revisions"][0]["by"]


def test_reingesting_an_export_keeps_its_provenance(frozen, tmp_path):
    _synthetic(frozen, n=5)
    m1 = plan(frozen.training_pool(1), Anchored(real_fraction=0.5), round=1, batch_size=8, seed=0)
    frozen.write_manifest(m1)
    export = tmp_path / "round1.jsonl"
    frozen.manifest_records(1).to_pandas().to_json(
        export, orient="records", lines=True, date_format="iso"
    )
    from tailguard.ledger import Ledger

    with Ledger.open(":memory:") as fresh:
        result = fresh.ingest(export, text_field="content")
        assert result.added > 0
        by_origin = fresh.con.execute(
            "SELECT origin, generator, generation, count(*) FROM records GROUP BY ALL ORDER BY 1"
        ).fetchall()
        exported = frozen.manifest_records(1)
        n_syn = len(
            set(
                exported.filter(pa.compute.equal(exported["origin"], "synthetic"))["id"].to_pylist()
            )
        )
        assert ("synthetic", "m", 1, n_syn) in by_origin
        # An explicit origin overrides the file's columns.
        with Ledger.open(":memory:") as other:
            other.ingest(export, text_field="content", origin="human")
            assert other.count(origin="synthetic") == 0


def test_label_conflicts_are_refused_and_relabel_keeps_the_old_value(ledger, tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "the cat sat", "label": "a"}\n{"text": "the  cat sat", "label": "b"}\n')
    with pytest.raises(InputError, match="label conflict"):
        ledger.ingest(f, label_field="label")
    assert ledger.count() == 0
    f.write_text('{"text": "the cat sat", "label": "a"}\n')
    ledger.ingest(f, label_field="label")
    f.write_text('{"text": "the cat sat", "label": "b"}\n')
    with pytest.raises(InputError, match="relabel"):
        ledger.ingest(f, label_field="label")
    rid = ledger.records()["id"][0].as_py()
    assert ledger.relabel(rid, "b", reason="typo") == 1
    assert ledger.records()["label"].to_pylist() == ["b"]
    (h,) = ledger.history().to_pylist()
    assert (h["kind"], h["key"], json.loads(h["old"]), json.loads(h["new"]), h["reason"]) == (
        "relabel",
        rid,
        ["a"],
        "b",
        "typo",
    )
    ledger.ingest(f, label_field="label")  # now agrees: nothing to report
    f.write_text('{"text": "the cat sat", "label": "a"}\n')
    ledger.ingest(f, label_field="label")  # the original file again: the correction stands
    assert ledger.records()["label"].to_pylist() == ["b"]
    f.write_text('{"text": "the cat sat", "label": "c"}\n')
    with pytest.raises(InputError, match="relabel"):  # a label never given is a conflict
        ledger.ingest(f, label_field="label")
    ledger.freeze_reservoir()
    with pytest.raises(ReservoirError, match="frozen reservoir"):
        ledger.relabel(rid, "c")


def test_relabel_command(tmp_path):
    path = tmp_path / "l.duckdb"
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "a dog ran", "label": "x"}\n')
    Ledger.open(path).close()
    assert (
        runner.invoke(
            app, ["ingest", str(f), "--label-field", "label", "--ledger", str(path)]
        ).exit_code
        == 0
    )
    from tailguard.records import content_id

    rid = content_id("a dog ran")
    out = runner.invoke(app, ["relabel", rid, "y", "--ledger", str(path)])
    assert out.exit_code == 0, out.output
    bad = runner.invoke(app, ["relabel", "nosuchid", "y", "--ledger", str(path)])
    assert bad.exit_code == 2 and "no record" in bad.output


def test_replacements_are_caught_with_the_run_read_between_writes(frozen):
    """The ledger answers "is this already stored?" from a run's rows it has read on
    its connection: the answers must be those of a fresh read."""
    frozen.write_metrics(_metrics("main", 1, 0.5))
    assert frozen.metrics("main").num_rows == 1  # read (and held) before the rewrite
    frozen.write_metrics(_metrics("main", 1, 0.6))
    assert [h["kind"] for h in frozen.history().to_pylist()] == ["metrics"]
    assert frozen.metrics("main").to_pydict()["value"] == [0.6]
    frozen.write_metrics(_metrics("main", 2, 0.7))
    frozen.metrics("main")
    with pytest.raises(InputError, match="append-only"):
        frozen.write_metrics(_metrics("main", 1, 0.1))
    for fraction in (0.4, 0.3):
        frozen.decisions("main")  # held, then replaced: one decision per round
        frozen.write_decision(run="main", round=1, real_fraction=fraction, reason="r")
    frozen.write_decision(run="main", round=2, real_fraction=0.2, reason="r")
    assert frozen.decisions("main").to_pydict()["real_fraction"] == [0.3, 0.2]
