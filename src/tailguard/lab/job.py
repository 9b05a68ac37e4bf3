"""One lab job: one strategy with one seed, its in-memory ledger and its retraining loop.

Round 0 trains on the reservoir; round ``r`` generates generation ``r`` from model
``r - 1``, gates it (if the strategy gates), plans the round's manifest under the
strategy's policy, trains model ``r`` on exactly the manifest's records, samples
it and scores the sample against the reservoir's human holdout. A run that
collapsed (outside its clean model's band) is then switched to anchoring to count the
rounds it takes to come back inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from tailguard.lab.callables import loop_callables
from tailguard.lab.config import LINEAGE_TABLES, LabConfig, human_budget
from tailguard.lab.data import LabData
from tailguard.lab.evaluation import (
    PRIMARY,
    clean_bands,
    first_round_back,
    model_values,
    monitor_for,
    run_name,
)
from tailguard.lab.strategies import VERIFIED, StrategyParts, StrategySettings
from tailguard.loop import Loop, LoopModel, LoopSettings, build_loop


@dataclass
class JobResult:
    """What one strategy x seed leaves behind (Arrow tables pickle across processes)."""

    strategy: str
    seed: int
    metrics: pa.Table  # the ledger's metric rows
    rounds: pa.Table  # per round: provenance and cost counts
    recovery: dict[str, Any]
    lineage: dict[str, pa.Table]  # what the report shows: mix, gate, reasons, decisions, alerts
    model_stats: pa.Table | None = None  # per round: the model's own statistics, if it has any


class _Job:
    """One strategy with one seed: its ledger, its parts, and the model of each round."""

    def __init__(
        self,
        config: LabConfig,
        strategy: str,
        seed: int,
        tick: Callable[[int], None],
        ledger: Any = None,
        run: str | None = None,
    ) -> None:
        from tailguard.lab.strategies import strategy as lookup
        from tailguard.ledger import Ledger

        self.config, self.strategy, self.seed, self.tick = config, strategy, seed, tick
        self.run_name = run or run_name(strategy, seed)
        data = config.dataset
        human = data.load(config.model_params)
        self.n_generate = _n_generate(config, human.num_rows)
        self.eval_size = config.eval_size or config.n_generate or self.n_generate
        settings = StrategySettings(
            real_fraction=config.real_fraction, n_generate=self.n_generate,
            fresh_per_round=config.fresh_per_round, volume=config.volume,
            verifier_quality=config.verifier_quality, verifier_bias=config.verifier_bias,
            seed=seed,
        )  # fmt: skip
        if strategy in VERIFIED:  # the verifier reads the data's ground truth
            from tailguard.lab.verified import task_for

            settings = replace(settings, task=task_for(config.model, config.model_params, human))
        self.parts: StrategyParts = lookup(strategy).parts(settings)
        # Every strategy of an experiment sees the same reservoir: the human data some of
        # them buy or stream in (human-only at equal volume, fresh) is held back for all.
        n_reservoir, n_stream = human_budget(config, human.num_rows, self.n_generate)
        order = np.random.default_rng([config.seed, seed]).permutation(human.num_rows)
        ledger = Ledger.open(":memory:") if ledger is None else ledger
        if not ledger.has_reservoir():  # a new ledger (else one an earlier job of this seed filled)
            ledger.add_records(human.take(pa.array(order[n_stream : n_stream + n_reservoir])))
            ledger.freeze_reservoir("main", holdout=config.holdout, seed=seed)
        self.ledger = ledger
        self.stream = _held_back(human, order, n_stream, n_reservoir, ledger)
        self.n_reservoir_train = self.ledger.reservoir_records("train").num_rows
        #: Human examples human-only buys at round 1 to train on ``volume`` examples.
        self.buy = 0
        if config.volume is not None:
            self.buy = max(0, config.volume - self.n_reservoir_train) * (strategy == "human-only")
            if self.parts.policy.anchored:  # the reservoir + synthetic data fill the volume
                from tailguard.mix import volume_slots

                _, synthetic = volume_slots(
                    self.parts.policy, config.volume, self.n_reservoir_train
                )
                self.n_generate = max(2, synthetic)  # at least two candidates a round
        if self.parts.gate is not None:  # gate candidates against this job's reservoir
            settings = replace(settings, reference=self.ledger.reservoir_records("all"))
            self.parts = lookup(strategy).parts(settings)
        self.monitor = monitor_for(data.kind, run=self.run_name, seed=seed)
        self.primary = PRIMARY[data.kind]
        self.real_fraction = config.real_fraction
        self._stats: list[tuple[int, str, float]] = []
        # The loop's callables: train on the manifest's records, generate and sample records.
        self.train, self.generate, self.sample = loop_callables(
            config.model, config.model_params, eval_size=self.eval_size
        )
        if strategy in VERIFIED and self.parts.gate is not None:  # equal volume: see lab.quota
            from tailguard.lab.quota import until_admitted

            self.generate = until_admitted(self.generate, self.parts.gate)

    def loop(self, policy: Any, *, gate: Any = None, dial: Any = None) -> Loop:
        """The retraining loop over this job's ledger, with the lab model as train/generate."""
        return build_loop(
            self.ledger,
            LoopModel(self.train, self.generate, self.sample, name=self.config.model),
            policy,
            gate=gate,
            dial=dial,
            monitor=self.monitor,
            settings=LoopSettings(
                n_generate=self.n_generate, n_sample=self.eval_size,
                batch_size=self.config.batch_size, run=self.run_name, seed=self.seed,
            ),
        )  # fmt: skip

    def _on_stage(self, round: int, stage: str) -> None:  # noqa: A002
        """Bring fresh or bought human data in after generating, tick after evaluating."""
        if stage == "generate" and round >= 1:
            k = self.parts.fresh_per_round
            if k:
                self._add_human(self.stream.slice((round - 1) * k, k), round, "fresh")
            elif self.buy and round == 1:  # bought once, trained on every round after
                self._add_human(self.stream.slice(0, self.buy), round, "bought")
        elif stage == "evaluate":
            self._collect_model_stats(round)
            self.tick(1)

    def _collect_model_stats(self, round: int) -> None:  # noqa: A002
        """The round's model statistics (``model.statistics()``: e.g. variance, test error)."""
        stats = getattr(getattr(self, "_loop", None), "model", None)
        if stats is None or not hasattr(stats, "statistics"):
            return
        for name, value in stats.statistics().items():
            self._stats.append((round, name, float(value)))

    def model_stats(self) -> pa.Table:
        r, name, value = zip(*self._stats, strict=True) if self._stats else ((), (), ())
        n = len(r)
        return pa.table({
            "strategy": pa.array([self.strategy] * n, pa.string()),
            "seed": pa.array([self.seed] * n, pa.int32()),
            "round": pa.array(r, pa.int32()),
            "statistic": pa.array(name, pa.string()),
            "value": pa.array(value, pa.float64()),
        })  # fmt: skip

    def _add_human(self, rows: pa.Table, round: int, source: str) -> None:  # noqa: A002
        from tailguard.records import make_records

        self.ledger.add_records(make_records(
            rows.column("content"), origin="human", source=source, round=round,
            label=rows.column("label"),
        ))  # fmt: skip

    def run_loop(self) -> tuple[Any, list[Any]]:
        """Rounds ``0..generations`` under the strategy's parts: the loop and its results."""
        parts = self.parts
        loop = self.loop(parts.policy, gate=parts.gate, dial=parts.dial)
        self._loop, self._stats = loop, []
        return loop, loop.run(self.config.generations, on_stage=self._on_stage)

    def run(self) -> JobResult:
        loop, results = self.run_loop()
        lineage = self._lineage()
        recovery = self._recover(loop.model)
        metrics = self.ledger.metrics(self.run_name)
        return JobResult(
            self.strategy, self.seed, metrics, self._rounds_table(), recovery, lineage,
            self.model_stats(),
        )  # fmt: skip

    def _lineage(self) -> dict[str, pa.Table]:
        """The report's tables of this run (before any recovery rounds), tagged."""
        from tailguard.lineage import lineage_tables

        tables = lineage_tables(self.ledger, self.run_name)
        out = {}
        for name in LINEAGE_TABLES:
            t = tables[name]
            n = t.num_rows
            out[name] = t.append_column(
                "strategy", pa.array([self.strategy] * n, pa.string())
            ).append_column("seed", pa.array([self.seed] * n, pa.int32()))
        return out

    def _recover(self, model: Any) -> dict[str, Any]:
        """Switch a collapsed run to anchoring; count rounds until back inside the band.

        Collapsed and recovered are :mod:`tailguard.evidence`'s verdicts on the tail
        metrics (primary and coverage) against this seed's clean model: collapsed when
        one is degraded at the last generation, recovered at the first anchored round
        where none is.
        """
        from tailguard.mix import Anchored

        kind = self.config.dataset.kind
        g = self.config.generations
        bands = clean_bands(self.ledger.metrics(self.run_name), kind)
        if first_round_back(self._tails(bands, [g]), bands) == 1:
            return {"collapsed": False, "rounds": 0, "recovered": True}
        loop = self.loop(Anchored(real_fraction=self.real_fraction))
        loop.model = model
        for i in range(self.config.recovery_rounds):
            loop.run_round(g + 1 + i)
            after = self._tails(bands, list(range(g + 1, g + 2 + i)))
            back = first_round_back(after, bands)
            if back is not None:
                return {"collapsed": True, "rounds": back, "recovered": True}
        return {"collapsed": True, "rounds": self.config.recovery_rounds, "recovered": False}

    def _tails(self, bands: dict[str, Any], rounds: list[int]) -> dict[str, list[float]]:
        """The model's value of each banded metric at ``rounds``, from the ledger."""
        history = self.ledger.metrics(self.run_name)
        kind = self.config.dataset.kind
        out = {}
        for m in bands:
            values = model_values(history, kind, m)
            out[m] = [float(values.get(r, np.nan)) for r in rounds]
        return out

    def _rounds_table(self) -> pa.Table:
        """Per round: slots by origin, traceable share, what the round used and its cost.

        ``cost`` is :meth:`CostModel.round_cost` of the round's usage: human data bought,
        generated and verified candidates, and the reservoir owned (round 0 only).
        """
        from tailguard.costs import RoundUsage

        rounds = self.ledger.round_summary(self.run_name).select(
            [
                "round",
                "total",
                "human",
                "synthetic",
                "traceable",
                "new_human",
                "bought",
                "generated",
                "verified",
            ]
        )
        n = rounds.num_rows
        usage = RoundUsage.from_summary(rounds, reservoir=self.n_reservoir_train)
        cost = self.config.costs.round_cost(usage)
        return (
            rounds.append_column("cost", pa.array(np.asarray(cost, dtype=np.float64)))
            .append_column("strategy", pa.array([self.strategy] * n))
            .append_column("seed", pa.array([self.seed] * n, pa.int32()))
        )


def _default_n_generate(data: LabData, n_human: int) -> int:
    return 2000 if data.kind == "text" else max(2, min(2000, int(n_human * 0.9)))


def _n_generate(config: LabConfig, n_human: int | None = None) -> int:
    """Candidates per generation: ``volume`` at equal volume, else ``n_generate`` or a default."""
    if config.volume is not None:
        return config.volume
    if config.n_generate:
        return config.n_generate
    if n_human is None:
        n_human = config.dataset.load(config.model_params).num_rows
    return _default_n_generate(config.dataset, n_human)


def _held_back(
    human: pa.Table, order: np.ndarray, n_stream: int, n_reservoir: int, ledger: Any
) -> pa.Table:
    """The human records held back to buy or stream in: the ``n_stream`` set aside in
    ``order``, then the rest of the data set's non-members, as far as the run needs.

    A data set may file one text twice, under two labels (fortunes does, 117 times): the
    stream skips a reservoir member's text and its own repeats, so what is bought later is
    new data, never a second row for a member (which the ledger refuses), and a reservoir
    that lost repeats (893 distinct of 900) is topped up to the volume all the same.
    """
    rest = np.concatenate([order[:n_stream], order[n_stream + n_reservoir :]])
    ids = human["id"].take(pa.array(rest)).to_numpy(zero_copy_only=False)
    first = np.zeros(len(ids), bool)
    first[np.unique(ids, return_index=True)[1]] = True
    members = ledger.reservoir_records("all").column("id").to_numpy(zero_copy_only=False)
    keep = first & ~np.isin(ids, members)
    return human.take(pa.array(rest[keep]))


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
