"""`tailguard report`: the self-contained HTML report of a project or a lab run."""

from __future__ import annotations

from pathlib import Path

import typer

from tailguard.cli.app import (
    app,
    console,
    handles_errors,
    ledger_pricing,
    open_ledger,
    project_config,
    writable_output,
)


@app.command()
@handles_errors
def report(
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file."),
    lab: Path | None = typer.Option(None, "--lab", help="A lab run directory (runs/<id>)."),
    run: str = typer.Option("main", help="The ledger's run to report."),
    stakes: str = typer.Option("low", help="For the recommendation: low or high."),
    task: str = typer.Option("general", help="For the recommendation: open-ended|narrow|general."),
    verifiable: bool = typer.Option(
        False,
        "--verifiable/--no-verifiable",
        help="For the recommendation: outputs are checkable.",
    ),
    ledger: Path | None = typer.Option(None, "--ledger", help="Ledger file."),
) -> None:
    """Write one HTML file (no network needed): metrics, mix, gate, dial, alerts, advice."""
    from tailguard.advise import (
        TaskProfile,
        advise,
        advise_from_lab,
        fit_gate_to_data,
        recommendation_lines,
    )
    from tailguard.report import from_lab, from_ledger, write

    writable_output(output)
    profile = TaskProfile(stakes=stakes, task=task, verifiable=verifiable)
    if lab is not None:
        from tailguard.lab import LabResult

        result = LabResult.load(lab)
        data = from_lab(result)
        advice = fit_gate_to_data(advise(profile), result.config.dataset.kind)
        data.recommendation = advise_from_lab(
            advice, result.axes, alerts=result.alerts, generations=result.config.generations
        ).lines()
    else:
        pricing = ledger_pricing(project_config())
        with open_ledger(ledger, read_only=True) as led:
            led.check_run(run)
            data = from_ledger(led, run=run)
            data.recommendation = recommendation_lines(led, run=run, profile=profile, **pricing)
    console.print(f"wrote {write(data, output)}")
