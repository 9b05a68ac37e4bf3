"""What the lab measures each round: the loop's monitor, with a preset per data kind.

The loop scores every round's sample against the reservoir's human holdout
through a :class:`tailguard.monitor.Monitor`, so a lab run's metric history is
the one a real run would have. Each data kind reads a preset of
:mod:`tailguard.metrics` by name and has one *primary* metric, the one the axes
(fidelity, coverage, recovery) read:

- ``text`` (n-gram on fortunes): ``default`` (``tail_recall`` is the primary);
- ``tokens`` (Zipf documents, categorical model): ``lab-tokens``
  (``rare_vocab_coverage`` is the primary);
- ``labels`` (digits): ``lab-labels`` (``label_tv``, the total variation between the
  sample's and the holdout's digit frequencies as the fixed classifier reads them:
  ``tail_recall`` saturates at 1.0 on ten balanced digits and hides a drift);
- ``vectors`` (Gaussian, mixture, KDE, regression): ``lab-vectors``
  (``vector_variance_ratio``, two-sided with its ideal at 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from tailguard.evidence import Band

#: The metrics preset of each data kind (a name in ``tailguard.metrics.PRESETS``).
PRESETS: dict[str, str] = {
    "text": "default",
    "tokens": "lab-tokens",
    "labels": "lab-labels",
    "vectors": "lab-vectors",
}
#: The primary metric of each data kind (the axes read it).
PRIMARY = {
    "text": "tail_recall",
    "tokens": "rare_vocab_coverage",
    "labels": "label_tv",
    "vectors": "vector_variance_ratio",
}
#: The tail metric whose last-generation value is the coverage axis. For text it is the
#: holdout's rare vocabulary: at equal volume the holdout is a tenth of a reservoir of
#: about a thousand quotations, whose few tail categories every model still hits
#: (``tail_recall`` stays at 1.0 while pure synthetic loses four fifths of the rare words).
COVERAGE = {
    "text": "rare_vocab_coverage",
    "tokens": "rare_vocab_coverage",
    "labels": "tail_recall",
    "vectors": "vector_tail_width",
}


def monitor_for(kind: str, *, run: str, seed: int = 0) -> Any:
    """A monitor with the data kind's preset (the loop sets its reference and history)."""
    from tailguard.monitor import Monitor

    return Monitor(preset=PRESETS[kind], run=run, seed=seed)


def preset_for_model(model: str) -> str:
    """The metrics preset of a built-in model's data kind (a project's default evaluation)."""
    from tailguard.lab.data import resolve

    return PRESETS[resolve(model, None).kind]


# -- the evidence: every verdict of the lab against each seed's clean model -------------------


def tail_metrics(kind: str) -> tuple[str, ...]:
    """The metrics whose tails the lab judges (held, lost, recovered): primary and coverage."""
    return tuple(dict.fromkeys((PRIMARY[kind], COVERAGE[kind])))


def run_name(strategy: str, seed: int) -> str:
    """The ledger run of one lab job (its metric history is stored under this name)."""
    return f"{strategy}/seed{seed}"


def with_coverage(m: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The metric rows plus, for vectors, the coverage metric: the narrower 1% tail width.

    Derived per sample too (``model#1`` ...), so the clean model's draws have it.
    """
    if kind != "vectors" or COVERAGE[kind] in set(m["metric"]):
        return m
    tails = m[m.metric.isin(["vector_tail_lower", "vector_tail_upper"])]
    keys = [c for c in ("strategy", "seed", "run", "round", "sample") if c in m.columns]
    tw = tails.groupby(keys, as_index=False).agg(
        value=("value", "min"), higher_is_better=("higher_is_better", "first")
    )
    tw["metric"] = COVERAGE[kind]
    return pd.concat([m, tw], ignore_index=True)


def clean_bands(
    history: pa.Table | pd.DataFrame, kind: str, metrics: Iterable[str] | None = None
) -> dict[str, Band]:
    """Each metric's band around one run's clean model, as :mod:`tailguard.evidence` builds it.

    ``history`` is one run's ledger metric rows (``sample`` included): the clean model is
    round 0's ``model`` sample with its draws ``model#1...``, the noise the human draws'
    spread when it was measured once, and the band never narrower than the data kind's
    preset threshold (a metric without one: the clean model's noise alone). The same
    band the monitor's alerts and the dial read (``Monitor.bands``).
    """
    from tailguard.evidence import band
    from tailguard.metrics import get_preset
    from tailguard.monitor import DRAW_MARK, NOISE_FLOOR_SAMPLE

    df = with_coverage(_frame(history), kind)
    thresholds = get_preset(PRESETS[kind]).thresholds
    model = df[df["sample"] == "model"]
    first = int(model["round"].min())
    at_first = df[df["round"] == first]
    clean = at_first[(at_first["sample"] == "model") | at_first["sample"].str.startswith("model#")]
    human = df[df["sample"].str.startswith(NOISE_FLOOR_SAMPLE + DRAW_MARK)]
    out = {}
    for metric in metrics if metrics is not None else tail_metrics(kind):
        values = clean[clean["metric"] == metric]["value"].to_numpy(np.float64)
        hsd = human[human["metric"] == metric]["value"].std(ddof=1) if len(human) else None
        out[metric] = band(
            values,
            higher_is_better=_direction(model[model["metric"] == metric]["higher_is_better"]),
            threshold=thresholds.get(metric),
            noise=None if hsd is None or not np.isfinite(hsd) else float(hsd),
            ideal=_ideal(metric),
        )
    return out


def model_values(history: pa.Table | pd.DataFrame, kind: str, metric: str) -> pd.Series:
    """One run's ``model`` sample of ``metric`` by round (the curve every verdict reads)."""
    df = with_coverage(_frame(history), kind)
    rows = df[(df["sample"] == "model") & (df["metric"] == metric)]
    return rows.set_index("round")["value"].sort_index().astype(np.float64)


def _per_seed(
    ledger_metrics: pa.Table | pd.DataFrame,
    strategy: str,
    kind: str,
    metrics: Iterable[str] | None,
    measure: Callable[[pd.Series, Band], float],
) -> pd.DataFrame:
    """``measure(curve, band)`` per seed (index) and metric (columns) of ``strategy``'s runs,
    each against that seed's own clean model."""
    df = _frame(ledger_metrics)
    rows = {}
    for run, history in df.groupby("run", sort=True):
        prefix, _, seed = str(run).rpartition("/seed")
        if prefix != strategy:
            continue
        bands = clean_bands(history, kind, metrics)
        rows[int(seed)] = {m: measure(model_values(history, kind, m), b) for m, b in bands.items()}
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def seed_drifts(
    ledger_metrics: pa.Table | pd.DataFrame,
    strategy: str,
    kind: str,
    at_round: int,
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Per seed (index) and metric (columns; the tail metrics by default): the drift at
    ``at_round`` from that seed's clean model, in half-widths of its band (above 1: degraded)."""
    from tailguard.evidence import drift

    return _per_seed(
        ledger_metrics, strategy, kind, metrics,
        lambda curve, b: drift(float(curve.get(at_round, np.nan)), b),
    )  # fmt: skip


def seed_ratios(
    ledger_metrics: pa.Table | pd.DataFrame,
    strategy: str,
    kind: str,
    at_round: int,
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Per seed and metric: the value at ``at_round`` over that seed's clean model (its
    band's center), the "x0.95 of the clean model" every table and the advisor quote."""
    return _per_seed(
        ledger_metrics, strategy, kind, metrics,
        lambda curve, b: float(curve.get(at_round, np.nan)) / (b.center or 1e-12),
    )  # fmt: skip


def held(drifts: pd.DataFrame) -> bool:
    """A configuration held iff every tail metric held across seeds (median drift <= 1)."""
    from tailguard.evidence import held_across

    return bool(len(drifts)) and all(held_across(drifts[m].to_numpy()) for m in drifts.columns)


def first_round_back(series: dict[str, Sequence[float]], bands: dict[str, Band]) -> int | None:
    """Rounds (1-based) until no tail metric is degraded; None if never. For one metric this
    is :func:`tailguard.evidence.recovery_round`."""
    from tailguard.evidence import degraded, recovery_round

    if len(series) == 1:
        ((m, values),) = series.items()
        return recovery_round(values, bands[m])
    n = min(len(v) for v in series.values())
    for i in range(n):
        if not any(degraded(float(series[m][i]), bands[m]) for m in series):
            return i + 1
    return None


def _frame(history: pa.Table | pd.DataFrame) -> pd.DataFrame:
    return history.to_pandas() if isinstance(history, pa.Table) else history


def _direction(values: pd.Series) -> bool | None:
    """A stored direction: True, False, or None (two-sided; null in the history)."""
    v = values.dropna()
    return None if v.empty else bool(v.iloc[-1])


def _ideal(metric: str) -> float | None:
    from tailguard.metrics import REGISTRY

    return REGISTRY[metric].ideal if metric in REGISTRY else None
