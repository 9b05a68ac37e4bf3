"""A metric history judged: each watched metric's band around a sample's clean model,
the human baseline, and the evidence (value, band, verdict, capacity gap) of a sample's
latest round. The arithmetic of one band is :mod:`tailguard.evidence`'s; this module
reads the bands' inputs from the history's numpy columns (:class:`Rows`).
"""

from __future__ import annotations

import math

import numpy as np

from tailguard.evidence import Band, band, capacity_gap, drift, verdict
from tailguard.metrics import REGISTRY, Preset
from tailguard.metrics.embedders import HASHING_MEANINGLESS
from tailguard.mix.dial import Evidence
from tailguard.monitor.history import DRAW_MARK, NOISE_FLOOR_SAMPLE, Rows, _as_direction

_TINY = 1e-12


def noise_floor(df: Rows) -> dict[str, float]:
    """The human baseline of a history: each metric's latest noise-floor value."""
    rows = df.where(df.sample == NOISE_FLOOR_SAMPLE).by_round()
    return dict(zip(rows.metric.tolist(), rows.value.tolist(), strict=True))  # latest wins


def sample_bands(df: Rows, smp: str, preset: Preset, embedder_name: str) -> dict[str, Band]:
    """Each watched metric's band around the clean model of sample ``smp``: its first
    round with that round's extra draws, the human draws' spread as the fallback noise.
    Metrics meaningless under the hashing embedder get none."""
    sdf = df.where(df.sample == smp)
    if not len(sdf):
        return {}
    first = int(sdf.round.min())
    clean = df.where((df.round == first) & ((df.sample == smp) | df.starts(smp + DRAW_MARK)))
    human = df.where(df.starts(NOISE_FLOOR_SAMPLE + DRAW_MARK)).grouped()
    human_sd = {m: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
                for m, v in human.items()}  # fmt: skip
    values = clean.grouped()
    out = {}
    for metric, thr in preset.thresholds.items():
        if metric not in values:
            continue
        if embedder_name == "hashing" and metric in HASHING_MEANINGLESS:
            continue  # meaningless numbers raise no alert and turn no dial
        hib = _as_direction(sdf.hib[sdf.metric == metric][-1])
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
    sdf: Rows,
    floor: dict[str, float],
    bands: dict[str, Band],
    preset: Preset,
) -> list[Evidence]:
    """The evidence of sample ``smp`` at its latest round in ``sdf``: per watched metric,
    its value against the clean model's band, with the verdict."""
    latest, first = int(sdf.round.max()), int(sdf.round.min())
    at = sdf.round == latest
    now = dict(zip(sdf.metric[at].tolist(), sdf.value[at].tolist(), strict=True))
    out = []
    for metric, b in bands.items():
        if metric not in now:
            continue
        thr = preset.thresholds[metric]
        value = float(now[metric])
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
