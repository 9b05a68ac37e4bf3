"""`tailguard advise`: the strategy, starting real fraction and gate for a task, and why."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tailguard import limits
from tailguard.cli.app import (
    app,
    console,
    handles_errors,
    ledger_path,
    ledger_pricing,
    project_config,
    say,
)


@app.command()
@handles_errors
def advise(
    stakes: str = typer.Option("low", help="low or high: what an error costs."),
    task: str = typer.Option("general", help="open-ended, narrow or general (an assistant)."),
    verifiable: bool = typer.Option(
        False, "--verifiable/--no-verifiable", help="Can an output be checked?"
    ),
    budget: float | None = typer.Option(None, help="Budget per round, USD."),
    examples: int = typer.Option(
        10_000,
        min=1,
        max=limits.SLOTS_MAX,
        help="Training examples per round, for the estimate without --ledger.",
    ),
    ledger: Path | None = typer.Option(
        None, "--ledger", help="A ledger with history: also recommend the next ratio."
    ),
    run: str = typer.Option("main", help="Run whose history to read."),
    frontier: Path | None = typer.Option(
        None,
        "--frontier",
        help="A lab frontier.parquet (real fraction x verifier quality): quote the lowest "
        "safe real fraction at the audited verifiers' quality (with --verifiable).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recommend a strategy, a starting real fraction and a gate, with the reasons."""
    from tailguard.advise import TaskProfile
    from tailguard.advise import advise as decide
    from tailguard.errors import ConfigError

    profile = TaskProfile(
        stakes=stakes,
        task=task,
        verifiable=verifiable,
        budget=budget,
        examples_per_round=examples,
    )
    config = project_config()
    pricing = ledger_pricing(config)
    table = None
    if frontier is not None:
        from tailguard.advise import read_quality_frontier

        if not profile.verifiable:
            raise ConfigError("--frontier places a verifier on the lab's frontier: it needs "
                              "--verifiable")  # fmt: skip
        table = read_quality_frontier(frontier)
    if ledger is None:
        if table is not None:
            raise ConfigError("--frontier needs --ledger: the verifier's audit is read from it")
        advice = decide(profile, costs=pricing["costs"])
    else:
        from tailguard.advise import ledger_advice
        from tailguard.ledger import Ledger

        with Ledger.open(ledger_path(ledger), read_only=True) as led:
            if run != "main" or led.runs():  # a fresh ledger has no run yet, not even main
                led.check_run(run)
            advice = ledger_advice(led, run=run, profile=profile, frontier=table, **pricing)
    if as_json:
        console.print_json(json.dumps(advice.to_dict()))
        return
    lines = advice.lines()
    # the lines hold user text and config keys such as "[loop] n_generate"
    say("[bold green]{}[/]", lines[0])
    for line in lines[1:]:
        say("  • {}", line)
