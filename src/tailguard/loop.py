"""The retraining loop: one round after another, every step recorded, resumable.

Round 0 trains on the frozen reservoir alone and measures the baseline. Each
round ``r >= 1``:

1. ``generate``: the model of round ``r-1`` writes candidates (generation ``r``),
   ingested with their provenance;
2. ``gate``: the verifiers rule on every candidate; verdicts are stored;
3. ``dial``: the dial reads the monitor's evidence and sets the real fraction;
4. ``plan``: the mixer plans the round's manifest from the training pool;
5. ``train``: the user's ``train`` callable fits model ``r`` on the manifest;
6. ``evaluate``: model ``r``'s samples are measured against the human holdout.

Every finished stage is written to the ledger, so a killed run continues from
the last finished stage (``resume=True``). Models are not stored: on resume the
model of the last planned round is trained again from its stored manifest, so
``train`` must be deterministic given the manifest (seed it from
``manifest.seed``).

After :meth:`Ledger.rollback` to round ``R``, a resumed run skips the rolled-back
rounds: the next round gets the next new number, plans from the clean state and
generates with the model retrained from round ``R``'s manifest. ``rounds`` counts the
live lineage, so a run asked for rounds ``0..n`` runs as many rounds again as were
rolled back.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError
from tailguard.evidence import CLEAN_DRAWS
from tailguard.ledger import Ledger, run_lock
from tailguard.mix import Decision, HumanOnly, Policy, plan
from tailguard.mix.planner import describe_share, planned_share
from tailguard.records import NO_GATE_CODE, SCHEMA, Manifest, Origin, make_records
from tailguard.stages import STAGES, RoundDial, RoundGate, RoundMonitor, missing, next_stage

TrainFn = Callable[[Manifest, pa.Table], Any]
GenerateFn = Callable[[Any, int, int, int], Any]
SampleFn = Callable[[Any, int, int], Any]


@dataclass
class RoundResult:
    """What one round did, for progress displays and tests."""

    round: int
    generated: int = 0
    accepted: int = 0
    rejected: int = 0
    real_fraction: float | None = None
    digest: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class Loop:
    """Drive retraining rounds over a ledger whose human reservoir is frozen.

    ``train(manifest, records) -> model``: fit a model on the round's training
    set (``records``: the manifest's rows in training order, with provenance).
    ``generate(model, n, round, seed)``: candidates from ``model``, as records or
    as ``(texts, labels)``. ``sample(model, round, seed)``: what to evaluate
    (default: ``generate`` with ``n_sample`` examples).

    ``n_sample`` defaults to ``n_generate`` up to :attr:`N_SAMPLE`: the text metrics
    settle long before a million texts, and a fixed sample size keeps rounds (and the
    human baseline, measured at the same size) like for like as ``n_generate`` grows.
    """

    #: Defaults (the config reads them here).
    N_GENERATE: int = 1000
    #: Largest default evaluation sample (``n_sample`` unset): see :func:`eval_size`.
    N_SAMPLE: int = 20_000
    BATCH_SIZE: int = 64
    RUN: str = "main"
    SEED: int = 0

    def __init__(
        self,
        ledger: Ledger,
        *,
        train: TrainFn,
        generate: GenerateFn,
        policy: Policy,
        gate: RoundGate | None = None,
        dial: RoundDial | None = None,
        monitor: RoundMonitor | None = None,
        sample: SampleFn | None = None,
        n_generate: int = N_GENERATE,
        n_sample: int | None = None,
        batch_size: int = BATCH_SIZE,
        run: str = RUN,
        seed: int = SEED,
        generator: str = "model",
    ) -> None:
        if n_generate < 1 or batch_size < 1:
            raise ConfigError("n_generate and batch_size must be at least 1")
        if dial is not None and monitor is None:
            raise ConfigError("a dial needs a monitor: it turns on the monitor's evidence")
        if dial is not None and not getattr(policy, "anchored", False):
            raise ConfigError(
                f"a dial turns the human share of an anchored policy, but the policy is "
                f"{getattr(policy, 'name', type(policy).__name__)!r}: use policy 'anchored' "
                "or drop the dial"
            )
        self.ledger, self.policy, self.gate, self.dial = ledger, policy, gate, dial
        self.train_fn, self.generate_fn, self.sample_fn = train, generate, sample
        self.monitor = monitor
        self.n_generate, self.n_sample = n_generate, eval_size(n_generate, n_sample)
        self.batch_size, self.run_name, self.seed, self.generator = batch_size, run, seed, generator
        self.model: Any = None
        #: The round whose manifest ``model`` was trained on (None: set from outside).
        self.model_round: int | None = None
        self._reference: Any = None
        self._user_seconds: dict[str, float] = {}
        self._marked = False
        #: A mark written with the next stage's writes (see :meth:`_mark`).
        self._pending: list[tuple[int, str, dt.datetime]] = []
        self._pooled: tuple[int, pa.Table] | None = None
        self._watching = False  # inside :meth:`run`: the ledger watches its tables

    # ------------------------------------------------------------------ driving
    def run(
        self,
        rounds: int,
        *,
        resume: bool = False,
        on_stage: Callable[[int, str], None] | None = None,
        on_round: Callable[[RoundResult], None] | None = None,
    ) -> list[RoundResult]:
        """Run rounds ``0..rounds`` (round 0 is the human-only baseline).

        With ``resume=True`` continue after the last finished stage of this run
        (after a rollback: with a new round, see :meth:`final_round`);
        without it, a run name that already has stages is refused. ``on_stage(round,
        stage)`` is called after every stage, ``on_round(result)`` after every round
        (e.g. a :class:`~tailguard.tracking.MlflowTracker`).

        The run holds the project's run lock (as ``tailguard run`` does: a second run,
        a rollback, freeze, relabel or release is refused meanwhile) and watches its
        tables between stages: a write by another process while it let go of the file
        stops it with :class:`~tailguard.ledger.ProjectChanged`.
        """
        if rounds < 0:
            raise ConfigError("rounds must be >= 0")
        with run_lock(self.ledger.path, reentrant=True):
            self.ledger.watch("the start of the run")
            self._watching = True
            try:
                return self._run(rounds, resume, on_stage, on_round)
            finally:
                self._watching = False
                self.ledger.watch(None)

    def _run(
        self,
        rounds: int,
        resume: bool,
        on_stage: Callable[[int, str], None] | None,
        on_round: Callable[[RoundResult], None] | None,
    ) -> list[RoundResult]:
        self._pending.clear()  # (marks of an attempt that failed were never written)
        last = self.last_finished()
        if last is not None and not resume:  # refused before the pin: a refusal writes nothing
            raise ConfigError(
                f"run {self.run_name!r} already has rounds in this ledger (the last finished: "
                f"{last[1]} of round {last[0]}): resume it (resume=True / --resume) or "
                "choose another run name"
            )
        # Fails early, with the reason, if unfrozen, tampered with or not the one pinned;
        # the first pin is written only once the resume point is rebuilt (it may refuse).
        self.ledger.pin_reservoir(self.run_name, record=False)
        gone = self.ledger.rolled_back_rounds(self.run_name)
        start_round, start_stage = next_stage(last)
        if gone and start_round <= max(gone):  # numbers never repeat, the loop's or by hand
            start_round, start_stage = max(gone) + 1, STAGES[0]
        if start_round > 0 or start_stage != STAGES[0]:
            self._restore_model(start_round, start_stage)
        self.ledger.pin_reservoir(self.run_name)
        results = []
        by_hand = self.measured_by_hand()
        for r in range(start_round, rounds + len(gone) + 1):
            first = start_stage if r == start_round else STAGES[0]
            if first == STAGES[0] and r in by_hand:
                continue  # measured by hand: done (the next round trains on the last plan)
            results.append(self.run_round(r, from_stage=first, on_stage=on_stage))
            if on_round is not None:
                on_round(results[-1])
        return results

    def run_round(
        self,
        r: int,
        *,
        from_stage: str = STAGES[0],
        on_stage: Callable[[int, str], None] | None = None,
    ) -> RoundResult:
        """Run the stages of round ``r`` from ``from_stage`` on."""
        result = RoundResult(round=r)
        todo = STAGES[STAGES.index(from_stage) :]
        for stage in todo:
            if self._watching:
                self.ledger.watch(f"round {r}, {stage}")
            if r == 0 and stage in {"generate", "gate", "dial"}:
                self._mark(r, stage)
                continue
            self._marked = False
            getattr(self, f"_{stage}")(r, result)
            self._mark(r, stage)
            if on_stage is not None:
                on_stage(r, stage)
        return result

    def last_finished(self) -> tuple[int, str] | None:
        """The run's last finished stage: its marks, or a later round made by hand.

        ``tailguard mix`` and ``tailguard eval`` write a round's manifest and metrics as
        the loop's ``plan`` and ``evaluate`` do, without the loop's marks; such a round
        is finished as far as its rows go, so the loop continues after it rather than
        planning it again (which history, append-only, refuses)."""
        last = self.ledger.last_stage(self.run_name)
        gone = set(self.ledger.rolled_back_rounds(self.run_name))
        after = -1 if last is None else last[0]
        planned = [r for r in self.ledger.manifests(self.run_name) if r > after and r not in gone]
        if not planned:
            return last
        r = max(planned)
        return (r, "evaluate" if r in self._model_measured() else "plan")

    def measured_by_hand(self) -> set[int]:
        """Rounds after 0 that ``tailguard eval`` measured with no manifest of the run: the
        loop takes them as done and goes past them (measuring one again would replace
        history, which a later round makes append-only), training on the last round
        it planned."""
        gone = set(self.ledger.rolled_back_rounds(self.run_name))
        planned = set(self.ledger.manifests(self.run_name))
        return {r for r in self._model_measured() if r > 0 and r not in planned | gone}

    def _model_measured(self) -> set[int]:
        metrics = self.ledger.metrics(self.run_name)
        return set(metrics.filter(pc.equal(metrics["sample"], "model"))["round"].to_pylist())

    def last_round(self) -> int | None:
        """The last round the run has, by the loop or by hand (None: none yet)."""
        last = self.last_finished()
        rounds = self.measured_by_hand() | ({last[0]} if last is not None else set())
        return max(rounds, default=None)

    def final_round(self, rounds: int) -> int:
        """The last round number :meth:`run` reaches for ``rounds`` live rounds after
        round 0: rolled-back rounds do not count, and numbers never repeat."""
        return rounds + len(self.ledger.rolled_back_rounds(self.run_name))

    def _mark(self, r: int, stage: str) -> None:
        if stage == "train" and self.monitor is not None:
            # Train writes nothing; its mark goes in with the evaluation's rows (one disk
            # sync less). Killed in between, a run resumes at train: it retrains, which
            # resuming at evaluate does too (models are not stored).
            self._pending.append((r, stage, dt.datetime.now(dt.UTC)))
        elif not self._marked:  # (a stage that writes marks itself, with its writes)
            with self.ledger.atomic():
                self._flush_marks()
                self.ledger.mark_stage(self.run_name, r, stage)
        self._marked = False
        self.ledger.between_stages()  # the ledger's hand-over policy: readers get in

    @contextmanager
    def _writes(self, r: int, stage: str) -> Iterator[None]:
        """A stage's writes and its mark in ``stages``: one transaction, so a killed run
        never finds a stage's rows without its mark (or the reverse), and a quick round
        pays one disk sync per stage."""
        with self.ledger.atomic():
            yield
            self._flush_marks()
            self.ledger.mark_stage(self.run_name, r, stage)
        self._marked = True

    def _flush_marks(self) -> None:
        for r, stage, at in self._pending:
            self.ledger.mark_stage(self.run_name, r, stage, at=at)
        self._pending.clear()

    def _user(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call one of the user's functions, letting go of the ledger file while it runs
        unless its last call was quicker than the ledger's ``HOLD`` (a cheap model)."""
        self.ledger.before_call(self._user_seconds.get(what))
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._user_seconds[what] = time.perf_counter() - started

    # ------------------------------------------------------------------ stages
    def _generate(self, r: int, result: RoundResult) -> None:
        if isinstance(self.policy, HumanOnly):
            return  # it never trains on synthetic data: generating some would only cost
        if self.ledger.count(round=r, origin=Origin.SYNTHETIC.value):
            return  # candidates ingested by hand (`tailguard ingest --round r`): gate those
        out = self._user(
            "generate", self.generate_fn, self.model, self.n_generate, r, self._seed(r, 1)
        )
        records = self._as_records(out, r)
        with self._writes(r, "generate"):
            self.ledger.add_records(records)
        result.generated = records.num_rows

    def _gate(self, r: int, result: RoundResult) -> None:
        if self.gate is not None:  # the gate's own round step: the same as `tailguard gate`
            with self._writes(r, "gate"):
                outcome = self.gate.run_round(self.ledger, r)
            result.accepted, result.rejected = len(outcome.accepted_ids), len(outcome.rejected_ids)
            return
        candidates = self.ledger.records(round=r, origin=Origin.SYNTHETIC, status="candidate")
        if candidates.num_rows == 0:
            return
        verdicts = _open_gate_verdicts(candidates["id"], r)
        none = pa.array([], pa.string())
        with self._writes(r, "gate"):
            self.ledger.record_gate(r, verdicts, accepted=candidates["id"], rejected=none)
        result.accepted, result.rejected = candidates.num_rows, 0

    def _dial(self, r: int, result: RoundResult) -> None:
        if self.dial is None:
            return
        evidence = self._synced_monitor().evidence(self.run_name)
        decision = self.dial.decide(r, evidence)
        # what the share will realise in this round's plan (the same arithmetic)
        share = planned_share(
            self._pool(r), self.policy, round=r, batch_size=self.batch_size,
            real_fraction=decision.real_fraction, seed=self._seed(r, 2),
        )  # fmt: skip
        decision = Decision(
            round=decision.round,
            real_fraction=decision.real_fraction,
            reason=f"{decision.reason}; {describe_share(share)}",
            evidence={**decision.evidence, "share": share},
        )
        with self._writes(r, "dial"):
            self.ledger.write_decision(
                run=self.run_name,
                round=r,
                real_fraction=decision.real_fraction,
                reason=decision.reason,
                evidence=decision.evidence,
            )
        result.real_fraction = decision.real_fraction

    def _plan(self, r: int, result: RoundResult) -> None:
        policy = HumanOnly() if r == 0 else self.policy
        fraction = self._decided_fraction(r) if r > 0 and self.dial is not None else None
        manifest = plan(
            self._pool(r),
            policy,
            round=r,
            batch_size=self.batch_size,
            real_fraction=fraction,
            seed=self._seed(r, 2),
            run=self.run_name,
        )
        with self._writes(r, "plan"):
            result.digest = self.ledger.write_manifest(manifest)
        self._pooled = None
        result.real_fraction = manifest.params.get("real_fraction_used")

    def _train(self, r: int, result: RoundResult) -> None:
        manifest = self.ledger.manifest(r, self.run_name)
        records = self.ledger.manifest_records(r, self.run_name, checked=manifest)
        self.model = self._user("train", self.train_fn, manifest, records)
        self.model_round = r

    def _evaluate(self, r: int, result: RoundResult) -> None:
        if self.monitor is None or r in self._model_measured():
            return  # (measured by hand, `tailguard eval`: kept, never measured again)
        monitor = self._synced_monitor()
        fn = self.sample_fn or (lambda m, rnd, s: self.generate_fn(m, self.n_sample, rnd, s))
        sample = self._as_records(self._user("sample", fn, self.model, r, self._seed(r, 3)), r)
        draws = []
        if r == 0:  # the clean model: its spread over several samples is the noise band
            for i in range(1, CLEAN_DRAWS):
                extra = self._user("sample", fn, self.model, r, self._seed(r, 100 + i))
                extra = self._as_records(extra, r)
                draws.append((extra["content"], extra["label"]))
        with self._writes(r, "evaluate"):
            own = evaluate_sample(
                self.ledger, monitor, r, sample["content"], sample["label"], run=self.run_name,
                draws=draws,
            )  # fmt: skip
        result.metrics = dict(zip(own["metric"].to_pylist(), own["value"].to_pylist(), strict=True))

    def _synced_monitor(self) -> RoundMonitor:
        """The monitor, holding the ledger's history of this run and the holdout reference."""
        if self._reference is None:
            digest = self.ledger.reservoir().digest
            if not self.monitor.use_reference(digest):
                holdout = self.ledger.reservoir_records("holdout")
                self.monitor.set_reference(holdout["content"], holdout["label"], digest=digest)
            self._reference = self.monitor.reference
        metrics = self.ledger.metrics(self.run_name)
        gone = self.ledger.rolled_back_rounds(self.run_name)
        if gone:  # a rolled-back round's evidence is history, not the live lineage's
            metrics = metrics.filter(pc.invert(pc.is_in(metrics["round"], pa.array(gone))))
        self.monitor.load(metrics)
        return self.monitor

    # ------------------------------------------------------------------ helpers
    def _pool(self, r: int) -> pa.Table:
        """Round ``r``'s training pool, read once for the dial and the plan (nothing
        changes the pool between them)."""
        if self._pooled is None or self._pooled[0] != r:
            self._pooled = (r, self.ledger.training_pool(r, text=False))
        return self._pooled[1]

    def _decided_fraction(self, r: int) -> float | None:
        d = self.ledger.decisions(self.run_name)
        d = d.filter(pc.equal(d["round"], r))
        return d["real_fraction"][0].as_py() if d.num_rows else None

    def _restore_model(self, start_round: int, start_stage: str) -> None:
        """Rebuild what the interrupted stage needs: the dial's state and the last model."""
        if self.dial is not None:
            self._resume_dial(start_round, start_stage)
        needs_current = STAGES.index(start_stage) > STAGES.index("train")
        if needs_current:
            source_round = start_round
        else:  # the latest live round before: after a rollback, the round gone back to
            gone = set(self.ledger.rolled_back_rounds(self.run_name))
            live = [r for r in self.ledger.manifests(self.run_name) if r < start_round]
            source_round = max((r for r in live if r not in gone), default=-1)
        if source_round >= 0:
            self._train(source_round, RoundResult(round=source_round))

    def _resume_dial(self, start_round: int, start_stage: str) -> None:
        """Replay the decisions made before the resume point, so the dial's state matches."""
        decisions = self.ledger.decisions(self.run_name)
        done = start_round if STAGES.index(start_stage) <= STAGES.index("dial") else start_round + 1
        decisions = decisions.filter(pc.less(decisions["round"], done))
        gone = self.ledger.rolled_back_rounds(self.run_name)
        if gone:  # the rolled-back rounds' decisions are not the live lineage's
            decisions = decisions.filter(pc.invert(pc.is_in(decisions["round"], pa.array(gone))))
        self.dial = type(self.dial).resume(decisions, **self.dial.params())

    def _model_round(self, r: int) -> int:
        """The round whose model writes round ``r``'s candidates (after a rollback, the
        round gone back to; a model set from outside is taken as round ``r - 1``'s)."""
        return r - 1 if self.model_round is None else self.model_round

    def _seed(self, r: int, stream: int) -> int:
        """Independent, reproducible seeds per run seed, round and purpose."""
        return (self.seed * 1_000_003 + r * 7919 + stream) % (2**31)

    def _as_records(self, out: Any, r: int) -> pa.Table:
        if isinstance(out, pa.Table) and out.schema.equals(SCHEMA, check_metadata=False):
            return out
        texts, labels = out if isinstance(out, tuple) else (out, None)
        return make_records(
            texts,
            origin=Origin.SYNTHETIC,
            source=self.generator,
            generator=f"{self.generator}@round{self._model_round(r)}",
            generation=max(r, 1),
            round=r,
            label=labels,
        )


@dataclass(frozen=True)
class LoopModel:
    """The user's side of a loop: ``train``, ``generate`` and ``sample`` (see
    :class:`Loop`), and ``name``, the generator its candidates are recorded under."""

    train: TrainFn
    generate: GenerateFn
    sample: SampleFn | None = None
    name: str = "model"


@dataclass(frozen=True)
class LoopSettings:
    """A loop's sizes and names: candidates per round, evaluated texts per round (None:
    :func:`eval_size`), examples per batch, the run's name and its seed."""

    n_generate: int = Loop.N_GENERATE
    n_sample: int | None = None
    batch_size: int = Loop.BATCH_SIZE
    run: str = Loop.RUN
    seed: int = Loop.SEED


def build_loop(
    ledger: Ledger,
    model: LoopModel,
    policy: Policy,
    *,
    gate: RoundGate | None = None,
    dial: RoundDial | None = None,
    monitor: RoundMonitor | None = None,
    settings: LoopSettings | None = None,
) -> Loop:
    """The one way tailguard assembles a :class:`Loop`: a project's ``tailguard.toml``
    (``tailguard run``), a lab job and its recovery rounds all come through here.

    Each part is checked against its contract (:mod:`tailguard.stages`) before
    anything runs, so a part that cannot run its stage is refused by name
    (``ConfigError``) instead of failing rounds later.
    """
    for part, value in (("gate", gate), ("dial", dial), ("monitor", monitor)):
        lacking = missing(part, value) if value is not None else []
        if lacking:
            raise ConfigError(
                f"the loop's {part} ({type(value).__name__}) lacks {', '.join(lacking)}: "
                f"see tailguard.stages.Round{part.capitalize()}"
            )
    s = settings or LoopSettings()
    return Loop(
        ledger, train=model.train, generate=model.generate, sample=model.sample,
        policy=policy, gate=gate, dial=dial, monitor=monitor,
        n_generate=s.n_generate, n_sample=s.n_sample, batch_size=s.batch_size,
        run=s.run, seed=s.seed, generator=model.name,
    )  # fmt: skip


def eval_size(n_generate: int, n_sample: int | None = None) -> int:
    """Texts evaluated per round: ``n_sample`` if set, else ``n_generate`` capped at
    :attr:`Loop.N_SAMPLE` (the size the human baseline is measured at, too)."""
    return n_sample if n_sample else min(n_generate, Loop.N_SAMPLE)


def evaluate_sample(
    ledger: Ledger,
    monitor: RoundMonitor,
    round: int,  # noqa: A002
    texts: Any,
    labels: Any = None,
    *,
    sample: str = "model",
    run: str = "main",
    draws: list[tuple[Any, Any]] | None = None,
) -> pa.Table:
    """The evaluate step: measure a sample against the monitor's reference and store it.

    ``draws``: more samples of the same model (texts, labels), stored as its draws: at
    round 0 they give the clean model's noise band (:mod:`tailguard.evidence`).

    A run's first evaluation also stores the human baseline (:func:`human_baseline`,
    at this sample's size) unless ``reservoir freeze`` did, with labels when both the
    sample and the reservoir have them. Used by :class:`Loop` and ``tailguard eval``;
    returns the sample's metric rows.
    """
    rows = monitor.record(round, texts, labels, sample=sample, run=run)
    extra = monitor.record_draws(round, draws or [], sample=sample, run=run)
    floor = human_baseline(
        ledger, monitor, run=run, labelled=_labelled(labels), write=False, size=len(texts)
    )
    ledger.write_metrics(pa.concat_tables([t for t in (rows, extra, floor) if t is not None]))
    return rows


def human_baseline(
    ledger: Ledger,
    monitor: RoundMonitor,
    *,
    run: str = "main",
    labelled: bool = True,
    write: bool = True,
    size: int = Loop.N_GENERATE,
) -> pa.Table | None:
    """The run's human baseline and noise floor, like for like with its rounds: human
    samples of ``size`` texts (the size each round's sample has) from the reservoir's
    training split, measured against the holdout with the monitor's preset and
    embedder (:meth:`~tailguard.monitor.Monitor.record_noise_floor`), with labels when
    asked for and the reservoir has them. Recorded once per run (``reservoir freeze``
    or the run's first evaluation); returns the new rows, or None when the run
    already has them.
    """
    from tailguard.monitor import NOISE_FLOOR_SAMPLE

    if NOISE_FLOOR_SAMPLE in set(ledger.metrics(run)["sample"].to_pylist()):
        return None
    digest = ledger.reservoir().digest
    if monitor.reference is None and not monitor.use_reference(digest):
        holdout = ledger.reservoir_records("holdout")  # labels kept: label metrics need both
        monitor.set_reference(holdout["content"], holdout["label"], digest=digest)
    floor = monitor.cached_noise_floor(digest, labelled, size=size, run=run)
    if floor is None:
        train = ledger.reservoir_records("train")
        with_labels = labelled and _labelled(train["label"])
        floor = monitor.record_noise_floor(
            train["content"],
            train["label"] if with_labels else None,
            size=size,
            run=run,
            digest=digest if with_labels == labelled else None,
        )
    if write:
        ledger.write_metrics(floor)
    return floor


def _labelled(labels: Any) -> bool:
    return labels is not None and labels.null_count < len(labels)


def _open_gate_verdicts(ids: pa.ChunkedArray, r: int) -> pa.Table:
    """With no gate configured, say so in the ledger rather than accept silently."""
    n = len(ids)
    return pa.table(
        {
            "id": ids,
            "round": pa.repeat(pa.scalar(r, pa.int32()), n),
            "verifier": pa.repeat(pa.scalar("none"), n),
            "params": pa.repeat(pa.scalar("{}"), n),
            "version": pa.repeat(pa.scalar("0"), n),
            "passed": pa.repeat(pa.scalar(True), n),
            "code": pa.repeat(pa.scalar(NO_GATE_CODE), n),
            "detail": pa.repeat(pa.scalar("no gate configured: accepted unchecked"), n),
            "score": pa.nulls(n, pa.float64()),
            "matched_id": pa.nulls(n, pa.string()),
        }
    )
