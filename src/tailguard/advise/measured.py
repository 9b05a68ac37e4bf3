"""Advice from what a run measured: the dial's decision on the evidence, active alerts,
the share a round realised, capacity gaps, and the price of the project's own rounds
(what ``tailguard advise --ledger`` prints and the report shows, word for word)."""

from __future__ import annotations

from typing import Any

from tailguard.advise.quality import with_verifier_audits
from tailguard.advise.rule import (
    Advice,
    TaskProfile,
    _estimate_basis,
    _round_cost,
    _with,
    advise,
)
from tailguard.costs import CostModel, RoundUsage
from tailguard.mix.dial import Dial


def advise_from_evidence(advice: Advice, evidence: list[Any], decision: Any) -> Advice:
    """Add what the measured evidence says (the dial's decision) to a recommendation."""
    advice.next_fraction = decision.real_fraction
    advice.evidence = [f"evidence: {decision.reason}"] + [
        f"  {e.metric}: {e.value:.3f} vs the clean model's {e.baseline:.3f} "
        + ("(degraded: outside its band)" if e.degraded else "(held: within its band)")
        for e in evidence
    ]
    return advice


def with_realised_share(advice: Advice, decisions: list[dict[str, Any]]) -> Advice:
    """Say what the last decided share realised: with the whole reservoir re-injected,
    the share asked only binds once enough synthetic data passed the gate."""
    import json

    from tailguard.mix.planner import describe_share

    last = max(decisions, key=lambda d: d["round"])
    raw = last.get("evidence")
    evidence = json.loads(raw) if isinstance(raw, str) else raw or {}
    share = evidence.get("share")
    if share:
        advice.evidence = [
            *advice.evidence,
            f"round {last['round']}: {describe_share(share)}",
        ]
    return advice


def with_capacity_gaps(advice: Advice, gaps: list[Any]) -> Advice:
    """Name the capacity gaps apart from the evidence: they are not collapse, and the
    human share is not what closes them."""
    advice.evidence = [*advice.evidence, *(gap.describe() for gap in gaps)]
    return advice


def recommend(
    evidence: list[Any],
    profile: TaskProfile | None = None,
    *,
    dial: Dial | None = None,
    alerts: list[Any] = (),
    next_round: int | None = None,
    costs: CostModel | None = None,
) -> Advice:
    """The one recommendation from a task profile and the measured evidence.

    The advisor, ``tailguard advise --ledger``, the report and the dial all read
    this: the next share is the dial's decision on ``evidence`` (a fresh Dial at the
    profile's share when none is given). Active ``alerts`` are named in the
    headline and the share rises by one step even when the dial does not watch the
    alerted metric: a report never advises holding or cutting the human share while
    it lists alerts.
    """
    advice = advise(profile or TaskProfile(), costs=costs)
    if not evidence:
        return advice
    dial = dial or Dial(start=advice.real_fraction)
    current = dial.real_fraction
    rnd = next_round if next_round is not None else max(int(e.round) for e in evidence) + 1
    decision = dial.decide(rnd, evidence)
    advise_from_evidence(advice, evidence, decision)
    raised = decision.real_fraction
    if alerts:
        named = sorted({m for a in alerts for m in a.metrics})
        rules = sorted({a.rule for a in alerts})
        if raised <= current:
            raised = min(round(current + dial.step, 10), dial.maximum)
            advice.evidence.append(
                f"alerts on {', '.join(named)} the dial does not watch: raise the share anyway "
                "(or add them to [dial] watch)"
            )
        verb = "raise" if raised > current else "hold"
        advice.headline = (
            f"{len(alerts)} active alert(s) ({', '.join(rules)}: {', '.join(named)}): "
            f"{verb} the human share {current:.0%} -> {raised:.0%} next round"
            + (
                "; at the maximum, roll back to the last round without alerts"
                if raised <= current
                else ""
            )
        )
    else:
        advice.headline = f"no active alerts: {_share_move(current, raised)} next round"
    advice.next_fraction = raised
    advice.cost_per_round = _round_cost(profile or TaskProfile(), raised, costs or CostModel())
    advice.cost_basis = _estimate_basis(profile or TaskProfile(), raised)
    return advice


def _share_move(current: float, new: float) -> str:
    if new > current:
        return f"raise the human share {current:.0%} -> {new:.0%}"
    if new < current:
        return f"lower the human share {current:.0%} -> {new:.0%}"
    return f"hold the human share at {current:.0%}"


def recommendation_lines(
    ledger: Any,
    *,
    run: str = "main",
    profile: TaskProfile | None = None,
    preset: str | None = None,
    costs: CostModel | None = None,
    n_generate: int | None = None,
    gated: bool = False,
) -> list[str]:
    """The recommendation for ``run`` of an open ledger as lines of text: what
    ``tailguard advise --ledger`` prints and the report shows, word for word."""
    return ledger_advice(
        ledger, run=run, profile=profile, preset=preset, costs=costs, n_generate=n_generate,
        gated=gated,
    ).lines()  # fmt: skip


def ledger_advice(
    ledger: Any,
    *,
    run: str = "main",
    profile: TaskProfile | None = None,
    preset: str | None = None,
    costs: CostModel | None = None,
    n_generate: int | None = None,
    gated: bool = False,
    frontier: Any = None,
) -> Advice:
    """:func:`recommend` on a ledger's stored history, decisions and alerts, priced from
    the ledger's own rounds (:func:`ledger_cost`) at ``costs`` (``[costs]``). For a
    verifiable task, each audited verifier's measured quality is quoted, placed on the
    lab's ``frontier`` (:func:`read_quality_frontier`) when one is given."""
    from tailguard.monitor import Monitor, preset_for

    costs = costs or CostModel()
    history = ledger.metrics(run)
    if history.num_rows == 0:
        advice = advise(profile or TaskProfile(), costs=costs)
        advice.evidence = ["the ledger has no metric history yet: run a round first"]
        advice = ledger_cost(advice, ledger, run=run, costs=costs, n_generate=n_generate,
                             gated=gated)  # fmt: skip
        return _audited(advice, ledger, profile, frontier)
    monitor = Monitor.from_history(history, run=run, preset=preset or preset_for(history))
    evidence = monitor.evidence(run)
    decisions = ledger.decisions(run)
    dial = Dial.resume(decisions) if decisions.num_rows else None
    last = max(history["round"].to_pylist())
    advice = recommend(
        evidence,
        profile,
        dial=dial,
        alerts=monitor.alerts(run),
        next_round=max([last, *decisions["round"].to_pylist()]) + 1,
        costs=costs,
    )
    advice = with_capacity_gaps(advice, monitor.capacity_gaps(run))
    if decisions.num_rows:
        advice = with_realised_share(advice, decisions.to_pylist())
    advice = ledger_cost(advice, ledger, run=run, costs=costs, n_generate=n_generate, gated=gated)
    return _audited(advice, ledger, profile, frontier)


def _audited(advice: Advice, ledger: Any, profile: TaskProfile | None, frontier: Any) -> Advice:
    """For a verifiable task, the ledger's verifier audits (and the lab's frontier) quoted."""
    if profile is None or not profile.verifiable:
        return advice
    return with_verifier_audits(advice, ledger.verifier_audits(latest=True).to_pylist(), frontier)


def ledger_cost(
    advice: Advice,
    ledger: Any,
    *,
    run: str = "main",
    costs: CostModel | None = None,
    n_generate: int | None = None,
    gated: bool = False,
) -> Advice:
    """Price ``advice`` as the project's last measured round: its human data bought,
    generated and verified candidates (``Ledger.round_summary``) at ``costs``.

    The reservoir is owned, not bought per round: it is named with its one-time cost.
    With no synthetic round yet, a round is priced from ``n_generate`` (the config's
    ``[loop] n_generate``, verified when ``gated``), or said to be not measured yet.
    """
    costs = costs or CostModel()
    summary = ledger.round_summary(run).to_pandas() if ledger.has_reservoir() else None
    reservoir = len(ledger.reservoir().train_ids) if ledger.has_reservoir() else 0
    owned = (
        f"the reservoir's {reservoir:,} training examples are owned once "
        f"(${costs.round_cost(RoundUsage(reservoir_owned=reservoir)):,.2f}), not per round"
    )
    live = None if summary is None else summary[~summary["rolled_back"]]
    if live is not None and not live.empty:
        live = live[live["round"] > live["round"].min()]  # round 0 trains on the reservoir

    def priced(usage: RoundUsage, basis: str) -> Advice:
        return _with(
            advice, cost_per_round=float(costs.round_cost(usage)),
            cost_basis=f"{basis} at {costs.describe()}; {owned}",
        )  # fmt: skip

    if live is not None and not live.empty:
        last = live.iloc[-1]
        usage = RoundUsage(
            human_bought=int(last["bought"]), generated=int(last["generated"]),
            verified=int(last["verified"]),
        )  # fmt: skip
        return priced(
            usage,
            f"measured: round {int(last['round'])} of run {run} used "
            f"{usage.human_bought:,} human bought, {usage.generated:,} generated, "
            f"{usage.verified:,} verified",
        )
    if n_generate:
        return priced(
            RoundUsage(generated=n_generate, verified=n_generate if gated else 0),
            f"no round measured yet: a round of [loop] n_generate = {n_generate:,} "
            f"generated{', all verified by the gate' if gated else ' (no gate)'}",
        )
    return _with(
        advice, cost_per_round=None,
        cost_basis=f"no synthetic round in the ledger yet; {owned}",
    )  # fmt: skip
