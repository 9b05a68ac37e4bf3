"""Advice checked against a lab comparison: which strategies kept their tails and at
what cost (the axes and the monitor's alerts), and the lowest safe human share on a
real-fraction frontier. The lab's results are read, never the lab imported."""

from __future__ import annotations

from typing import Any

from tailguard.advise.rule import Advice, _with
from tailguard.costs import CostModel, RoundUsage
from tailguard.mix.dial import Dial

#: The lab strategy that *is* each recommended configuration, when the lab ran it.
MEASURED_AS = {"hybrid (anchored)": "anchored-gated"}


def advise_from_lab(
    advice: Advice,
    axes: Any,
    *,
    strategy: str | None = None,
    alerts: Any = None,
    generations: int | None = None,
) -> Advice:
    """Check the rule against a lab comparison: which strategies kept the tails, at what cost.

    ``axes`` is a lab result's axes table (one row per strategy). A strategy "kept its
    tails" when the axes say it ``held`` (its tail metrics within each seed's clean-model
    band across seeds, :mod:`tailguard.evidence`). Each is named with that verdict, its
    tail coverage at the last generation (relative to round 0), its
    cost per generation and, when it collapsed, its recovery in the table's own
    numbers (seeds recovered, median rounds and dollars). With the lab's ``alerts``
    (the monitor's, per strategy and seed), the verdict is the alerts' own: a strategy
    any seed of which the monitor alerts on at the last generation (``generations``,
    else the alerts' last round) did not keep its tails, whatever its coverage, so the
    words and the report's alerts agree. When the
    lab ran the recommended configuration (``strategy``, else :data:`MEASURED_AS`), the
    advice is priced as that row's measured cost per generation.
    """
    rows = axes.to_pylist() if hasattr(axes, "to_pylist") else list(axes)
    alerted = _last_alerts(alerts, generations)
    lines = []
    for r in sorted(rows, key=lambda r: -r["coverage_vs_baseline"]):
        verdict = _verdict(bool(r["held"]), alerted.get(r["strategy"]), int(r.get("seeds", 0)))
        lines.append(
            f"lab evidence: {r['strategy']} {verdict} (coverage "
            f"{r['coverage_vs_baseline']:.0%} of the clean model's, drift "
            f"{r['coverage_drift']:.1f} band half-widths{_recovery(r)}; fidelity loss "
            f"{r['fidelity_loss']:.3f}; ${r['cost_per_generation']:,.2f} per generation)"
        )
    advice = _with(advice, evidence=[*advice.evidence, *lines])
    name = strategy or MEASURED_AS.get(advice.strategy)
    row = next((r for r in rows if r["strategy"] == name), None)
    if row is not None:
        advice = _with(
            advice, cost_per_round=float(row["cost_per_generation"]),
            cost_basis=f"measured: the lab's {name} run, cost per generation, median over "
            f"{int(row['seeds'])} seeds",
        )  # fmt: skip
    return advice


def _last_alerts(alerts: Any, generations: int | None) -> dict[str, tuple[int, set[int], set[str]]]:
    """Per strategy, the alerts of the last generation: round, seeds and metrics."""
    if alerts is None:
        return {}
    rows = alerts.to_pylist() if hasattr(alerts, "to_pylist") else list(alerts)
    rows = [a for a in rows if a.get("sample", "model") == "model"]
    last = generations if generations is not None else max((a["round"] for a in rows), default=0)
    out: dict[str, tuple[int, set[int], set[str]]] = {}
    for a in rows:
        if int(a["round"]) == last:
            rnd, seeds, metrics = out.setdefault(a["strategy"], (int(a["round"]), set(), set()))
            seeds.add(int(a["seed"]))
            metrics.update(m.strip() for m in str(a["metrics"]).split(","))
    return out


def _verdict(held: bool, alerted: tuple[int, set[int], set[str]] | None, seeds: int) -> str:
    """The axes' ``held`` (median over seeds) and the monitor's alerts at the last
    generation (any seed), in one sentence that contradicts neither."""
    if alerted is None:
        return "kept its tails" if held else "lost its tails"
    rnd, hit, metrics = alerted
    of = f" in {len(hit)} of {seeds} seeds" if seeds > 1 else ""
    where = (
        f"alerted at generation {rnd}{of}, {', '.join(sorted(metrics))} outside the clean "
        "model's band"
    )
    if held:
        return (
            f"did not keep all its tails ({where}; its tail and coverage metrics held in "
            "the median seed)"
        )
    return f"lost its tails ({where})"


def _recovery(row: dict[str, Any]) -> str:
    """The axes row's recovery in its own numbers (back inside the clean model's band);
    nothing when no seed collapsed."""
    rounds, share = row.get("recovery_rounds", 0), row.get("recovered_share", 1)
    if rounds == 0 and share >= 1:
        return ""
    seeds = int(row.get("seeds", 0))
    back = round(share * seeds)
    median = "never" if rounds == float("inf") else f"{rounds:g} rounds"
    return (
        f"; after switching to anchoring recovered in {back} of {seeds} seeds, median "
        f"{median}, ${row.get('recovery_cost', 0.0):,.2f}"
    )


#: Added to a frontier's lowest safe fraction: the frontier is measured on a few seeds.
FRONTIER_MARGIN = 0.05


def advise_from_frontier(
    advice: Advice, frontier: Any, *, margin: float = FRONTIER_MARGIN
) -> Advice:
    """Recommend the frontier's lowest safe real fraction plus ``margin``, with its cost.

    ``frontier`` is a :class:`tailguard.lab.Frontier` (read by its ``table``,
    ``lowest_safe`` and ``evidence``). When the sweep names no safe share (nothing
    collapsed, everything did, or the verdicts are within the noise), the advice
    recommends nothing from it: the rule's fraction stands and the frontier's reason
    is quoted.
    """
    rows = frontier.table.to_pandas().sort_values("real_fraction")
    if "verifier_quality" in rows:  # the ungated sweep, which ``lowest_safe`` reads
        rows = rows[rows["verifier_quality"].isna()]
    lowest = frontier.lowest_safe
    evidence = [
        f"frontier ({frontier.model}, volume {frontier.volume}/round, {frontier.generations} "
        "generations): "
        + ", ".join(
            f"{r.real_fraction:g}: tails x{r.tail_ratio:.2f}, coverage x{r.coverage_ratio:.2f} "
            f"{'held' if r.held else 'lost'}"
            for r in rows.itertuples()
        )
    ]
    if lowest is None:
        evidence.append(
            f"no evidence for a share from the frontier: {frontier.evidence}; "
            "the rule's fraction stands"
        )
        return _with(advice, evidence=[*advice.evidence, *evidence])
    fraction = min(1.0, max(lowest + margin, Dial.MINIMUM))
    row = rows[rows["real_fraction"] == lowest].iloc[0]
    evidence.append(
        f"{frontier.evidence}; band ±{row['band']:.0%} of the clean model's tail metric, "
        f"±{row['coverage_band']:.0%} on coverage; recommended {fraction:.0%} = that + a "
        f"{margin:.0%} margin"
    )
    # The frontier's row is its own configuration (ungated, exactly f human): quoted as
    # that, never as the price of the recommended (gated) configuration.
    evidence.append(
        f"frontier {row['strategy']} at f={lowest:g} (ungated): "
        f"${float(row['cost_per_round']):,.2f} per synthetic round, "
        f"{int(row['human_per_round']):,} human examples per round"
    )
    # The recommendation is its own configuration too: the advice's strategy at the
    # recommended share and the frontier's volume, priced by the one cost function.
    costs = getattr(frontier, "costs", None) or CostModel()
    synthetic = round((1 - fraction) * frontier.volume)
    human = frontier.volume - synthetic
    reservoir = int(getattr(frontier, "reservoir", 0) or human)
    gated = bool(advice.gate)
    # an anchored round takes its human slots from the reservoir it owns (cycled when the
    # share asks for more than it holds): it buys nothing per round
    usage = RoundUsage(generated=synthetic, verified=synthetic if gated else 0)
    cost = float(costs.round_cost(usage))
    cycled = "; cycled, since the share asks for more" if human > reservoir else ""
    basis = (
        f"estimated for the recommendation: {advice.strategy} at {fraction:.0%} human of "
        f"{frontier.volume:,} examples per round: {human:,} human slots from the "
        f"{reservoir:,}-example reservoir (owned{cycled}) and {synthetic:,} generated"
        f"{' and verified' if gated else ''} ({costs.describe()})"
    )
    return _with(
        advice, real_fraction=fraction, evidence=[*advice.evidence, *evidence],
        cost_per_round=cost, cost_basis=basis,
    )  # fmt: skip
