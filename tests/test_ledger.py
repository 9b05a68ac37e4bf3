import json

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tailguard.errors import InputError, ReservoirError, TailguardError
from tailguard.ledger import Ledger
from tailguard.records import MANIFEST_SLOTS, Manifest, make_records


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


ROWS = [{"text": f"example {i}", "cls": "a" if i % 3 else "b"} for i in range(30)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv", "arrow", "pandas", "hf"])
def test_ingest_every_format_gives_the_same_records(tmp_path, ledger, fmt):
    table = pa.Table.from_pylist(ROWS)
    if fmt == "jsonl":
        data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    elif fmt == "parquet":
        pq.write_table(table, tmp_path / "d.parquet")
        data = tmp_path / "d.parquet"
    elif fmt == "csv":
        table.to_pandas().to_csv(tmp_path / "d.csv", index=False)
        data = tmp_path / "d.csv"
    elif fmt == "arrow":
        data = table
    elif fmt == "pandas":
        data = pd.DataFrame(ROWS)
    else:
        import datasets

        data = datasets.Dataset.from_list(ROWS)
    res = ledger.ingest(data, origin="human", source_name="d", label_field="cls")
    assert (res.read, res.added, res.existing) == (30, 30, 0)
    got = ledger.records()
    assert sorted(got.column("content").to_pylist()) == sorted(r["text"] for r in ROWS)
    assert pc.sum(pc.equal(got["label"], "b")).as_py() == 10


def test_reingest_adds_nothing_and_says_so(tmp_path, ledger):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    ledger.ingest(path, origin="human")
    again = ledger.ingest(path, origin="human")
    assert (again.added, again.existing) == (0, 30)
    assert ledger.count() == 30


def test_same_content_other_provenance_is_a_second_record(ledger):
    ledger.add_records(make_records(["same words"], origin="human", source="people"))
    res = ledger.add_records(
        make_records(
            ["same   words"], origin="synthetic", source="m", generator="m0", generation=1, round=1
        )
    )
    assert res.added == 1
    rows = ledger.records().to_pylist()
    assert len(rows) == 2 and rows[0]["id"] == rows[1]["id"]
    assert {r["origin"] for r in rows} == {"human", "synthetic"}


def test_duplicates_within_one_input_count_as_existing(ledger):
    res = ledger.add_records(make_records(["x", "x", "y"], origin="human", source="s"))
    assert (res.added, res.existing) == (2, 1)


BAD_INPUTS = [
    ("malformed.jsonl", b'{"text": "ok"}\n{"text": "broken"\n', 2, None, "malformed JSON"),
    ("utf8.jsonl", b'{"text": "ok"}\n{"text": "bad \xff byte"}\n', 2, None, "UTF-8"),
    ("missing.jsonl", b'{"text": "ok"}\n{"body": "no text"}\n', 2, "text", "missing"),
    ("wrongtype.jsonl", b'{"text": "ok"}\n\n{"text": 42}\n', 3, "text", "expected text"),
    ("empty.jsonl", b"", None, None, "empty"),
    ("nofield.jsonl", b'{"body": "a"}\n', 1, "text", "missing field"),
]


@pytest.mark.parametrize(("name", "content", "line", "field", "words"), BAD_INPUTS)
def test_bad_input_names_file_line_field_and_leaves_ledger_unchanged(
    tmp_path, ledger, name, content, line, field, words
):
    ledger.add_records(make_records(["already here"], origin="human", source="s"))
    before = ledger.records()
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        ledger.ingest(path, origin="human")
    e = err.value
    assert e.file == str(path) and e.line == line and e.field == field
    assert words.lower() in str(e).lower()
    assert ledger.records().equals(before)


def test_missing_file_is_a_clear_error(tmp_path, ledger):
    with pytest.raises(InputError, match="does not exist"):
        ledger.ingest(tmp_path / "nope.jsonl", origin="human")


def test_csv_and_parquet_missing_values_name_the_row(tmp_path, ledger):
    pq.write_table(pa.table({"text": ["a", None, "c"]}), tmp_path / "d.parquet")
    with pytest.raises(InputError) as err:
        ledger.ingest(tmp_path / "d.parquet", origin="human")
    assert err.value.line == 2 and err.value.field == "text"


def test_ingest_is_all_or_nothing_when_the_insert_fails(ledger):
    good = make_records(["one", "two"], origin="human", source="s")
    bad = good.set_column(
        good.schema.get_field_index("source"), "source", pa.array(["s", None], pa.string())
    )
    with pytest.raises(Exception):  # noqa: B017 - the store's NOT NULL constraint
        ledger.add_records(bad)
    assert ledger.count() == 0


# ---------------------------------------------------------------- reservoir
def test_freeze_splits_a_stratified_holdout(frozen):
    res = frozen.reservoir()
    assert res.size == 60
    hold = frozen.reservoir_records("holdout")
    counts = {r["values"]: r["counts"] for r in pc.value_counts(hold["label"]).to_pylist()}
    assert counts == {"common": 8, "middle": 3, "rare": 1}  # round(0.2 n), rare never dropped
    train = set(res.train_ids.to_pylist())
    assert train.isdisjoint(res.holdout_ids.to_pylist())


def test_freeze_is_deterministic_across_ledgers(small_human):
    digests = set()
    for _ in range(2):
        with Ledger.open(":memory:") as led:
            led.add_records(small_human)
            digests.add(led.freeze_reservoir("main", holdout=0.2, seed=7).digest)
    assert len(digests) == 1


def test_frozen_reservoir_cannot_be_refrozen_or_edited(frozen):
    with pytest.raises(ReservoirError, match="already frozen"):
        frozen.freeze_reservoir("main")
    human_ids = frozen.reservoir().train_ids
    assert frozen.set_status(human_ids, "rejected", round=0) == 0
    frozen.reservoir()  # still verifies


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE records SET content = content || '!' WHERE id = (SELECT min(id) FROM "
        "reservoir_members)",
        "DELETE FROM reservoir_members WHERE id = (SELECT min(id) FROM reservoir_members)",
        "DELETE FROM records WHERE id = (SELECT min(id) FROM reservoir_members)",
        "UPDATE reservoir_members SET split = 'train' WHERE split = 'holdout'",
    ],
)
def test_tampering_behind_tailguards_back_is_detected(frozen, tamper):
    frozen.con.execute(tamper).fetchall()
    with pytest.raises(ReservoirError, match="altered"):
        frozen.reservoir()
    with pytest.raises(ReservoirError):
        frozen.training_pool(1)


def test_training_pool_never_holds_holdout_ids_even_when_regurgitated(frozen):
    hold = frozen.reservoir_records("holdout")
    copy = make_records(
        hold["content"],
        origin="synthetic",
        source="m",
        generator="m0",
        generation=1,
        round=1,
        status="accepted",
    )
    frozen.add_records(copy)
    pool = frozen.training_pool(1)
    assert set(pool["id"].to_pylist()).isdisjoint(hold["id"].to_pylist())
    assert pool.num_rows == len(frozen.reservoir().train_ids)


def test_training_pool_takes_accepted_synthetic_only(frozen):
    syn = make_records(
        ["s1", "s2", "s3"], origin="synthetic", source="m", generator="m0", generation=1, round=1
    )
    frozen.add_records(syn)
    frozen.set_status(syn["id"][:1], "accepted", round=1)
    frozen.set_status(syn["id"][1:2], "rejected", round=1)
    pool = frozen.training_pool(1)
    assert pool.filter(pc.equal(pool["origin"], "synthetic"))["id"].to_pylist() == [
        syn["id"][0].as_py()
    ]
    earlier = frozen.training_pool(0)
    assert pc.sum(pc.equal(earlier["origin"], "synthetic")).as_py() == 0
    # rejected records stay in the ledger
    assert frozen.count(status="rejected") == 1


# ---------------------------------------------------------------- manifests and audit
def slots(ids, origins, gens):
    return pa.table(
        {
            "batch": pa.array([i // 4 for i in range(len(ids))], pa.int32()),
            "id": ids,
            "origin": origins,
            "generation": pa.array(gens, pa.int32()),
            "label": [None] * len(ids),
        },
        schema=MANIFEST_SLOTS,
    )


def add_synthetic(led, n, rnd=1):
    syn = make_records(
        [f"synthetic {rnd} {i}" for i in range(n)],
        origin="synthetic",
        source="m",
        generator="m0",
        generation=rnd,
        round=rnd,
    )
    led.add_records(syn)
    led.set_status(syn["id"], "accepted", round=rnd)
    return syn["id"].to_pylist()


def test_manifest_roundtrip_and_digest(frozen):
    human = frozen.reservoir().train_ids.to_pylist()[:2]
    syn = add_synthetic(frozen, 6)
    m = Manifest(
        round=1,
        slots=slots(human + syn, ["human"] * 2 + ["synthetic"] * 6, [0, 0] + [1] * 6),
        policy="anchored",
        params={"real_fraction": 0.25},
        seed=3,
    )
    digest = frozen.write_manifest(m)
    back = frozen.manifest(1)
    assert back.digest == digest == m.digest
    assert back.batches() == m.batches()
    recs = frozen.manifest_records(1)
    assert recs["id"].to_pylist() == human + syn
    assert set(recs["origin"].to_pylist()) == {"human", "synthetic"}


@pytest.mark.parametrize("which", ["holdout", "candidate", "unknown_human"])
def test_manifest_with_an_ineligible_id_is_refused_and_nothing_written(frozen, which):
    if which == "holdout":
        bad, origin = frozen.reservoir().holdout_ids[0].as_py(), "human"
    elif which == "candidate":
        syn = make_records(
            ["unchecked"], origin="synthetic", source="m", generator="m0", generation=1, round=1
        )
        frozen.add_records(syn)
        bad, origin = syn["id"][0].as_py(), "synthetic"
    else:
        bad, origin = "0" * 32, "human"
    m = Manifest(round=1, slots=slots([bad], [origin], [0 if origin == "human" else 1]), policy="p")
    with pytest.raises(InputError, match="refused"):
        frozen.write_manifest(m)
    assert frozen.manifests() == []


def test_tampered_manifest_is_detected(frozen):
    human = frozen.reservoir().train_ids.to_pylist()[:4]
    frozen.write_manifest(
        Manifest(round=0, slots=slots(human, ["human"] * 4, [0] * 4), policy="human_only")
    )
    frozen.con.execute("UPDATE manifest_slots SET batch = 9 WHERE pos = 0").fetchall()
    with pytest.raises(TailguardError, match="altered"):
        frozen.manifest(0)


def test_audit_flags_rounds_below_the_human_floor(frozen):
    human = frozen.reservoir().train_ids.to_pylist()
    syn = add_synthetic(frozen, 20)
    ok = Manifest(
        round=1,
        slots=slots(human[:2] + syn[:6], ["human"] * 2 + ["synthetic"] * 6, [0] * 2 + [1] * 6),
        policy="anchored",
    )
    low = Manifest(
        round=2,
        slots=slots(human[:1] + syn[:9], ["human"] + ["synthetic"] * 9, [0] + [1] * 9),
        policy="replace",
    )
    frozen.write_manifest(ok)
    frozen.write_manifest(low)
    rows = frozen.audit(floor=0.15).to_pylist()
    assert [(r["round"], r["human_share"], r["flagged"]) for r in rows] == [
        (1, 0.25, False),
        (2, 0.1, True),
    ]
    assert json.loads(rows[1]["by_generation"]) == {"1": 9}
    assert rows[0]["reservoir_share"] == 0.25


def test_reservoir_digest_covers_split_id_label_provenance_and_content(frozen):
    """Digest version 2, recomputed in Python from its definition."""
    import hashlib

    res = frozen.reservoir()
    split = {i: "train" for i in res.train_ids.to_pylist()}
    split |= {i: "holdout" for i in res.holdout_ids.to_pylist()}
    rows = {r["id"]: r for r in frozen.reservoir_records("all").to_pylist()}
    lines = [
        json.dumps(
            [
                split[i], i, rows[i]["label"], rows[i]["label"], rows[i]["source"],
                str(rows[i]["round"]), rows[i]["status"],
                hashlib.sha256(rows[i]["content"].encode()).hexdigest(),
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        )
        for i in sorted(split)
    ]  # fmt: skip
    expected = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert res.digest == expected


def test_a_ledger_written_before_reason_codes_still_opens_and_counts_by_code(tmp_path):
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # the verdicts table as the previous version made it
    con.execute(
        "CREATE TABLE verdicts (id VARCHAR NOT NULL, round INTEGER NOT NULL, "
        "verifier VARCHAR NOT NULL, params VARCHAR, version VARCHAR, passed BOOLEAN NOT NULL, "
        "reason VARCHAR, score DOUBLE, matched_id VARCHAR)"
    )
    con.execute(
        "INSERT INTO verdicts VALUES "
        "('a', 1, 'quality', '{}', '1', false, 'too short (2 < 9 chars)', NULL, NULL), "
        "('b', 1, 'quality', '{}', '1', true, 'ok', NULL, NULL)"
    )
    from tailguard.ledger import _DDL

    con.execute(_DDL)  # the other tables (verdicts exists already, so it stays as it was)
    con.close()
    with Ledger.open(path, read_only=True) as led:
        rows = led.verdicts().to_pylist()
        assert [(r["code"], r["detail"]) for r in rows] == [
            ("unclassified", "too short (2 < 9 chars)"),
            ("ok", "ok"),
        ]
        assert led.rejection_reasons().to_pylist() == [
            {"verifier": "quality", "code": "unclassified", "count": 1}
        ]
    with Ledger.open(path) as led:  # opened for writing: migrated, and new verdicts carry codes
        new = pa.table(
            {
                "id": ["c"],
                "round": pa.array([2], pa.int32()),
                "verifier": ["quality"],
                "params": ["{}"],
                "version": ["1"],
                "passed": [False],
                "code": ["too_short"],
                "detail": ["3 < 9 chars"],
                "score": pa.array([None], pa.float64()),
                "matched_id": pa.array([None], pa.string()),
            }
        )
        led.record_gate(2, new, accepted=[], rejected=["c"])
        codes = led.rejection_reasons().to_pylist()
        assert {(r["code"], r["count"]) for r in codes} == {("unclassified", 1), ("too_short", 1)}
        assert led.verdicts(id="a").to_pylist()[0]["detail"] == "too short (2 < 9 chars)"


def test_round_summary_is_the_one_composition_audit_lab_and_report_read(frozen):
    from types import SimpleNamespace

    from tailguard.costs import CostModel
    from tailguard.lab.job import _Job
    from tailguard.report import from_ledger

    human = frozen.reservoir().train_ids.to_pylist()
    syn = {r: add_synthetic(frozen, 8, rnd=r) for r in (1, 2, 3)}
    plans = {  # round: (human ids, synthetic ids)
        1: (human[:2], syn[1][:6]),
        2: (human[1:4], syn[2][:5]),
        3: (human[:1], syn[3][:7]),
    }
    for r, (h, s) in plans.items():
        origins, gens = ["human"] * len(h) + ["synthetic"] * len(s), [0] * len(h) + [r] * len(s)
        frozen.write_manifest(Manifest(round=r, slots=slots(h + s, origins, gens), policy="x"))
    verdict_rows = pa.table(
        {
            "id": syn[2][:3],
            "round": pa.array([2] * 3, pa.int32()),
            "verifier": ["quality"] * 3,
            "params": ["{}"] * 3,
            "version": ["1"] * 3,
            "passed": [True] * 3,
            "code": ["ok"] * 3,
            "detail": ["ok"] * 3,
            "score": pa.nulls(3, pa.float64()),
            "matched_id": pa.nulls(3, pa.string()),
        }
    )
    frozen.record_gate(2, verdict_rows, accepted=syn[2][:3], rejected=[])
    summary = frozen.round_summary("main").to_pylist()
    seen: set[str] = set()
    for row, (r, (h, s)) in zip(summary, plans.items(), strict=True):
        new = len(set(h) - seen)
        seen |= set(h)
        assert (row["round"], row["human"], row["synthetic"], row["total"]) == (
            r,
            len(h),
            len(s),
            len(h) + len(s),
        )
        assert row["new_human"] == new and row["traceable"] == len(h) + len(s)
        assert row["generated"] == 8 and row["verified"] == (3 if r == 2 else 0)
        assert row["human_share"] == pytest.approx(len(h) / (len(h) + len(s)))
    audit = frozen.audit(run="main")
    for col in ("round", "total", "human", "synthetic", "human_share", "reservoir_share"):
        assert audit[col].to_pylist() == [row[col] for row in summary]
    mix = from_ledger(frozen).frame("mix")
    assert mix["human"].tolist() == [row["human"] for row in summary]
    assert mix["synthetic"].tolist() == [row["synthetic"] for row in summary]
    job = SimpleNamespace(
        ledger=frozen,
        run_name="main",
        config=SimpleNamespace(costs=CostModel()),
        strategy="s",
        seed=0,
        n_reservoir_train=len(frozen.reservoir().train_ids),
    )
    lab = _Job._rounds_table(job)
    cols = ("round", "human", "synthetic", "traceable", "new_human", "bought", "generated")
    for col in (*cols, "verified"):
        assert lab[col].to_pylist() == [row[col] for row in summary]


def test_a_manifest_counts_what_the_round_summary_reads(frozen):
    """Manifest.counts (in memory) and Ledger.round_summary (stored) agree on a round."""
    human = frozen.reservoir().train_ids.to_pylist()[:3]
    syn = add_synthetic(frozen, 5, rnd=1)
    manifest = Manifest(
        round=1,
        slots=slots(human + syn, ["human"] * 3 + ["synthetic"] * 5, [0] * 3 + [1] * 5),
        policy="x",
    )
    frozen.write_manifest(manifest)
    row = frozen.round_summary("main").to_pylist()[0]
    counts = manifest.counts()
    assert (
        (counts["total"], counts["human"], counts["synthetic"])
        == (
            row["total"],
            row["human"],
            row["synthetic"],
        )
        == (8, 3, 5)
    )


def test_reservoir_labels_count_each_split_of_the_frozen_members(frozen):
    """The counts agree with the reservoir's own split, label by label (60 = 40 + 15 + 5)."""
    res = frozen.reservoir("main")
    labels = frozen.reservoir_labels("main")
    assert [lab for lab, _, _ in labels] == ["common", "middle", "rare"]
    train_ids, holdout_ids = res.train_ids.to_pylist(), res.holdout_ids.to_pylist()
    members = frozen.records(ids=train_ids + holdout_ids)
    by_label = dict(zip(members["id"].to_pylist(), members["label"].to_pylist(), strict=True))
    for label, train, holdout in labels:
        assert train == sum(by_label[i] == label for i in train_ids)
        assert holdout == sum(by_label[i] == label for i in holdout_ids)
    assert sum(t + h for _, t, h in labels) == res.size == 60
    assert frozen.reservoir_labels("nobody") == []


def test_a_restored_snapshot_holds_what_the_ledger_held(tmp_path, frozen):
    """The lab branches routes from a snapshot: rows, reservoir and its digest come back whole,
    and the restored ledger is a separate database (a write there leaves the original be)."""
    path = tmp_path / "it's a snapshot.duckdb"  # a quote in the path must not break the SQL
    frozen.snapshot(path)
    with Ledger.restore(path) as copy:
        assert copy.records().sort_by("id").equals(frozen.records().sort_by("id"))
        assert copy.reservoir("main").digest == frozen.reservoir("main").digest
        copy.add_records(make_records(["only in the copy"], origin="human", source="x"))
        assert copy.count() == frozen.count() + 1
    assert frozen.count() == 60


@pytest.mark.parametrize(
    ("hold", "share", "hold_max", "reopen", "let_go"),
    [
        (0.0, 0.05, 2.0, 0.0, True),  # held long enough: readers get in
        (1e6, 0.05, 2.0, 0.0, False),  # not yet held HOLD seconds
        (0.0, 0.05, 1e6, 10.0, False),  # a slow reopen stretches the hold (10 / 5% = 200 s)
        (0.0, 0.05, 0.0, 10.0, True),  # ... but never past HOLD_MAX
    ],
)
def test_between_stages_lets_go_by_the_hand_over_policy(tmp_path, hold, share, hold_max, reopen,
                                                        let_go):  # fmt: skip
    with Ledger.open(tmp_path / "l.duckdb") as led:
        led.HOLD, led.REOPEN_SHARE, led.HOLD_MAX = hold, share, hold_max
        led.reopen_seconds = reopen
        led.between_stages()
        assert (led._con is None) is let_go
        assert led.count() == 0  # reopened on the next use either way


def test_before_a_users_call_the_file_is_let_go_unless_the_last_call_was_quick(tmp_path):
    with Ledger.open(tmp_path / "l.duckdb") as led:
        led.before_call(led.HOLD / 2)
        assert led._con is not None
        for last in (None, led.HOLD, 10 * led.HOLD):
            led.count()
            led.before_call(last)
            assert led._con is None


def test_recording_the_gate_moves_only_its_rounds_candidates_and_accepted_wins(ledger):
    """The move is one scan of records: the round's synthetic candidates named become
    accepted or rejected (an id named in both: accepted), nothing else changes."""
    from tailguard.ledger.schema import VERDICT_SCHEMA

    texts = [f"candidate text number {i}" for i in range(6)]
    round_1 = make_records(texts, origin="synthetic", source="m", generation=1, round=1)
    round_2 = make_records(texts[:2], origin="synthetic", source="m", generation=2, round=2)
    people = make_records(texts[:1], origin="human", source="people")
    for table in (round_1, round_2, people):
        ledger.add_records(table)
    ids = round_1["id"].to_pylist()
    verdicts = pa.table(
        {
            "id": ids[:4],
            "round": pa.array([1] * 4, pa.int32()),
            "verifier": ["quality"] * 4,
            "params": ["{}"] * 4,
            "version": ["1"] * 4,
            "passed": [True, False, True, False],
            "code": ["ok", "too_short", "ok", "too_short"],
            "detail": [""] * 4,
            "score": pa.array([None] * 4, pa.float64()),
            "matched_id": pa.array([None] * 4, pa.string()),
        }
    ).cast(VERDICT_SCHEMA)
    ledger.record_gate(1, verdicts, accepted=[ids[0], ids[2]], rejected=[ids[1], ids[2], ids[3]])
    rows = ledger.records(round=1)
    status = dict(zip(rows["id"].to_pylist(), rows["status"].to_pylist(), strict=True))
    assert [status[i] for i in ids] == [
        "accepted", "rejected", "accepted", "rejected", "candidate", "candidate"
    ]  # fmt: skip
    assert set(ledger.records(round=2)["status"].to_pylist()) == {"candidate"}
    assert ledger.records(origin="human")["status"].to_pylist() == ["accepted"]
    assert ledger.verdicts(round=1).num_rows == 4
    ledger.record_gate(1, verdicts, accepted=[ids[0]], rejected=[])  # gated again: replaced
    assert ledger.verdicts(round=1).num_rows == 4
