"""A user's commands in any order: a hypothesis state machine drives the CLI.

Random sequences of ``init``, ``ingest`` (good and bad files, labelled and not, text in
square brackets), ``reservoir freeze``, ``gate``, ``mix``, ``eval``, ``run`` and
``run --resume``, ``rollback``, ``screen``, ``relabel`` and ``export``, with Ctrl-C
(SIGINT) and SIGKILL sent to a real ``tailguard`` process at random moments. After
every step: the exit code is 0, 1 (an alert), 2 (a named refusal) or 130 (interrupted);
no traceback is printed; a refused command changed nothing in the ledger; the ledger
opens and ``audit`` reads it. At the end the project is never stuck: ``tailguard run
--resume`` continues it.

CI runs a few examples; ``TAILGUARD_STATEFUL_EXAMPLES=500`` runs many more.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from typer.testing import CliRunner

import tailguard
from tailguard.cli import app

EXAMPLES = int(os.environ.get("TAILGUARD_STATEFUL_EXAMPLES", "4"))
STEPS = int(os.environ.get("TAILGUARD_STATEFUL_STEPS", "12"))
CLI = [sys.executable, "-m", "tailguard.cli"]
#: The subprocess imports the tailguard under test, whatever its working directory.
SAME_TAILGUARD = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(Path(tailguard.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    ),
}
OK_CODES = {0, 1, 2}
#: On-demand runs may count their steps: one line per command in this file.
STEP_LOG = os.environ.get("TAILGUARD_STATEFUL_LOG")
ROUNDS = st.integers(0, 3)
AWKWARD = ["[/INST]", "x[/]", "[bold]topic[/bold]"]

LOOP = """
[data]
files = [{ path = "human.jsonl", label_field = "topic" }]
[model]
kind = "ngram"
[loop]
rounds = 1
n_generate = 60
"""


def _write_jsonl(path: Path, rows: list[dict[str, Any]], *, bom: bool = False) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


def _make_files(where: Path) -> None:
    """Small files a user would have: human data, model output, broken and odd files."""
    from tailguard.datasets import fortunes

    rows = fortunes().slice(0, 400).select(["content", "label"]).to_pylist()
    human = [{"text": r["content"], "topic": r["label"]} for r in rows[:260]]
    _write_jsonl(where / "human.jsonl", human)
    _write_jsonl(where / "more.jsonl", [{"text": r["content"]} for r in rows[260:320]])
    odd = [{"text": r["content"], "topic": AWKWARD[i % 3]} for i, r in enumerate(rows[320:360])]
    _write_jsonl(where / "brackets.jsonl", odd, bom=True)
    (where / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    for r in range(1, 4):
        gen = [
            {"text": " ".join(x["content"].split()[::-1]) + f" {r}", "topic": x["label"]}
            for x in rows[r * 40 : r * 40 + 60]
        ]
        _write_jsonl(where / f"gen{r}.jsonl", gen)
    _write_jsonl(where / "samples.jsonl", human[:80])


def ledger_state(path: Path) -> str | None:
    """Every table's rows, as one fingerprint (None: no ledger file)."""
    if not path.exists():
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SHOW TABLES").fetchall()]
        parts = []
        for t in sorted(tables):
            rows = con.execute(
                f"SELECT count(*), md5(coalesce(string_agg(CAST(x AS VARCHAR), '|' "
                f"ORDER BY CAST(x AS VARCHAR)), '')) FROM \"{t}\" x"
            ).fetchall()[0]
            parts.append(f"{t}:{rows[0]}:{rows[1]}")
        return ";".join(parts)
    finally:
        con.close()


class Project(RuleBasedStateMachine):
    """One project directory that a user works in."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tailguard-state-"))
        self.ledger = self.dir / ".tailguard" / "ledger.duckdb"
        _make_files(self.dir)
        self.log: list[str] = []
        self.checking = False

    # ------------------------------------------------------------------ driving
    def _step(self, line: str) -> None:
        self.log.append(line)
        if STEP_LOG:  # the invariant's own reads are marked, so steps can be told apart
            with open(STEP_LOG, "a", encoding="utf-8") as log:
                log.write(("check: " if self.checking else "") + line + "\n")

    def cli(self, *args: str) -> Any:
        """Run one command in the project, checking what every step must hold."""
        before = ledger_state(self.ledger)
        with contextlib.chdir(self.dir):
            result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
        self._step(f"tailguard {' '.join(args)} -> {result.exit_code}")
        out = result.output
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        assert not crashed, f"{self.log}\n{out}\n{result.exception!r}"
        assert "Traceback" not in out, f"{self.log}\n{out}"
        assert result.exit_code in OK_CODES, f"{self.log}\n{out}"
        if result.exit_code == 2:
            assert ledger_state(self.ledger) == before, f"refused but changed: {self.log}\n{out}"
        return result

    def interrupted(self, args: list[str], sig: int, delay: float) -> None:
        """A real process, stopped by ``sig`` after ``delay`` seconds (if still running)."""
        proc = subprocess.Popen(
            [*CLI, *args], cwd=self.dir, env=SAME_TAILGUARD,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(sig)
        sent = time.monotonic()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"not stopped 30 s after {sig!r}: {self.log}") from None
        text = out.decode(errors="replace")
        self._step(f"tailguard {' '.join(args)} <- {signal.Signals(sig).name} "
                   f"after {delay:.1f}s -> {proc.returncode}")  # fmt: skip
        if sig == signal.SIGINT:
            assert "Traceback" not in text, f"{self.log}\n{text}"
            # 130, or killed by the signal itself while the interpreter was already
            # exiting (-2): both are what a shell reports as 130
            assert proc.returncode in OK_CODES | {130, -signal.SIGINT}, f"{self.log}\n{text}"
            assert time.monotonic() - sent < 10, f"slow to stop: {self.log}"

    # ------------------------------------------------------------------ steps
    @initialize()
    def init(self) -> None:
        assert self.cli("init").exit_code == 0
        config = self.dir / "tailguard.toml"
        config.write_text(config.read_text() + LOOP)

    @rule()
    def init_again(self) -> None:
        self.cli("init")

    @rule(name=st.sampled_from(["human", "more", "brackets", "broken", "missing"]), rnd=ROUNDS)
    def ingest(self, name: str, rnd: int) -> None:
        self.cli("ingest", f"{name}.jsonl", "--label-field", "topic", "--round", str(rnd))

    @rule(rnd=st.integers(1, 3))
    def ingest_generation(self, rnd: int) -> None:
        self.cli(
            "ingest", f"gen{rnd}.jsonl", "--origin", "synthetic", "--generator", "mine",
            "--generation", str(rnd), "--round", str(rnd), "--label-field", "topic",
        )  # fmt: skip

    @rule(holdout=st.sampled_from(["0.1", "0.2"]))
    def freeze(self, holdout: str) -> None:
        self.cli("reservoir", "freeze", "--holdout", holdout)

    @rule(rnd=ROUNDS)
    def gate(self, rnd: int) -> None:
        self.cli("gate", "--round", str(rnd), "--quiet")

    @rule(
        rnd=ROUNDS,
        policy=st.sampled_from(["anchored", "replace", "accumulate", "fill_gaps", "human_only"]),
        share=st.sampled_from(["0.2", "0.5"]),
    )
    def mix(self, rnd: int, policy: str, share: str) -> None:
        extra = ["--real-fraction", share] if policy in {"anchored", "fill_gaps"} else []
        self.cli("mix", "--round", str(rnd), "--policy", policy, *extra)

    @rule(rnd=ROUNDS)
    def evaluate(self, rnd: int) -> None:
        self.cli("eval", "--round", str(rnd), "--samples", "samples.jsonl", "--label-field",
                 "topic", "--embedder", "hashing")  # fmt: skip

    @rule(resume=st.booleans(), rounds=st.integers(0, 3))
    def run(self, resume: bool, rounds: int) -> None:
        self.cli("run", "--rounds", str(rounds), "--embedder", "hashing",
                 *(["--resume"] if resume else []))  # fmt: skip

    @rule(to=ROUNDS, reason=st.sampled_from(["tails went", *AWKWARD]))
    def rollback(self, to: int, reason: str) -> None:
        self.cli("rollback", "--to-round", str(to), "--reason", reason)

    @rule(name=st.sampled_from(["more", "brackets"]))
    def screen(self, name: str) -> None:
        self.cli("screen", f"{name}.jsonl", "--label-field", "topic")

    @rule(label=st.sampled_from(["fixed", *AWKWARD]), short=st.booleans())
    def relabel(self, label: str, short: bool) -> None:
        ids = []
        if self.ledger.exists():
            con = duckdb.connect(str(self.ledger), read_only=True)
            ids = con.execute("SELECT id FROM records ORDER BY id LIMIT 1").fetchall()
            con.close()
        record = ids[0][0] if ids else "0123456789abcdef"
        self.cli("relabel", record[:12] if short else record, label, "--reason", "typo")

    @rule(rnd=ROUNDS)
    def export(self, rnd: int) -> None:
        self.cli("export", "--round", str(rnd), "-o", str(self.dir / f"round{rnd}.parquet"))

    @rule(
        command=st.sampled_from(["run", "freeze", "ingest"]),
        sig=st.sampled_from([signal.SIGINT, signal.SIGKILL]),
        delay=st.floats(0.5, 6.0),
    )
    def interrupt(self, command: str, sig: int, delay: float) -> None:
        args = {
            "run": ["run", "--resume", "--rounds", "3", "--embedder", "hashing"],
            "freeze": ["reservoir", "freeze"],
            "ingest": ["ingest", "human.jsonl", "--label-field", "topic"],
        }[command]
        self.interrupted(args, sig, delay)

    # ------------------------------------------------------------------ always
    @invariant()
    def ledger_reads(self) -> None:
        if self.ledger.exists():
            self.checking = True
            audit = self.cli("audit")
            assert audit.exit_code in (0, 1), f"{self.log}\n{audit.output}"
            self.cli("reservoir", "show")
            self.checking = False

    def teardown(self) -> None:
        try:
            if self.ledger.exists():  # never stuck: the loop continues the project
                done = self.cli("run", "--resume", "--rounds", "3", "--embedder", "hashing")
                assert done.exit_code in (0, 1), f"stuck: {self.log}\n{done.output}"
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.slow
def test_any_sequence_of_commands_leaves_a_working_project():
    run_state_machine_as_test(
        Project,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=EXAMPLES <= 4,  # CI: the same sequences every time
            # each step is a real command: shrinking would take longer than finding, and
            # the failure message already lists the steps that led to it
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        ),
    )


def _replay(*steps: tuple[str, dict[str, Any]]) -> None:
    """Run steps a search once found failing, checking every step as the machine does."""
    project = Project()
    try:
        project.init()
        for name, kwargs in steps:
            getattr(project, name)(**kwargs)
            project.ledger_reads()
    finally:
        project.teardown()


def test_a_refused_gate_of_an_empty_round_writes_no_fingerprints():
    """Found: `gate --round 2` with nothing to gate stored reference fingerprints first."""
    _replay(("gate", {"rnd": 0}), ("run", {"resume": False, "rounds": 1}), ("gate", {"rnd": 2}))


def test_a_bracketed_label_given_to_relabel_prints_literally():
    """Found: `relabel ID 'x[/]'` ended in a MarkupError (the label was read as markup)."""
    _replay(("ingest_generation", {"rnd": 2}), ("relabel", {"label": "x[/]", "short": False}))


def test_a_relabelled_record_does_not_stop_the_loop_reading_the_original_file():
    """Found: after `relabel`, `run` re-read `[data] files` (the old label) and refused for
    good with a label conflict whose remedy undid the correction."""
    _replay(
        ("ingest", {"name": "human", "rnd": 0}), ("relabel", {"label": "fixed", "short": False})
    )


def test_human_data_ingested_at_a_later_round_still_anchors_round_0():
    """Found: human texts ingested at round 2, then `run`: the freeze took them into the
    reservoir, but round 0's pool left them out (they entered 'later'), so the run
    refused after writing its pin and stages, every time."""
    _replay(("ingest", {"name": "human", "rnd": 2}))


def test_a_refused_screen_keeps_none_of_the_records_it_read():
    """Found: `screen` on a ledger with no synthetic records ingested the file's 40
    records, then refused (nothing to learn model text from), keeping them."""
    _replay(("screen", {"name": "brackets"}))


def test_a_later_round_evaluated_by_hand_is_continued_after():
    """Found: `run` made round 0, `eval --round 3` recorded a round by hand, then
    `run --resume` planned round 1, wrote its decision and refused at its evaluation
    (round 3's metrics were later), every time."""
    _replay(
        ("ingest_generation", {"rnd": 1}),
        ("run", {"resume": True, "rounds": 0}),
        ("evaluate", {"rnd": 1}),
        ("evaluate", {"rnd": 3}),
        ("run", {"resume": True, "rounds": 2}),
    )


def test_a_round_evaluated_by_hand_before_any_plan_leaves_a_model_to_continue_with():
    """Found: `reservoir freeze`, `eval --round 1` by hand, then `run --resume`: the loop
    went past round 1 with no round planned to train a model on (AttributeError)."""
    _replay(
        ("ingest", {"name": "human", "rnd": 0}),
        ("freeze", {"holdout": "0.2"}),
        ("evaluate", {"rnd": 1}),
    )


def test_round_0_evaluated_by_hand_is_planned_and_trained_but_not_measured_again():
    """Found: `eval --round 2` and `eval --round 0` by hand, then `run --resume`: round 0's
    evaluation tried to replace its metrics (round 2's were later) after writing its
    stages, and was refused every time."""
    _replay(
        ("ingest", {"name": "human", "rnd": 0}),
        ("freeze", {"holdout": "0.2"}),
        ("evaluate", {"rnd": 2}),
        ("evaluate", {"rnd": 0}),
    )


def test_a_round_made_by_hand_and_rolled_back_is_not_planned_again():
    """Found: round 3 made by hand (`mix`, `eval`), `run --resume`, `rollback --to-round 0`,
    then `run --resume` planned round 3 again and was refused (its manifest and metrics
    exist as history) after writing, every time: round numbers never repeat."""
    _replay(
        ("ingest_generation", {"rnd": 1}),
        ("run", {"resume": True, "rounds": 0}),
        ("ingest_generation", {"rnd": 3}),
        ("mix", {"rnd": 3, "policy": "human_only", "share": "0.2"}),
        ("evaluate", {"rnd": 3}),
        ("run", {"resume": True, "rounds": 3}),
        ("rollback", {"to": 0, "reason": "tails went"}),
    )


def test_a_refused_run_does_not_pin_the_reservoir():
    """Found: with round 0 mixed by hand, `run` without `--resume` pinned the run to the
    reservoir, then refused (the run already has rounds): a refusal that wrote."""
    _replay(
        ("ingest", {"name": "human", "rnd": 0}),
        ("freeze", {"holdout": "0.2"}),
        ("mix", {"rnd": 0, "policy": "human_only", "share": "0.2"}),
        ("run", {"resume": False, "rounds": 1}),
    )
