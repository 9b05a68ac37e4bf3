"""The recovery experiment: pure synthetic for ``k`` generations, then two ways back.

A run retrains on its own output alone (``replace``) for ``k`` generations, at
one training volume per round. From there, per seed, two routes continue the
same run in the same ledger:

- ``switch``: keep the collapsed model and switch the policy to anchoring (the
  whole reservoir every round, at least ``real_fraction`` of every batch human,
  the newest synthetic generation for the rest);
- ``rollback``: ``Ledger.rollback(to_round=R)`` to the last clean round ``R``
  (the last round whose metric was inside the seed's clean-model band),
  which quarantines every synthetic record of the later generations, retrain
  round ``R``'s model from its stored manifest, and continue anchored (when round
  ``k`` itself is clean there is nothing to roll back, and the route continues as
  ``switch`` does).

Each route then trains ``recovery_rounds`` anchored rounds (all of them, so the
curve after the return is measured too). Per route and seed the result names
the rounds and the dollars (the cost model's price of those rounds) until the
metric is back inside the band, and for the rollback route the dollars of the
generations it threw away.

**The band** is :mod:`tailguard.evidence`'s, per seed: around that seed's clean
model (round 0, the model trained on the reservoir alone, with its draws), the
draws' noise, never narrower than the preset's threshold for the metric (a metric
without one: the noise alone). "Clean", "recovered" and "held" are its verdicts
(``evidence.degraded``, ``evidence.recovery_round``), the ones the monitor, the
axes and the frontier give.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tailguard.costs import CostModel
from tailguard.errors import ConfigError
from tailguard.evidence import Band, degraded, recovery_round
from tailguard.lab.config import LabConfig
from tailguard.lab.evaluation import PRIMARY, clean_bands, model_values

#: The two ways back from a collapsed run.
ROUTES = ("switch", "rollback")

#: Columns of :attr:`Recovery.table` (one row per route and seed).
COLUMNS = (
    "route", "seed", "k", "to_round", "start", "rounds", "cost", "discarded", "quarantined",
    "recovered", "held",
)  # fmt: skip


@dataclass
class Recovery:
    """Per route and seed, the rounds and dollars back inside the clean model's band.

    ``table``: :data:`COLUMNS`; ``rounds`` counts the anchored rounds trained until the
    metric is back inside its seed's band (``bands``; ``inf`` when it did not come
    back within ``recovery_rounds``), ``cost`` the price of those rounds,
    ``discarded`` the price of the generations a rollback quarantined, ``held``
    whether every later recovery round stayed inside the band. ``curves``: per route,
    seed and round, the primary metric and the round's cost (rounds ``1..k`` are the
    synthetic ones, shared by both routes).
    """

    table: pa.Table
    curves: pa.Table
    model: str
    metric: str
    k: int
    recovery_rounds: int
    volume: int | None
    costs: CostModel
    #: Per seed: the band of ``metric`` around that seed's clean model.
    bands: tuple[Band, ...] = ()
    #: Per seed: the round-0 model's and the human noise floor's values of ``metric``.
    round0: tuple[float, ...] = ()
    floor: tuple[float, ...] = ()

    @property
    def baseline(self) -> float:
        """The clean models' value, median over seeds (what the table title quotes)."""
        return float(np.median([b.center for b in self.bands]))

    @property
    def half_width(self) -> float:
        """The bands' half-width, median over seeds."""
        return float(np.median([b.half_width for b in self.bands]))

    def summary(self) -> pd.DataFrame:
        """Per route: median rounds and dollars back, share of seeds that came back."""
        df = self.table.to_pandas()
        g = df.groupby("route", sort=False)
        return pd.DataFrame({
            "rounds": g["rounds"].median(),
            "cost": g["cost"].median(),
            "discarded": g["discarded"].median(),
            "recovered": g["recovered"].mean(),
            "held": g["held"].mean(),
            "seeds": g.size(),
        })  # fmt: skip


def recovery(
    config: LabConfig | None = None,
    *,
    k: int = 5,
    routes: tuple[str, ...] | list[str] = ROUTES,
    metric: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    **settings: Any,
) -> Recovery:
    """Run ``k`` pure synthetic generations per seed, then every route; see the module doc.

    The experiment is ``config`` with ``settings`` (fields of :class:`LabConfig` by name:
    ``model=``, ``seeds=``, ``real_fraction=`` (the anchor's), ``recovery_rounds=`` (the
    anchored rounds each route trains), ...) replacing its fields; without a ``config``,
    recovery's own defaults (``lab.config.COMMANDS["recovery"]``: the Gaussian model).
    ``k`` is the run's generations and its strategy is ``replace``; an unknown setting
    is refused. ``metric``: the one that must come back (default: the data kind's
    primary metric; for fortunes at equal volume ``rare_vocab_coverage`` moves where
    ``tail_recall`` stays at 1.0).
    """
    from tailguard.lab.config import COMMANDS
    from tailguard.lab.pool import map_jobs

    routes = tuple(dict.fromkeys(routes))
    bad = [r for r in routes if r not in ROUTES]
    if bad or not routes:
        raise ConfigError(f"routes must be some of {', '.join(ROUTES)}, got {list(routes)}")
    if k < 1:
        raise ConfigError(f"k must be >= 1 synthetic generation, got {k}")
    config = COMMANDS["recovery"].config("recovery", config, **settings)
    recovery_rounds, seeds, model = config.recovery_rounds, config.seeds, config.model
    if recovery_rounds < 1:
        raise ConfigError(f"recovery_rounds must be >= 1, got {recovery_rounds}")
    config = LabConfig.build(config, strategies=("replace",), generations=k, recovery_rounds=0)
    primary = metric or PRIMARY[config.dataset.kind]
    with tempfile.TemporaryDirectory(prefix="tailguard-recovery-") as tmp:
        title = f"recovery: {model}, {k} synthetic generations x {seeds} seeds"
        first = map_jobs(
            _collapse, [(config, s, tmp) for s in range(seeds)],
            total=seeds * (k + 1), title=title, workers=workers, progress=progress,
        )  # fmt: skip
        kind = config.dataset.kind
        bands = [clean_bands(f["history"], kind, [primary])[primary] for f in first]
        base = pd.concat([f["model"] for f in first])
        floor = pd.concat([f["floor"] for f in first])
        base0 = base[(base["round"] == 0) & (base["metric"] == primary)]["value"]
        floor0 = floor[floor["metric"] == primary]["value"]
        jobs = []
        for s, f in enumerate(first):
            values = model_values(f["history"], kind, primary)
            clean = [r for r, v in values.items() if not degraded(float(v), bands[s])]
            to_round = int(max(clean)) if clean else 0
            jobs += [
                (config, s, tmp, route, to_round, recovery_rounds, primary) for route in routes
            ]
        title = f"recovery: {', '.join(routes)} x {seeds} seeds, {recovery_rounds} rounds"
        second = map_jobs(
            _route, jobs, total=len(jobs) * recovery_rounds, title=title, workers=workers,
            progress=progress,
        )  # fmt: skip
    curves = pd.concat([_curve(first[j["seed"]], j, primary) for j in second], ignore_index=True)
    table = pd.DataFrame(
        [_score(j, first[j["seed"]]["rounds"], bands[j["seed"]], k) for j in second],
        columns=list(COLUMNS),
    )
    return Recovery(
        table=pa.Table.from_pandas(table, preserve_index=False),
        curves=pa.Table.from_pandas(curves, preserve_index=False),
        model=model, metric=primary, k=k, recovery_rounds=recovery_rounds,
        volume=config.volume, costs=config.costs, bands=tuple(bands),
        round0=tuple(base0.tolist()), floor=tuple(floor0.tolist()),
    )  # fmt: skip


def _ledger_path(tmp: str, seed: int) -> Path:
    return Path(tmp) / f"seed{seed}.duckdb"


def _collapse(config: LabConfig, seed: int, tmp: str, queue: Any = None) -> dict[str, Any]:
    """Phase 1 of one seed: rounds ``0..k`` of pure synthetic retraining into a ledger file."""
    from tailguard.lab.job import _Job
    from tailguard.monitor import NOISE_FLOOR_SAMPLE

    tick = queue.put if queue is not None else (lambda n: None)
    job = _Job(config, "replace", seed, tick)
    try:
        job.run_loop()
        job.ledger.snapshot(_ledger_path(tmp, seed))
        metrics = job.ledger.metrics(job.run_name).to_pandas()
        rounds = job._rounds_table().to_pandas()
    finally:
        job.ledger.close()
    return {
        "seed": seed,
        "run": job.run_name,
        "history": metrics,
        "model": metrics[metrics["sample"] == "model"],
        "floor": metrics[metrics["sample"] == NOISE_FLOOR_SAMPLE],
        "rounds": rounds,
    }


def _route(
    config: LabConfig,
    seed: int,
    tmp: str,
    route: str,
    to_round: int,
    n: int,
    metric: str,
    queue: Any = None,
) -> dict[str, Any]:
    """Phase 2: one route from the seed's collapsed ledger, ``n`` anchored rounds."""
    from tailguard.lab.job import _Job
    from tailguard.ledger import Ledger

    k = config.generations
    tick = queue.put if queue is not None else (lambda n: None)
    anchored = replace(config, strategies=("anchored",))
    ledger = Ledger.restore(_ledger_path(tmp, seed))
    run = f"replace/seed{seed}"
    job = _Job(anchored, "anchored", seed, tick, ledger=ledger, run=run)
    try:
        quarantined, source = 0, k
        if route == "rollback" and to_round < k:  # at k nothing left the floor: no rollback
            done = ledger.rollback(
                to_round, reason=f"lab recovery: back to round {to_round}", run=run
            )
            quarantined, source = int(done.quarantined), to_round
        loop = job.loop(job.parts.policy)
        # The model in hand: the collapsed one (switch), or round R's retrained from its
        # stored manifest (rollback), exactly as a resumed run rebuilds it.
        loop.model = job.train(ledger.manifest(source, run), ledger.manifest_records(source, run))
        values = []
        for i in range(n):
            result = loop.run_round(k + 1 + i)
            if metric not in result.metrics:
                raise ConfigError(f"no metric {metric!r} in the lab's {config.model} evaluation")
            values.append(float(result.metrics[metric]))
            tick(1)
        rounds = job._rounds_table().to_pandas()
    finally:
        ledger.close()
    return {
        "seed": seed, "route": route, "to_round": to_round if route == "rollback" else None,
        "values": values, "rounds": rounds, "quarantined": quarantined,
    }  # fmt: skip


def _curve(first: dict[str, Any], job: dict[str, Any], primary: str) -> pd.DataFrame:
    m = first["model"]
    m = m[m["metric"] == primary]
    before = pd.DataFrame({"round": m["round"].to_numpy(), "value": m["value"].to_numpy()})
    k = int(before["round"].max())
    after = pd.DataFrame({
        "round": np.arange(k + 1, k + 1 + len(job["values"])), "value": job["values"]
    })  # fmt: skip
    out = pd.concat([before, after], ignore_index=True)
    cost = job["rounds"].set_index("round")["cost"]
    out["cost"] = out["round"].map(cost).fillna(0.0).to_numpy()
    out.insert(0, "seed", job["seed"])
    out.insert(0, "route", job["route"])
    return out


def _score(job: dict[str, Any], synthetic: pd.DataFrame, band: Band, k: int) -> dict[str, Any]:
    """Rounds and dollars back inside the band; a rollback's discarded spend is read from
    the synthetic phase's own rounds (the ledger's summary after a rollback leaves them out)."""
    values = np.asarray(job["values"])
    within = np.array([not degraded(float(v), band) for v in values], dtype=bool)
    cost = job["rounds"].set_index("round")["cost"]
    after = [float(cost.get(k + 1 + i, 0.0)) for i in range(len(values))]
    first_back = recovery_round(values, band)
    back = None if first_back is None else first_back - 1
    to_round = job["to_round"]
    discarded = 0.0
    if to_round is not None:
        spent = synthetic.set_index("round")["cost"]
        discarded = float(sum(spent.get(r, 0.0) for r in range(to_round + 1, k + 1)))
    return {
        "route": job["route"],
        "seed": job["seed"],
        "k": k,
        "to_round": to_round,
        "start": k,
        "rounds": float(back + 1) if back is not None else float("inf"),
        "cost": float(sum(after[: back + 1])) if back is not None else float(sum(after)),
        "discarded": discarded,
        "quarantined": job["quarantined"],
        "recovered": back is not None,
        "held": bool(back is not None and within[back:].all()),
    }
