"""`tailguard gate --audit`: a verifier's precision, recall and specificity on a labelled
sample, stored append-only with its version, shown in the report."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import run_cli

from tailguard.gate.audit import wilson
from tailguard.ledger import Ledger

CONFIG = """
[gate]

[[gate.verifiers]]
kind = "quality"
min_words = 4

[[gate.verifiers]]
kind = "rules"
rules = "rules.toml"
"""

#: (text, known good, quality passes (>= 4 words), rules pass (no "spam"))
SAMPLE = [
    ("the quick brown fox jumps", True, True, True),
    ("a calm sea under grey skies", True, True, True),
    ("rivers run down to the sea", True, True, True),
    ("mountains stand tall and old", True, True, True),
    ("short text", True, False, True),
    ("this good text mentions spam though", True, True, False),
    ("buy cheap spam pills now", False, True, False),
    ("spam", False, False, False),
    ("nonsense words without any meaning at all", False, True, True),
    ("bad spam", False, False, False),
]


def project(tmp_path, sample=SAMPLE):
    (tmp_path / "tailguard.toml").write_text(CONFIG)
    (tmp_path / "rules.toml").write_text(
        '[[rule]]\nname = "no-spam"\nforbid_keywords = ["spam"]\nreason = "spam"\n'
    )
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps({"text": t, "good": g}) + "\n" for t, g, *_ in sample))
    Ledger.open(tmp_path / "ledger.duckdb").close()  # only `tailguard init` makes one
    return path


def audit(tmp_path, sample_path, *extra):
    return run_cli(
        "gate", "--audit", str(sample_path), "--config", str(tmp_path / "tailguard.toml"),
        "--ledger", str(tmp_path / "ledger.duckdb"), "--quiet", *extra,
    )  # fmt: skip


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson(5, 6)
    assert low == pytest.approx(0.4365, abs=1e-4) and high == pytest.approx(0.9699, abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson(0, 0) == (None, None)


def test_audit_measures_each_verifier_against_hand_counts_and_keeps_history(tmp_path):
    path = project(tmp_path)
    out = audit(tmp_path, path)
    assert out.exit_code == 0, out.output
    assert "6 known good, 4 known bad" in out.output
    assert "0.714 [0.36, 0.92]" in out.output  # quality's precision 5/7
    with Ledger.open(tmp_path / "ledger.duckdb", read_only=True) as led:
        rows = {r["verifier"]: r for r in led.verifier_audits().to_pylist()}
    q, r = rows["quality"], rows["rules"]
    # quality accepts goods 1-4 and 6, bads 1 and 3
    assert (q["accepted_good"], q["accepted_bad"], q["n_good"], q["n_bad"]) == (5, 2, 6, 4)
    assert q["precision"] == pytest.approx(5 / 7) and q["recall"] == pytest.approx(5 / 6)
    assert q["specificity"] == pytest.approx(2 / 4)
    # rules accepts goods 1-5 and bad 3
    assert (r["accepted_good"], r["accepted_bad"]) == (5, 1)
    assert r["precision"] == pytest.approx(5 / 6) and r["specificity"] == pytest.approx(3 / 4)
    assert (r["precision_low"], r["precision_high"]) == pytest.approx(wilson(5, 6))
    assert q["version"] and json.loads(q["params"])["min_words"] == 4
    assert len(q["sample_digest"]) == 64 and q["sample"] == "labelled.jsonl"
    # a second audit is a new row, never a replacement
    assert audit(tmp_path, path).exit_code == 0
    with Ledger.open(tmp_path / "ledger.duckdb", read_only=True) as led:
        assert led.verifier_audits().num_rows == 4
        latest = led.verifier_audits(latest=True)
    assert sorted(latest["verifier"].to_pylist()) == ["quality", "rules"]


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (['{"text": "fine text here ok", "good": true}', '{"text": "x y z w", "good": "yes"}'],
         ["line 2", "field 'good'"]),
        (['{"text": "fine text here ok", "good": true}', '{"text": "x y z w"}'],
         ["line 2", "field 'good'"]),
        (['{"text": "fine text here ok", "ok": true}'], ["field 'good'", "missing"]),
        (['{"text": "fine text here ok", "good": true}', '{"text": "more text", "good": true}'],
         ["known-bad"]),
        (['{"text": "fine text here ok", "good": true}', "{not json"], ["line 2"]),
    ],
)  # fmt: skip
def test_bad_samples_are_refused_by_name_and_change_nothing(tmp_path, lines, words):
    path = project(tmp_path)
    assert audit(tmp_path, path).exit_code == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = audit(tmp_path, bad)
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "bad.jsonl" in out.output
    for word in words:
        assert word in out.output, out.output
    with Ledger.open(tmp_path / "ledger.duckdb", read_only=True) as led:
        assert led.verifier_audits().num_rows == 2


def test_parquet_sample_with_named_fields(tmp_path):
    import pyarrow.parquet as pq

    project(tmp_path)
    path = tmp_path / "labelled.parquet"
    pq.write_table(pa.table({"body": [s[0] for s in SAMPLE], "ok": [s[1] for s in SAMPLE]}), path)
    out = audit(tmp_path, path, "--text-field", "body", "--good-field", "ok")
    assert out.exit_code == 0, out.output
    with Ledger.open(tmp_path / "ledger.duckdb", read_only=True) as led:
        assert led.verifier_audits()["recall"].to_pylist() == pytest.approx([5 / 6, 5 / 6])


def test_the_report_shows_each_verifiers_latest_audit_with_its_interval(tmp_path):
    from tailguard.report import from_ledger, render

    path = project(tmp_path)
    assert audit(tmp_path, path).exit_code == 0
    assert audit(tmp_path, path).exit_code == 0
    with Ledger.open(tmp_path / "ledger.duckdb", read_only=True) as led:
        page = render(from_ledger(led))
    assert "Verifier quality" in page and "audits-table" in page
    section = page[page.index("id='verifier-audits'") :]
    section = section[: section.index("</section>")]
    assert section.count("<tr>") - 1 == 2  # latest only: one row per verifier
    assert "0.714 [0.36, 0.92]" in section and "0.833 [0.44, 0.97]" in section


def frontier_file(tmp_path):
    """A hand-built lab frontier: the lowest safe fraction falls as quality rises, and the
    most synthetic-heavy mix (no human data) holds only from quality 0.9."""
    import pyarrow.parquet as pq

    held = {
        None: [False, False, True, True],  # ungated
        0.6: [False, False, False, True],
        0.7: [False, True, False, True],  # 0.15 held, but 0.3 collapsed above it
        0.8: [False, True, True, True],
        0.9: [True, True, True, True],
    }
    rows = [
        {"real_fraction": f, "verifier_quality": q, "held": h, "cost_per_round": 10 + 100 * f}
        for q, hs in held.items()
        for f, h in zip([0.0, 0.15, 0.3, 0.5], hs, strict=True)
    ]
    path = tmp_path / "frontier.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def measured(precision, recall, specificity=0.99):
    return {
        "verifier": "checker", "version": "1", "sample": "s.jsonl", "n_good": 50, "n_bad": 50,
        "precision": precision, "precision_low": precision - 0.05, "precision_high": precision,
        "recall": recall, "recall_low": recall - 0.05, "recall_high": recall,
        "specificity": specificity, "specificity_low": specificity - 0.05,
        "specificity_high": specificity, "confidence": 0.95,
    }  # fmt: skip


def test_the_advisor_reads_the_frontier_at_the_quality_nearest_below(tmp_path):
    from tailguard.advise import TaskProfile, advise, read_quality_frontier, with_verifier_audits

    frontier = read_quality_frontier(frontier_file(tmp_path))
    base = advise(TaskProfile(task="narrow", verifiable=True))
    above = with_verifier_audits(base, [measured(0.95, 0.92)], frontier).evidence
    assert "precision 0.95 [0.90, 0.95], recall 0.92 [0.87, 0.92]" in above[0]
    assert "at quality 0.9 (the nearest swept at or below its measured 0.92)" in above[1]
    assert "lowest safe real fraction is 0% ($10.00 per round)" in above[1]
    assert "below the lowest quality" not in above[1]
    # 0.78 reads the 0.7 row: 0.15 held but 0.3 collapsed above it, so 50% is the safe one
    mid = with_verifier_audits(base, [measured(0.85, 0.78)], frontier).evidence[1]
    assert "at quality 0.7 " in mid and "lowest safe real fraction is 50% ($60.00" in mid
    assert "below the lowest quality at which gating held" in mid
    assert "gating will not save a synthetic-heavy mix" in mid
    assert "gating held at 0 human from quality 0.9 up" in mid
    # quality is the lower of recall and specificity (the two rates the lab's knob sets)
    low = with_verifier_audits(base, [measured(0.95, 0.9, 0.5)], frontier).evidence[1]
    assert "below every quality the lab swept" in low and "will not save" in low
    none = with_verifier_audits(base, [], frontier).evidence[-1]
    assert "tailguard gate --audit" in none


def test_advise_cli_quotes_the_audited_verifier_and_the_frontier(tmp_path):
    path = project(tmp_path)
    assert audit(tmp_path, path).exit_code == 0
    frontier = frontier_file(tmp_path)
    led = str(tmp_path / "ledger.duckdb")
    out = run_cli(
        "advise", "--task", "narrow", "--verifiable", "yes", "--ledger", led,
        "--frontier", str(frontier),
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "verifier quality (version" in text and "precision 0.71 [0.36, 0.92]" in text
    assert "verifier rules (version" in text and "recall 0.83 [0.44, 0.97]" in text
    # quality measures 0.5 (its specificity 2/4): below every swept quality; rules 0.75
    # (its specificity 3/4): read at 0.7, where 0.15 held but 0.3 collapsed above it
    assert "below every quality the lab swept" in text
    assert "at quality 0.7 (the nearest swept at or below its measured 0.75)" in text
    assert "lowest safe real fraction is 50% ($60.00 per round)" in text
    assert "gating will not save a synthetic-heavy mix" in text
    plain = run_cli("advise", "--task", "narrow", "--verifiable", "yes", "--ledger", led)
    assert plain.exit_code == 0 and "precision 0.71" in plain.output
    assert "lab frontier" not in plain.output
    bad = tmp_path / "bad.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"real_fraction": [0.1], "held": [True]}), bad)
    refused = run_cli("advise", "--verifiable", "yes", "--ledger", led, "--frontier", str(bad))
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "bad.parquet" in refused.output and "verifier_quality" in refused.output


def test_a_ledger_from_before_audits_reads_as_none_and_gets_the_table_when_written(tmp_path):
    path = tmp_path / "old.duckdb"
    with Ledger.open(path) as led:
        led.con.execute("DROP TABLE verifier_audits")  # as a ledger of an earlier version
    with Ledger.open(path, read_only=True) as led:
        assert led.verifier_audits().num_rows == 0
        assert "audited_at" in led.verifier_audits().column_names
    with Ledger.open(path) as led:  # a writable open creates the table
        assert led.verifier_audits(latest=True).num_rows == 0
