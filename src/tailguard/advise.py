"""The advisor: which strategy, which starting real fraction, which gate, and why.

The rule, from what is known about model collapse:

- **high stakes or open-ended** tasks anchor heavily on human data (real fraction
  0.5) and use synthetic data only to fill under-represented classes: an error that
  compounds is expensive, and open-ended outputs have no checker to catch it;
- **narrow, verifiable** tasks lean synthetic (real fraction at the dial's minimum, 0.15)
  with every generation gated by the task's own checker: a verifier that cannot be
  fooled stops errors from compounding;
- **general assistants** (and narrow tasks with no checker) go hybrid: anchored at
  0.2 with near-duplicate, quality and policy gates.

In every case a fixed human reservoir is kept and re-injected every round, never
below 15%. Given a ledger with history, the advisor also recommends the next
round's fraction from the measured evidence, exactly as the dial would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from tailguard.costs import CostModel, RoundUsage
from tailguard.errors import ConfigError, InputError
from tailguard.mix.dial import Dial
from tailguard.mix.policies import Anchored

Stakes = Literal["low", "high"]
Task = Literal["open-ended", "narrow", "general"]
#: The lowest human share advised: the Dial's minimum.
MINIMUM = Dial.MINIMUM


@dataclass(frozen=True)
class TaskProfile:
    """What the model is for: the stakes, the kind of task, whether outputs can be checked."""

    stakes: Stakes = "low"
    task: Task = "general"
    verifiable: bool = False
    budget: float | None = None
    examples_per_round: int = 10_000

    def __post_init__(self) -> None:
        if self.stakes not in ("low", "high"):
            raise ConfigError(f"stakes must be low or high, not {self.stakes!r}")
        if self.task not in ("open-ended", "narrow", "general"):
            raise ConfigError(f"task must be open-ended, narrow or general, not {self.task!r}")
        if self.budget is not None and self.budget < 0:
            raise ConfigError("budget must be a non-negative amount")
        if self.examples_per_round < 1:
            raise ConfigError("examples_per_round must be at least 1")


@dataclass
class Advice:
    """The recommendation, with the reasons behind every part of it."""

    strategy: str
    real_fraction: float
    gate: list[str]
    reasons: list[str]
    #: The data cost of one round of this configuration (``CostModel.round_cost``);
    #: ``None`` when nothing measured or configured says what a round uses.
    cost_per_round: float | None
    next_fraction: float | None = None
    #: What ``cost_per_round`` is: measured (whose rounds) or estimated (from what).
    cost_basis: str = ""
    evidence: list[str] = field(default_factory=list)
    #: When set (active alerts), the first line: what to do now, before the strategy.
    headline: str | None = None

    def lines(self) -> list[str]:
        """Headline first, then the reasons: what the CLI prints and the report shows.

        With measured evidence (``next_fraction`` set) there is one share, the next
        round's; the profile's starting share is not repeated next to it.
        """
        gate = f"gate with {', '.join(self.gate)}"
        if self.next_fraction is None:
            head = f"{self.strategy}: start at {self.real_fraction:.0%} human per batch, {gate}"
        else:
            head = f"{self.strategy}: {self.next_fraction:.0%} human per batch next round, {gate}"
        out = [self.headline] if self.headline else []
        out += [head, *self.reasons, self.cost_line()]
        return out + self.evidence

    def cost_line(self) -> str:
        """The one sentence that quotes the recommended configuration's cost."""
        if self.cost_per_round is None:
            return f"data cost per round: not measured yet ({self.cost_basis})"
        return f"data cost per round: ${self.cost_per_round:,.2f} ({self.cost_basis})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def advise(profile: TaskProfile, *, costs: CostModel | None = None) -> Advice:
    """The decision rule for a task profile."""
    costs = costs or CostModel()
    reasons: list[str] = []
    if profile.stakes == "high" or profile.task == "open-ended":
        strategy, fraction = "human-anchored", 0.5
        gate = ["near_duplicate", "quality", "rules", "human review of the tail classes"]
        if profile.stakes == "high":
            why = "high stakes: errors that compound are costly"
            why += (
                " and a checker misses what it was not written for"
                if profile.verifiable
                else " and there is no checker to catch them"
            )
        else:
            why = "an open-ended task: there is no checker to catch errors that compound"
        reasons += [
            f"{why}, so anchor heavily on human data",
            "use synthetic data only to fill under-represented classes, not to replace "
            "human examples",
        ]
    elif profile.task == "narrow" and profile.verifiable:
        strategy, fraction = "synthetic-leaning, gated", MINIMUM
        gate = ["the task's verifier (code_tests or math_answer)", "near_duplicate", "quality"]
        reasons += [
            "a narrow task whose outputs can be checked: lean synthetic, because the "
            "verifier stops errors from compounding",
            "gate every generation; an unverified synthetic example never enters training",
        ]
    else:
        strategy, fraction = "hybrid (anchored)", Anchored.REAL_FRACTION
        gate = ["near_duplicate", "quality", "rules"]
        why = (
            "a general assistant"
            if profile.task == "general"
            else "a narrow task with no automatic checker"
        )
        reasons += [
            f"{why}: hybrid anchoring keeps the tails while synthetic data adds volume",
        ]
    reasons.append(
        f"keep a fixed human reservoir and re-inject it every round; never below {MINIMUM:.0%}"
    )
    cost = _round_cost(profile, fraction, costs)
    basis = _estimate_basis(profile, fraction)
    if profile.budget is not None and cost > profile.budget:
        affordable = _affordable_fraction(profile, costs)
        reasons.append(
            f"the budget (${profile.budget:,.2f}) does not cover {fraction:.0%} human at "
            f"{profile.examples_per_round:,} examples per round (${cost:,.2f}); "
            + (
                f"it covers {affordable:.0%}"
                if affordable >= MINIMUM
                else f"even the {MINIMUM:.0%} minimum costs more: train on fewer examples per "
                "round rather than dropping the anchor"
            )
        )
        if affordable >= MINIMUM:
            fraction = affordable
            cost = _round_cost(profile, fraction, costs)
            basis = _estimate_basis(profile, fraction)
    return Advice(
        strategy=strategy, real_fraction=fraction, gate=gate, reasons=reasons,
        cost_per_round=cost, cost_basis=basis,
    )  # fmt: skip


def _profile_usage(profile: TaskProfile, fraction: float) -> RoundUsage:
    """A profile's round, before anything is measured: ``examples_per_round`` examples,
    the human share bought new, the rest generated and verified."""
    n = profile.examples_per_round
    human = round(fraction * n)
    return RoundUsage(human_bought=human, generated=n - human, verified=n - human)


def _round_cost(profile: TaskProfile, fraction: float, costs: CostModel) -> float:
    return float(costs.round_cost(_profile_usage(profile, fraction)))


def _estimate_basis(profile: TaskProfile, fraction: float) -> str:
    u = _profile_usage(profile, fraction)
    return (
        f"estimated for {profile.examples_per_round:,} examples per round: "
        f"{u.human_bought:,} human bought, {u.generated:,} generated and verified"
    )


def _affordable_fraction(profile: TaskProfile, costs: CostModel) -> float:
    """The largest human fraction (in 1% steps) whose round cost fits the budget."""
    budget = profile.budget or 0.0
    best = 0.0
    for pct in range(0, 101):
        if _round_cost(profile, pct / 100, costs) <= budget:
            best = pct / 100
    return best


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


#: Data kinds whose records are prose, where text verifiers (near_duplicate, rules) apply.
TEXT_KINDS = ("text", "tokens")
#: The gate for numeric records (vectors, labelled vectors): no text verifier applies.
NUMERIC_GATE = [
    "exact_duplicate",
    "schema (record length and value bounds)",
    "a function verifier of the domain's constraints",
]


def fit_gate_to_data(advice: Advice, kind: str) -> Advice:
    """Suggest verifiers that fit the data: text verifiers only for text."""
    if kind not in TEXT_KINDS:
        advice.gate = list(NUMERIC_GATE)
    return advice


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


#: The columns a lab frontier file must have (``frontier.parquet``); ``verifier_quality``
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


def _with(advice: Advice, **changes: Any) -> Advice:
    from dataclasses import replace

    return replace(advice, **changes)
