"""The decision rule for a task profile: the strategy, the starting human share, the
gate and what a round of it costs, with the reasons behind each (see the package's
docstring for the rule itself)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tailguard.costs import CostModel, RoundUsage
from tailguard.errors import ConfigError
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


def _with(advice: Advice, **changes: Any) -> Advice:
    from dataclasses import replace

    return replace(advice, **changes)
