"""The cost-fidelity frontier: sweep the real fraction, find the lowest one whose tails held.

For each real fraction ``f`` the lab runs the retraining loop at one training
volume per round ``V``: ``f = 0`` is pure synthetic (``replace``), ``f = 1`` is
human-only (buying human data to ``V``), and ``0 < f < 1`` trains every round
on exactly ``f`` human examples per batch from the reservoir plus the newest
synthetic generation (``Anchored(f, synthetic="latest", reservoir="share")``, so
the fraction means what it says). Per fraction it reports:

- ``cost_per_round``: the mean cost of a synthetic round (``CostModel.round_cost``
  of its human data bought, generated and verified candidates), median over seeds:
  the lab axes' ``cost_per_generation`` for the same run, and the chart's x;
  ``cost``: the same rounds' total; ``reservoir_cost``: the reservoir owned, charged
  once in round 0 (not per round); ``human_per_round``: the human examples a round
  trains on (``ceil(f x V)``);
- ``tail_ratio`` / ``coverage_ratio``: the primary (tail) metric and the coverage
  metric at the last generation divided by round 0's, median over seeds and a
  10%-90% seed interval;
- ``held``: whether the tails held: both ratios' medians and seed intervals reach
  within the noise floor of 1; a higher-is-better metric only counts a fall (more
  rare vocabulary than round 0, from bought human data, is no loss), a two-sided
  metric such as a variance ratio counts drift either way. The noise floor is the
  larger of :data:`TOLERANCE` and the relative spread of the round-0 values across
  seeds.

:attr:`Frontier.lowest_safe` names the lowest fraction whose tails held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tailguard.costs import CostModel
from tailguard.errors import ConfigError
from tailguard.lab.axes import generation_costs, with_coverage
from tailguard.lab.evaluation import COVERAGE, PRIMARY

#: The fractions swept by default.
FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: The smallest relative noise floor (the lab's recovery tolerance).
TOLERANCE = 0.05

COLUMNS = (
    "real_fraction", "strategy", "cost_per_round", "cost", "reservoir_cost", "human_per_round",
    "tail_ratio", "tail_low", "tail_high", "coverage_ratio", "coverage_low", "coverage_high",
    "noise_floor", "held", "seeds",
)  # fmt: skip


@dataclass
class Frontier:
    """One row per real fraction (:data:`COLUMNS`) and the lowest fraction whose tails held."""

    table: pa.Table
    model: str
    volume: int
    generations: int
    costs: CostModel = field(default_factory=CostModel)

    @property
    def lowest_safe(self) -> float | None:
        held = self.table.to_pandas()
        held = held[held["held"]]
        return None if held.empty else float(held["real_fraction"].min())

    def row(self, real_fraction: float) -> dict[str, Any]:
        df = self.table.to_pandas()
        return df[np.isclose(df["real_fraction"], real_fraction)].iloc[0].to_dict()

    def save(self, directory: Path | str) -> Path:
        """``frontier.parquet`` (the report's data) and ``frontier.png`` into ``directory``."""
        import pyarrow.parquet as pq

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.table, path / "frontier.parquet")
        self.plot(path / "frontier.png")
        return path

    def points(self) -> pd.DataFrame:
        """What :meth:`plot` draws, one row per fraction: ``x`` is the table's
        ``cost_per_round`` (one figure, one definition), ``y`` the tail ratio."""
        df = self.table.to_pandas()
        return pd.DataFrame({
            "real_fraction": df["real_fraction"], "x": df["cost_per_round"],
            "y": df["tail_ratio"], "low": df["tail_low"], "high": df["tail_high"],
        })  # fmt: skip

    def plot(self, path: Path | str) -> Path:
        """Cost per round against the tail ratio at the last generation, one point per fraction."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        df = self.table.to_pandas()
        pts = self.points()
        fig, ax = plt.subplots(figsize=(6, 4))
        err = [pts["y"] - pts["low"], pts["high"] - pts["y"]]
        ax.errorbar(pts["x"], pts["y"], yerr=np.abs(err), fmt="o", capsize=3)
        for r in pts.itertuples():
            ax.annotate(f"f={r.real_fraction:g}", (r.x, r.y), fontsize=8)
        ax.axhspan(1 - df["noise_floor"].max(), 1 + df["noise_floor"].max(), alpha=0.15)
        ax.set_xlabel("cost per synthetic round ($; the reservoir, owned once, not included)")
        ax.set_ylabel("tail metric at the last generation / round 0")
        ax.set_title(f"{self.model}: cost-fidelity frontier, volume {self.volume}")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def frontier(
    *,
    model: str = "gaussian",
    data: str | None = None,
    fractions: tuple[float, ...] | list[float] = FRACTIONS,
    generations: int = 10,
    seeds: int = 3,
    volume: int | str | None = "auto",
    reservoir_size: int | None = None,
    batch_size: int = 64,
    eval_size: int | None = None,
    model_params: dict[str, Any] | None = None,
    costs: CostModel | None = None,
    seed: int = 0,
    workers: int | None = None,
    out: Path | str | None = None,
    progress: bool = True,
    known: Any = None,
) -> Frontier:
    """Sweep ``fractions`` at one training volume per round; see the module docstring.

    ``known``: a :class:`~tailguard.lab.LabResult` already run at the same volume,
    generations and seeds; the end points it holds (``replace`` for 0, ``human-only``
    for 1) are read from it instead of being run again (the demo compares them first).
    """
    from tailguard.lab.experiment import run

    fractions = sorted({float(f) for f in fractions})
    if not fractions or fractions[0] < 0 or fractions[-1] > 1:
        raise ConfigError(f"fractions must lie in [0, 1], got {fractions}")
    costs = costs or CostModel()
    if known is not None:
        c = known.config
        if (c.generations, c.seeds) != (generations, seeds) or c.volume is None:
            raise ConfigError(
                f"known= holds {c.generations} generations x {c.seeds} seeds at volume "
                f"{c.volume}; the frontier needs {generations} x {seeds} at one volume"
            )
        if c.costs != costs:
            raise ConfigError(
                f"known= was priced at {c.costs.describe()}; the frontier at {costs.describe()}"
            )
        volume, reservoir_size = c.volume, c.reservoir_size
    rows = []
    for f in fractions:
        name = "replace" if f == 0 else "human-only" if f == 1 else "anchored-share"
        if known is not None and name in known.config.strategies and f in (0.0, 1.0):
            rows.append(_row(known, f, name, generations))
            continue
        result = run(
            model=model, data=data, strategies=[name], generations=generations, seeds=seeds,
            real_fraction=f if 0 < f < 1 else 0.5, volume=volume, reservoir_size=reservoir_size,
            batch_size=batch_size, eval_size=eval_size, recovery_rounds=0,
            model_params=model_params, costs=costs, seed=seed, workers=workers, out=None,
            progress=progress,
        )  # fmt: skip
        volume = result.config.volume
        rows.append(_row(result, f, name, generations))
    table = pa.Table.from_pandas(pd.DataFrame(rows, columns=list(COLUMNS)), preserve_index=False)
    result_frontier = Frontier(table, model, int(volume or 0), generations, costs)
    if out is not None:
        result_frontier.save(out)
    return result_frontier


def _row(result: Any, f: float, name: str, generations: int) -> dict[str, Any]:
    kind = result.config.dataset.kind
    m = result.metrics.to_pandas()
    m = with_coverage(m[m["strategy"] == name], kind)
    ratios, floors, one_sided = {}, [], {}
    for key, metric in (("tail", PRIMARY[kind]), ("coverage", COVERAGE[kind])):
        rows = m[m.metric == metric]
        v = rows.pivot_table(index="seed", columns="round", values="value")
        base, last = v[0], v[generations]
        ratios[key] = (last / base).to_numpy()
        one_sided[key] = bool(rows["higher_is_better"].eq(True).all())
        floors.append(float(base.std(ddof=0) / abs(base.mean())) if len(base) > 1 else 0.0)
    noise = max(TOLERANCE, *floors)
    r = result.rounds.to_pandas()
    r = r[r["strategy"] == name]
    synthetic_rounds = r[(r["round"] >= 1) & (r["round"] <= generations)]
    per_seed = synthetic_rounds.groupby("seed")["cost"].sum()
    volume = int(result.config.volume or synthetic_rounds["total"].median())
    human = math.ceil(f * volume)
    out: dict[str, Any] = {
        "real_fraction": f,
        "strategy": name,
        "cost_per_round": float(generation_costs(r, generations).median()),
        "cost": float(per_seed.median()),
        "reservoir_cost": float(r[r["round"] == 0]["cost"].median()),
        "human_per_round": human,
        "noise_floor": noise,
        "seeds": int(len(per_seed)),
    }
    held = True
    for key, values in ratios.items():
        low, mid, high = np.quantile(values, [0.1, 0.5, 0.9])
        out[f"{key}_ratio"], out[f"{key}_low"], out[f"{key}_high"] = mid, low, high
        if one_sided[key]:  # more coverage than round 0 (e.g. bought human data) is no loss
            held &= bool(high >= 1 - noise and mid >= 1 - noise)
        else:  # a two-sided metric (a variance ratio): no drift beyond the noise either way
            held &= bool(high >= 1 - noise and low <= 1 + noise and abs(mid - 1) <= noise)
    out["held"] = held
    return out
