"""``tailguard lab``: run strategy comparisons with small real models, show and validate them."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

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
from tailguard.lab.config import COMMANDS, LabConfig, Option

F = TypeVar("F", bound=Callable[..., Any])

lab_app = command_group(
    help="Compare retraining strategies over many generations with small real models."
)
app.add_typer(lab_app, name="lab")


#: Every lab command's process count, bounded by :data:`tailguard.limits.WORKERS_MAX`.
WorkersOption = typer.Option(
    None, "--workers", min=1, max=limits.WORKERS_MAX, help="Processes (default: all cores)."
)


def lab_settings(command: str) -> Callable[[F], F]:
    """One option per :class:`~tailguard.lab.config.LabConfig` field (except those the
    command sets itself), added to a command whose ``settings`` parameter receives the
    ones given, read. Unset options take the command's defaults (``COMMANDS``)."""

    def decorate(fn: F) -> F:
        own = inspect.signature(fn, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "settings"]
        taken = {p.name for p in params}
        defaults = {**LabConfig.defaults(), **COMMANDS[command].defaults}
        options: dict[str, Option] = {}
        for f in fields(LabConfig):
            if f.name in COMMANDS[command].fixed or f.name in taken:
                continue
            option = options[f.name] = f.metadata["option"]
            shown = defaults[f.name]
            info = typer.Option(
                None,
                *(option.flags or (f"--{f.name.replace('_', '-')}",)),
                help=option.help,
                min=option.min,
                max=option.max,
                show_default=False if shown in (None, {}) else _shown(shown),
            )
            kind = list[str] if option.many else _cli_type(f.type, option)
            keyword = inspect.Parameter.KEYWORD_ONLY
            params.append(inspect.Parameter(f.name, keyword, default=info, annotation=kind))

        @functools.wraps(fn)
        def with_settings(**kwargs: Any) -> Any:
            settings = {}
            for name, option in options.items():
                value = kwargs.pop(name)
                if value is None or (option.many and not value):
                    continue  # not given: the command's default
                settings[name] = option.parse(value) if option.parse else value
            return fn(settings=settings, **kwargs)

        with_settings.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        with_settings.__annotations__ = {p.name: p.annotation for p in params}
        return with_settings  # type: ignore[return-value]

    return decorate


def _cli_type(hint: str, option: Option) -> type:
    """A setting's value on the command line: a number where the field is one, else text
    (read by the option's ``parse`` or by :meth:`LabConfig.build`)."""
    if option.parse is None:
        for kind in (int, float):
            if hint in (kind.__name__, f"{kind.__name__} | None"):
                return kind
    return str


def _shown(value: Any) -> str:
    """A default as the option's help shows it."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if hasattr(value, "describe"):
        return value.describe()
    return str(value)


@lab_app.command("run")
@handles_errors
@lab_settings("run")
def lab_run(
    settings: dict[str, Any],
    workers: int = WorkersOption,
    out: Path = typer.Option(Path("runs"), "--out", help="Where run directories go."),
) -> None:
    """Run every strategy x seed through the retraining loop and print the axes."""
    from tailguard.lab import run

    writable_folder(out)
    result = run(**settings, workers=workers, out=out)
    print_lab_result(result)
    say("\nsaved to [bold]{}[/] ({:.1f} s)", result.path, result.elapsed)


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
        ("coverage", "coverage", "{:.3f}"), ("cov/clean", "coverage_vs_baseline", "{:.2f}"),
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
@lab_settings("frontier")
def lab_frontier(
    settings: dict[str, Any],
    fractions: str = typer.Option(
        None, "--fractions", help="Real fractions to sweep, e.g. 0,0.2,1."
    ),
    verifier_quality: str = typer.Option(
        None,
        "--verifier-quality",
        help="Verifier qualities to sweep too, e.g. 0.5,0.8,0.95 (recall = specificity; "
        "models with a ground truth: regression, ngram).",
    ),
    workers: int = WorkersOption,
    out: Path = typer.Option(Path("runs/frontier"), "--out", help="Where the table and plot go."),
) -> None:
    """Sweep the real fraction at equal volume; name the lowest one whose tails held.

    Unset options take ``tailguard.lab.frontier``'s defaults: a setting where pure
    synthetic collapses and a high enough human share holds. With
    ``--verifier-quality`` every fraction below 1 runs again per quality, gated by a
    verifier of that quality, and each quality's lowest safe fraction is named.
    """
    from tailguard.advise import TaskProfile, advise, advise_from_frontier
    from tailguard.lab import frontier

    writable_folder(out)
    given: dict[str, Any] = {}
    if fractions is not None:
        given["fractions"] = _numbers("--fractions", fractions)
    if verifier_quality is not None:
        given["verifier_quality"] = _numbers("--verifier-quality", verifier_quality)
    result = frontier(**settings, **given, workers=workers, out=out)
    print_frontier(result)
    advice = advise_from_frontier(advise(TaskProfile(task="general")), result)
    for line in advice.evidence[1:]:
        say("  • {}", line)
    say("\nsaved to [bold]{}[/] (frontier.parquet, frontier.png)", out)


def _numbers(flag: str, text: str) -> list[float]:
    """A comma-separated list of numbers, or a named error."""
    from tailguard.errors import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a list of numbers") from None


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
@lab_settings("recovery")
def lab_recovery(
    settings: dict[str, Any],
    k: int = typer.Option(
        5,
        "--k",
        min=0,
        max=limits.GENERATIONS_MAX,
        help="Pure synthetic generations before recovering.",
    ),
    routes: str = typer.Option("switch,rollback", "--routes", help="switch and/or rollback."),
    metric: str = typer.Option(None, "--metric", help="The metric that must come back."),
    workers: int = WorkersOption,
) -> None:
    """Pure synthetic for k generations, then switch to anchoring or roll back: rounds and $."""
    from rich.table import Table

    from tailguard.lab import recovery

    result = recovery(
        **settings, k=k, routes=[r.strip() for r in routes.split(",") if r.strip()],
        metric=metric, workers=workers,
    )  # fmt: skip
    rounds = result.recovery_rounds
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
