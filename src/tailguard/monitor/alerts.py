"""The alert rules: which evidence raises which alert (threshold, variance shrinkage,
early warning), and alerts as rows for reports and files."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from tailguard.metrics import Preset
from tailguard.mix.dial import Evidence, describe_change


@dataclass(frozen=True)
class Alert:
    """A rule that fired at one round of a sample."""

    run: str
    sample: str
    round: int
    rule: str  # "threshold" | "variance_shrinkage" | "early_warning"
    metrics: tuple[str, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": list(self.metrics)}


def raise_alerts(evidence: list[Evidence], preset: Preset) -> list[Alert]:
    """The alerts a set of evidence raises, per sample (at the evidence's round): exactly
    the watched metrics outside their band (the clean model itself raises none)."""
    alerts: list[Alert] = []
    by_sample: dict[str, list[Evidence]] = {}
    for e in evidence:
        by_sample.setdefault(e.sample, []).append(e)
    shrink = preset.shrinkage[0] if preset.shrinkage else None
    for smp, evs in by_sample.items():
        rnd, run_name = evs[0].round, evs[0].run
        recall = preset.shrinkage[2] if preset.shrinkage else None
        falling = any(e.metric == recall and e.value < e.baseline for e in evs)
        for e in evs:
            if not e.degraded:
                continue
            if e.metric == shrink and falling:
                alerts.append(Alert(
                    run_name, smp, rnd, "variance_shrinkage", (e.metric, recall),
                    f"{e.metric} = {e.value:.3g} > {e.threshold:g} while {recall} "
                    "falls: the sample is shrinking onto dense modes",
                ))  # fmt: skip
            else:
                alerts.append(Alert(
                    run_name, smp, rnd, "threshold", (e.metric,),
                    f"{e.metric} drifted {describe_change(e.value, e.baseline)} from the clean "
                    f"model (round {e.baseline_round}: {e.baseline:.4g} -> {e.value:.4g}), "
                    f"outside its band {_band_text(e)}",
                ))  # fmt: skip
        tails = [e.metric for e in evs if e.degraded and e.kind in ("tail", "diversity")]
        means = [e for e in evs if e.kind == "mean"]
        if tails and not any(e.degraded for e in means):
            alerts.append(Alert(
                run_name, smp, rnd, "early_warning", tuple(tails),
                f"tail/diversity metrics drifted from the clean model ({', '.join(tails)}) "
                "while the mean-level metrics have not: early sign of collapse",
            ))  # fmt: skip
    return alerts


def _band_text(e: Evidence) -> str:
    low = "-inf" if e.low is None else f"{e.low:.4g}"
    high = "inf" if e.high is None else f"{e.high:.4g}"
    return f"[{low}, {high}]"


def alerts_table(alerts: list[Alert]) -> pa.Table:
    """Alerts as rows (run, sample, round, rule, metrics, message), for reports and files."""
    return pa.table(
        {
            "run": pa.array([a.run for a in alerts], pa.string()),
            "sample": pa.array([a.sample for a in alerts], pa.string()),
            "round": pa.array([a.round for a in alerts], pa.int32()),
            "rule": pa.array([a.rule for a in alerts], pa.string()),
            "metrics": pa.array([", ".join(a.metrics) for a in alerts], pa.string()),
            "message": pa.array([a.message for a in alerts], pa.string()),
        }
    )
