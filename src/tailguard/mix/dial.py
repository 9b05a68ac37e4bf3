"""The Dial: the human share of the next round's training slots, turned by the evidence.

The rule is deliberately simple and auditable (collapse means drift from the clean
model beyond its noise band, :mod:`tailguard.evidence`; a gap to human data that was
there at round 0 is a capacity gap and turns nothing):

- a watched metric is *degraded* (the evidence's ``degraded`` flag is the truth) ->
  raise the share by one ``step``, and one more for every further band half-width
  the worst drift reaches past the band (at most ``RAISE_STEPS`` steps; never above
  ``maximum``): as fast as the drift is severe;
- every watched metric *held* (inside its band) for ``patience`` rounds in a row ->
  lower it by one ``step`` (more synthetic, cheaper; never below ``minimum``): slowly,
  since under-anchoring loses the tails for good;
- otherwise, or when a watched metric has no evidence this round -> hold.

After each change the next decision records whether the watched metrics moved (the
dose-response): a change that moved nothing says so, in the reason and the record.

With no ``watch`` list the Dial watches every metric the monitor has a threshold for.
Every :class:`Decision` carries its reason and the evidence it read, plus the
Dial's parameters and state, so a loop stores it with ``Ledger.write_decision``
and a resumed loop rebuilds the same Dial with :meth:`Dial.resume`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from tailguard.errors import ConfigError, InputError, check_fraction
from tailguard.mix.policies import Anchored

#: Parameter names older runs stored (``floor``/``ceiling``), read when replaying history.
_OLD_PARAM_NAMES = {"floor": "minimum", "ceiling": "maximum"}

#: The attributes the Dial reads from each evidence item.
EVIDENCE_FIELDS = ("metric", "value", "baseline", "change", "threshold", "degraded")


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """One watched metric at a round against its baseline: what the monitor reports
    (``Monitor.evidence``) and the Dial turns on.

    ``baseline`` is the clean model (round 0, trained on the reservoir alone);
    ``relative_change`` is signed, ``(value - baseline) / |baseline|`` (``change`` is
    the same number); ``degraded`` is True when the value lies outside the clean
    model's noise band in the bad direction (:func:`tailguard.evidence.degraded`):
    collapse, not the gap to human data (``noise_floor``, ``capacity_gap``).
    The fields after the six the Dial reads say where the number comes from; a
    caller feeding the Dial by hand may leave them out.
    """

    run: str = ""
    sample: str = ""
    metric: str
    kind: str = ""
    higher_is_better: bool | None = None
    round: int = -1
    value: float
    baseline: float
    baseline_round: int = -1
    noise_floor: float | None = None
    relative_change: float
    threshold: float
    threshold_kind: str = ""
    degraded: bool
    #: the band around the clean model the verdict read (None: open on that side)
    low: float | None = None
    high: float | None = None
    #: the standard deviation of the clean model's draws (the band's noise)
    noise: float = 0.0
    #: drift from the clean model in half-widths of the band (above 1: degraded)
    drift: float = 0.0
    verdict: str = ""
    #: the clean model's relative shortfall against human data, when beyond its band:
    #: a capacity gap, which no human share closes and the dial never turns on
    capacity_gap: float | None = None

    @property
    def change(self) -> float:
        """The relative change (the name stored in the Dial's decisions)."""
        return self.relative_change

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        """From :meth:`to_dict` or a stored decision's item (which names it ``change``)."""
        data = dict(data)
        if "relative_change" not in data and "change" in data:
            data["relative_change"] = data["change"]
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Decision:
    """The Dial's choice for one round, with why and on what evidence."""

    round: int
    real_fraction: float
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Dial:
    """Decide each round's real fraction from evidence (see the module docstring)."""

    #: Defaults (the config and the lab read them here): the anchored policy's
    #: share to start from, the range the dial keeps to, its step and patience.
    START: float = Anchored.REAL_FRACTION
    MINIMUM: float = 0.15
    MAXIMUM: float = 0.9
    STEP: float = 0.05
    PATIENCE: int = 2
    #: The most steps one decision raises the share by (a drift of this many band
    #: half-widths past the band, or more).
    RAISE_STEPS: int = 3

    def __init__(
        self,
        *,
        start: float = START,
        minimum: float = MINIMUM,
        maximum: float = MAXIMUM,
        step: float = STEP,
        watch: Sequence[str] = (),
        patience: int = PATIENCE,
    ) -> None:
        start, minimum, maximum, step = (
            check_fraction(value, f"Dial {name}")
            for name, value in (
                ("start", start),
                ("minimum", minimum),
                ("maximum", maximum),
                ("step", step),
            )
        )
        if not minimum <= start <= maximum:
            raise ConfigError(
                f"Dial needs minimum <= start <= maximum, got {minimum} <= {start} <= {maximum}"
            )
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"Dial patience must be a positive integer, got {patience!r}")
        if isinstance(watch, str):
            watch = [watch]
        self.start, self.minimum, self.maximum = start, minimum, maximum
        self.step, self.patience = float(step), int(patience)
        self.watch = tuple(str(w) for w in watch)
        self.real_fraction = self.start
        self.steady_rounds = 0
        self.last_round: int | None = None
        #: The last change of the share, awaiting its response: round, from, to, and the
        #: watched metrics' values and noise when it was made.
        self.pending: dict[str, Any] | None = None

    # ------------------------------------------------------------------ state
    def params(self) -> dict[str, Any]:
        """The Dial's parameters, JSON-able (``Dial(**params)`` rebuilds it)."""
        return {
            "start": self.start,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "step": self.step,
            "watch": list(self.watch),
            "patience": self.patience,
        }

    @property
    def state(self) -> dict[str, Any]:
        """What the next decision depends on besides its evidence."""
        return {
            "real_fraction": self.real_fraction,
            "steady_rounds": self.steady_rounds,
            "last_round": self.last_round,
            "pending": self.pending,
        }

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, Any]) -> Dial:
        """Rebuild a Dial from :meth:`params` and :attr:`state` (old key names accepted)."""
        dial = cls(**_current_names(params))
        dial.real_fraction = float(state["real_fraction"])
        dial.steady_rounds = int(state["steady_rounds"])
        dial.last_round = None if state["last_round"] is None else int(state["last_round"])
        dial.pending = state.get("pending")
        return dial

    @classmethod
    def resume(cls, decisions: pa.Table | Iterable[dict[str, Any]], **params: Any) -> Dial:
        """Rebuild a Dial by replaying stored decisions (``Ledger.decisions(run=...)``).

        Each stored decision's evidence is fed back through a fresh Dial built
        from ``params`` (or, if none are given, the parameters stored with the
        first decision); every replayed fraction must match the stored one, so
        a resumed loop continues exactly as an uninterrupted one would.
        """
        rows = decisions.to_pylist() if isinstance(decisions, pa.Table) else list(decisions)
        if rows and len({r.get("run") for r in rows}) > 1:
            raise InputError("decisions of several runs given; pass Ledger.decisions(run=...)")
        rows.sort(key=lambda r: int(r["round"]))
        stored = [_evidence_dict(r.get("evidence")) for r in rows]
        if not params:
            params = next((e["dial"] for e in stored if "dial" in e), {})
        dial = cls(**_current_names(params))
        for row, evidence in zip(rows, stored, strict=True):
            metrics = [Evidence.from_dict(m) for m in evidence.get("metrics", [])]
            replayed = dial.decide(int(row["round"]), metrics)
            if not math.isclose(replayed.real_fraction, float(row["real_fraction"]), abs_tol=1e-9):
                raise ConfigError(
                    f"stored decision for round {row['round']} chose {row['real_fraction']} but "
                    f"this Dial ({dial.params()}) replays {replayed.real_fraction}: resume with "
                    "the parameters the run used"
                )
        return dial

    # ------------------------------------------------------------------ deciding
    def decide(self, round: int, evidence: Iterable[Evidence]) -> Decision:  # noqa: A002
        """The real fraction for round ``round`` given the previous round's evidence."""
        if self.last_round is not None and round <= self.last_round:
            raise ConfigError(
                f"the Dial already decided round {self.last_round}; round {round} is not after it"
            )
        items = list(evidence)
        for item in items:
            if not all(hasattr(item, name) for name in EVIDENCE_FIELDS):
                raise InputError(
                    f"evidence item {item!r} lacks metric/value/baseline/change/threshold/degraded"
                )
        watched = [e for e in items if not self.watch or e.metric in self.watch]
        missing = sorted(set(self.watch) - {e.metric for e in items})
        degraded = [e for e in watched if bool(e.degraded)]
        before = self.real_fraction
        response = self._response(watched)

        if degraded:
            self.steady_rounds = 0
            worst = max(float(getattr(e, "drift", 0.0) or 0.0) for e in degraded)
            steps = max(1, min(self.RAISE_STEPS, math.ceil(worst) - 1))
            self.real_fraction = _clip(before + steps * self.step, self.minimum, self.maximum)
            what = "; ".join(_describe(e) for e in degraded)
            verb = "raised" if self.real_fraction > before else "held at the maximum"
            reason = f"{verb} {before:.3g} -> {self.real_fraction:.3g}: {what}"
        elif missing or not watched:
            gap = ", ".join(missing) if missing else "any metric"
            reason = f"held at {before:.3g}: no evidence for {gap}"
        else:
            self.steady_rounds += 1
            names = ", ".join(sorted({e.metric for e in watched}))
            if self.steady_rounds >= self.patience:
                self.steady_rounds = 0
                self.real_fraction = _clip(before - self.step, self.minimum, self.maximum)
                verb = "lowered" if self.real_fraction < before else "held at the minimum"
                reason = (
                    f"{verb} {before:.3g} -> {self.real_fraction:.3g}: {names} held for "
                    f"{self.patience} round(s)"
                )
            else:
                reason = (
                    f"held at {before:.3g}: {names} held for {self.steady_rounds} of "
                    f"{self.patience} round(s)"
                )
        self.last_round = int(round)
        if response is not None:
            reason += f"; {response['summary']}"
        if self.real_fraction != before:
            self.pending = {
                "round": int(round),
                "from": before,
                "to": self.real_fraction,
                "values": {e.metric: float(e.value) for e in watched},
                "noise": {e.metric: _moved_by(e) for e in watched},
            }
        record = {
            "metrics": [_as_dict(e) for e in items],
            "watched": sorted({e.metric for e in watched}),
            "degraded": [e.metric for e in degraded],
            "response": response,
            "dial": self.params(),
            "state": self.state,
        }
        return Decision(
            round=int(round), real_fraction=self.real_fraction, reason=reason, evidence=record
        )

    def _response(self, watched: list[Any]) -> dict[str, Any] | None:
        """Whether the watched metrics moved since the last change of the share (the
        dose-response), read once, on the first evidence measured after the change."""
        change, self.pending = self.pending, None
        if change is None or not watched:
            return None
        moved: dict[str, Any] = {}
        for e in watched:
            if e.metric not in change["values"]:
                continue
            then, now = float(change["values"][e.metric]), float(e.value)
            delta = now - then
            moved[e.metric] = {
                "before": then,
                "after": now,
                "moved": abs(delta) > float(change["noise"].get(e.metric, 0.0)),
            }
        names = [m for m, r in moved.items() if r["moved"]]
        share = f"{change['from']:.3g} -> {change['to']:.3g} at round {change['round']}"
        summary = (
            f"after {share}, {', '.join(names)} moved"
            if names
            else f"after {share}, no watched metric moved beyond its noise"
        )
        return {"change": share, "metrics": moved, "moved": bool(names), "summary": summary}


def _moved_by(e: Any) -> float:
    """How far a metric must move to count as moved: two standard deviations of the clean
    model's draws (beyond the difference of two draws), else a third of its band."""
    noise = float(getattr(e, "noise", 0.0) or 0.0)
    if noise > 0:
        return 2 * noise
    low, high = getattr(e, "low", None), getattr(e, "high", None)
    edge = low if low is not None else high
    return abs(float(e.baseline) - float(edge)) / 3 if edge is not None else 0.0


def _current_names(params: dict[str, Any]) -> dict[str, Any]:
    """Stored Dial parameters with the names of older runs mapped to today's."""
    return {_OLD_PARAM_NAMES.get(k, k): v for k, v in params.items()}


def _clip(value: float, low: float, high: float) -> float:
    return round(min(max(value, low), high), 10)


#: Below this |baseline|, a change is said in absolute terms: +1,621% of 0.001 says nothing.
TINY_BASE = 0.05


def describe_change(value: float, baseline: float) -> str:
    """A change as people read it: relative (``-12.5%``), absolute when the base is tiny
    or the change is larger than the base itself."""
    if abs(baseline) < TINY_BASE or abs(value - baseline) > abs(baseline):
        return f"{value - baseline:+.3g} (absolute)"
    return f"{(value - baseline) / abs(baseline):+.1%}"


def _describe(e: Evidence) -> str:
    drift = float(getattr(e, "drift", 0.0) or 0.0)
    beyond = f", {drift:.1f}x its band" if drift > 1 else ""
    return (
        f"{e.metric} drifted from the clean model ({e.value:.4g} vs {e.baseline:.4g}, "
        f"{describe_change(e.value, e.baseline)}{beyond})"
    )


def _as_dict(e: Evidence) -> dict[str, Any]:
    """Everything the item says (all of an :class:`Evidence`), JSON-able: what was read."""
    full = e.to_dict() if isinstance(e, Evidence) else {}
    out = {
        **{k: (_json_float(v) if isinstance(v, float) else v) for k, v in full.items()},
        "metric": str(e.metric),
        "value": _json_float(e.value),
        "baseline": _json_float(e.baseline),
        "change": _json_float(e.change),
        "threshold": _json_float(e.threshold),
        "degraded": bool(e.degraded),
    }
    out.pop("relative_change", None)
    return out


def _json_float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _evidence_dict(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise InputError(f"stored decision evidence is not JSON: {exc}") from exc
