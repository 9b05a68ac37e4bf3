"""`tailguard demo`: the trade-off, end to end, on the built-in fortunes corpus.

Three strategies retrain a real trigram language model on its own output for
ten generations with three seeds, all at one training volume per round (larger
than the human reservoir): human-only (buying fresh human data at the cost
model's price to fill the volume), pure synthetic (replace) and hybrid (the
whole reservoir every round, at least 20% human in every batch, synthetic data
gated). A frontier then sweeps the real fraction at the same volume (its end
points are the comparison's own runs) and names the lowest one whose tails held;
the advisor recommends that plus a margin. The report is written as HTML.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tailguard import limits
from tailguard.cli.app import (
    app,
    handles_errors,
    say,
    writable_folder,
    writable_output,
)

STRATEGIES = ("human_only", "replace", "anchored_gated")
#: The fractions the demo's frontier runs (0 and 1 are read from the comparison).
FRACTIONS = (0.0, 0.2, 0.5, 1.0)


@app.command()
@handles_errors
def demo(
    generations: int = typer.Option(
        10, min=1, max=limits.GENERATIONS_MAX, help="Synthetic generations per run."
    ),
    seeds: int = typer.Option(3, min=1, max=limits.SEEDS_MAX, help="Seeds per strategy."),
    volume: int = typer.Option(
        2000,
        min=limits.DEMO_VOLUME_MIN,
        max=limits.VOLUME_MAX,
        help="Training examples per round, for every strategy.",
    ),
    workers: int | None = typer.Option(
        None, min=1, max=limits.WORKERS_MAX, help="Processes (default: all cores)."
    ),
    out: Path = typer.Option(Path("runs"), help="Where the run's tables go."),
    report: Path = typer.Option(Path("report.html"), "--report", help="The HTML report."),
) -> None:
    """Compare human-only, pure synthetic and hybrid retraining at equal volume on fortunes."""
    import time

    from tailguard.advise import TaskProfile, advise, advise_from_frontier, advise_from_lab
    from tailguard.cli.lab_cmds import print_frontier, print_lab_result
    from tailguard.lab import frontier, run, strategy
    from tailguard.mix.policies import Anchored
    from tailguard.palette import strategy_colors
    from tailguard.report import from_lab, write

    writable_folder(out)
    writable_output(report)
    start = time.perf_counter()
    c = strategy_colors(strategy(name).name for name in STRATEGIES)
    f = Anchored.REAL_FRACTION
    say(
        "[bold]tailguard demo[/]: a trigram language model learns from human quotations "
        "(fortunes, 43 long-tailed categories), then is retrained on its own output for "
        "{} generations, {} seeds each. Every strategy trains on "
        "{:,} examples per round; the frozen human reservoir holds {:,}:\n"
        f"  • [{c['human-only']}]human-only[/]: the reservoir plus fresh human quotations "
        "bought at the human price to fill the volume\n"
        f"  • [{c['replace']}]replace[/]: only the newest synthetic generation (pure synthetic)\n"
        f"  • [{c['anchored-gated']}]anchored-gated[/]: the whole reservoir every round, at "
        "least {:.0%} human in every batch, the rest synthetic, gated by exact and "
        "near-duplicate checks (hybrid)\n",
        generations, seeds, volume, volume // 2, f,
    )  # fmt: skip
    result = run(
        model="ngram", data="fortunes", strategies=STRATEGIES, generations=generations,
        seeds=seeds, real_fraction=f, volume=volume, workers=workers, out=out,
    )  # fmt: skip
    print_lab_result(result)
    print_lab_result(result, "rare_vocab_coverage", table=False)
    say(
        "\n[bold]frontier[/]: exactly f human examples per batch at the same volume "
        "(0 and 1 are the runs above)"
    )
    front = frontier(
        model="ngram", data="fortunes", fractions=FRACTIONS, generations=generations,
        seeds=seeds, volume=volume, workers=workers, known=result, out=result.path,
    )  # fmt: skip
    print_frontier(front)
    # The hybrid the advisor recommends is the gated one the lab ran: priced as that run.
    advice = advise_from_frontier(
        advise_from_lab(
            advise(TaskProfile(task="general")),
            result.axes,
            strategy="anchored-gated",
            alerts=result.alerts,
            generations=result.config.generations,
        ),
        front,
    )
    lines = advice.lines()
    say("\n[bold]recommendation[/] for a general assistant: [bold green]{}[/]", lines[0])
    for line in lines[1:]:
        say("  • {}", line)
    data = from_lab(result)
    data.recommendation = lines
    path = write(data, report)
    say(
        "\nreport: [bold]{}[/] (open it in a browser)   tables: {}   time: {:.0f} s",
        path,
        result.path,
        time.perf_counter() - start,
    )
