"""`tailguard demo`: the main job, end to end, on the built-in fortunes corpus."""

from __future__ import annotations

from pathlib import Path

import typer

from tailguard.cli.app import app, console, handles_errors


@app.command()
@handles_errors
def demo(
    workdir: Path = typer.Option(Path("runs/demo"), help="Where the demo's ledger goes."),
) -> None:
    """Walk through the ledger on the fortunes corpus: ingest, dedupe, freeze, audit."""
    from tailguard.datasets import fortunes
    from tailguard.ledger import Ledger

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "ledger.duckdb"
    path.unlink(missing_ok=True)
    with Ledger.open(path) as led:
        corpus = fortunes()
        first = led.add_records(corpus)
        console.print(f"ingested fortunes: {first.added:,} added, {first.existing:,} repeats")
        again = led.add_records(corpus)
        console.print(f"ingested again: {again.added:,} added, {again.existing:,} already there")
        res = led.freeze_reservoir("main", holdout=0.1, seed=0)
        console.print(
            f"froze reservoir: {len(res.train_ids):,} anchors, {len(res.holdout_ids):,} held out"
            f", digest {res.digest[:16]}..."
        )
    console.print(f"ledger written to {path}")
