"""Mixing commands: `tailguard mix` plans a round's batches; `tailguard dial show` its history."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import typer
from rich.table import Table

from tailguard import limits
from tailguard.cli.app import (
    LedgerOption,
    app,
    command_group,
    console,
    handles_errors,
    open_ledger,
    say,
)
from tailguard.errors import InputError, ReservoirError
from tailguard.loop import Loop
from tailguard.mix.policies import POLICIES, Anchored

dial_app = command_group(help="The Dial's decisions: the real fraction, round by round.")
app.add_typer(dial_app, name="dial")


@app.command("mix")
@handles_errors
def mix(
    round_: int = typer.Option(..., "--round", min=0, max=limits.ROUND_MAX, help="Round to plan."),
    policy: str = typer.Option("anchored", help=f"One of: {', '.join(POLICIES)}."),
    real_fraction: float | None = typer.Option(
        None, help=f"Human share of every batch (anchored; default {Anchored.REAL_FRACTION})."
    ),
    batch_size: int = typer.Option(
        Loop.BATCH_SIZE, min=1, max=limits.BATCH_SIZE_MAX, help="Examples per batch."
    ),
    seed: int = typer.Option(
        0, min=0, max=limits.SEED_MAX, help="Seed of the plan (same seed, same digest)."
    ),
    epochs: int = typer.Option(
        1, min=1, max=limits.EPOCHS_MAX, help="Passes over the selected examples."
    ),
    synthetic: str | None = typer.Option(
        None, help="anchored: accumulate, latest or subsample; fresh: accumulate or latest."
    ),
    size: int | None = typer.Option(
        None, min=1, max=limits.SLOTS_MAX, help="anchored/subsample: slots per epoch."
    ),
    reservoir: str | None = typer.Option(
        None,
        help="anchored: whole (every reservoir example each round; the share sets how many "
        "synthetic examples are admitted; default) or share (exactly the share per batch).",
    ),
    new_human_per_round: int | None = typer.Option(
        None, min=1, max=limits.VOLUME_MAX, help="fresh: new human records each round."
    ),
    run: str = typer.Option("main", help="Run the manifest belongs to."),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="Plan a round that has no records of its own."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ledger: Path | None = LedgerOption,
) -> None:
    """Plan round R's batches from the ledger's training pool and store the manifest."""
    from tailguard.config import policy_section
    from tailguard.mix import plan as make_plan

    chosen = policy_section(
        "mix options",
        name=policy,
        real_fraction=real_fraction,
        synthetic=synthetic,
        reservoir=reservoir,
        new_human_per_round=new_human_per_round,
    ).policy(size=size)
    with open_ledger(ledger) as led:
        if not led.has_reservoir():
            raise ReservoirError(
                "the reservoir is not frozen: run `tailguard reservoir freeze` before mixing"
            )
        pool = led.training_pool(round_, text=False)
        if pool.num_rows == 0:
            raise InputError(f"round {round_}: the training pool is empty", field="round")
        if round_ > 0 and not allow_empty and not led.count(round=round_):
            raise InputError(
                f"round {round_} has no records of its own (nothing generated, gated or "
                "ingested for it); pass --allow-empty to plan it anyway",
                field="round",
            )
        manifest = make_plan(
            pool, chosen, round=round_, batch_size=batch_size, seed=seed, epochs=epochs, run=run
        )
        led.write_manifest(manifest)
        rounds = led.round_summary(run)
        (row,) = rounds.filter(pc.equal(rounds["round"], round_)).to_pylist()
    summary = {**composition(manifest), "round_summary": row}
    if as_json:
        console.print_json(json.dumps(summary))
        return
    rest = (
        f"under {manifest.policy} {json.dumps(chosen.params())}\n"
        f"human per batch {summary['human_per_batch']}, digest {summary['digest']}\n"
        f"{row['human']:,} human ({row['human_share']:.1%}, {row['new_human']:,} new this run) "
        f"and {row['synthetic']:,} synthetic slots, {row['traceable']:,} of {row['total']:,} "
        "traceable"
    )
    say("round {} ({}): [bold]{:,}[/] batches of {} {}", manifest.round, run,
        summary["batches"], batch_size, rest)  # fmt: skip
    table = Table("origin", "generation", "slots", "distinct", "share", title="composition")
    for row in summary["rows"]:
        table.add_row(
            row["origin"],
            str(row["generation"]),
            f"{row['slots']:,}",
            f"{row['distinct']:,}",
            f"{row['share']:.1%}",
        )
    console.print(table)


def composition(manifest) -> dict:  # noqa: ANN001 - a tailguard.records.Manifest
    """Slots by origin and generation, human per batch, and the digest (for display)."""
    import numpy as np
    import pyarrow.compute as pc

    slots = manifest.slots
    grouped = (
        slots.group_by(["origin", "generation"])
        .aggregate([("id", "count"), ("id", "count_distinct")])
        .sort_by([("origin", "ascending"), ("generation", "ascending")])
    )
    total = max(slots.num_rows, 1)
    rows = [
        {"origin": o, "generation": g, "slots": n, "distinct": d, "share": n / total}
        for o, g, n, d in zip(
            *(
                grouped[c].to_pylist()
                for c in ("origin", "generation", "id_count", "id_count_distinct")
            ),
            strict=True,
        )
    ]
    human = pc.equal(slots["origin"], "human").to_numpy(zero_copy_only=False)
    per_batch = np.bincount(slots["batch"].to_numpy(), weights=human) if slots.num_rows else []
    spread = f"{int(min(per_batch))}-{int(max(per_batch))}" if len(per_batch) else "0"
    return {
        "round": manifest.round,
        "policy": manifest.policy,
        "params": manifest.params,
        "batches": manifest.n_batches,
        "slots": slots.num_rows,
        "human_per_batch": spread,
        "rows": rows,
        "digest": manifest.digest,
    }


@dial_app.command("show")
@handles_errors
def dial_show(
    run: str | None = typer.Option(None, help="Only this run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ledger: Path | None = LedgerOption,
) -> None:
    """Every stored decision: the share asked, the share the round realised (the human
    share of its training slots, as `tailguard audit` reports it), why, and whether the
    last change moved the watched metrics."""
    with open_ledger(ledger, read_only=True) as led:
        led.check_run(run)
        rows = led.decisions(run=run).to_pylist()
        audit = led.audit(run=run).to_pylist()
    realised = {(a["run"], a["round"]): a["human_share"] for a in audit}
    for row in rows:
        evidence = json.loads(row["evidence"]) if row.get("evidence") else {}
        row["evidence"] = evidence if isinstance(evidence, dict) else {}
        row["realised"] = realised.get((row["run"], row["round"]))
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        console.print("no dial decisions stored yet")
        return
    table = Table(
        "run", "round", "asked", "realised", "degraded", "response", "reason",
        title="dial decisions (share = human share of the round's training slots)",
    )  # fmt: skip
    for row in rows:
        evidence = row["evidence"]
        degraded = ", ".join(evidence.get("degraded", []))
        response = evidence.get("response") or {}
        got = row["realised"]
        table.add_row(
            row["run"],
            str(row["round"]),
            f"{row['real_fraction']:.0%}",
            "-" if got is None else f"{got:.1%}",
            degraded or "-",
            "-" if not response else ("moved" if response.get("moved") else "no move"),
            row["reason"],
        )
    console.print(table)
