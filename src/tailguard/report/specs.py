"""What each chart draws, decided apart from drawing it: the metrics shown and their
order, the seed drawn per strategy, its points, references and band, the alerted
points, the y range and the dial's series. The charts draw exactly this, and the
metric charts write it on the figure, so a reader can check the picture against the
alerts.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tailguard.metrics import REGISTRY
from tailguard.report.data import ReportData

#: The order of the watched metrics on the page: the tails and diversity collapse first.
WATCHED = (
    "tail_recall",
    "tail_mass_ratio",
    "distinct_2",
    "label_js",
    "vocab_coverage",
    "rare_vocab_coverage",
    "label_entropy",
    "ngram_entropy_2",
    "vector_tail_lower",
    "vector_tail_upper",
    "vector_variance_ratio",
    "vector_w1",
    "prdc_recall",
    "prdc_coverage",
    "vendi",
)
#: After the watched and alerting metrics, the others by what they watch (all are drawn).
KIND_ORDER = ("tail", "diversity", "fidelity", "mean")


def direction(metric: str, stored: Any = None) -> str:
    """Which way is better, in words, from the metric registry (else the stored flag)."""
    known = REGISTRY.get(metric)
    hib = known.higher_is_better if known is not None else stored
    if hib is None or (isinstance(hib, float) and hib != hib):
        ideal = known.ideal if known is not None else None
        where = "the baseline" if ideal is None else f"{ideal:g}"
        return f"two-sided: closer to {where} is better"
    return "higher is better" if bool(hib) else "lower is better"


def definition(metric: str) -> str:
    """The metric's one-line definition from the registry."""
    known = REGISTRY.get(metric)
    return known.description if known is not None and known.description else metric


def shown_metrics(names: Any, first: Any = ()) -> list[str]:
    """Every metric, ``first`` (the watched and alerting ones) leading in :data:`WATCHED`
    order, then the others by kind: tails, diversity, fidelity, mean. None is left out."""
    names, first = set(names), set(first)

    def key(name: str) -> tuple[int, int, int, str]:
        watched = WATCHED.index(name) if name in WATCHED else len(WATCHED)
        kind = REGISTRY[name].kind if name in REGISTRY else "mean"
        return int(name not in first), watched, KIND_ORDER.index(kind), name

    return sorted(names, key=key)


def flagged_metrics(rule: str, metrics: str) -> list[str]:
    """The metrics an alert says are outside their band: all it names, except the
    variance-shrinkage rule, whose second metric (recall) is named for context."""
    names = [m.strip() for m in str(metrics).split(",") if m.strip()]
    return names[:1] if rule == "variance_shrinkage" else names


def shown_seeds(data: ReportData) -> dict[str, int]:
    """The seed drawn per strategy (its lowest): a lab's seeds each have their own clean
    model, band and alerts, so one seed's points are drawn with its own band."""
    m = data.frame("metrics")
    return (
        {} if m.empty else {str(s): int(v) for s, v in m.groupby("strategy")["seed"].min().items()}
    )


def _model_alerts(data: ReportData) -> pd.DataFrame:
    a = data.frame("alerts")
    if not a.empty and "sample" in a:
        a = a[a["sample"] == "model"]
    return a


@dataclass
class Point:
    """One drawn point of a metric chart: a round of the seed drawn for a strategy."""

    strategy: str
    seed: int
    round: int
    value: float
    #: outside the band the monitor judges by (never at the clean round, the reference)
    outside: bool
    #: the monitor raised an alert naming this metric at this round of this lineage
    alerted: bool


@dataclass
class MetricChart:
    """What one metric chart draws (the renderer draws exactly this and writes it on the
    figure as ``data-`` attributes, so a reader can check the picture against the alerts).

    ``references``: per strategy, the seed drawn, its clean model (``clean``, at
    ``clean_round``), the human baseline (``human``, None when not measured) and the
    band's edges (``low`` / ``high``; None: no band, or an open side)."""

    metric: str
    watched: bool
    higher_is_better: bool | None
    references: dict[str, dict[str, Any]]
    points: list[Point]
    #: per strategy, (rounds, lowest, highest) over every seed (a lab's spread)
    spread: dict[str, tuple[list[int], list[float], list[float]]]

    @property
    def alerting(self) -> bool:
        return any(p.alerted for p in self.points)

    def attrs(self) -> str:
        bands = {s: {k: v for k, v in r.items()} for s, r in self.references.items()}
        points = [[p.strategy, p.seed, p.round, p.value, p.outside, p.alerted] for p in self.points]
        return (
            f' data-metric="{html.escape(self.metric)}" data-watched="{int(self.watched)}"'
            f' data-bands="{html.escape(json.dumps(bands))}"'
            f' data-points="{html.escape(json.dumps(points))}"'
        )


def _outside(value: float, ref: dict[str, Any], rnd: int) -> bool:
    if rnd == ref["clean_round"]:
        return False
    low, high = ref.get("low"), ref.get("high")
    return (low is not None and value < low) or (high is not None and value > high)


def metric_specs(data: ReportData) -> list[MetricChart]:
    """The metric charts: every watched or alerting metric first, then every other one.

    Per strategy, the seed drawn (:func:`shown_seeds`): its points, its clean model and
    human baseline, and (watched metrics only: nothing alerts on the others) the band of
    its clean model from :meth:`Monitor.bands`; a point is alerted when the monitor's
    alerts of that lineage name the metric at that round."""
    m = data.frame("metrics")
    if m.empty:
        return []
    if "sample" in m:
        m = m[m["sample"] == "model"]
    seeds = shown_seeds(data)
    refs = data.frame("references")
    alerts = _model_alerts(data)
    alerted: set[tuple[str, int, int, str]] = set()
    for a in alerts.to_dict("records"):
        for metric in flagged_metrics(a["rule"], a["metrics"]):
            alerted.add((str(a["strategy"]), int(a["seed"]), int(a["round"]), metric))
    ref_of: dict[tuple[str, str], dict[str, Any]] = {}
    for r in refs.to_dict("records"):
        if seeds.get(str(r["strategy"])) == int(r["seed"]):
            ref_of[(str(r["metric"]), str(r["strategy"]))] = {
                "seed": int(r["seed"]), "clean_round": int(r["clean_round"]),
                "clean": float(r["clean"]), "human": _num(r["human"]),
                "low": _num(r["low"]), "high": _num(r["high"]),
                "watched": bool(r["watched"]),
            }  # fmt: skip
    watched = {metric for (metric, _), r in ref_of.items() if r["watched"]}
    first = watched | {metric for *_, metric in alerted}
    out = []
    for metric in shown_metrics(m["metric"].unique(), first):
        sub = m[m["metric"] == metric]
        hib = sub["higher_is_better"].iloc[0] if "higher_is_better" in sub else None
        references, points, spread = {}, [], {}
        for s in sorted(sub["strategy"].unique()):
            seed = seeds[str(s)]
            mine = sub[(sub["strategy"] == s) & (sub["seed"] == seed)].sort_values("round")
            if mine.empty:
                continue
            first_round = int(mine["round"].min())
            ref = ref_of.get((metric, str(s))) or {
                "seed": seed, "clean_round": first_round,
                "clean": float(mine[mine["round"] == first_round]["value"].mean()),
                "human": None, "low": None, "high": None, "watched": False,
            }  # fmt: skip
            if not ref.pop("watched"):
                ref["low"] = ref["high"] = None  # no band: nothing alerts on this metric
            references[str(s)] = ref
            for rnd, value in zip(mine["round"], mine["value"], strict=True):
                key = (str(s), seed, int(rnd), metric)
                points.append(
                    Point(str(s), seed, int(rnd), float(value),
                          _outside(float(value), ref, int(rnd)), key in alerted)
                )  # fmt: skip
            q = sub[sub["strategy"] == s].groupby("round")["value"].agg(["min", "max"])
            if sub[sub["strategy"] == s]["seed"].nunique() > 1:
                spread[str(s)] = ([int(r) for r in q.index], q["min"].tolist(), q["max"].tolist())
        out.append(
            MetricChart(
                metric,
                metric in watched,
                _higher_is_better(metric, hib),
                references,
                points,
                spread,
            )
        )
    return out


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


def _y_band(spec: MetricChart) -> tuple[float, float, float]:
    """``(center, low, high)`` for :func:`y_range`: the band's bad edges in view (an open
    side, or no band, collapses to the center)."""
    refs = list(spec.references.values())
    center = float(np.mean([r["clean"] for r in refs])) if refs else 0.0
    lows = [r["low"] for r in refs if r["low"] is not None]
    highs = [r["high"] for r in refs if r["high"] is not None]
    return center, min(lows, default=center), max(highs, default=center)


def _higher_is_better(metric: str, stored: Any) -> bool | None:
    known = REGISTRY.get(metric)
    hib = known.higher_is_better if known is not None else stored
    if hib is None or (isinstance(hib, float) and hib != hib):
        return None
    return bool(hib)


#: Margin around what a metric chart must show, as a share of its span; past the band's
#: alert edge a wider one, so the clear area beyond the band reads at a glance.
Y_MARGIN = 0.08
ALERT_MARGIN = 0.25


def y_range(
    values: Any, band: tuple[float, float, float], higher_is_better: bool | None
) -> tuple[float, float]:
    """A metric chart's y range: the curve, the baseline and the band's edge on the bad
    side (where alerts start) always in view, with room past that edge, so the band
    never fills the chart and the curve is not squashed by the band's harmless side.

    The band's edge on the good side is shown only as far as the curve reaches (a
    two-sided metric has two bad sides, both shown).
    """
    baseline, lo, hi = band
    vals = [float(v) for v in values]
    low_bad, high_bad = higher_is_better is not False, higher_is_better is not True
    shown = [*vals, baseline, *([lo] if low_bad else []), *([hi] if high_bad else [])]
    bottom, top = min(shown), max(shown)
    span = top - bottom
    if span < 1e-12:  # flat (or a denormal spread, whose margins would round to nothing)
        span = max(abs(baseline), 1e-9) * 0.1
    # room past the curve, and always a clear strip past a bad edge (even when a point
    # sits just beyond it), so the band never fills the chart
    bottom, top = bottom - Y_MARGIN * span, top + Y_MARGIN * span
    if low_bad:
        bottom = min(bottom, lo - ALERT_MARGIN * span)
    if high_bad:
        top = max(top, hi + ALERT_MARGIN * span)
    if min(vals + [lo]) >= 0:
        bottom = max(bottom, -Y_MARGIN * span)  # hardly below zero for a count or a share
    return bottom, top


def dial_series(data: ReportData) -> dict[str, dict[str, dict[int, float]]]:
    """Per strategy, the share the dial ``asked`` (its decision) and the share each round
    ``realised`` (the audit's human share of the training slots), by round; medians over
    seeds. They differ when too few synthetic examples passed the gate to fill the rest."""
    d, mix = data.frame("decisions"), data.frame("mix")
    out: dict[str, dict[str, dict[int, float]]] = {}
    if not d.empty:
        for s, sub in d.groupby("strategy"):
            asked = sub.groupby("round")["real_fraction"].median()
            out.setdefault(str(s), {})["asked"] = {int(r): float(v) for r, v in asked.items()}
    if not mix.empty and out:
        if "human_share" not in mix:  # tables from before the audit's share was kept
            mix = mix.assign(human_share=mix["human"] / (mix["human"] + mix["synthetic"]))
        for s, sub in mix[mix["strategy"].isin(list(out))].groupby("strategy"):
            got = sub.groupby("round")["human_share"].median()
            out[str(s)]["realised"] = {int(r): float(v) for r, v in got.items()}
    return out


def _seeded(data: ReportData) -> bool:
    d = data.frame("decisions")
    return not d.empty and "seed" in d and d["seed"].nunique() > 1
