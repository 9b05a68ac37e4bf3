"""`tailguard screen`: ingest "human" records and quarantine the ones a model probably wrote."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tailguard import limits
from tailguard.cli.app import LedgerOption, app, console, handles_errors, open_ledger
from tailguard.errors import InputError


@app.command()
@handles_errors
def screen(
    file: Path | None = typer.Argument(None, help="JSONL, Parquet or CSV of human records."),
    source: str | None = typer.Option(None, help="Dataset name (default: the file's)."),
    round_: int = typer.Option(
        0, "--round", min=0, max=limits.ROUND_MAX, help="Round the records enter."
    ),
    text_field: str = typer.Option("text", help="Field holding the example's text."),
    label_field: str | None = typer.Option(None, help="Field holding the class or slice."),
    precision: float | None = typer.Option(
        None, help="Out-of-fold precision the threshold aims at (default: [screen] precision)."
    ),
    threshold: float | None = typer.Option(None, help="A fixed detector threshold instead."),
    near: float | None = typer.Option(
        None,
        help="Jaccard at which a record copies a synthetic one (default: [screen] near_threshold).",
    ),
    release: list[str] = typer.Option(
        None, "--release", help="Release a quarantined id (as printed: 8 or more characters)."
    ),
    ledger: Path | None = LedgerOption,
) -> None:
    """Ingest human records, screen them against the ledger's synthetic data, quarantine."""
    from tailguard.cli.app import project_config
    from tailguard.records import content_ids, normalise_content
    from tailguard.screen import Screener, frozen_members, screen_ledger

    cfg = project_config()
    defaults = cfg.screen if cfg is not None else None
    if precision is None:
        precision = defaults.precision if defaults else Screener.PRECISION
    if near is None:
        near = defaults.near_threshold if defaults else Screener.NEAR_THRESHOLD
    if threshold is None and defaults is not None:
        threshold = defaults.threshold
    if (file is None) == (not release):
        raise InputError("give a FILE to screen, or --release ID to release quarantined ids")
    screener = Screener(near_threshold=near, precision=precision, threshold=threshold)
    with open_ledger(ledger) as led:
        if release:
            n = led.release_quarantined([led.resolve_record_id(i) for i in release])
            console.print(f"released {n} record(s)")
            return
        from tailguard.readers import read_table

        table, name = read_table(file, text_field=text_field, label_field=label_field)
        ids = content_ids(normalise_content(table[text_field]))
        # the records and their screening land together: a screen refused (no synthetic
        # records to learn from, say) leaves the ledger as it was
        with led.atomic():
            led.ingest(
                table,
                origin="human",
                source_name=source or name,
                round=round_,
                text_field=text_field,
                label_field=label_field,
            )
            frozen = len(frozen_members(led, ids))
            with console.status("training the detector and screening..."):
                flagged = screen_ledger(led, ids, screener)
        fit = screener.fit_
        console.print(
            f"detector: cross-validated AUC {fit.auc:.3f} on {fit.n_human} human vs "
            f"{fit.n_synthetic} synthetic records; threshold {fit.threshold:.3f} "
            f"(out-of-fold precision {fit.precision:.2f}, recall {fit.recall:.2f})"
        )
        for g, auc in fit.auc_by_generator.items():
            console.print(f"  generator {g}: AUC {auc:.3f}")
        out = Table("id", "code", "score", "detail")
        for row in flagged.slice(0, 20).to_pylist():
            out.add_row(row["id"][:12], row["code"], f"{row['score']:.3f}", row["detail"])
        console.print(out)
        console.print(
            f"screened {len(ids)} record(s): quarantined {flagged.num_rows} "
            "(kept, never frozen or trained on; `tailguard screen --release ID` releases one)"
        )
        if frozen:
            console.print(
                f"{frozen} record(s) are already frozen in the reservoir: left as they are"
            )
