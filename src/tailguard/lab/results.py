"""Lab results: the tables of a run, saved as Parquet with its config, and read back."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tailguard.costs import CostModel
from tailguard.errors import ConfigError
from tailguard.lab.config import LINEAGE_TABLES, LabConfig
from tailguard.lab.evaluation import PRIMARY


def new_run_id(config: LabConfig) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"lab-{config.model}-{stamp}-{secrets.token_hex(2)}"


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


@dataclass
class LabResult:
    """An experiment's results; every table is Arrow and is saved as Parquet.

    ``metrics``: one row per strategy, seed, round, metric (``value``,
    ``higher_is_better``), the model's samples only; ``floor``: the same for the
    human training reservoir against the holdout (round 0: what "as good as
    human" scores). ``summary``: per strategy, round and metric, the median
    across seeds and a 10%-90% band. ``rounds``: per strategy, seed and round,
    the training slots by origin, the traceable ones, new human examples,
    generated and verified candidates and the round's cost. ``recovery``: per
    strategy and seed, whether it collapsed and the rounds it took to recover.
    ``recovery_metrics``: the metrics of the rounds after the last generation, where
    a collapsed run trains anchored. ``ledger_metrics``: every job's ledger metric
    rows as stored (run = ``<strategy>/seed<k>``). ``axes``: one row per strategy
    (see :mod:`tailguard.lab.axes`). ``model_stats``: per strategy, seed and round, the
    statistics of models that have them (``statistic``, ``value``): the Gaussian's fitted
    ``variance`` and ``w2_to_truth``, the regression's ``test_error``, the
    transformer's ``train_loss``.
    """

    config: LabConfig
    metrics: pa.Table
    floor: pa.Table
    summary: pa.Table
    rounds: pa.Table
    recovery: pa.Table
    recovery_metrics: pa.Table
    axes: pa.Table
    ledger_metrics: pa.Table
    run_id: str
    elapsed: float
    path: Path | None = None
    mix: pa.Table | None = None
    gate: pa.Table | None = None
    reasons: pa.Table | None = None
    decisions: pa.Table | None = None
    alerts: pa.Table | None = None
    model_stats: pa.Table | None = None

    TABLES = (
        "metrics", "floor", "summary", "rounds", "recovery", "recovery_metrics", "axes",
        "ledger_metrics", *LINEAGE_TABLES, "model_stats",
    )  # fmt: skip

    @property
    def primary(self) -> str:
        return PRIMARY[self.config.dataset.kind]

    def curve(self, metric: str | None = None) -> pa.Table:
        """One metric's median and band per strategy and round (the primary by default)."""
        name = metric or self.primary
        return self.summary.filter(pc.equal(self.summary["metric"], name))

    def save(self, directory: Path | str) -> Path:
        """Write every table as ``<name>.parquet`` and ``config.json`` into ``directory``."""
        import pyarrow.parquet as pq

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for name in self.TABLES:
            if getattr(self, name) is not None:
                pq.write_table(getattr(self, name), path / f"{name}.parquet")
        write_json(
            path / "config.json",
            {"run_id": self.run_id, "elapsed_s": self.elapsed, **self.config.params()},
        )
        self.path = path
        return path

    @classmethod
    def load(cls, directory: Path | str) -> LabResult:
        """Read a saved run directory back (``tailguard lab show`` uses this)."""
        import pyarrow.parquet as pq

        path = Path(directory)
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a lab run directory (no config.json)")
        meta = json.loads((path / "config.json").read_text())
        run_id, elapsed = meta.pop("run_id"), meta.pop("elapsed_s")
        meta["costs"] = CostModel(**meta["costs"])
        meta["strategies"] = tuple(meta["strategies"])
        config = LabConfig(**meta)
        tables = {
            name: pq.read_table(path / f"{name}.parquet")
            for name in cls.TABLES
            if (path / f"{name}.parquet").exists()
        }
        return cls(config=config, run_id=run_id, elapsed=elapsed, path=path, **tables)

    def plot(self, path: Path | str | None = None, metrics: list[str] | None = None) -> Path:
        """Median curves with their bands, one panel per metric; saved as a PNG."""
        from tailguard.lab.plots import plot_curves

        out = Path(path) if path is not None else (self.path or Path(".")) / "curves.png"
        c = self.config
        return plot_curves(
            self.summary,
            self.floor,
            strategies=list(c.strategies),
            title=f"{c.model} on {c.dataset.name}: median over {c.seeds} seeds, 10-90% band",
            path=out,
            metrics=metrics,
        )


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate per-job tables whose types may differ where one job's column is all null."""
    return pa.concat_tables(tables, promote_options="permissive")


def _label(metrics: pa.Table, strategy: str, seed: int) -> pa.Table:
    n = metrics.num_rows
    return pa.table({
        "strategy": pa.array([strategy] * n, pa.string()),
        "seed": pa.array([seed] * n, pa.int32()),
        "round": metrics["round"],
        "sample": metrics["sample"],
        "metric": metrics["metric"],
        "value": metrics["value"],
        "higher_is_better": metrics["higher_is_better"],
    })  # fmt: skip
