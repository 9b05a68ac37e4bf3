"""Multi-generation, multi-seed experiments: every strategy x seed, in parallel.

One *job* is one strategy with one seed: an in-memory ledger holding the human
data and its frozen reservoir, and the retraining loop run for ``generations``
rounds with a lab model as the user's ``train`` and ``generate``. Round 0 trains
on the reservoir; round ``r`` generates generation ``r`` from model ``r - 1``,
gates it (if the strategy gates), plans the round's manifest under the
strategy's policy, trains model ``r`` on exactly the manifest's records,
samples it and scores the sample against the reservoir's human holdout. The
metrics go to the job's ledger like any run's.

Jobs run in a process pool (``workers``), with a progress bar that ticks per
round. :func:`run` gathers every job's ledger metrics, manifests' provenance and
cost counts, summarises them across seeds and scores the axes
(:mod:`tailguard.lab.axes`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError
from tailguard.lab.costs import CostModel
from tailguard.lab.data import LabData, resolve
from tailguard.lab.evaluation import PRIMARY, monitor_for
from tailguard.lab.strategies import StrategyParts, StrategySettings, parse_strategies

#: Rounds a collapsed run may take, once switched to anchoring, to come back.
RECOVERY_TOLERANCE = 0.05
#: The report's per-run tables, collected from every job's ledger.
LINEAGE_TABLES = ("mix", "gate", "reasons", "decisions", "alerts")


@dataclass(frozen=True)
class LabConfig:
    """Everything that defines an experiment (explicit, serialisable)."""

    model: str = "ngram"
    data: str | None = None
    strategies: tuple[str, ...] = ("replace", "accumulate", "anchored")
    generations: int = 10
    seeds: int = 3
    real_fraction: float = StrategySettings.real_fraction
    n_generate: int | None = None
    eval_size: int | None = None
    batch_size: int = 64
    holdout: float = 0.1
    recovery_rounds: int = 5
    model_params: dict[str, Any] = field(default_factory=dict)
    costs: CostModel = field(default_factory=CostModel)
    seed: int = 0

    def __post_init__(self) -> None:
        strategies = tuple(s.name for s in parse_strategies(list(self.strategies)))
        object.__setattr__(self, "strategies", strategies)
        object.__setattr__(self, "data", resolve(self.model, self.data).name)
        if self.generations < 1:
            raise ConfigError(
                f"generations must be >= 1, got {self.generations}: collapse is "
                "a multi-generation effect, zero generations measure nothing"
            )
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        # Anchoring strategies, and every recovery, need a real fraction in (0, 1].
        StrategySettings(real_fraction=self.real_fraction)
        for name in ("n_generate", "eval_size"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ConfigError(f"{name} must be >= 2, got {value}")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.recovery_rounds < 0:
            raise ConfigError(f"recovery_rounds must be >= 0, got {self.recovery_rounds}")
        if self.model == "regression":
            from tailguard.lab.models.regression import LinearRegression

            LinearRegression(**self.model_params)  # refuses T <= d + 1

    @property
    def dataset(self) -> LabData:
        return resolve(self.model, self.data)

    def params(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = self.dataset.name
        out["strategies"] = list(self.strategies)
        out["costs"] = self.costs.params()
        return out


# ------------------------------------------------------------------------------ one job
@dataclass
class JobResult:
    """What one strategy x seed leaves behind (Arrow tables pickle across processes)."""

    strategy: str
    seed: int
    metrics: pa.Table  # the ledger's metric rows
    rounds: pa.Table  # per round: provenance and cost counts
    recovery: dict[str, Any]
    lineage: dict[str, pa.Table]  # what the report shows: mix, gate, reasons, decisions, alerts


class _Job:
    """One strategy with one seed: its ledger, its parts, and the model of each round."""

    def __init__(
        self, config: LabConfig, strategy: str, seed: int, tick: Callable[[int], None]
    ) -> None:
        from tailguard.lab.models import MODELS
        from tailguard.lab.strategies import strategy as lookup
        from tailguard.ledger import Ledger

        self.config, self.strategy, self.seed, self.tick = config, strategy, seed, tick
        self.run_name = f"{strategy}/seed{seed}"
        data = config.dataset
        human = data.load(config.model_params)
        self.n_generate = config.n_generate or _default_n_generate(data, human.num_rows)
        self.eval_size = config.eval_size or self.n_generate
        settings = StrategySettings(real_fraction=config.real_fraction, n_generate=self.n_generate)
        self.parts: StrategyParts = lookup(strategy).parts(settings)
        all_fresh = set(config.strategies) & {"fresh"}
        per_round = lookup("fresh").parts(settings).fresh_per_round if all_fresh else 0
        # Every strategy of an experiment sees the same reservoir: when one of them needs a
        # stream of new human data, it is held back from the reservoir for all of them.
        order = np.random.default_rng([config.seed, seed]).permutation(human.num_rows)
        n_stream = min(per_round * config.generations, human.num_rows // 2)
        self.stream = human.take(pa.array(order[:n_stream]))
        self.ledger = Ledger.open(":memory:")
        self.ledger.add_records(human.take(pa.array(order[n_stream:])))
        self.ledger.freeze_reservoir("main", holdout=config.holdout, seed=seed)
        if self.parts.gate is not None:  # gate candidates against this job's reservoir
            settings = replace(settings, reference=self.ledger.reservoir_records("all"))
            self.parts = lookup(strategy).parts(settings)
        self.monitor = monitor_for(data.kind, run=self.run_name, seed=seed)
        self.primary = PRIMARY[data.kind]
        model_cls = MODELS[config.model]
        self.new_model = lambda: model_cls(**config.model_params)
        self.real_fraction = config.real_fraction

    # The loop's callables: train on the manifest's records, generate and sample records.
    def train(self, manifest: Any, records: pa.Table) -> Any:
        return self.new_model().fit(records)

    def generate(self, model: Any, n: int, round: int, seed: int) -> pa.Table:  # noqa: A002
        return model.sample(n, seed, generation=round, round=round)

    def sample(self, model: Any, round: int, seed: int) -> pa.Table:  # noqa: A002
        return model.sample(self.eval_size, seed + 7919, generation=max(round, 1), round=round)

    def loop(self, policy: Any, *, gate: Any = None, dial: Any = None) -> Any:
        """The retraining loop over this job's ledger, with the lab model as train/generate."""
        from tailguard.loop import Loop

        return Loop(
            self.ledger, train=self.train, generate=self.generate, sample=self.sample,
            policy=policy, gate=gate, dial=dial, monitor=self.monitor,
            n_generate=self.n_generate, n_sample=self.eval_size,
            batch_size=self.config.batch_size, run=self.run_name, seed=self.seed,
            generator=self.config.model,
        )  # fmt: skip

    def _on_stage(self, round: int, stage: str) -> None:  # noqa: A002
        """Bring fresh human data in after generating (fresh only), tick after evaluating."""
        if stage == "generate" and self.parts.fresh_per_round and round >= 1:
            from tailguard.records import make_records

            k = self.parts.fresh_per_round
            fresh = self.stream.slice((round - 1) * k, k)
            self.ledger.add_records(make_records(
                fresh.column("content"), origin="human", source="fresh", round=round,
                label=fresh.column("label"),
            ))  # fmt: skip
        elif stage == "evaluate":
            self.tick(1)

    def run(self) -> JobResult:
        cfg, parts = self.config, self.parts
        loop = self.loop(parts.policy, gate=parts.gate, dial=parts.dial)
        results = loop.run(cfg.generations, on_stage=self._on_stage)
        lineage = self._lineage()
        recovery = self._recover(loop.model, results[0].metrics, results[-1].metrics)
        metrics = self.ledger.metrics(self.run_name)
        return JobResult(self.strategy, self.seed, metrics, self._rounds_table(), recovery, lineage)

    def _lineage(self) -> dict[str, pa.Table]:
        """The report's tables of this run (before any recovery rounds), tagged."""
        from tailguard.report import lineage_tables

        tables = lineage_tables(self.ledger, self.run_name)
        out = {}
        for name in LINEAGE_TABLES:
            t = tables[name]
            n = t.num_rows
            out[name] = t.append_column(
                "strategy", pa.array([self.strategy] * n, pa.string())
            ).append_column("seed", pa.array([self.seed] * n, pa.int32()))
        return out

    def _recover(
        self, model: Any, baseline: dict[str, float], values: dict[str, float]
    ) -> dict[str, Any]:
        """Switch a collapsed run to anchoring; count rounds until within 5% of baseline."""
        from tailguard.mix import Anchored

        primary = self.primary
        base = baseline[primary]
        if _within(values[primary], base):
            return {"collapsed": False, "rounds": 0, "recovered": True}
        loop = self.loop(Anchored(real_fraction=self.real_fraction))
        loop.model = model
        start = self.config.generations + 1
        for i in range(self.config.recovery_rounds):
            result = loop.run_round(start + i)
            if _within(result.metrics[primary], base):
                return {"collapsed": True, "rounds": i + 1, "recovered": True}
        return {"collapsed": True, "rounds": self.config.recovery_rounds, "recovered": False}

    def _rounds_table(self) -> pa.Table:
        """Per round: slots by origin, traceable share, new human examples, generated, verified."""
        con, run = self.ledger.con, self.run_name
        rounds = con.sql(
            """
            WITH slots AS (SELECT * FROM manifest_slots WHERE run = ?),
            traced AS (
                SELECT s.round, count(*) AS total,
                       count(*) FILTER (WHERE s.origin = 'human') AS human,
                       count(*) FILTER (WHERE s.origin = 'synthetic') AS synthetic,
                       count(r.id) AS traceable
                FROM slots s LEFT JOIN (
                    SELECT DISTINCT id, origin, generation FROM records
                    WHERE source IS NOT NULL AND origin IS NOT NULL) r
                  ON r.id = s.id AND r.origin = s.origin AND r.generation = s.generation
                GROUP BY s.round),
            first_use AS (
                SELECT id, min(round) AS round FROM slots WHERE origin = 'human' GROUP BY id),
            new_human AS (SELECT round, count(*) AS new_human FROM first_use GROUP BY round),
            generated AS (
                SELECT round, count(*) AS generated FROM records
                WHERE origin = 'synthetic' GROUP BY round),
            verified AS (
                SELECT round, count(DISTINCT id) AS verified FROM verdicts
                WHERE verifier <> 'none' GROUP BY round)
            SELECT t.round, t.total, t.human, t.synthetic, t.traceable,
                   coalesce(n.new_human, 0) AS new_human,
                   coalesce(g.generated, 0) AS generated,
                   coalesce(v.verified, 0) AS verified
            FROM traced t LEFT JOIN new_human n USING (round)
            LEFT JOIN generated g USING (round) LEFT JOIN verified v USING (round)
            ORDER BY t.round
            """,
            params=[run],
        ).to_arrow_table()
        n = rounds.num_rows
        costs = self.config.costs
        cost = costs.cost(
            human=rounds["new_human"].to_numpy(),
            synthetic=rounds["generated"].to_numpy(),
            verified=rounds["verified"].to_numpy(),
        )
        return (
            rounds.append_column("cost", pa.array(np.asarray(cost, dtype=np.float64)))
            .append_column("strategy", pa.array([self.strategy] * n))
            .append_column("seed", pa.array([self.seed] * n, pa.int32()))
        )


def _within(value: float, base: float) -> bool:
    return bool(abs(value - base) <= RECOVERY_TOLERANCE * abs(base))


def _default_n_generate(data: LabData, n_human: int) -> int:
    return 2000 if data.kind == "text" else max(2, min(2000, int(n_human * 0.9)))


def run_job(config: LabConfig, strategy: str, seed: int, queue: Any = None) -> JobResult:
    """Run one strategy with one seed (the unit of parallel work)."""

    def tick(n: int) -> None:
        if queue is not None:
            queue.put(n)

    job = _Job(config, strategy, seed, tick)
    try:
        return job.run()
    finally:
        job.ledger.close()


# ------------------------------------------------------------------------------ many jobs
def run_jobs(
    config: LabConfig, *, workers: int | None = None, progress: bool = True
) -> list[JobResult]:
    """Every strategy x seed, across ``workers`` processes, with a progress bar."""
    jobs = [(s, seed) for s in config.strategies for seed in range(config.seeds)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    total = len(jobs) * (config.generations + 1)
    if workers == 1:
        with _bar(progress, total, config) as advance:
            return [run_job(config, s, seed, _Ticker(advance)) for s, seed in jobs]
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Manager() as manager, _bar(progress, total, config) as advance:
        queue = manager.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(run_job, config, s, seed, queue) for s, seed in jobs]
            pending = set(futures)
            while pending:
                _drain(queue, advance, timeout=0.1)
                pending = {f for f in pending if not f.done()}
            _drain(queue, advance, timeout=0.0)
            return [f.result() for f in futures]


class _Ticker:
    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance = advance

    def put(self, n: int) -> None:
        self.advance(n)


def _drain(queue: Any, advance: Callable[[int], None], timeout: float) -> None:
    import queue as q

    try:
        advance(queue.get(timeout=timeout) if timeout else queue.get_nowait())
        while True:
            advance(queue.get_nowait())
    except q.Empty:
        return


class _bar:  # noqa: N801 - used as a context manager, reads like a function
    def __init__(self, enabled: bool, total: int, config: LabConfig) -> None:
        self.enabled, self.total, self.config = enabled, total, config

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]lab[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rounds"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.progress.__enter__()
        c = self.config
        task = self.progress.add_task(
            f"{c.model} on {c.dataset.name}: {len(c.strategies)} strategies x {c.seeds} seeds",
            total=self.total,
        )
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)


def new_run_id(config: LabConfig) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"lab-{config.model}-{stamp}-{secrets.token_hex(2)}"


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


# ------------------------------------------------------------------------------ results
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
    (see :mod:`tailguard.lab.axes`).
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

    TABLES = (
        "metrics", "floor", "summary", "rounds", "recovery", "recovery_metrics", "axes",
        "ledger_metrics", *LINEAGE_TABLES,
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
        return plot_curves(self, out, metrics)


def run(
    *,
    model: str = "ngram",
    data: str | None = None,
    strategies: str | list[str] | tuple[str, ...] = ("replace", "accumulate", "anchored"),
    generations: int = 10,
    seeds: int = 3,
    real_fraction: float = StrategySettings.real_fraction,
    n_generate: int | None = None,
    eval_size: int | None = None,
    batch_size: int = 64,
    holdout: float = 0.1,
    recovery_rounds: int = 5,
    model_params: dict[str, Any] | None = None,
    costs: CostModel | None = None,
    seed: int = 0,
    workers: int | None = None,
    out: Path | str | None = "runs",
    progress: bool = True,
) -> LabResult:
    """Run every strategy x seed for ``generations`` rounds and score them.

    Saves the run under ``out/<run-id>/`` (Parquet tables, ``config.json`` and
    ``curves.png``) unless ``out`` is None.
    """
    import time

    from tailguard.lab.axes import score_axes, summarise

    if isinstance(strategies, str):
        strategies = [s for s in strategies.split(",") if s.strip()]
    config = LabConfig(
        model=model, data=data, strategies=tuple(strategies), generations=generations,
        seeds=seeds, real_fraction=real_fraction, n_generate=n_generate, eval_size=eval_size,
        batch_size=batch_size, holdout=holdout, recovery_rounds=recovery_rounds,
        model_params=dict(model_params or {}), costs=costs or CostModel(), seed=seed,
    )  # fmt: skip
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
    floor = all_rows.filter(pc.invert(is_model)).drop_columns(["sample"])
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
        elapsed=elapsed,
    )  # fmt: skip
    if out is not None:
        result.save(Path(out) / result.run_id)
        result.plot()
    return result


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
