"""`tailguard rollback`: go back to a clean round when the monitor shows degradation."""

from __future__ import annotations

from pathlib import Path

import typer

from tailguard import limits
from tailguard.cli.app import (
    LedgerOption,
    app,
    check_expected_digest,
    console,
    handles_errors,
    open_ledger,
    project_config,
)


@app.command()
@handles_errors
def rollback(
    to_round: int = typer.Option(
        ..., "--to-round", min=0, max=limits.ROUND_MAX, help="The last clean round to keep."
    ),
    reason: str = typer.Option("", help="Why (kept with the rollback in the ledger)."),
    run: str | None = typer.Option(
        None, help="Run name (default: [loop] run, else the ledger's one run)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="The project's tailguard.toml (default: ./tailguard.toml)."
    ),
    ledger: Path | None = LedgerOption,
) -> None:
    """Quarantine the synthetic records of generations after a round and mark the later
    rounds rolled back; `tailguard run --resume` continues from the clean state."""
    cfg = project_config(config) if ledger is None or config is not None else None
    run_name = run or (cfg.loop.run if cfg is not None else None)
    with open_ledger(ledger, config=cfg) as led:
        check_expected_digest(led, cfg)
        done = led.rollback(to_round, reason=reason, run=run_name)
    rounds = ", ".join(map(str, done.rounds))
    console.print(
        f"run {done.run!r} rolled back to round {done.to_round}: round(s) {rounds} set aside, "
        f"{done.quarantined:,} synthetic record(s) of generations after {done.to_round} "
        "quarantined (nothing deleted)\n"
        "next: `tailguard run --resume` plans a new round from the clean state"
    )
