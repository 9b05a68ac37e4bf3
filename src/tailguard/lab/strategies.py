"""Strategies: the ways to retrain a model on its own outputs, as mix policies + gate + dial.

A strategy is not a new mechanism: it names a combination of the parts a real
run uses (a :mod:`tailguard.mix` policy, optionally a :mod:`tailguard.gate`
gate and a Dial), so what the lab measures is what a run would do.

========================  ==================================================================
strategy                  parts
========================  ==================================================================
``human-only``            ``HumanOnly()``: the reservoir alone every round (the ceiling)
``replace``               ``Replace()``: only the newest generation (pure synthetic)
``accumulate``            ``Accumulate()``: the reservoir and every generation so far
``accumulate-subsample``  ``AccumulateSubsample()``: a fixed-size seeded sample of all of it
``anchored``              ``Anchored(real_fraction)``: the whole reservoir every round,
                          at least ``real_fraction`` of every batch, the rest synthetic
                          examples of every generation so far (at equal volume: of
                          the newest generation)
``anchored-gated``        ``anchored`` + ``Gate([ExactDuplicate(), NearDuplicate()])``
``fresh``                 ``Fresh(new_human_per_round)``: new human data each round
``anchored-share``        ``Anchored(real_fraction, synthetic="latest",
                          reservoir="share")``: exactly the fraction (the frontier)
``anchored-latest``       ``Anchored(real_fraction, synthetic="latest")``: fixed real
                          data + the newest synthetic generation only
``adaptive``              ``anchored`` with a Dial turning ``real_fraction`` from the evidence
``verified-share``        ``anchored-share`` + ``Gate([KnobVerifier(...)])``: a verifier of
                          set quality on a task with a ground truth (``lab.verified``)
``verified-replace``      ``replace`` + the same gate: pure synthetic, verified
========================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tailguard.errors import ConfigError, check_fraction
from tailguard.loop import Loop
from tailguard.mix import (
    Accumulate,
    AccumulateSubsample,
    Anchored,
    FillGaps,
    Fresh,
    HumanOnly,
    Policy,
    Replace,
)


@dataclass(frozen=True)
class StrategyParts:
    """What a strategy hands the loop: a policy, and optionally a gate and a dial."""

    policy: Policy
    gate: Any = None
    dial: Any = None
    #: New human records the lab ingests each round (only ``fresh``).
    fresh_per_round: int = 0


@dataclass(frozen=True)
class StrategySettings:
    """The experiment-wide settings a strategy may read."""

    real_fraction: float = Anchored.REAL_FRACTION
    n_generate: int = Loop.N_GENERATE
    fresh_per_round: int | None = None  # default: n_generate // 4
    #: The lab's equal training volume per round, if any.
    volume: int | None = None
    #: Human records the duplicate verifiers compare candidates with (the reservoir):
    #: a model that regurgitates its training data adds no new data.
    reference: Any = field(default=None, repr=False, compare=False)
    #: The verified strategies' verifier quality (its recall and specificity) and bias.
    verifier_quality: float | None = None
    verifier_bias: float = 0.0
    #: The ground truth the verified strategies' verifier reads (``lab.verified.Task``).
    task: Any = field(default=None, repr=False, compare=False)
    #: Seeds the verifier's decisions (the job's seed).
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            check_fraction(self.real_fraction, "real_fraction")
        except ConfigError as exc:
            raise ConfigError(
                f"{exc}: anchoring with no human data is not anchoring "
                "(use the 'replace' strategy for that)"
            ) from None
        if self.n_generate < 1:
            raise ConfigError(f"n_generate must be >= 1, got {self.n_generate}")


@dataclass(frozen=True)
class Strategy:
    """A named strategy: a description and how to build its parts."""

    name: str
    description: str
    build: Callable[[StrategySettings], StrategyParts] = field(repr=False)
    uses_real_fraction: bool = False

    def parts(self, settings: StrategySettings) -> StrategyParts:
        return self.build(settings)


def _anchored(s: StrategySettings) -> Policy:
    # At equal volume the round trains on the reservoir + the newest generation, so the
    # volume stays the same every round; otherwise on every generation so far.
    return Anchored(real_fraction=s.real_fraction, synthetic="latest" if s.volume else "accumulate")


def _gate(s: StrategySettings) -> Any:
    from tailguard.gate import ExactDuplicate, Gate, NearDuplicate

    verifiers = [
        ExactDuplicate(reference=s.reference),
        NearDuplicate(reference=s.reference, threshold=0.8),
    ]
    return Gate(verifiers, progress=False, parallel_min=1 << 30)


def _verified_gate(s: StrategySettings) -> Any:
    """A gate holding one verifier of set quality; None until the job hands it a task."""
    from tailguard.gate import Gate
    from tailguard.lab.verified import KnobVerifier

    if s.task is None:
        return None
    q = 1.0 if s.verifier_quality is None else s.verifier_quality
    knob = KnobVerifier(task=s.task, recall=q, specificity=q, bias=s.verifier_bias, seed=s.seed)
    return Gate([knob], progress=False, parallel_min=1 << 30)


def _dial(s: StrategySettings) -> Any:
    from tailguard.mix import Dial

    return Dial(start=s.real_fraction, minimum=min(Dial.MINIMUM, s.real_fraction))


def _fresh(s: StrategySettings) -> StrategyParts:
    per_round = s.fresh_per_round or max(1, s.n_generate // 4)
    return StrategyParts(Fresh(new_human_per_round=per_round), fresh_per_round=per_round)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "human-only",
            "the reservoir alone every round (the ceiling)",
            lambda s: StrategyParts(HumanOnly()),
        ),
        Strategy(
            "replace",
            "only the newest generation: pure synthetic",
            lambda s: StrategyParts(Replace()),
        ),
        Strategy(
            "accumulate",
            "the reservoir and every generation so far",
            lambda s: StrategyParts(Accumulate()),
        ),
        Strategy(
            "accumulate-subsample",
            "a fixed-size sample of everything so far",
            lambda s: StrategyParts(AccumulateSubsample()),
        ),
        Strategy(
            "anchored",
            "a fixed real fraction of reservoir examples in every batch",
            lambda s: StrategyParts(_anchored(s)),
            uses_real_fraction=True,
        ),
        Strategy(
            "anchored-gated",
            "anchored, with copies of the reservoir and duplicates gated out",
            lambda s: StrategyParts(_anchored(s), gate=_gate(s)),
            uses_real_fraction=True,
        ),
        Strategy("fresh", "new human data each round instead of the reservoir", _fresh),
        Strategy(
            "anchored-share",
            "exactly the real fraction of every batch from the reservoir + the newest generation",
            lambda s: StrategyParts(
                Anchored(real_fraction=s.real_fraction, synthetic="latest", reservoir="share")
            ),
            uses_real_fraction=True,
        ),
        Strategy(
            "anchored-latest",
            "fixed real data + the newest synthetic generation only",
            lambda s: StrategyParts(Anchored(real_fraction=s.real_fraction, synthetic="latest")),
            uses_real_fraction=True,
        ),
        Strategy(
            "fill-gaps",
            "every human example, synthetic ones only up to each thin label's median gap",
            lambda s: StrategyParts(FillGaps()),
        ),
        Strategy(
            "adaptive",
            "anchored, with the Dial turning the real fraction",
            lambda s: StrategyParts(_anchored(s), dial=_dial(s)),
            uses_real_fraction=True,
        ),
        Strategy(
            "verified-share",
            "exactly the real fraction of every batch, the rest gated by a verifier of set quality",
            lambda s: StrategyParts(
                Anchored(real_fraction=s.real_fraction, synthetic="latest", reservoir="share"),
                gate=_verified_gate(s),
            ),
            uses_real_fraction=True,
        ),
        Strategy(
            "verified-replace",
            "pure synthetic, gated by a verifier of set quality",
            lambda s: StrategyParts(Replace(), gate=_verified_gate(s)),
        ),
    )
}

#: Strategies whose gate is a verifier of set quality (they need a task with a ground truth).
VERIFIED = ("verified-share", "verified-replace")


def strategy(name: str) -> Strategy:
    """A strategy by name (``-`` or ``_``, any case); the error lists the valid names."""
    key = name.strip().lower().replace("_", "-")
    if key not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[key]


def parse_strategies(names: str | list[str] | tuple[str, ...]) -> list[Strategy]:
    """``"replace,accumulate"`` or a list of names to strategies, in order, without repeats."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"no strategies given; valid strategies: {', '.join(STRATEGIES)}")
    out: list[Strategy] = []
    for n in names:
        s = strategy(n)
        if s not in out:
            out.append(s)
    return out
