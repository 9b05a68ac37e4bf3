"""`tailguard run`: the retraining loop a project's tailguard.toml describes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tailguard import limits
from tailguard.cli import interrupt
from tailguard.cli.app import (
    CONFIG_FILE,
    app,
    check_expected_digest,
    console,
    handles_errors,
)
from tailguard.cli.engine_opts import AddressOption, EngineOption


@app.command("run")
@handles_errors
def run_loop(
    config: Path = typer.Argument(CONFIG_FILE, help="The project's tailguard.toml."),
    rounds: int | None = typer.Option(
        None, min=0, max=limits.RUN_ROUNDS_MAX, help="Rounds to run (default: [loop] rounds)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed or finished run."),
    ledger: Path | None = typer.Option(None, "--ledger", help="Ledger file (default: config)."),
    mlflow: str | None = typer.Option(
        None,
        "--mlflow",
        help="Log every round to MLflow: a tracking server (http://host:5000), another "
        "tracking URI or a directory (default: [mlflow] tracking_uri).",
    ),
    embedder: str | None = typer.Option(
        None, "--embedder", help="hashing, minilm or module:function (default: [monitor] embedder)."
    ),
    engine: str | None = EngineOption,
    address: str | None = AddressOption,
) -> None:
    """Run the retraining loop: generate, gate, dial, plan, train, evaluate, every round."""
    from tailguard.cli.app import project_config
    from tailguard.ledger import Ledger, run_lock
    from tailguard.project import build_loop, check_data_files, prepare_ledger, with_engine
    from tailguard.stages import STAGES

    cfg = with_engine(project_config(config), engine, address)
    n_rounds = rounds if rounds is not None else cfg.loop.rounds
    path = ledger or cfg.ledger_path  # a run prepares (creates and fills) its own ledger
    check_data_files(cfg)  # every input found before the first write
    with interrupted_as_exit(), run_lock(path), Ledger.open(path) as led:
        tracker = open_tracker(mlflow, cfg, led)  # MLflow is reached before the ledger changes
        with tracker or contextlib.nullcontext():  # the MLflow run ends with its status
            prepare_ledger(cfg, led)
            check_expected_digest(led, cfg)
            loop = build_loop(cfg, led, embedder=embedder)
            if tracker is not None and loop.gate is not None:
                tracker.log_gate(loop.gate)
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=True) as bar:
                total = (loop.final_round(n_rounds) + 1) * len(STAGES)  # after a rollback: more
                task = bar.add_task("round 0", total=total)
                last = loop.last_finished()
                if resume and last is not None:
                    done = last[0] * len(STAGES) + STAGES.index(last[1]) + 1
                    bar.update(task, completed=min(done, total))

                def step(rnd: int, stage: str) -> None:
                    bar.update(task, advance=1, description=f"round {rnd}: {stage}")

                results = loop.run(n_rounds, resume=resume, on_stage=step, on_round=tracker)
        table = Table(
            "round",
            "generated",
            "accepted",
            "rejected",
            "human share",
            "digest",
            title=f"run {cfg.loop.run!r}",
        )
        for r in results:
            share = "-" if r.real_fraction is None else f"{r.real_fraction:.1%}"
            table.add_row(
                str(r.round),
                f"{r.generated:,}",
                f"{r.accepted:,}",
                f"{r.rejected:,}",
                share,
                r.digest[:12],
            )
        if results:
            console.print(table)
        else:
            reached = loop.last_round()
            at = "" if reached is None else f" (it has reached round {reached})"
            console.print(
                Text(
                    f"nothing to do: run {cfg.loop.run!r} is complete{at}; "
                    "--rounds N with a larger N continues it"
                )
            )
        console.print(f"ledger: {path}  (see `tailguard monitor`, `tailguard audit`)")


def open_tracker(option: str | None, cfg: Any, led: Any) -> Any:
    """The MLflow tracker ``--mlflow`` or ``[mlflow]`` names (the option first), or ``None``.

    A directory given on the command line is relative to the working directory; one
    in tailguard.toml is relative to the config file's folder.
    """
    if option is None and cfg.mlflow is None:
        return None
    from tailguard.tracking import MlflowTracker, tracking_uri

    where = (
        tracking_uri(option)
        if option is not None
        else tracking_uri(cfg.mlflow.tracking_uri, base=cfg.base_dir)
    )
    experiment = cfg.mlflow.experiment if cfg.mlflow is not None else MlflowTracker.EXPERIMENT
    return MlflowTracker(where, experiment=experiment, run=cfg.loop.run, ledger=led)


@contextlib.contextmanager
def interrupted_as_exit() -> Iterator[None]:
    """On Ctrl-C, say that whole stages are kept and ``--resume`` continues.

    DuckDB turns a Ctrl-C during a query into its own error: the flag
    :mod:`tailguard.cli.interrupt` sets tells an interruption apart from a failure.
    Every stage is written in one transaction, so ``--resume`` continues after the
    last whole one.
    """
    interrupt.set_hint("whole stages are kept; run again with --resume")
    try:
        yield
    except Exception:
        if not interrupt.interrupted():
            raise
        interrupt.exit_interrupted()
