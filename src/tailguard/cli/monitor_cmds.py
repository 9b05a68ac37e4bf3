"""``tailguard eval`` and ``tailguard monitor``: record a round's metrics, show the history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from tailguard import limits
from tailguard.cli.app import (
    LedgerOption,
    app,
    console,
    handles_errors,
    open_ledger,
    say,
    styled,
)
from tailguard.cli.engine_opts import AddressOption, EngineOption

_SPARK = "▁▂▃▄▅▆▇█"
EmbedderOption = typer.Option(
    None,
    "--embedder",
    help="hashing, minilm or module:function (default: [monitor] embedder, else the "
    "sentence model when installed and the preset has embedding metrics).",
)


def _reference(led: Any, split: str) -> tuple[Any, Any]:
    recs = led.reservoir_records(split)
    labels = recs["label"]
    return recs["content"], (None if labels.null_count == len(labels) else labels)


@app.command("eval")
@handles_errors
def eval_cmd(
    round: int = typer.Option(
        ..., "--round", min=0, max=limits.ROUND_MAX, help="The round these samples belong to."
    ),
    samples: list[Path] = typer.Option(
        ...,
        "--samples",
        help="Model outputs: JSONL or Parquet. Repeat it with more samples of the same model "
        "(at round 0: the clean model's noise band).",
    ),
    text_field: str = typer.Option("text", "--text-field", help="Column holding the text."),
    label_field: str | None = typer.Option(None, "--label-field", help="Column holding labels."),
    sample: str = typer.Option("model", "--sample", help="Name of this sample in the history."),
    preset: str | None = typer.Option(
        None, "--preset", help="Metric preset: default or rich (default: [monitor] preset)."
    ),
    embedder: str | None = EmbedderOption,
    run: str = typer.Option("main", "--run", help="Run name in the ledger."),
    ledger: Path | None = LedgerOption,
    engine: str | None = EngineOption,
    address: str | None = AddressOption,
) -> None:
    """Evaluate model outputs against the reservoir holdout and record them as a round."""
    from tailguard.cli.app import project_config
    from tailguard.cli.ledger_cmds import baseline_size
    from tailguard.config import validate
    from tailguard.loop import evaluate_sample
    from tailguard.monitor import NOISE_FLOOR_SAMPLE
    from tailguard.project import project_monitor, with_engine
    from tailguard.readers import read_table

    config = project_config() if ledger is None else None
    # checked before any file is read: a bad --engine/--address touches nothing
    engine_section = with_engine(config or validate({}), engine, address).engine

    tables = [
        read_table(path, text_field=text_field, label_field=label_field, allow_empty=True)[0]
        for path in samples
    ]
    table = tables[0]
    texts = table[text_field]
    labels = table[label_field] if label_field else None
    draws = [(t[text_field], t[label_field] if label_field else None) for t in tables[1:]]
    with open_ledger(ledger) as led:
        ref_texts, ref_labels = _reference(led, "holdout")
        mon = project_monitor(
            config, preset=preset, embedder=embedder, run=run, engine=engine_section
        )
        history = led.metrics(run=run)
        frozen_baseline = NOISE_FLOOR_SAMPLE in set(history["sample"].to_pylist())
        mon.load(history)
        mon.set_reference(ref_texts, ref_labels if labels is not None else None)
        rows = evaluate_sample(led, mon, round, texts, labels, sample=sample, run=run, draws=draws)
        size = min(baseline_size(config), len(led.reservoir().train_ids))
    more = f", with {len(draws)} more sample(s) of it" if draws else ""
    say(
        "recorded round {} of sample [bold]{}[/] ({} texts, {} metrics{}) in run {}",
        round,
        sample,
        len(texts),
        rows.num_rows,
        more,
        run,
    )
    if frozen_baseline and abs(len(texts) - size) > SIZE_SLACK * size:
        say(
            "[yellow]note: the human baseline is measured on samples of {:,} texts "
            "({}) but this sample has {:,}: distinct-n and the "
            "coverage metrics move with the number of texts, so evaluate rounds at the "
            "baseline's size[/]",
            size,
            "[loop] n_sample",
            len(texts),
        )
    _print_status(mon, run)


#: How far (relative) a round's sample size may be from the baseline's before `eval` says so.
SIZE_SLACK = 0.1


def _spark(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        return _SPARK[3] * len(values)
    return "".join(_SPARK[int(round((v - lo) / (hi - lo) * (len(_SPARK) - 1)))] for v in values)


def _print_status(mon: Any, run: str) -> None:
    from rich.table import Table

    from tailguard.metrics import REGISTRY
    from tailguard.mix.dial import describe_change

    status = mon.status(run)
    watched = {(e.sample, e.metric): e for e in status.evidence}
    table = Table(
        title=f"run {run}: drift from the clean model (round 0) beyond its noise band; "
        "the gap to human data apart"
    )
    columns = ("sample", "metric", "kind", "clean", "latest", "change", "band", "human",
               "trend", "history")  # fmt: skip
    for col in (*columns, "status"):
        table.add_column(
            col, justify="right" if col in ("clean", "latest", "change", "human") else "left"
        )
    for smp in mon.samples(run):
        for metric in mon.metric_names(sample=smp, run=run):
            _, vals = mon.series(metric, sample=smp, run=run)
            c = mon.change(metric, sample=smp, run=run)
            e = watched.get((smp, metric))
            if e is None:
                mark, band = "", ""
            else:
                mark = styled("[red]✖ degraded[/]" if e.degraded else "[green]✔ held[/]")
                band = _band(e.low, e.high)
            human = "" if e is None or e.noise_floor is None else f"{e.noise_floor:.4g}"
            arrow = styled("[red]{}[/]" if c.degraded else "{}", c.arrow)
            kind = REGISTRY[metric].kind if metric in REGISTRY else ""
            table.add_row(
                smp, metric, kind, f"{c.baseline:.4g}", f"{c.value:.4g}",
                describe_change(c.value, c.baseline), band, human, arrow,
                _spark(list(vals)), mark,
            )  # fmt: skip
    console.print(table)
    for smp in mon.samples(run):
        for gap in mon.capacity_gaps(run, sample=smp):
            say("[cyan]{}[/] [{}]", gap.describe(), smp)
    for a in status.alerts:
        colour = "yellow" if a.rule == "early_warning" else "red"
        say(f"[{colour}]{{}}[/] [{{}} r{{}}] {{}}", a.rule, a.sample, a.round, a.message)


def _band(low: float | None, high: float | None) -> str:
    """A band as people read it: ``>= 0.21`` when open above, ``<= 1.5`` when open below."""
    if low is None and high is None:
        return "any"
    if high is None:
        return f">= {low:.4g}"
    if low is None:
        return f"<= {high:.4g}"
    return f"{low:.4g} to {high:.4g}"


@app.command("monitor")
@handles_errors
def monitor_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print status, trends and alerts as JSON."),
    run: str | None = typer.Option(None, "--run", help="Only this run (default: every run)."),
    preset: str | None = typer.Option(None, "--preset", help="Thresholds of this preset."),
    embedder: str | None = EmbedderOption,
    ledger: Path | None = LedgerOption,
) -> None:
    """Show the metric history with trends; exit 1 when an alert is active."""
    from tailguard.monitor import Monitor, preset_for

    with open_ledger(ledger, read_only=True) as led:
        led.check_run(run)
        history = led.metrics(run=run)
    runs = sorted(set(history["run"].to_pylist()))
    if not runs:
        if as_json:
            console.print_json(json.dumps({"runs": []}))
        else:
            console.print("no metrics recorded yet: run `tailguard eval` first")
        return
    chosen = preset or preset_for(history)
    active = False
    report = []
    for r in runs:
        mon = Monitor.from_history(history, preset=chosen, run=r, embedder=embedder)
        status = mon.status(r)
        active |= bool(status.alerts)
        if as_json:
            report.append(
                {
                    **status.to_dict(),
                    "trends": [t.to_dict() for s in mon.samples(r) for t in mon.trends(sample=s)],
                    "capacity_gaps": [
                        {"sample": s, **g.to_dict()}
                        for s in mon.samples(r)
                        for g in mon.capacity_gaps(r, sample=s)
                    ],
                }
            )
        else:
            _print_status(mon, r)
    if as_json:
        print(json.dumps({"preset": chosen, "runs": report}, indent=2))
    if active:
        raise typer.Exit(1)
