"""A verifiable task's verifiers, by measured quality: each audit quoted, and placed on
a lab frontier of real fraction x verifier quality (``frontier.parquet``, read with
pyarrow: the advisor never imports the lab)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tailguard.advise.rule import Advice, _with
from tailguard.errors import InputError

#: is null on ungated rows.
FRONTIER_COLUMNS = ("real_fraction", "verifier_quality", "held", "cost_per_round")


def read_quality_frontier(path: str | Path) -> pa.Table:
    """A lab ``frontier.parquet`` (real fraction x verifier quality), read with pyarrow:
    the advisor never imports the lab. Missing columns are an :class:`InputError`."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError("file does not exist", file=str(path))
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read Parquet: {exc}", file=str(path)) from exc
    for name in FRONTIER_COLUMNS:
        if name not in table.column_names:
            raise InputError(
                f"missing column (a lab frontier has {', '.join(FRONTIER_COLUMNS)})",
                file=str(path),
                field=name,
            )
    table = table.select(list(FRONTIER_COLUMNS))
    try:
        return table.cast(
            pa.schema(
                [
                    ("real_fraction", pa.float64()),
                    ("verifier_quality", pa.float64()),
                    ("held", pa.bool_()),
                    ("cost_per_round", pa.float64()),
                ]
            )
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InputError(f"unexpected column types: {exc}", file=str(path)) from exc


def measured_quality(audit: dict[str, Any]) -> float | None:
    """One number for a verifier's quality: the lower of its recall and specificity.

    The lab's quality knob (``tailguard.lab.verified``) sets both at once: a correct
    sample accepted with probability ``recall``, a wrong one rejected with probability
    ``specificity``. Precision is not used: it moves with the share of bad samples in
    the audit file, which the frontier's knob does not. A verifier is only as good as
    its weaker side, so the frontier is read at the lower one (``None``: not
    measurable).
    """
    r, s = audit.get("recall"), audit.get("specificity")
    return None if r is None or s is None else min(float(r), float(s))


@dataclass(frozen=True)
class QualityPoint:
    """Where a verifier of measured quality lands on a lab frontier."""

    #: The swept quality the frontier is read at: the nearest at or below the measured one.
    quality: float | None
    #: The lowest held real fraction above every collapsed one at that quality.
    safe_fraction: float | None
    cost_per_round: float | None
    #: The lowest swept quality at which the most synthetic-heavy mix held under gating.
    threshold: float | None
    synthetic_heaviest: float | None


def place_on_frontier(frontier: pa.Table, quality: float) -> QualityPoint:
    """A frontier read at the swept quality nearest below ``quality`` (:class:`QualityPoint`)."""
    every = [r for r in frontier.to_pylist() if r["held"] is not None]
    rows = [r for r in every if r["verifier_quality"] is not None]
    qualities = sorted({r["verifier_quality"] for r in rows})
    # human-only verifies nothing: the lab runs it once, ungated, and it closes every
    # quality's column (as ``Frontier.lowest_safe_by_quality`` reads it)
    top = [r for r in every if r["verifier_quality"] is None and r["real_fraction"] >= 1.0]
    rows += [
        {**r, "verifier_quality": q}
        for q in qualities
        for r in top
        if not any(x["verifier_quality"] == q and x["real_fraction"] >= 1.0 for x in rows)
    ]
    heaviest = min((r["real_fraction"] for r in rows), default=None)
    threshold = next(
        (
            q
            for q in qualities
            if any(
                r["held"] and r["real_fraction"] == heaviest
                for r in rows
                if r["verifier_quality"] == q
            )
        ),
        None,
    )
    below = [q for q in qualities if q <= quality + 1e-12]
    if not below:
        return QualityPoint(None, None, None, threshold, heaviest)
    at = below[-1]
    here = sorted(
        (r for r in rows if r["verifier_quality"] == at), key=lambda r: r["real_fraction"]
    )
    collapsed = max((r["real_fraction"] for r in here if not r["held"]), default=-1.0)
    safe = next((r for r in here if r["held"] and r["real_fraction"] > collapsed), None)
    return QualityPoint(
        at,
        None if safe is None else safe["real_fraction"],
        None if safe is None else safe["cost_per_round"],
        threshold,
        heaviest,
    )


def _audit_line(a: dict[str, Any]) -> str:
    def share(name: str) -> str:
        if a.get(name) is None:
            return f"{name} n/a"
        return f"{name} {a[name]:.2f} [{a[name + '_low']:.2f}, {a[name + '_high']:.2f}]"

    return (
        f"verifier {a['verifier']} (version {a['version']}, audited on {a['sample']}: "
        f"{a['n_good']} known good, {a['n_bad']} known bad): "
        + ", ".join(share(n) for n in ("precision", "recall", "specificity"))
        + f" ({a['confidence']:.0%} intervals)"
    )


def _frontier_line(a: dict[str, Any], frontier: pa.Table) -> str:
    name, quality = a["verifier"], measured_quality(a)
    if quality is None:
        return f"verifier {name}: its quality is not measurable (it accepted nothing)"
    point = place_on_frontier(frontier, quality)
    if point.threshold is None:
        gating = (
            "gating held at no swept quality for the most synthetic-heavy mix "
            f"(real fraction {point.synthetic_heaviest:g})"
            if point.synthetic_heaviest is not None
            else "the frontier has no gated rows"
        )
    else:
        gating = (
            f"gating held at {point.synthetic_heaviest:g} human from quality {point.threshold:g} up"
        )
    below = point.threshold is None or quality < point.threshold
    warning = (
        f"; verifier {name} is below the lowest quality at which gating held, so gating "
        "will not save a synthetic-heavy mix: keep the human share the frontier names, "
        "or improve the verifier"
        if below
        else ""
    )
    if point.quality is None:
        return (
            f"lab frontier: verifier {name} measures {quality:.2f} (the lower of its recall and "
            f"specificity), below every quality the lab swept, so the frontier quotes no safe "
            f"fraction for it; {gating}{warning}"
        )
    at = f"at quality {point.quality:g} (the nearest swept at or below its measured {quality:.2f})"
    if point.safe_fraction is None:
        found = f"lab frontier {at}: no real fraction held above every collapsed one"
    else:
        found = (
            f"lab frontier {at}: the lowest safe real fraction is {point.safe_fraction:.0%} "
            f"(${point.cost_per_round:,.2f} per round)"
        )
    return f"{found}; {gating}{warning}"


def with_verifier_audits(
    advice: Advice, audits: list[dict[str, Any]], frontier: pa.Table | None = None
) -> Advice:
    """A verifiable task's advice with each audited verifier's measured quality and, given
    a lab frontier, the lowest safe real fraction at that quality (quoted, not applied:
    the frontier is another model's measurement)."""
    if not audits:
        line = (
            "no verifier has been audited: run `tailguard gate --audit FILE` on texts known "
            "good and known bad to measure its precision and recall"
        )
        return _with(advice, evidence=[*advice.evidence, line])
    lines = []
    for a in audits:
        lines.append(_audit_line(a))
        if frontier is not None:
            lines.append(_frontier_line(a, frontier))
    return _with(advice, evidence=[*advice.evidence, *lines])
