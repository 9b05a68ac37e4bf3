"""`tailguard gate`: gate a round from tailguard.toml, explain a record, refuse bad input."""

from __future__ import annotations

import json

from conftest import ledger_with_candidates
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.ledger import Ledger
from tailguard.records import make_records

runner = CliRunner()

CONFIG = """
[gate]

[[gate.verifiers]]
kind = "quality"
min_chars = 15

[[gate.verifiers]]
kind = "near_duplicate"
threshold = 0.8

[[gate.verifiers]]
kind = "rules"
rules = "rules.toml"
"""


def setup_project(tmp_path):
    human = [f"human sentence number {i} about the weather and the sea today" for i in range(30)]
    synthetic = [
        human[3],
        "a short one",
        "a fresh synthetic sentence about mountains and rivers",
        "this mentions forbidden spam in a long enough sentence",
    ]
    path = ledger_with_candidates(tmp_path / "ledger.duckdb", human, synthetic)
    (tmp_path / "tailguard.toml").write_text(CONFIG)
    (tmp_path / "rules.toml").write_text(
        '[[rule]]\nname = "no-spam"\nforbid_keywords = ["spam"]\nreason = "spam"\n'
    )
    return path, synthetic


def test_gate_round_explain_and_nothing_left(tmp_path):
    path, synthetic = setup_project(tmp_path)
    cfg = str(tmp_path / "tailguard.toml")
    out = runner.invoke(
        app, ["gate", "--round", "1", "--config", cfg, "--ledger", str(path), "--quiet"]
    )
    assert out.exit_code == 0, out.output
    assert "1 accepted" in out.output and "3 rejected" in out.output
    assert "near_duplicate" in out.output and "rule:no-spam" in out.output
    assert "too_short" in out.output
    with Ledger.open(path, read_only=True) as led:
        copied = led.records(round=1, status="rejected")
        assert copied.num_rows == 3
        copy_id = make_records([synthetic[0]], origin="human", source="x")["id"][0].as_py()
    explain = runner.invoke(
        app, ["gate", "--explain", copy_id, "--ledger", str(path)], terminal_width=250
    )
    assert explain.exit_code == 0 and "near_duplicate: J~" in explain.output
    assert "with reservoir record" in explain.output
    assert "quality" in explain.output and "rules" in explain.output
    again = runner.invoke(app, ["gate", "--round", "1", "--config", cfg, "--ledger", str(path)])
    assert again.exit_code == 2 and "nothing to gate" in again.output
    allowed = runner.invoke(
        app, ["gate", "--round", "1", "--config", cfg, "--ledger", str(path), "--allow-empty"]
    )
    assert allowed.exit_code == 0 and "nothing to gate" in allowed.output


def test_bad_config_is_refused_with_its_location_before_anything_runs(tmp_path):
    path, _ = setup_project(tmp_path)
    (tmp_path / "rules.toml").write_text('[[rule]]\nname = "x"\nforbid = "(open"\n')
    out = runner.invoke(
        app,
        [
            "gate",
            "--round",
            "1",
            "--config",
            str(tmp_path / "tailguard.toml"),
            "--ledger",
            str(path),
        ],
    )
    assert out.exit_code == 2 and "rules.toml" in out.output and "line 2" in out.output
    with Ledger.open(path, read_only=True) as led:
        assert led.count(round=1, status="candidate") == 4 and led.verdicts().num_rows == 0
    (tmp_path / "broken.toml").write_text("[gate\n")
    out = runner.invoke(
        app,
        ["gate", "--round", "1", "--config", str(tmp_path / "broken.toml"), "--ledger", str(path)],
    )
    assert out.exit_code == 2 and "broken.toml" in out.output and "line 1" in out.output
    out = runner.invoke(app, ["gate", "--explain", "nope", "--ledger", str(path)])
    assert out.exit_code == 2 and "'nope'" in out.output  # a printed id has 8+ characters
    assert json.loads('{"ok": 1}')  # the ledger stayed readable after every refusal


def _cli_counts(output: str) -> dict[tuple[str, str], int]:
    """(verifier, code) -> count, read from the rich table of `tailguard gate`'s summary."""
    rows = {}
    table = output.split("rejections by reason code", 1)[1]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 3 and cells[2].isdigit():
            rows[(cells[0], cells[1])] = int(cells[2])
    return rows


def test_cli_summary_and_report_count_rejections_by_the_same_codes(tmp_path):
    from tailguard.report import from_ledger, render

    path, _ = setup_project(tmp_path)
    cfg = str(tmp_path / "tailguard.toml")
    out = runner.invoke(
        app,
        ["gate", "--round", "1", "--config", cfg, "--ledger", str(path), "--quiet"],
        terminal_width=200,
    )
    assert out.exit_code == 0, out.output
    cli = _cli_counts(out.output)
    assert cli == {
        ("near_duplicate", "near_duplicate"): 1,
        ("quality", "too_short"): 1,
        ("rules", "rule:no-spam"): 1,
    }
    with Ledger.open(path, read_only=True) as led:
        data = from_ledger(led)
        html = render(data)
    reasons = data.frame("reasons")
    report = {(r.verifier, r.code): int(r.count) for r in reasons.itertuples()}
    assert report == cli
    assert all(code in html for _, code in cli)
