"""What the report shows, as tidy tables: read from a project's ledger or a lab result.

One row per strategy, seed, round and measurement, so the same page serves a lab
comparison (many strategies and seeds) and a real project's ledger (one lineage:
strategy = run name, seed 0). The references are read from the monitor that raises
the alerts, so the band drawn is the band alerted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.lineage import lineage_monitor, lineage_tables
from tailguard.monitor import NOISE_FLOOR_SAMPLE
from tailguard.palette import strategy_colors


@dataclass
class ReportData:
    """Everything the report shows, as tidy tables (any may be empty).

    - ``metrics``: strategy, seed, round, metric, value, higher_is_better (the model's)
    - ``floor``: strategy, seed, metric, value: the noise floor (human samples of the
      rounds' size from the reservoir's training split, measured against the holdout)
    - ``mix``: strategy, seed, round, human, synthetic, by_generation (JSON)
    - ``gate``: strategy, seed, round, verifier, records, passed
    - ``reasons``: strategy, verifier, code, count
    - ``decisions``: strategy, seed, round, real_fraction, reason, evidence
    - ``alerts``: strategy, seed, round, rule, metrics, message (every round's)
    - ``references``: strategy, seed, metric, clean_round, clean, human, watched, low,
      high: per lineage, the clean model's value (round 0), the human baseline and, for
      a watched metric, the edges of the band the monitor judges it by (null: open side)
    - ``capacity``: strategy, seed, metric, clean, human, gap, closes_it
    - ``gaps``: round, label, gap, filled (``fill_gaps`` manifests)
    - ``quarantined``: origin, generation, id, round, code, detail, score
    - ``rollbacks``: to_round, rounds, quarantined, reason, rolled_at, rolled_by
    - ``judges``: round, verifier, records, passed, mean_score; ``judge_reasons``:
      verifier, code, reason, count
    - ``audits``: each verifier's latest audit on a labelled sample (``Ledger.verifier_audits``)
    - ``axes``: one row per strategy, one column per axis
    - ``recommendation``: lines of text, the same the CLI prints
    """

    title: str = "tailguard report"
    metrics: pa.Table | None = None
    floor: pa.Table | None = None
    mix: pa.Table | None = None
    gate: pa.Table | None = None
    reasons: pa.Table | None = None
    decisions: pa.Table | None = None
    alerts: pa.Table | None = None
    references: pa.Table | None = None
    capacity: pa.Table | None = None
    gaps: pa.Table | None = None
    quarantined: pa.Table | None = None
    rollbacks: pa.Table | None = None
    judges: pa.Table | None = None
    judge_reasons: pa.Table | None = None
    audits: pa.Table | None = None
    axes: pa.Table | None = None
    recommendation: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def frame(self, name: str) -> pd.DataFrame:
        table = getattr(self, name)
        return pd.DataFrame() if table is None else table.to_pandas()

    def colors(self) -> dict[str, str]:
        """Each strategy's colour: the palette over every strategy the report names."""
        names: set[str] = set()
        for name in ("metrics", "mix", "gate", "decisions", "alerts", "axes"):
            table = getattr(self, name)
            if table is not None and "strategy" in table.column_names:
                names |= set(table["strategy"].to_pylist())
        return strategy_colors(names)


def from_ledger(ledger: Any, *, run: str = "main", title: str | None = None) -> ReportData:
    """A project's own lineage, read from its ledger."""
    tables = lineage_tables(ledger, run)
    tag = {"strategy": run, "seed": 0}
    history = tables.pop("metrics")
    is_floor = pc.equal(history["sample"], NOISE_FLOOR_SAMPLE)
    refs = reference_tables(ledger.metrics(run), run)
    return ReportData(
        title=title or f"tailguard report: {run}",
        metrics=_tag(history.filter(pc.invert(is_floor)), tag),
        floor=_tag(history.filter(is_floor), tag),
        audits=ledger.verifier_audits(latest=True),
        **{name: _tag(t, tag) for name, t in {**tables, **refs}.items()},
    )


def from_lab(result: Any, *, title: str | None = None) -> ReportData:
    """A lab comparison: every strategy and seed, plus the five axes.

    Each strategy x seed is its own lineage with its own clean model (its round 0),
    band and alerts (``ledger_metrics``, run ``<strategy>/seed<k>``)."""
    cfg = result.config
    refs: dict[str, list[pa.Table]] = {"references": [], "capacity": []}
    history = getattr(result, "ledger_metrics", None)
    for run in [] if history is None else sorted(set(history["run"].to_pylist())):
        strategy, _, seed = run.rpartition("/seed")
        rows = history.filter(pc.equal(history["run"], run))
        for name, t in reference_tables(rows, run).items():
            refs[name].append(_tag(t, {"strategy": strategy, "seed": int(seed)}))
    return ReportData(
        title=title
        or f"tailguard lab: {cfg.model} on {cfg.dataset.name}, {cfg.generations} generations, "
        f"{cfg.seeds} seeds",
        metrics=result.metrics,
        floor=result.floor,
        mix=getattr(result, "mix", None),
        gate=getattr(result, "gate", None),
        reasons=getattr(result, "reasons", None),
        decisions=getattr(result, "decisions", None),
        alerts=getattr(result, "alerts", None),
        **{name: pa.concat_tables(ts) if ts else None for name, ts in refs.items()},
        axes=result.axes,
        notes=[
            f"Strategies: {', '.join(cfg.strategies)}; anchored strategies keep "
            f"{cfg.real_fraction:.0%} human examples in every batch. Each strategy and seed "
            "has its own clean model (its round 0), band and alerts: the metric charts draw, "
            "per strategy, its lowest seed (points, band, alerts ringed in red) with the "
            "other seeds' range shaded, and the alert timeline lists that seed's alerts with "
            f"how many of the {cfg.seeds} seeds raised each; the mix charts show that seed "
            "too; the axes table is over every seed."
        ],
    )


def reference_tables(history: pa.Table, run: str) -> dict[str, pa.Table]:
    """Per metric of one lineage: its clean model (round 0), human baseline and, when
    watched, the band the monitor judges it by; and the capacity gaps.

    Read from the same monitor as the alerts (:func:`tailguard.lineage.lineage_monitor`),
    so the band drawn is the band alerted on."""
    schema = pa.schema(
        [("metric", pa.string()), ("clean_round", pa.int32()), ("clean", pa.float64()),
         ("human", pa.float64()), ("watched", pa.bool_()), ("low", pa.float64()),
         ("high", pa.float64())]
    )  # fmt: skip
    gap_schema = pa.schema(
        [("metric", pa.string()), ("clean", pa.float64()), ("human", pa.float64()),
         ("gap", pa.float64()), ("closes_it", pa.string())]
    )  # fmt: skip
    df = history.to_pandas()
    df = df[df["run"] == run]
    monitor = lineage_monitor(history)
    first = monitor.clean_round(run)
    if df.empty or first is None:
        return {"references": schema.empty_table(), "capacity": gap_schema.empty_table()}
    bands = monitor.bands(run)
    at_first = df[df["round"] == first]
    clean = at_first[(at_first["sample"] == "model") | at_first["sample"].str.startswith("model#")]
    clean_mean = clean.groupby("metric")["value"].mean()
    human = df[df["sample"] == NOISE_FLOOR_SAMPLE].sort_values("round")
    human_value = human.groupby("metric")["value"].last()
    rows = []
    for metric, value in clean_mean.items():
        b = bands.get(str(metric))
        rows.append({
            "metric": str(metric), "clean_round": first,
            "clean": float(value) if b is None else b.center,
            "human": float(human_value[metric]) if metric in human_value.index else None,
            "watched": b is not None,
            "low": None if b is None or not np.isfinite(b.low) else b.low,
            "high": None if b is None or not np.isfinite(b.high) else b.high,
        })  # fmt: skip
    gaps = [{**g.to_dict()} for g in monitor.capacity_gaps(run)]
    return {
        "references": pa.Table.from_pylist(rows, schema=schema),
        "capacity": pa.Table.from_pylist(
            [{k: g[k] for k in gap_schema.names} for g in gaps], schema=gap_schema
        ),
    }


def _tag(table: pa.Table, tag: dict[str, Any]) -> pa.Table:
    for key, value in tag.items():
        if key not in table.column_names:
            # typed from the value, so an empty table concatenates with full ones
            kind = pa.scalar(value).type
            table = table.append_column(key, pa.array([value] * table.num_rows, kind))
    return table
