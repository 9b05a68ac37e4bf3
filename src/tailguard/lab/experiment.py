"""Multi-generation, multi-seed experiments: every strategy x seed, in parallel.

One *job* is one strategy with one seed: an in-memory ledger holding the human
data and its frozen reservoir, and the retraining loop run for ``generations``
rounds with a lab model as the user's ``train`` and ``generate``. Round 0 trains
on the reservoir; round ``r`` generates generation ``r`` from model ``r - 1``,
gates it (if the strategy gates), plans the round's manifest under the
strategy's policy, trains model ``r`` on exactly the manifest's records,
samples it and scores the sample against the reservoir's human holdout. The
metrics go to the job's ledger like any run's.

Modules: :mod:`~tailguard.lab.config` (``LabConfig``), :mod:`~tailguard.lab.job`
(one job), :mod:`~tailguard.lab.pool` (the process pool and progress bar) and
:mod:`~tailguard.lab.results` (``LabResult``, saved and loaded). Jobs run in a
process pool (``workers``), with a progress bar that ticks per round.
:func:`run` gathers every job's ledger metrics, manifests' provenance and
cost counts, summarises them across seeds and scores the axes
(:mod:`tailguard.lab.axes`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tailguard.lab.config import LINEAGE_TABLES, LabConfig, human_budget
from tailguard.lab.evaluation import PRIMARY
from tailguard.lab.job import JobResult, _n_generate, run_job
from tailguard.lab.pool import run_jobs
from tailguard.lab.results import LabResult, _concat, _label, new_run_id, write_json
from tailguard.monitor import NOISE_FLOOR_SAMPLE

__all__ = [
    "LINEAGE_TABLES",
    "JobResult",
    "LabConfig",
    "LabResult",
    "new_run_id",
    "run",
    "run_job",
    "run_jobs",
    "write_json",
]


def run(
    config: LabConfig | None = None,
    *,
    workers: int | None = None,
    out: Path | str | None = "runs",
    progress: bool = True,
    **settings: Any,
) -> LabResult:
    """Run every strategy x seed for ``generations`` rounds and score them.

    The experiment is ``config`` with ``settings`` (any field of :class:`LabConfig`, by
    name: ``model=``, ``strategies="replace,anchored"``, ``generations=``, ...) replacing
    its fields; an unknown setting is refused.

    ``volume`` fixes the training examples per round for every strategy (an
    equal-volume comparison: human-only buys fresh human data at the cost model's
    human price, pure synthetic generates, anchoring adds synthetic data to the
    reservoir of ``reservoir_size`` records). By default (``"auto"``) it is
    :func:`tailguard.lab.config.default_volume`, larger than the reservoir;
    ``volume=None`` lets each strategy train on what its policy selects (the classic
    collapse experiments, as does an explicit ``n_generate``). ``fresh_per_round`` is the
    ``fresh`` strategy's new human records per round. Settings the data set
    cannot supply are refused before anything runs.

    Saves the run under ``out/<run-id>/`` (Parquet tables, ``config.json`` and
    ``curves.png``) unless ``out`` is None.
    """
    from tailguard.lab.axes import score_axes, summarise

    config = LabConfig.build(config, **settings)
    generations = config.generations
    human_budget(config, config.dataset.load(config.model_params).num_rows, _n_generate(config))
    start = time.perf_counter()
    jobs = run_jobs(config, workers=workers, progress=progress)
    elapsed = time.perf_counter() - start
    ledger_metrics = pa.concat_tables([j.metrics for j in jobs])
    labelled = [_label(j.metrics, j.strategy, j.seed) for j in jobs]
    all_rows = pa.concat_tables(labelled)
    is_model = pc.equal(all_rows["sample"], "model")
    in_run = pc.less_equal(all_rows["round"], generations)
    metrics = all_rows.filter(pc.and_(is_model, in_run)).drop_columns(["sample"])
    recovery_metrics = all_rows.filter(pc.and_(is_model, pc.invert(in_run)))
    # the human baseline's mean only: the clean model's and the baseline's own draws
    # (``model#i``, ``noise_floor#i``) are the bands' spread, read from the ledgers
    floor = all_rows.filter(pc.equal(all_rows["sample"], NOISE_FLOOR_SAMPLE)).drop_columns(
        ["sample"]
    )
    rounds = pa.concat_tables([j.rounds for j in jobs])
    recovery = pa.table({
        "strategy": [j.strategy for j in jobs],
        "seed": pa.array([j.seed for j in jobs], pa.int32()),
        "collapsed": [j.recovery["collapsed"] for j in jobs],
        "recovered": [j.recovery["recovered"] for j in jobs],
        "rounds": pa.array([j.recovery["rounds"] for j in jobs], pa.int32()),
    })  # fmt: skip
    kind = config.dataset.kind
    axes = score_axes(
        metrics,
        rounds,
        recovery,
        history=ledger_metrics,
        primary=PRIMARY[kind],
        kind=kind,
        generations=generations,
        strategies=list(config.strategies),
    )
    result = LabResult(
        config=config, metrics=metrics, floor=floor, summary=summarise(metrics), rounds=rounds,
        recovery=recovery, recovery_metrics=recovery_metrics.drop_columns(["sample"]),
        axes=axes, ledger_metrics=ledger_metrics, run_id=new_run_id(config),
        **{name: _concat([j.lineage[name] for j in jobs]) for name in LINEAGE_TABLES},
        elapsed=elapsed, model_stats=_model_stats(jobs),
    )  # fmt: skip
    if out is not None:
        result.save(Path(out) / result.run_id)
        result.plot()
    return result


def _model_stats(jobs: list[JobResult]) -> pa.Table:
    """Every job's model statistics in one table (no rows when the model has none)."""
    return _concat([j.model_stats for j in jobs if j.model_stats is not None])
