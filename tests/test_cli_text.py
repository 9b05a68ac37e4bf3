"""The CLI prints user and data text literally: brackets in labels, run names, reasons,
paths and verdict details are never read as rich markup; ids are taken as printed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import ledger_with_candidates
from hypothesis import given
from hypothesis import strategies as st
from test_ledger import slots  # the manifest slots builder the ledger tests use
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.cli.output import styled
from tailguard.errors import InputError
from tailguard.ledger import Ledger
from tailguard.records import Manifest, make_records

runner = CliRunner()

# Closing tags, a style tag, an escape and a link: each one rich would read as markup.
BRACKETED = ["[/INST]", "x[/]", "[bold]b[/bold]", "\\[red]y", "[link=z]q"]


def invoke(*args: str | Path):
    """Run the CLI; the outcome must be a clean exit (0, 1 or 2), never a traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code in {0, 1, 2}, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result


def literal(text: str, output: str) -> bool:
    """``text`` appears in ``output`` as it is, or as its repr (rich may wrap a table
    cell's words)."""
    flat = " ".join(output.split())
    return any(t in output or t in flat for t in (text, repr(text)[1:-1]))


@given(st.text(alphabet="[]/\\ab=# ", max_size=20), st.text(alphabet="[]/\\ab ", max_size=10))
def test_styled_keeps_every_value_literal_and_applies_the_template_markup(value, other):
    text = styled("[bold]{}[/] and {:>3} [red]{}[/]", value, 7, other)
    assert text.plain == f"{value} and   7 {other}"
    styles = {(s.start, s.end, str(s.style)) for s in text.spans}
    assert (0, len(value), "bold") in styles or not value


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("init").exit_code == 0
    return tmp_path


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.mark.parametrize("s", BRACKETED)
def test_bracketed_user_text_is_printed_literally_everywhere(project, s):
    # a path holding brackets, and a label and texts holding s
    data = _write(
        project / "in[bold]" / "d[red].jsonl",
        [{"text": f"human text {i} {s}", "c": s if i % 2 else "plain"} for i in range(30)],
    )
    assert invoke("ingest", data, "--label-field", "c").exit_code == 0
    bad_field = invoke("ingest", data, "--label-field", f"topic{s}")
    assert bad_field.exit_code == 2 and literal(f"topic{s}", bad_field.output)
    missing = project / f"miss{s}" / "x.jsonl"
    gone = invoke("ingest", missing)
    assert gone.exit_code == 2 and literal(f"miss{s}", gone.output)
    assert invoke("reservoir", "freeze", "--holdout", "0.2").exit_code == 0
    shown = invoke("reservoir", "show")
    assert shown.exit_code == 0 and literal(s, shown.output)
    for cmd in (["audit", "--run"], ["dial", "show", "--run"]):
        out = invoke(*cmd, f"r{s}")
        assert out.exit_code == 2 and literal(f"r{s}", out.output)
    unknown = invoke("relabel", f"{s}0123456789", "a")
    assert unknown.exit_code == 2 and literal(f"{s}0123456789", unknown.output)
    # a record outside the reservoir, relabelled by its printed (12 character) id
    later = _write(project / "later.jsonl", [{"text": f"later text {s}"}])
    assert invoke("ingest", later, "--round", "1").exit_code == 0
    with Ledger.open(project / ".tailguard" / "ledger.duckdb", read_only=True) as led:
        (rid,) = led.records(round=1)["id"].to_pylist()
    out = invoke("relabel", rid[:12], s, "--reason", s)
    assert out.exit_code == 0 and literal(rid, out.output) and literal(repr(s), out.output)


def _rounds(path: Path) -> None:
    """Rounds 0..2 of run main with manifests: something to roll back and audit."""
    with Ledger.open(path) as led:
        led.add_records(make_records([f"human {i}" for i in range(20)], origin="human", source="h"))
        led.freeze_reservoir("main", holdout=0.2, seed=0)
        human = led.reservoir().train_ids.to_pylist()[:2]
        led.write_manifest(Manifest(round=0, slots=slots(human, ["human"] * 2, [0, 0]), policy="x"))
        for r in (1, 2):
            recs = make_records(
                [f"synthetic {r} {i}" for i in range(4)],
                origin="synthetic",
                source="m",
                generation=r,
                round=r,
                status="accepted",
            )
            led.add_records(recs)
            ids = recs["id"].to_pylist()
            led.write_manifest(
                Manifest(
                    round=r,
                    slots=slots(human + ids, ["human"] * 2 + ["synthetic"] * 4, [0, 0] + [r] * 4),
                    policy="x",
                )
            )
            led.mark_stage("main", r, "evaluate")


@pytest.mark.parametrize("s", BRACKETED)
def test_a_bracketed_rollback_reason_leaves_audit_working(tmp_path, s):
    path = tmp_path / "l.duckdb"
    _rounds(path)
    done = invoke("rollback", "--to-round", "1", "--reason", s, "--ledger", path)
    assert done.exit_code == 0
    audit = invoke("audit", "--floor", "0", "--ledger", path)
    assert (
        audit.exit_code == 0 and "rolled back" in audit.output and literal(f"({s})", audit.output)
    )


RULES_CONFIG = """
[gate]

[[gate.verifiers]]
kind = "rules"
rules = "rules.toml"
"""


@pytest.mark.parametrize("s", BRACKETED)
def test_gate_explain_prints_a_bracketed_verdict_detail_by_its_short_id(tmp_path, s):
    human = [f"human sentence number {i} about the weather and the sea" for i in range(20)]
    spam = "this mentions forbidden spam in a long enough sentence"
    path = ledger_with_candidates(tmp_path / "l.duckdb", human, [spam, "fine words here"])
    (tmp_path / "tailguard.toml").write_text(RULES_CONFIG)
    (tmp_path / "rules.toml").write_text(
        f'[[rule]]\nname = "no-spam"\nforbid_keywords = ["spam"]\nreason = {json.dumps(s)}\n'
    )
    cfg = tmp_path / "tailguard.toml"
    gated = invoke("gate", "--round", "1", "--config", cfg, "--ledger", path, "--quiet")
    assert gated.exit_code == 0
    with Ledger.open(path, read_only=True) as led:
        (rid,) = led.records(round=1, status="rejected")["id"].to_pylist()
        (detail,) = led.verdicts(id=rid)["detail"].to_pylist()
    assert s in detail  # the rule's reason reaches the verdict's detail
    out = invoke("gate", "--explain", rid[:12], "--ledger", path)
    assert out.exit_code == 0 and literal(rid, out.output) and literal(detail, out.output)
    short = invoke("gate", "--explain", rid[:7], "--ledger", path)
    assert short.exit_code == 2 and "at least 8" in short.output


def test_screen_release_takes_the_printed_id(tmp_path):
    path = tmp_path / "l.duckdb"
    with Ledger.open(path) as led:
        recs = make_records(["a human line", "another human line"], origin="human", source="h")
        led.add_records(recs)
        ids = recs["id"].to_pylist()
        led.quarantine(
            pa.table(
                {
                    "id": ids,
                    "code": ["x", "x"],
                    "detail": ["[/INST]", "[/INST]"],
                    "score": [0.9, 0.9],
                    "matched_id": pa.nulls(2, pa.string()),
                }
            )
        )
    out = invoke("screen", "--release", ids[0][:12], "--ledger", path)
    assert out.exit_code == 0 and "released 1 record(s)" in out.output
    bad = invoke("screen", "--release", "0000000000zz", "--ledger", path)
    assert bad.exit_code == 2 and "no record with id '0000000000zz'" in bad.output
    with Ledger.open(path, read_only=True) as led:
        assert led.count(status="quarantined") == 1
        assert led.count(status="accepted") == 1


def test_resolve_record_id_names_the_candidates_of_an_ambiguous_prefix(tmp_path):
    with Ledger.open(tmp_path / "l.duckdb") as led:
        recs = make_records([f"line {i}" for i in range(40)], origin="human", source="h")
        led.add_records(recs)
        ids = sorted(recs["id"].to_pylist())
        assert led.resolve_record_id(ids[0][:8]) == ids[0]
        assert led.resolve_record_id(ids[0]) == ids[0]
        first = ids[0][0]
        sharing = [i for i in ids if i.startswith(first)]
        assert len(sharing) > 1  # 40 ids, 16 first characters
        with pytest.raises(InputError, match="ambiguous") as err:
            led.resolve_record_id(first, shortest=1)
        assert all(i in str(err.value) for i in sharing[:5])
        with pytest.raises(InputError, match="at least 8"):
            led.resolve_record_id(ids[0][:7])
        with pytest.raises(InputError, match="no record"):
            led.resolve_record_id("zzzzzzzzzz")


def _commands():
    """(path, click command) of every command and group of ``tailguard``."""
    import typer.main

    todo = [((), typer.main.get_command(app))]
    while todo:
        path, cmd = todo.pop()
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            todo.append(((*path, name), sub))


def _squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=" ".join)
def test_every_help_shows_each_options_help_whole(path):
    cmd = dict(_commands())[path]
    out = invoke(*path, "--help")
    assert out.exit_code == 0 and "<bool>" not in out.output
    shown = _squeezed(out.output)
    if cmd.help:
        assert _squeezed(cmd.help.split("\n\n")[0]) in shown
    for param in cmd.params:
        help_text = getattr(param, "help", None)
        if help_text:  # every word, [section] names of tailguard.toml included
            assert _squeezed(help_text) in shown, (param.name, help_text)


def test_the_readme_command_table_lists_every_command():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n\n", 2)[1]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    for path, cmd in _commands():
        if path and not getattr(cmd, "commands", None):
            words = [set(cell.replace("`", " ").split()) for cell in first_cells]
            assert any({"tailguard", *path} <= w for w in words), " ".join(path)


def test_yes_no_options_are_flags_and_the_older_spelling_still_works():
    from tailguard.cli.app import yes_no_flags

    def strategy(*flags: str) -> str:
        out = invoke("advise", "--task", "narrow", "--json", *flags)
        assert out.exit_code == 0, out.output
        return json.loads(out.output)["strategy"]

    yes, no = strategy("--verifiable"), strategy("--no-verifiable")
    assert yes != no and strategy() == no  # a narrow, checkable task leans synthetic
    assert strategy("--verifiable", "yes") == strategy("--verifiable=YES") == yes
    assert strategy("--verifiable", "no") == strategy("--verifiable=no") == no
    # only a yes or no right after the flag is read; everything else passes through
    args = ["report", "--verifiable", "-o", "yes", "--", "--verifiable", "no"]
    assert yes_no_flags(args) == args
