"""A metric history judged: each watched metric's band around a sample's clean model,
the human baseline, and the evidence (value, band, verdict, capacity gap) of a sample's
latest round. The arithmetic of one band is :mod:`tailguard.evidence`'s; this module
reads the bands' inputs from the history frame.
"""

from __future__ import annotations

import math
from typing import Any

from tailguard.evidence import Band, band, capacity_gap, drift, verdict
from tailguard.metrics import REGISTRY, Preset
from tailguard.metrics.embedders import HASHING_MEANINGLESS
from tailguard.mix.dial import Evidence
from tailguard.monitor.history import DRAW_MARK, NOISE_FLOOR_SAMPLE, _as_direction

_TINY = 1e-12


def noise_floor(df: Any) -> dict[str, float]:
    """The human baseline of a history frame: each metric's latest noise-floor value."""
    rows = df[df["sample"] == NOISE_FLOOR_SAMPLE]
    if rows.empty:
        return {}
    return rows.sort_values("round").groupby("metric")["value"].last().to_dict()


def sample_bands(df: Any, smp: str, preset: Preset, embedder_name: str) -> dict[str, Band]:
    """Each watched metric's band around the clean model of sample ``smp``: its first
    round with that round's extra draws, the human draws' spread as the fallback noise.
    Metrics meaningless under the hashing embedder get none."""
    sdf = df[df["sample"] == smp]
    if sdf.empty:
        return {}
    first = int(sdf["round"].min())
    at_first = df[df["round"] == first]
    clean = at_first[
        (at_first["sample"] == smp) | at_first["sample"].str.startswith(smp + DRAW_MARK)
    ]
    human = df[df["sample"].str.startswith(NOISE_FLOOR_SAMPLE + DRAW_MARK)]
    human_sd = human.groupby("metric")["value"].std(ddof=1).to_dict() if len(human) else {}
    values = clean.groupby("metric")["value"].apply(list).to_dict()
    out = {}
    for metric, thr in preset.thresholds.items():
        if metric not in values:
            continue
        if embedder_name == "hashing" and metric in HASHING_MEANINGLESS:
            continue  # meaningless numbers raise no alert and turn no dial
        rows = sdf[sdf["metric"] == metric]
        hib = _as_direction(rows["higher_is_better"].iloc[-1])
        sd = human_sd.get(metric)
        out[metric] = band(
            values[metric],
            higher_is_better=hib,
            threshold=thr,
            noise=None if sd is None or not math.isfinite(sd) else float(sd),
            ideal=_declared_ideal(metric),
        )
    return out


def sample_evidence(
    run: str,
    smp: str,
    sdf: Any,
    floor: dict[str, float],
    bands: dict[str, Band],
    preset: Preset,
) -> list[Evidence]:
    """The evidence of sample ``smp`` at its latest round in ``sdf``: per watched metric,
    its value against the clean model's band, with the verdict."""
    latest, first = int(sdf["round"].max()), int(sdf["round"].min())
    now = sdf[sdf["round"] == latest].set_index("metric")
    out = []
    for metric, b in bands.items():
        if metric not in now.index:
            continue
        thr = preset.thresholds[metric]
        value = float(now.at[metric, "value"])
        # the clean model is the reference: it never degrades from itself
        said = "held" if latest == first else verdict(value, b)
        human = floor.get(metric)
        gap = None if human is None else capacity_gap(metric, b, float(human))
        out.append(
            Evidence(
                run=run,
                sample=smp,
                metric=metric,
                kind=REGISTRY[metric].kind if metric in REGISTRY else "mean",
                higher_is_better=b.higher_is_better,
                round=latest,
                value=value,
                baseline=b.center,
                baseline_round=first,
                noise_floor=human,
                relative_change=(value - b.center) / max(abs(b.center), _TINY),
                threshold=thr.value,
                threshold_kind=thr.kind,
                degraded=said == "degraded",
                low=_finite_or_none(b.low),
                high=_finite_or_none(b.high),
                noise=b.noise,
                drift=0.0 if latest == first else drift(value, b),
                verdict=said,
                capacity_gap=None if gap is None else gap.gap,
            )
        )
    return out


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _declared_ideal(metric: str) -> float | None:
    return REGISTRY[metric].ideal if metric in REGISTRY else None
