"""``tailguard lab``: run strategy comparisons with small real models, show and validate them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from tailguard import limits
from tailguard.cli.app import (
    app,
    command_group,
    console,
    handles_errors,
    say,
    styled,
    writable_folder,
)
from tailguard.mix.policies import Anchored

lab_app = command_group(
    help="Compare retraining strategies over many generations with small real models."
)
app.add_typer(lab_app, name="lab")


#: Every lab command's process count, bounded by :data:`tailguard.limits.WORKERS_MAX`.
WorkersOption = typer.Option(
    None, "--workers", min=1, max=limits.WORKERS_MAX, help="Processes (default: all cores)."
)


@lab_app.command("run")
@handles_errors
def lab_run(
    model: str = typer.Option(
        "ngram",
        "--model",
        help="Model (see `tailguard lab list`); ngram, a trigram model of human quotations, "
        "is the demo's (lab frontier and lab recovery default to faster models).",
    ),
    data: str = typer.Option(None, "--data", help="Human data (default: the model's own)."),
    strategies: str = typer.Option(
        "replace,accumulate,anchored", "--strategies", help="Comma-separated strategy names."
    ),
    generations: int = typer.Option(
        10,
        "--generations",
        min=1,
        max=limits.GENERATIONS_MAX,
        help="Synthetic generations per run.",
    ),
    seeds: int = typer.Option(
        3, "--seeds", min=1, max=limits.SEEDS_MAX, help="Seeds per strategy."
    ),
    real_fraction: float = typer.Option(
        Anchored.REAL_FRACTION,
        "--real-fraction",
        help="Human share per batch for anchoring (0 < f <= 1).",
    ),
    n_generate: int = typer.Option(
        None, "--n-generate", min=1, max=limits.VOLUME_MAX, help="Candidates per generation."
    ),
    params: list[str] = typer.Option(
        None, "--param", help="A model or data parameter, key=value (repeatable), e.g. steps=150."
    ),
    volume: str = typer.Option(
        "auto",
        "--volume",
        help="Training examples per round for every strategy (equal volume): a number, "
        "'auto' (larger than the reservoir) or 'policy' (each strategy's own).",
    ),
    reservoir_size: int = typer.Option(
        None,
        "--reservoir-size",
        min=1,
        max=limits.VOLUME_MAX,
        help="With --volume: human records frozen (default volume/2).",
    ),
    fresh_per_round: int = typer.Option(
        None,
        "--fresh-per-round",
        min=1,
        max=limits.VOLUME_MAX,
        help="fresh: new human records per round.",
    ),
    recovery_rounds: int = typer.Option(
        5,
        "--recovery-rounds",
        min=0,
        max=limits.RUN_ROUNDS_MAX,
        help="Anchored rounds allowed to recover a collapsed run.",
    ),
    costs: str = typer.Option(
        None, "--costs", help="Prices per example, e.g. human=0.5,synthetic=0.001,verification=0.02"
    ),
    workers: int = WorkersOption,
    out: Path = typer.Option(Path("runs"), "--out", help="Where run directories go."),
    seed: int = typer.Option(0, "--seed", min=0, max=limits.SEED_MAX, help="Base seed."),
) -> None:
    """Run every strategy x seed through the retraining loop and print the axes."""
    from tailguard.costs import CostModel
    from tailguard.lab import run

    writable_folder(out)
    result = run(
        model=model, data=data, strategies=strategies, generations=generations, seeds=seeds,
        real_fraction=real_fraction, n_generate=n_generate, recovery_rounds=recovery_rounds,
        model_params=parse_params(params or []),
        volume=parse_volume(volume), reservoir_size=reservoir_size,
        fresh_per_round=fresh_per_round,
        costs=CostModel.parse(costs), workers=workers, out=out, seed=seed,
    )  # fmt: skip
    print_lab_result(result)
    say("\nsaved to [bold]{}[/] ({:.1f} s)", result.path, result.elapsed)


def parse_volume(text: str) -> int | str | None:
    """``--volume``: a number of examples, ``auto`` or ``policy`` (no equal volume)."""
    from tailguard.errors import ConfigError

    value = text.strip().lower()
    if value in ("auto", "policy"):
        return None if value == "policy" else "auto"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"--volume: {text!r} is not a number of examples, 'auto' or 'policy'"
        ) from None


def parse_params(items: list[str]) -> dict[str, object]:
    """``key=value`` options as a dict; values read as TOML (numbers, lists), else as text."""
    import tomllib

    from tailguard.errors import ConfigError

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected key=value, e.g. steps=150")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


@lab_app.command("show")
@handles_errors
def lab_show(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/<run-id>)."),
    metric: str = typer.Option(None, "--metric", help="Curve to print (default: primary)."),
) -> None:
    """Print a saved run's axes table and its primary curve."""
    from tailguard.lab import LabResult

    print_lab_result(LabResult.load(run_dir), metric)


@lab_app.command("validate")
@handles_errors
def lab_validate(
    fortunes: bool = typer.Option(True, "--fortunes/--no-fortunes", help="Include n-gram runs."),
    seeds: int = typer.Option(
        5, "--seeds", min=1, max=limits.SEEDS_MAX, help="Seeds for the n-gram runs."
    ),
    workers: int = WorkersOption,
) -> None:
    """Check the lab against known results (the table of docs/validation.md)."""
    from rich.table import Table

    from tailguard.errors import TailguardError
    from tailguard.lab.validation import validate

    rows = validate(fortunes=fortunes, seeds=seeds, workers=workers)
    table = Table(title="lab validation")
    for col in ("check", "known result", "known", "lab", "tolerance", "ok"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.name,
            r.known,
            f"{r.expected:.4g}",
            f"{r.measured:.4g}",
            r.tolerance,
            styled("[green]yes[/]" if r.passed else "[red]NO[/]"),
        )
    console.print(table)
    failed = [r.name for r in rows if not r.passed]
    if failed:
        raise TailguardError(f"validation failed: {', '.join(failed)}")


@lab_app.command("list")
def lab_list() -> None:
    """The models, their data and the strategies."""
    from tailguard.lab import DATASETS, MODEL_DATA, STRATEGIES

    say("[bold]models[/] (data; the first is the default)")
    for model, data in MODEL_DATA.items():
        console.print(f"  {model:<12} {', '.join(data)}")
    say("[bold]data[/]")
    for d in DATASETS.values():
        console.print(f"  {d.name:<12} {d.description}")
    say("[bold]strategies[/]")
    for s in STRATEGIES.values():
        console.print(f"  {s.name:<22} {s.description}")


def print_lab_result(result, metric: str | None = None, *, table: bool = True) -> None:  # noqa: ANN001
    """The axes table (unless ``table=False``) and one metric's median curve."""
    if table:
        _print_axes(result)
    name = metric or result.primary
    curve = result.curve(name).to_pandas()
    if curve.empty:
        from tailguard.errors import ConfigError

        raise ConfigError(f"no metric {name!r} in this run")
    pivot = curve.pivot(index="strategy", columns="round", values="median")
    say("\n[bold]{}[/], median over seeds, by generation", name)
    console.print(pivot.round(3).to_string())


def _print_axes(result) -> None:  # noqa: ANN001
    from rich.table import Table

    from tailguard.palette import strategy_colors

    c = result.config
    volume = f", volume {c.volume:,}/round" if c.volume is not None else ""
    title = (
        f"{c.model} on {c.dataset.name}: {c.generations} generations, {c.seeds} seeds, "
        f"real fraction {c.real_fraction:g}{volume}"
    )
    table = Table(title=title)
    columns = [
        ("strategy", "strategy", "{}"), ("fidelity loss", "fidelity_loss", "{:.3f}"),
        ("coverage", "coverage", "{:.3f}"), ("cov/base", "coverage_vs_baseline", "{:.2f}"),
        ("cost $", "cost", "{:,.0f}"), ("$/gen", "cost_per_generation", "{:,.2f}"),
        ("traceable", "traceable_share", "{:.0%}"), ("real share", "real_share_mean", "{:.0%}"),
        ("recovery rounds", "recovery_rounds", "{}"), ("recovery $", "recovery_cost", "{:,.2f}"),
    ]  # fmt: skip
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header == "strategy" else "right")
    colors = strategy_colors(result.axes["strategy"].to_pylist())
    for row in result.axes.to_pylist():
        cells = []
        for _, key, fmt in columns:
            v = row[key]
            if key == "strategy":
                cells.append(styled(f"[{colors[v]}]{{}}[/]", v))
            elif key == "recovery_rounds":
                cells.append(f"> {c.recovery_rounds}" if math.isinf(v) else f"{v:g}")
            else:
                cells.append(fmt.format(v))
        table.add_row(*cells)
    console.print(table)


@lab_app.command("frontier")
@handles_errors
def lab_frontier(
    model: str = typer.Option(
        None,
        "--model",
        help="Built-in lab model (default: categorical, Zipf documents: a sweep of many "
        "fractions in about a minute, where pure synthetic loses rare words).",
    ),
    data: str = typer.Option(None, "--data", help="Data set (default: the model's)."),
    fractions: str = typer.Option(
        None, "--fractions", help="Real fractions to sweep, e.g. 0,0.2,1."
    ),
    generations: int = typer.Option(
        None,
        "--generations",
        min=1,
        max=limits.GENERATIONS_MAX,
        help="Synthetic generations per run.",
    ),
    seeds: int = typer.Option(
        None, "--seeds", min=1, max=limits.SEEDS_MAX, help="Seeds per fraction."
    ),
    volume: str = typer.Option(
        None, "--volume", help="Training examples per round (a number or 'auto')."
    ),
    reservoir_size: int = typer.Option(
        None, "--reservoir-size", min=1, max=limits.VOLUME_MAX, help="Human records frozen."
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, max=limits.BATCH_SIZE_MAX, help="Examples per batch."
    ),
    costs: str = typer.Option(None, "--costs", help="Prices per example, e.g. human=0.5"),
    workers: int = WorkersOption,
    out: Path = typer.Option(Path("runs/frontier"), "--out", help="Where the table and plot go."),
    verifier_quality: str = typer.Option(
        None,
        "--verifier-quality",
        help="Verifier qualities to sweep too, e.g. 0.5,0.8,0.95 (recall = specificity; "
        "models with a ground truth: regression, ngram).",
    ),
    verifier_bias: float = typer.Option(
        None, "--verifier-bias", help="The verifier's preference for the mode (0: none)."
    ),
    params: list[str] = typer.Option(None, "--param", help="A model or data parameter."),
) -> None:
    """Sweep the real fraction at equal volume; name the lowest one whose tails held.

    Unset options take ``tailguard.lab.frontier``'s defaults (declared there once): a
    setting where pure synthetic collapses and a high enough human share holds. With
    ``--verifier-quality`` every fraction below 1 runs again per quality, gated by a
    verifier of that quality, and each quality's lowest safe fraction is named.
    """
    from tailguard.advise import TaskProfile, advise, advise_from_frontier
    from tailguard.costs import CostModel
    from tailguard.errors import ConfigError
    from tailguard.lab import frontier

    writable_folder(out)
    given: dict[str, Any] = {
        "model": model, "data": data, "generations": generations, "seeds": seeds,
        "reservoir_size": reservoir_size, "batch_size": batch_size,
        "volume": None if volume is None else parse_volume(volume),
    }  # fmt: skip
    if fractions is not None:
        try:
            given["fractions"] = [float(x) for x in fractions.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--fractions: {fractions!r} is not a list of numbers") from None
    if verifier_quality is not None:
        try:
            given["verifier_quality"] = [float(x) for x in verifier_quality.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--verifier-quality: {verifier_quality!r} is not a list of numbers"
            ) from None
    given["verifier_bias"] = verifier_bias
    if params:
        given["model_params"] = parse_params(params)
    result = frontier(
        **{k: v for k, v in given.items() if v is not None},
        costs=CostModel.parse(costs), workers=workers, out=out,
    )  # fmt: skip
    print_frontier(result)
    advice = advise_from_frontier(advise(TaskProfile(task="general")), result)
    for line in advice.evidence[1:]:
        say("  • {}", line)
    say("\nsaved to [bold]{}[/] (frontier.parquet, frontier.png)", out)


def print_frontier(result: Any) -> None:
    """The frontier as a table: one row per real fraction, and its lowest safe fraction."""
    from rich.table import Table

    t = Table(title=f"cost-fidelity frontier ({result.model}, volume {result.volume}/round)")
    cols = ("real fraction", "cost/round", "human/round", "tails (10-90%)", "coverage", "drift",
            "held")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="right")
    for r in result.table.to_pandas().itertuples():
        t.add_row(
            f"{r.real_fraction:g}", f"${r.cost_per_round:,.2f}", f"{r.human_per_round:,}",
            f"x{r.tail_ratio:.2f} ({r.tail_low:.2f}-{r.tail_high:.2f})",
            f"x{r.coverage_ratio:.2f}", f"{r.tail_drift:.2f} / {r.coverage_drift:.2f}",
            "yes" if r.held else "no",
        )  # fmt: skip
    console.print(t)
    console.print(
        "drift: the tail / coverage metric's distance from each seed's clean model in "
        "half-widths of its band (median over seeds; above 1 is degraded)"
    )
    style = "bold green" if result.lowest_safe is not None else "yellow"
    say(f"[{style}]{{}}[/]", result.evidence)
    if result.qualities:
        print_by_quality(result)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def print_by_quality(result: Any) -> None:
    """Per verifier quality: the lowest real fraction whose tails held, and its cost."""
    from rich.table import Table

    t = Table(title="gated: lowest safe real fraction by verifier quality")
    for col in ("verifier quality", "lowest safe fraction", "cost/round there", "collapsed"):
        t.add_column(col, justify="right")
    for r in result.by_quality().itertuples():
        safe = "none" if _missing(r.lowest_safe) else f"{r.lowest_safe:g}"
        cost = "-" if _missing(r.cost_per_round) else f"${r.cost_per_round:,.2f}"
        t.add_row(f"{r.verifier_quality:g}", safe, cost, r.collapsed or "-")
    console.print(t)


@lab_app.command("recovery")
@handles_errors
def lab_recovery(
    model: str = typer.Option(
        "gaussian",
        "--model",
        help="Built-in lab model (default: gaussian, which collapses within a few "
        "generations, so both routes back are measured in seconds).",
    ),
    data: str = typer.Option(None, "--data", help="Data set (default: the model's)."),
    k: int = typer.Option(
        5,
        "--k",
        min=0,
        max=limits.GENERATIONS_MAX,
        help="Pure synthetic generations before recovering.",
    ),
    routes: str = typer.Option("switch,rollback", "--routes", help="switch and/or rollback."),
    rounds: int = typer.Option(
        5, "--rounds", min=1, max=limits.RUN_ROUNDS_MAX, help="Anchored rounds after the switch."
    ),
    seeds: int = typer.Option(
        3,
        "--seeds",
        min=1,
        max=limits.SEEDS_MAX,
        help="Seeds (each judged by its own clean model).",
    ),
    real_fraction: float = typer.Option(
        Anchored.REAL_FRACTION, "--real-fraction", help="The anchor's human share per batch."
    ),
    volume: str = typer.Option("auto", "--volume", help="Training examples per round."),
    reservoir_size: int = typer.Option(
        None, "--reservoir-size", min=1, max=limits.VOLUME_MAX, help="Human records frozen."
    ),
    metric: str = typer.Option(None, "--metric", help="The metric that must come back."),
    params: list[str] = typer.Option(None, "--param", help="A model or data parameter."),
    costs: str = typer.Option(None, "--costs", help="Prices per example, e.g. human=0.5"),
    workers: int = WorkersOption,
) -> None:
    """Pure synthetic for k generations, then switch to anchoring or roll back: rounds and $."""
    from rich.table import Table

    from tailguard.costs import CostModel
    from tailguard.lab import recovery

    result = recovery(
        model=model, data=data, k=k, routes=[r.strip() for r in routes.split(",") if r.strip()],
        recovery_rounds=rounds, seeds=seeds, real_fraction=real_fraction,
        volume=parse_volume(volume), reservoir_size=reservoir_size, metric=metric,
        model_params=parse_params(params or []), costs=CostModel.parse(costs), workers=workers,
    )  # fmt: skip
    t = Table(
        title=f"recovery after {k} pure synthetic generations ({result.model}, {result.metric}; "
        f"clean model {result.baseline:.3f}, band ± {result.half_width:.3f}, medians over seeds)"
    )
    for col in ("route", "rounds back", "$ back", "$ discarded", "seeds back", "stayed back"):
        t.add_column(col, justify="left" if col == "route" else "right")
    for route, r in result.summary().iterrows():
        t.add_row(
            route,
            f"> {rounds}" if math.isinf(r["rounds"]) else f"{r['rounds']:g}",
            f"${r['cost']:,.2f}", f"${r['discarded']:,.2f}",
            f"{r['recovered']:.0%}", f"{r['held']:.0%}",
        )  # fmt: skip
    console.print(t)
    curves = result.curves.to_pandas()
    pivot = curves.groupby(["route", "round"])["value"].median().unstack("round")
    say("\n[bold]{}[/], median over seeds, by round (k = {})", result.metric, k)
    console.print(pivot.round(3).to_string())
