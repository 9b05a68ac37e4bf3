"""One meaning for the evidence: the clean model's noise band, and what "degraded" means.

Every metric of a round is read against two references, kept apart:

- the **clean model**: round 0, the model trained on the reservoir alone, sampled
  several times (:data:`CLEAN_DRAWS`). Its mean is the reference and the spread of
  its draws is the noise of a round's measurement. *Collapse* is drift from it
  beyond that noise, in the metric's bad direction;
- the **human baseline**: human data of the same size measured the same way. The
  distance from the clean model to it is the *capacity gap*: how far the model is
  from people before it ever sees a synthetic example. A higher human share cannot
  close it (a larger model, more human data in total or more epochs can), so it
  never raises the share or an alarm.

:func:`band` builds the one band a metric is judged by, :func:`drift` places a value
in it (in half-widths: above 1 is outside), and :func:`verdict` says "degraded",
"held" or "improved". The monitor, the alerts, the dial, the report's bands, the
advisor and the lab (axes, frontier, recovery) all call these; none decides on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

#: How many samples of the clean model (round 0) the loop measures: their spread is the
#: noise band's width. Five keeps round 0 cheap and the spread usable.
CLEAN_DRAWS = 5
#: The band's half-width in standard deviations of the clean model's draws: a round's
#: value is one more draw, so about one false alarm in a thousand rounds per metric.
NOISE_Z = 3.0
_TINY = 1e-12
#: Below this |human baseline|, a gap is said in absolute terms (a relative one misleads).
TINY_BASE = 0.05

Verdict = Literal["degraded", "held", "improved"]


@dataclass(frozen=True)
class Band:
    """The range inside which a metric "held": around the clean model, open on the good side.

    ``low`` / ``high`` are the edges (``-inf`` / ``inf`` on a one-sided metric's good
    side: more rare vocabulary than the clean model is no loss); ``center`` is the
    clean model's value, ``noise`` the standard deviation of its draws and
    ``half_width`` the distance from ``center`` to the bad edge.
    """

    center: float
    half_width: float
    noise: float
    higher_is_better: bool | None
    #: the reference a two-sided metric's drift is measured from (its ideal or the center)
    ideal: float | None = None
    #: an absolute limit (``above`` / ``below`` thresholds): the band is that side of it
    limit: float | None = None

    @property
    def low(self) -> float:
        if self.limit is not None:
            return self.limit if self.higher_is_better else -math.inf
        if self.higher_is_better is False:
            return -math.inf
        if self.higher_is_better is None:
            return self._ideal - self._radius
        return self.center - self.half_width

    @property
    def high(self) -> float:
        if self.limit is not None:
            return math.inf if self.higher_is_better else self.limit
        if self.higher_is_better is True:
            return math.inf
        if self.higher_is_better is None:
            return self._ideal + self._radius
        return self.center + self.half_width

    @property
    def _ideal(self) -> float:
        return self.center if self.ideal is None else self.ideal

    @property
    def _radius(self) -> float:
        """A two-sided metric's band: the clean model's distance from the ideal, plus the
        half-width (moving closer to the ideal is no loss)."""
        return abs(self.center - self._ideal) + self.half_width

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "low": _finite(self.low), "high": _finite(self.high)}


def band(
    clean: Sequence[float] | np.ndarray | float,
    *,
    higher_is_better: bool | None,
    threshold: Any = None,
    noise: float | None = None,
    ideal: float | None = None,
    z: float = NOISE_Z,
) -> Band:
    """The band of one metric from the clean model's values (its draws at round 0).

    The half-width is ``z`` standard deviations of the draws (or ``noise`` when the
    clean model was measured once: the spread of human samples of the same size),
    never narrower than the metric's ``threshold`` (``kind`` and ``value``, as in a
    preset: ``relative`` to the center, or an absolute ``change``), the smallest
    drift worth acting on. ``above`` / ``below`` thresholds are absolute limits.
    """
    values = np.atleast_1d(np.asarray(clean, dtype=np.float64))
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("a band needs at least one finite value of the clean model")
    center = float(values.mean())
    sd = float(values.std(ddof=1)) if values.size > 1 else float(noise or 0.0)
    kind = getattr(threshold, "kind", None)
    t = float(getattr(threshold, "value", 0.0) or 0.0)
    if kind in ("above", "below"):
        return Band(center, abs(center - t), sd, kind == "below", None, t)
    floor = t * max(abs(center), _TINY) if kind == "relative" else t if kind == "change" else 0.0
    width = max(z * sd, floor, _TINY)
    two_sided_ideal = None if higher_is_better is not None else (center if ideal is None else ideal)
    return Band(center, width, sd, higher_is_better, two_sided_ideal)


def worse_by(value: float, b: Band) -> float:
    """How much worse than the clean model ``value`` is (negative: better)."""
    if b.limit is not None:
        return (b.limit - value) if b.higher_is_better else (value - b.limit)
    if b.higher_is_better is None:
        return abs(value - b._ideal) - abs(b.center - b._ideal)
    return (b.center - value) if b.higher_is_better else (value - b.center)


def drift(value: float, b: Band) -> float:
    """Drift from the clean model in half-widths of the band: above 1 is outside it.

    For an absolute limit it is 1 plus the distance past the limit relative to the
    distance from the clean model to it, so above 1 means past the limit here too.
    """
    if b.limit is not None:
        return 1.0 + worse_by(value, b) / max(b.half_width, _TINY)
    return worse_by(value, b) / b.half_width


def verdict(value: float, b: Band) -> Verdict:
    """``degraded`` (outside the band on the bad side), ``improved`` (past the clean
    model on the good side by the band's half-width) or ``held``."""
    d = drift(value, b)
    if d > 1.0:
        return "degraded"
    if b.limit is None and b.higher_is_better is not None and -worse_by(value, b) > b.half_width:
        return "improved"
    return "held"


def degraded(value: float, b: Band) -> bool:
    """The one test of collapse: outside the clean model's band, in the bad direction."""
    return verdict(value, b) == "degraded"


def held_across(drifts: Sequence[float] | np.ndarray) -> bool:
    """Whether a configuration held over seeds: its median drift stays inside the band."""
    d = np.asarray(drifts, dtype=np.float64)
    d = d[np.isfinite(d)]
    return bool(d.size) and bool(np.median(d) <= 1.0)


def recovery_round(values: Sequence[float] | np.ndarray, b: Band) -> int | None:
    """Rounds (1-based) until a collapsed run is back inside the band; None if never."""
    for i, v in enumerate(np.asarray(values, dtype=np.float64), start=1):
        if not degraded(float(v), b):
            return i
    return None


@dataclass(frozen=True)
class CapacityGap:
    """How far the clean model is from people on one metric: not collapse, never dialled."""

    metric: str
    clean: float
    human: float
    #: relative shortfall of the clean model against human data (positive: behind people)
    gap: float
    #: the same shortfall in the metric's own units
    behind: float = 0.0

    @property
    def closes_it(self) -> str:
        return (
            "a larger model, more human data in total or more epochs closes it; "
            "a higher human share does not"
        )

    def describe(self) -> str:
        # relative where it reads as such; absolute on a tiny base or past 100%
        far = abs(self.human) < TINY_BASE or self.gap > 1
        size = f"{self.behind:.3g} behind, absolute" if far else f"{self.gap:.0%} behind"
        return (
            f"capacity gap on {self.metric}: the clean model (round 0) scores {self.clean:.4g} "
            f"against {self.human:.4g} for human data ({size}); {self.closes_it}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "closes_it": self.closes_it}


def capacity_gap(metric: str, b: Band, human: float) -> CapacityGap | None:
    """The clean model's gap to human data on one metric, when it is beyond the band's
    half-width on the bad side; None when the clean model is as good as people."""
    if b.limit is not None:
        return None
    human_band = Band(human, b.half_width, b.noise, b.higher_is_better, b.ideal)
    if b.higher_is_better is None:
        behind = worse_by(b.center, human_band)
    else:
        behind = (human - b.center) if b.higher_is_better else (b.center - human)
    if behind <= b.half_width:
        return None
    return CapacityGap(metric, b.center, human, behind / max(abs(human), _TINY), behind)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
