"""Ledger commands: init, ingest, reservoir, audit, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tailguard import limits
from tailguard.cli import interrupt
from tailguard.cli.app import (
    CONFIG_FILE,
    LEDGER_FILE,
    LedgerOption,
    app,
    check_expected_digest,
    command_group,
    console,
    handles_errors,
    open_ledger,
    project_config,
    say,
    styled,
    writable_output,
)
from tailguard.errors import InputError
from tailguard.ledger import Ledger

reservoir_app = command_group(help="Freeze and inspect the human reservoir.")
app.add_typer(reservoir_app, name="reservoir")

STARTER_CONFIG = """\
# tailguard project settings; every command reads this file from the current directory.
[project]
ledger = "{ledger}"

[audit]
human_floor = {human_floor}               # a round whose human share is below this is flagged

# The verifiers `tailguard gate` and `tailguard run` apply to synthetic candidates.
[[gate.verifiers]]
kind = "quality"
min_words = 3

[[gate.verifiers]]
kind = "exact_duplicate"         # a copy of the frozen reservoir is memorisation

[[gate.verifiers]]
kind = "near_duplicate"
threshold = 0.8

[policy]
name = "anchored"                # hybrid: a fixed human share in every batch
real_fraction = {real_fraction}

[dial]
enabled = true                   # the tails first: the share never falls while one is down
watch = ["tail_recall", "rare_vocab_coverage", "distinct_2"]

[monitor]
preset = "default"               # "rich" adds PRDC and Vendi on sentence embeddings
# embedder = "minilm"            # hashing | minilm | module:function (default: minilm when
                                 # installed, for a preset with embedding metrics)

# For `tailguard run`: the human data and the model (a lab model, or your own
# `module:function` returning train and generate).
# [data]
# builtin = "fortunes"
# [model]
# kind = "ngram"
"""


@app.command()
@handles_errors
def init(
    ledger: Path | None = typer.Option(
        None, "--ledger", help="Create only an empty ledger at this path (no tailguard.toml)."
    ),
) -> None:
    """Create tailguard.toml and an empty ledger in the current directory."""
    from tailguard.config import parse_toml, validate

    if ledger is not None:
        existed = ledger.exists()
        Ledger.open(ledger).close()
        console.print(f"{'found' if existed else 'created'} ledger {ledger}")
        return
    if not CONFIG_FILE.exists():
        text = starter_config()
        source = "the starter tailguard.toml"
        validate(parse_toml(text, file=source), source=source)
        CONFIG_FILE.write_text(text)
        console.print(f"wrote {CONFIG_FILE}")
    existed = LEDGER_FILE.exists()
    Ledger.open(LEDGER_FILE).close()
    console.print(f"{'found' if existed else 'created'} ledger {LEDGER_FILE}")


@app.command()
@handles_errors
def ingest(
    file: Path | None = typer.Argument(None, help="JSONL, Parquet or CSV file."),
    origin: str | None = typer.Option(
        None, help="human or synthetic (default: the file's origin column, else human)."
    ),
    source: str | None = typer.Option(None, help="Dataset or generator name (default: file)."),
    generator: str | None = typer.Option(None, help="Model id that wrote synthetic data."),
    generation: int | None = typer.Option(
        None,
        min=0,
        max=limits.GENERATION_MAX,
        help="0 for human data; k for the model of round k-1 (default: file, else 0).",
    ),
    round_: int = typer.Option(
        0, "--round", min=0, max=limits.ROUND_MAX, help="Round the records enter."
    ),
    text_field: str = typer.Option("text", help="Field holding the example's text."),
    label_field: str | None = typer.Option(None, help="Field holding the class or slice."),
    parent_field: str | None = typer.Option(None, help="Field holding the human seed's id."),
    builtin: str | None = typer.Option(None, help="Ingest a built-in dataset: fortunes, wordnet."),
    ledger: Path | None = LedgerOption,
) -> None:
    """Ingest examples with their provenance (all or nothing; duplicates are skipped)."""
    from tailguard.datasets import builtin as load_builtin

    if (file is None) == (builtin is None):
        raise InputError("give exactly one of FILE or --builtin NAME")
    with open_ledger(ledger) as led, console.status("ingesting..."):
        if builtin is not None:
            result = led.add_records(load_builtin(builtin))
        else:
            result = led.ingest(
                file,
                origin=origin,
                source_name=source,
                generator=generator,
                generation=generation,
                round=round_,
                text_field=text_field,
                label_field=label_field,
                parent_field=parent_field,
            )
    say(
        "read {:,} records: [green]{:,} added[/], "
        + ("{:,} duplicates within the file, " if result.within_file else "{}")
        + "{:,} already in the ledger",
        result.read,
        result.added,
        result.within_file if result.within_file else "",
        result.existing - result.within_file,
    )


@reservoir_app.command("freeze")
@handles_errors
def reservoir_freeze(
    name: str = typer.Option("main", help="Reservoir name."),
    holdout: float = typer.Option(
        Ledger.HOLDOUT, help="Share held out as the evaluation reference."
    ),
    seed: int = typer.Option(
        0, min=0, max=limits.SEED_MAX, help="Seed of the stratified holdout split."
    ),
    sample_size: int | None = typer.Option(
        None,
        "--sample-size",
        min=1,
        max=limits.VOLUME_MAX,
        help="Texts per evaluated round, the human baseline's sample size "
        "(default: [loop] n_sample, else n_generate up to 20,000).",
    ),
    ledger: Path | None = LedgerOption,
) -> None:
    """Freeze all human records into a named, immutable reservoir, and measure the human
    baseline (human samples of the rounds' size against the holdout) with the
    configured preset."""
    from tailguard.cli.app import project_config
    from tailguard.loop import human_baseline
    from tailguard.project import project_monitor

    config = project_config() if ledger is None else None
    monitor = project_monitor(config)
    preset, run = monitor.preset.name, monitor.run
    size = sample_size or baseline_size(config)
    interrupt.set_hint(f"reservoir {name!r} is not frozen; run `tailguard reservoir freeze` again")
    with open_ledger(ledger) as led:
        # One transaction: frozen with its baseline and fingerprints, or not at all
        # (Ctrl-C or a kill part-way leaves it unfrozen, and a second freeze works).
        with led.atomic():
            res = led.freeze_reservoir(name, holdout=holdout, seed=seed)
            floor = human_baseline(led, monitor, run=run, size=size)
            fingerprinted = _prepare_gate(led, config)
        say(
            "froze reservoir [bold]{}[/]: {:,} training anchors, {:,} held out; digest {}",
            res.name,
            len(res.train_ids),
            len(res.holdout_ids),
            res.digest,
        )
    if fingerprinted:
        console.print(
            f"fingerprinted {fingerprinted:,} reference records for the gate's duplicate "
            "checks, kept in the ledger: no round computes them again"
        )
    if floor is not None:
        console.print(
            f"human baseline of run {run} ({preset} preset): samples of "
            f"{min(size, len(res.train_ids)):,} human texts against the holdout, "
            f"{floor.num_rows} metrics; every later change is measured from it. "
            f"Evaluate {size:,} texts per round (the same size) for a like-for-like comparison."
        )


def _prepare_gate(led: Ledger, config: Any) -> int:
    """The project gate's reference fingerprints, computed once at freeze (0: no gate)."""
    from tailguard.project import project_gate

    gate = project_gate(config, led, progress=False) if config is not None else None
    return gate.prepare() if gate is not None else 0


def baseline_size(config: Any) -> int:
    """Texts per evaluated round: the project's ``[loop]`` sizes, else the loop's defaults."""
    from tailguard.loop import Loop, eval_size

    if config is None:
        return eval_size(Loop.N_GENERATE)
    return eval_size(config.loop.n_generate, config.loop.n_sample)


@reservoir_app.command("show")
@handles_errors
def reservoir_show(
    name: str | None = typer.Option(None, help="Reservoir name (default: newest)."),
    expect: str | None = typer.Option(
        None, "--expect", help="Refuse unless the digest is this one (pinned elsewhere)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ledger: Path | None = LedgerOption,
) -> None:
    """Size, digest (verified), label distribution and holdout size of the reservoir."""
    config = project_config() if ledger is None else None
    with open_ledger(ledger, read_only=True) as led:
        res = led.reservoir(name, expect=expect)
        check_expected_digest(led, config)
        labels = led.reservoir_labels(res.name)
    info = {
        "name": res.name,
        "digest": res.digest,
        "size": res.size,
        "train": len(res.train_ids),
        "holdout": len(res.holdout_ids),
        "holdout_fraction": res.holdout_fraction,
        "seed": res.seed,
        "labels": {lab: {"train": t, "holdout": h} for lab, t, h in labels},
    }
    if as_json:
        console.print_json(json.dumps(info))
        return
    say(
        "reservoir [bold]{}[/]: {:,} human records ({:,} train, {:,} holdout)\n"
        "digest {} [green](verified)[/]",
        res.name,
        res.size,
        len(res.train_ids),
        len(res.holdout_ids),
        res.digest,
    )
    table = Table("label", "train", "holdout", "share", title="label distribution")
    total = max(res.size, 1)
    for lab, t, h in labels:
        table.add_row(lab, f"{t:,}", f"{h:,}", f"{(t + h) / total:.1%}")
    console.print(table)


@app.command()
@handles_errors
def audit(
    floor: float | None = typer.Option(None, help="Human share below which a round is flagged."),
    run: str | None = typer.Option(None, help="Only this run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ledger: Path | None = LedgerOption,
) -> None:
    """Per round: human and synthetic shares by generation; flags invisible substitution."""
    if floor is None:
        config = project_config()
        floor = config.audit.human_floor if config is not None else _audit_floor()
    with open_ledger(ledger, read_only=True) as led:
        led.check_run(run)
        check_expected_digest(led, project_config() if ledger is None else None)
        rows = led.audit(floor=floor, run=run).to_pylist()
        revisions = _revisions(led)
        rollbacks = led.rollbacks(run).to_pylist()
    for b in rollbacks:
        b["rolled_at"] = b["rolled_at"].isoformat()
    for row in rows:
        row["revisions"] = revisions.get((row["run"], row["round"]), [])
    for row in rows:
        row["by_generation"] = json.loads(row["by_generation"])
        row["unlabelled_share"] = row["unlabelled"] / row["total"] if row["total"] else 0.0
    flagged = [r for r in rows if r["flagged"]]
    if as_json:
        console.print_json(json.dumps({"floor": floor, "rounds": rows, "rollbacks": rollbacks}))
    else:
        table = Table(
            "run",
            "round",
            "slots",
            "human",
            "synthetic",
            "human share",
            "reservoir share",
            "unlabelled",
            "synthetic by generation",
            "",
            title=f"training mix per round (floor {floor:.0%})",
        )
        for r in rows:
            gens = ", ".join(f"g{g}: {n:,}" for g, n in r["by_generation"].items()) or "-"
            table.add_row(
                r["run"],
                str(r["round"]),
                f"{r['total']:,}",
                f"{r['human']:,}",
                f"{r['synthetic']:,}",
                f"{r['human_share']:.1%}",
                f"{r['reservoir_share']:.1%}",
                f"{r['unlabelled']:,} ({r['unlabelled_share']:.1%})",
                gens,
                styled(
                    "[yellow]rolled back[/]"
                    if r["rolled_back"]
                    else "[bold red]BELOW FLOOR[/]"
                    if r["flagged"]
                    else "[green]ok[/]"
                ),
            )
        console.print(table if rows else "no manifests yet")
        for r in rows:
            for v in r["revisions"]:
                console.print(
                    f"round {r['round']} ({r['run']}): {v['kind']} replaced at {v['at']} "
                    f"by {v['by']}"
                    + (f" ({v['old'][:12]} -> {v['new'][:12]})" if v["old"] else ""),
                    highlight=False,
                )
        for b in rollbacks:
            console.print(
                f"rollback of run {b['run']!r} to round {b['to_round']} at {b['rolled_at']} by "
                f"{b['rolled_by']}: round(s) {', '.join(map(str, b['rounds']))} set aside, "
                f"{b['quarantined']:,} synthetic record(s) quarantined"
                + (f" ({b['reason']})" if b["reason"] else ""),
                highlight=False,
            )
    if flagged:
        say(
            "[bold red]{} round(s) below the human floor of {:.0%}: "
            "real data is being substituted by synthetic data[/]",
            len(flagged),
            floor,
        )
        raise typer.Exit(1)


@app.command()
@handles_errors
def export(
    round_: int = typer.Option(
        ..., "--round", min=0, max=limits.ROUND_MAX, help="Round whose training set to export."
    ),
    output: Path = typer.Option(..., "-o", "--output", help=".parquet or .jsonl file."),
    run: str = typer.Option("main", help="Run name."),
    ledger: Path | None = LedgerOption,
) -> None:
    """Write a round's training set, in training order, with full provenance."""
    import pyarrow.json  # noqa: F401  (ensures the writer below has pyarrow loaded)
    import pyarrow.parquet as pq

    writable_output(output)
    if output.suffix not in {".parquet", ".jsonl"}:
        raise InputError("output must end in .parquet or .jsonl", file=str(output))
    with open_ledger(ledger, read_only=True) as led:
        led.check_run(run)
        table = led.manifest_records(round_, run)
    if output.suffix == ".parquet":
        pq.write_table(table, output)
    elif output.suffix == ".jsonl":
        table.to_pandas().to_json(output, orient="records", lines=True, date_format="iso")
    else:
        raise InputError("output must end in .parquet or .jsonl", file=str(output))
    console.print(f"wrote {table.num_rows:,} training slots of round {round_} to {output}")


def _revisions(led: Ledger) -> dict[tuple[str, int], list[dict]]:
    """Replaced manifests and metric sets per run and round: what, when and by whom."""
    hist = led.history()
    out: dict[tuple[str, int], list[dict]] = {}
    if hist.num_rows == 0:
        return out
    for h in hist.to_pylist():
        if h["kind"] in {"manifest", "metrics"}:
            out.setdefault((h["run"], h["round"]), []).append(
                {
                    "kind": h["kind"],
                    "old": h["old"],
                    "new": h["new"],
                    "at": h["changed_at"].isoformat(),
                    "by": h["changed_by"],
                }
            )
    return out


@app.command()
@handles_errors
def relabel(
    record_id: str = typer.Argument(
        ..., help="The record's content id, or a unique prefix of 8 or more characters."
    ),
    label: str = typer.Argument(..., help="The corrected label."),
    reason: str = typer.Option("", help="Why (kept in the ledger's history)."),
    ledger: Path | None = LedgerOption,
) -> None:
    """Correct a record's label; the old value stays in the ledger's history."""
    with open_ledger(ledger) as led:
        record_id = led.resolve_record_id(record_id)
        n = led.relabel(record_id, label, reason=reason)
    console.print(f"relabelled {n} row(s) of {record_id} as {label!r}")


def _audit_floor() -> float:
    return Ledger.AUDIT_FLOOR


def starter_config() -> str:
    """The tailguard.toml `tailguard init` writes, with today's defaults filled in."""
    from tailguard.config import LEDGER_FILE
    from tailguard.mix.policies import Anchored

    return STARTER_CONFIG.format(
        ledger=LEDGER_FILE, human_floor=_audit_floor(), real_fraction=Anchored.REAL_FRACTION
    )
