"""``tailguard gate``: run the configured verifiers over a round, or explain one record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tailguard import limits
from tailguard.cli.app import (
    CONFIG_FILE,
    LedgerOption,
    app,
    console,
    handles_errors,
    open_ledger,
    say,
)
from tailguard.cli.engine_opts import AddressOption, EngineOption
from tailguard.errors import TailguardError


@app.command("gate")
@handles_errors
def gate(
    round: int | None = typer.Option(  # noqa: A002
        None, "--round", "-r", min=0, max=limits.ROUND_MAX, help="Round whose candidates to gate."
    ),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="A round with no candidates is not an error."
    ),
    explain: str | None = typer.Option(
        None, "--explain", help="Show every verdict of one id (8 or more of its characters)."
    ),
    config: Path = typer.Option(
        CONFIG_FILE, "--config", help="tailguard.toml with a [gate] table."
    ),
    ledger: Path | None = LedgerOption,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    audit: Path | None = typer.Option(
        None,
        "--audit",
        help="Measure each verifier's precision and recall on a labelled JSONL or Parquet "
        "file and store them in the ledger.",
    ),
    text_field: str = typer.Option("text", "--text-field", help="--audit: the text field."),
    good_field: str = typer.Option(
        "good", "--good-field", help="--audit: the boolean field, true for a known-good text."
    ),
    engine: str | None = EngineOption,
    address: str | None = AddressOption,
) -> None:
    """Gate a round's synthetic candidates with the verifiers of tailguard.toml."""
    if explain is not None:
        _explain(explain, ledger, round)
        return
    if audit is not None:
        _audit(audit, text_field, good_field, config, ledger, quiet)
        return
    if round is None:
        raise TailguardError("give --round R to gate a round, or --explain ID")
    from tailguard.project import on_engine, with_engine

    cfg = with_engine(_gate_config(config), engine, address)
    message = (
        f"round {round} has nothing to gate: no synthetic candidates "
        "(already gated, or none ingested for this round)"
    )
    with open_ledger(ledger, config=cfg) as led:
        # counted first: a refused command writes nothing (not even reference fingerprints)
        if not led.count(round=round, origin="synthetic", status="candidate"):
            result = None
        else:
            gate = _project_gate(cfg, led, config, quiet, ray=cfg.engine.kind == "ray")
            result = on_engine(cfg, gate).run_round(led, round)
    if result is None or result.empty:
        if not allow_empty:
            raise TailguardError(message + "; pass --allow-empty to accept that")
        say("[yellow]{}[/]", message)
        return
    _print_result(result, round)


def _print_result(result, round: int) -> None:  # noqa: A002, ANN001
    from rich.table import Table

    say(
        "round {}: [bold]{}[/] accepted, [bold]{}[/] rejected of {} ({:.1f}% pass)",
        round,
        len(result.accepted_ids),
        len(result.rejected_ids),
        result.n,
        100 * result.pass_rate,
    )
    rates = Table(title="pass rate by verifier")
    for col in ("verifier", "records", "passed", "pass rate"):
        rates.add_column(col, justify="left" if col == "verifier" else "right")
    for row in result.pass_rates().to_pylist():
        rates.add_row(
            row["verifier"],
            str(row["records"]),
            str(row["passed"]),
            f"{100 * row['pass_rate']:.1f}%",
        )
    console.print(rates)
    reasons = result.reasons(top=20)
    if reasons.num_rows:
        table = Table(title="rejections by reason code")
        for col in ("verifier", "code", "records"):
            table.add_column(col, justify="right" if col == "records" else "left")
        for row in reasons.to_pylist():
            table.add_row(row["verifier"], row["code"], str(row["count"]))
        console.print(table)


def _explain(record_id: str, ledger: Path | None, round: int | None) -> None:  # noqa: A002
    from tailguard.gate.base import Verdict

    with open_ledger(ledger, read_only=True) as led:
        record_id = led.resolve_record_id(record_id)
        rows = Verdict.rows(led.verdicts(id=record_id, round=round))
    if not rows:
        raise TailguardError(
            f"no verdicts for id {record_id!r}"
            + (f" in round {round}" if round is not None else "")
        )
    say("[bold]{}[/]: {} verdict(s)", record_id, len(rows))
    for v in rows:
        mark = "[green]passed[/]" if v.passed else "[red]failed[/]"
        say(
            "round {}  [bold]{}[/] (version {})  " + mark + "  [bold]{}[/]: {}",
            v.round,
            v.verifier,
            v.version,
            v.code,
            v.detail,
        )
        extra = []
        if v.score is not None:
            extra.append(f"score {v.score:.4g}")
        if v.matched_id:
            extra.append(f"matched {v.matched_id}")
        extra.append(f"params {v.params}")
        console.print("    " + "  ".join(extra), highlight=False, soft_wrap=True)


def _gate_config(config: Path) -> Any:
    """The project's config, refused when it has no ``[gate]`` table."""
    from tailguard.cli.app import project_config

    cfg = project_config(config)
    if cfg.gate is None:
        raise TailguardError(f"{config}: no [gate] table (see docs/gate.md for the format)")
    return cfg


def _project_gate(cfg: Any, led: Any, config: Path, quiet: bool, *, ray: bool = False) -> Any:
    """The ``[gate]`` of tailguard.toml over the ledger's frozen reservoir (one builder for
    gating a round and auditing the verifiers, so both judge with the same gate).
    ``ray``: the reservoir stays in the ledger (Ray reads it from shards)."""
    from tailguard.gate import gate_from_config

    reference = None
    if cfg.gate.needs_reference:
        if not led.has_reservoir():
            raise TailguardError(
                "a duplicate verifier compares with the reservoir, but none is frozen: "
                'run `tailguard reservoir freeze` or set reference = "none"'
            )
        if not ray:
            reference = led.reservoir_records("all").select(["id", "content"])
    return gate_from_config(
        cfg,
        reference=reference,
        source=str(config),
        progress=not quiet,
        fingerprints=None if ray else led,
    )


def _audit(
    path: Path, text_field: str, good_field: str, config: Path, ledger: Path | None, quiet: bool
) -> None:
    """Run every configured verifier on a labelled sample; store and print its quality.

    The sample and the config are checked before the ledger is opened, so bad input
    changes nothing.
    """
    from rich.table import Table

    from tailguard.gate.audit import audit as measure
    from tailguard.gate.audit import read_sample

    cfg = _gate_config(config)
    sample, good, digest = read_sample(path, text_field=text_field, good_field=good_field)
    with open_ledger(ledger, config=cfg) as led:
        gate_ = _project_gate(cfg, led, config, quiet)
        rows = measure(gate_, sample, good, sample_name=path.name, digest=digest)
        led.record_audits(rows)
    n_good, n_bad = int(good.sum()), int((~good).sum())
    say(
        "audited {} verifier(s) on {}: {} known good, {} known bad (stored in the ledger)",
        len(rows),
        path,
        n_good,
        n_bad,
    )
    table = Table(title="verifier quality (95% Wilson interval)")
    for col in ("verifier", "version", "accepted good", "accepted bad"):
        table.add_column(col, justify="left" if col in ("verifier", "version") else "right")
    for col in ("precision", "recall", "specificity"):
        table.add_column(col, justify="right")
    for row in rows.to_pylist():
        table.add_row(
            row["verifier"],
            row["version"],
            f"{row['accepted_good']}/{row['n_good']}",
            f"{row['accepted_bad']}/{row['n_bad']}",
            *(_share(row, s) for s in ("precision", "recall", "specificity")),
        )
    console.print(table)


def _share(row: dict, name: str) -> str:
    """A share with its interval, or why there is none (nothing to divide by)."""
    if row[name] is None:
        return "n/a (accepted nothing)" if name == "precision" else "n/a"
    return f"{row[name]:.3f} [{row[name + '_low']:.2f}, {row[name + '_high']:.2f}]"
