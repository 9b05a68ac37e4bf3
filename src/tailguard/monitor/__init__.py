"""Metric history over retraining rounds: the two references, bands, alerts and evidence.

A :class:`Monitor` records, per round and per named sample, every metric of a
preset against the human holdout. Two references frame each figure, kept apart
(:mod:`tailguard.evidence`):

- the **clean model**: the sample's round 0 (the model trained on the reservoir
  alone), measured :data:`~tailguard.evidence.CLEAN_DRAWS` times; its mean is the
  reference and the spread of its draws the noise band. Drift beyond the band in
  the bad direction is *degraded*: what alerts fire on and the dial turns on;
- the **human baseline** (the noise floor): human samples of the rounds' size from
  the reservoir's training split, measured against the holdout exactly as a round
  is. The clean model's distance to it is the *capacity gap*, reported with what
  closes it, never alerted on or dialled.

History is an Arrow table with the ledger's metric columns; the monitor never
touches the ledger itself. Its columns and sample names are :mod:`.history`'s, the
bands and evidence read from it :mod:`.bands`', the alert rules :mod:`.alerts`'; the
:class:`Monitor` here records rounds, prepares references (once per process and
reservoir) and answers from its history.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.evidence import Band, CapacityGap, capacity_gap
from tailguard.metrics import REGISTRY, Embedder, Preset, Reference, evaluate, get_preset
from tailguard.metrics.embedders import EMBEDDING_METRICS, default_embedder_name, make_embedder
from tailguard.metrics.registry import PerRecord
from tailguard.mix.dial import Evidence
from tailguard.monitor.alerts import Alert, alerts_table, raise_alerts
from tailguard.monitor.bands import _TINY, noise_floor, sample_bands, sample_evidence
from tailguard.monitor.history import (
    DRAW_MARK,
    HISTORY_SCHEMA,
    NOISE_FLOOR_SAMPLE,
    UNLABELLED,
    Rows,
    _as_direction,
    _column,
    _conform,
    _labels_or_none,
    draw_name,
    empty_history,
    is_draw,
    preset_for,
)

__all__ = [
    "DRAW_MARK",
    "HISTORY_SCHEMA",
    "NOISE_FLOOR_SAMPLE",
    "PREPARED_CACHE",
    "UNLABELLED",
    "Alert",
    "Change",
    "Evidence",
    "Monitor",
    "Status",
    "Trend",
    "alerts_table",
    "draw_name",
    "empty_history",
    "is_draw",
    "preset_for",
]

#: Prepared human references and noise floors, keyed by the reservoir's digest (and the
#: preset, embedder and seed they depend on): a reservoir's tokens, embeddings and floor
#: are computed once per process however many runs use it (the lab runs dozens).
_PREPARED: dict[tuple[Any, ...], Any] = {}
PREPARED_CACHE = 8


@dataclass(frozen=True)
class Trend:
    """Least-squares slope of a metric over rounds with its confidence interval."""

    run: str
    sample: str
    metric: str
    n_rounds: int
    slope: float
    intercept: float
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    pvalue: float | None
    #: None: a two-sided metric, whose slope is that of its distance from the ideal.
    higher_is_better: bool | None

    @property
    def worsening(self) -> bool:
        """True when the whole confidence interval lies on the bad side of zero."""
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_high < 0 if self.higher_is_better is True else self.ci_low > 0

    @property
    def arrow(self) -> str:
        if self.ci_low is not None and self.ci_low > 0:
            return "↑"
        if self.ci_high is not None and self.ci_high < 0:
            return "↓"
        return "→"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "worsening": self.worsening}


@dataclass(frozen=True)
class Change:
    """One metric's latest value against the clean model, and the arrow that says which way."""

    metric: str
    sample: str
    baseline: float
    value: float
    relative_change: float
    arrow: str
    #: outside the clean model's band in the bad direction (see :mod:`tailguard.evidence`)
    degraded: bool
    #: a human baseline is recorded (its value is in the evidence, apart from this one)
    human_baseline: bool


@dataclass(frozen=True)
class Status:
    """Evidence and alerts of one run at its latest rounds."""

    run: str
    round: int | None
    evidence: list[Evidence]
    alerts: list[Alert]

    @property
    def early_warning(self) -> bool:
        return any(a.rule == "early_warning" for a in self.alerts)

    @property
    def degraded(self) -> bool:
        return any(e.degraded for e in self.evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "round": self.round,
            "early_warning": self.early_warning,
            "degraded": self.degraded,
            "evidence": [e.to_dict() for e in self.evidence],
            "alerts": [a.to_dict() for a in self.alerts],
        }


class Monitor:
    """Records each round's metrics and turns the history into trends, alerts and evidence."""

    #: The metric preset a monitor measures unless told otherwise.
    PRESET: str = "default"
    #: The reservoir digest the reference was prepared for, with that reference.
    _prepared: tuple[str, Reference] | None = None
    #: The history table and run the last rows read were of, and those rows.
    _rows: tuple[pa.Table, str, Rows] | None = None

    def __init__(
        self,
        *,
        preset: str | Preset = PRESET,
        run: str = "main",
        reference: Reference | None = None,
        embedder: Embedder | str | None = None,
        seed: int = 0,
        history: pa.Table | None = None,
        cache_dir: str | Path | None = None,
        per_record: PerRecord | None = None,
    ) -> None:
        self.preset = get_preset(preset)
        #: where each text's words and embedding are computed (None: here; or on Ray)
        self.per_record = per_record
        self.run = run
        self.reference = reference
        if embedder is None and set(self.preset.metrics) & set(EMBEDDING_METRICS):
            embedder = "auto"
        if embedder == "auto":
            embedder = default_embedder_name()
        if isinstance(embedder, str):  # the hashing embedder is cheaper than its cache
            embedder = make_embedder(
                embedder, cache_dir=None if embedder == "hashing" else cache_dir
            )
        self.embedder = embedder
        #: ``hashing`` unless a model embeds: then the embedding metrics are alerted on
        self.embedder_name = "hashing" if embedder is None else embedder.name
        self.seed = seed
        self._history = empty_history() if history is None else _conform(history)

    # -- recording ----------------------------------------------------------------------------

    @classmethod
    def from_history(cls, table: pa.Table, **kwargs: Any) -> Monitor:
        """A monitor over stored history (e.g. ``Ledger.metrics()``)."""
        return cls(history=table, **kwargs)

    @property
    def history(self) -> pa.Table:
        """All rows, sorted by run, round, sample, metric (the ledger's metric columns)."""
        return self._history.sort_by(
            [("run", "ascending"), ("round", "ascending"), ("sample", "ascending"),
             ("metric", "ascending")]
        )  # fmt: skip

    def load(self, table: pa.Table) -> Monitor:
        """Replace the history with stored rows (the loop syncs with the ledger this way)."""
        self._history = _conform(table)
        return self

    def set_reference(
        self, texts: Any, labels: Any = None, *, digest: str | None = None
    ) -> Monitor:
        """The human reference every sample is compared with (normally the reservoir holdout).

        With the reservoir's ``digest``, a reference prepared earlier in this process
        for the same reservoir and embedder is reused (see :meth:`use_reference`).
        """
        self.reference = Reference(
            texts, _labels_or_none(labels), embedder=self.embedder, per_record=self.per_record
        )
        self._prepared = None if digest is None else (digest, self.reference)
        if digest is not None:
            _remember(self._reference_key(digest), self.reference)
        return self

    def use_reference(self, digest: str) -> bool:
        """Take the reference prepared for the reservoir with ``digest``, if there is one."""
        ref = _PREPARED.get(self._reference_key(digest))
        if ref is not None:
            self.reference, self._prepared = ref, (digest, ref)
        return ref is not None

    def _reference_key(self, digest: str) -> tuple[Any, ...]:
        # a reference prepared on Ray computes its lazy parts there: kept apart
        return ("reference", digest, self.embedder_name, self.per_record is not None)

    def _reference_is(self, digest: str) -> bool:
        """Whether the reference is the one prepared for the reservoir with ``digest``."""
        prepared = self._prepared
        return prepared is not None and prepared[0] == digest and prepared[1] is self.reference

    def _floor_key(self, digest: str, labelled: bool, size: int) -> tuple[Any, ...]:
        # Everything the like-for-like baseline depends on besides the reservoir itself.
        return (
            "floor", digest, self.preset.name, self.embedder_name, self.seed, labelled,
            size, self.BASELINE_DRAWS,
        )  # fmt: skip

    def cached_noise_floor(  # noqa: ANN201
        self, digest: str, labelled: bool, *, size: int, run: str | None = None
    ):
        """The noise floor measured earlier in this process for this reservoir (against
        its holdout, the monitor's reference) at ``size``, recorded for ``run``; None if
        there is none."""
        if not self._reference_is(digest):
            return None
        measured = _PREPARED.get(self._floor_key(digest, labelled, size))
        if measured is None:
            return None
        return self._record_floor(measured, run)

    def _record_floor(self, measured: list[dict[str, float]], run: str | None) -> pa.Table:
        """The baseline (the draws' mean) and each draw (its spread: the fallback noise of
        a clean model measured once)."""
        values = {m: float(np.mean([v[m] for v in measured])) for m in measured[0]}
        rows = [self.record_values(0, values, sample=NOISE_FLOOR_SAMPLE, run=run)]
        if len(measured) > 1:
            for i, draw in enumerate(measured, start=1):
                rows.append(
                    self.record_values(0, draw, sample=draw_name(NOISE_FLOOR_SAMPLE, i), run=run)
                )
        return pa.concat_tables(rows)

    def record_draws(
        self,
        round: int,
        draws: list[tuple[Any, Any]],
        *,
        sample: str = "model",
        run: str | None = None,
    ) -> pa.Table:  # noqa: A002
        """Extra samples of one model (texts, labels), stored as draws of ``sample``: at
        round 0 they are the clean model's noise band (see :mod:`tailguard.evidence`)."""
        rows = [
            self.record(round, texts, labels, sample=draw_name(sample, i), run=run)
            for i, (texts, labels) in enumerate(draws, start=1)
        ]
        return pa.concat_tables(rows) if rows else empty_history()

    def _require_reference(self) -> Reference:
        if self.reference is None:
            raise InputError("the monitor has no reference: call set_reference(texts, labels)")
        return self.reference

    def record(
        self,
        round: int,
        texts: Any,
        labels: Any = None,
        *,
        sample: str = "model",
        run: str | None = None,
    ) -> pa.Table:
        """Evaluate a sample against the reference and record it as ``round``; returns the rows."""
        values = evaluate(
            texts,
            _labels_or_none(labels),
            self._require_reference(),
            preset=self.preset,
            seed=self.seed,
            per_record=self.per_record,
        )
        return self.record_values(round, values, sample=sample, run=run)

    #: Disjoint human samples whose mean is the baseline (fewer when the split is small).
    BASELINE_DRAWS: int = 3

    def record_noise_floor(
        self,
        train_texts: Any,
        train_labels: Any = None,
        *,
        size: int,
        run: str | None = None,
        digest: str | None = None,
    ) -> pa.Table:
        """The human baseline (noise floor), measured like for like with the rounds.

        Human samples of ``size`` texts (the size the rounds are evaluated at), drawn
        without replacement from the reservoir's training split, are measured against
        the monitor's reference (the holdout) exactly as a round's sample is; the
        baseline is their mean over up to ``BASELINE_DRAWS`` disjoint draws. Equal sizes
        matter: distinct-n, vocabulary coverage and rare-vocabulary coverage all move
        with the number of texts, so a baseline of another size would be biased.

        With the reservoir's ``digest`` (and the monitor's reference prepared for it by
        ``set_reference(..., digest=)`` or :meth:`use_reference`) it is kept for
        :meth:`cached_noise_floor`.
        """
        reference = self._require_reference()
        texts = _column(train_texts)
        labels = _labels_or_none(None if train_labels is None else _column(train_labels))
        n = len(texts)
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise InputError(f"the baseline's sample size must be a positive integer, got {size!r}")
        if n == 0:
            raise InputError("the reservoir's training split is empty: no human baseline")
        requested = int(size)
        size = min(requested, n)
        draws = max(1, min(self.BASELINE_DRAWS, n // size))
        order = np.random.default_rng(self.seed).permutation(n)[: draws * size]
        measured = []
        for idx in order.reshape(draws, size):
            take = pa.array(np.sort(idx))
            measured.append(
                evaluate(
                    texts.take(take),
                    None if labels is None else labels.take(take),
                    reference,
                    preset=self.preset,
                    seed=self.seed,
                    per_record=self.per_record,
                )
            )
        if digest is not None and self._reference_is(digest):
            _remember(self._floor_key(digest, labels is not None, requested), measured)
        return self._record_floor(measured, run)

    def record_values(
        self,
        round: int,
        values: dict[str, float],
        *,
        sample: str = "model",
        run: str | None = None,
        higher_is_better: dict[str, bool | None] | None = None,
    ) -> pa.Table:
        """Record already-computed figures; replaces an earlier record of the same round."""
        if isinstance(round, bool) or not isinstance(round, int | np.integer) or round < 0:
            raise InputError(f"round must be an integer >= 0, got {round!r}")
        if not values:
            raise InputError("no metric values to record")
        run = self.run if run is None else run
        names = list(values)
        directions = []
        for name in names:
            v = values[name]
            if not isinstance(v, int | float | np.floating) or not math.isfinite(v):
                raise InputError(f"metric {name!r} has a non-finite value {v!r}")
            if higher_is_better and name in higher_is_better:
                hib = higher_is_better[name]
                directions.append(None if hib is None else bool(hib))
            elif name in REGISTRY:
                directions.append(REGISTRY[name].higher_is_better)
            else:
                raise InputError(f"metric {name!r} is not registered: pass higher_is_better for it")
        rows = pa.table(
            {
                "run": pa.array([run] * len(names), pa.string()),
                "round": pa.array([int(round)] * len(names), pa.int32()),
                "sample": pa.array([sample] * len(names), pa.string()),
                "metric": pa.array(names, pa.string()),
                "value": pa.array([float(values[n]) for n in names], pa.float64()),
                "higher_is_better": pa.array(directions, pa.bool_()),
            },
            schema=HISTORY_SCHEMA,
        )
        h = self._history
        same = pc.and_(
            pc.and_(pc.equal(h["run"], run), pc.equal(h["round"], int(round))),
            pc.equal(h["sample"], sample),
        )
        self._history = pa.concat_tables([h.filter(pc.invert(same)), rows])
        return rows

    # -- reading ------------------------------------------------------------------------------

    def _frame(self, run: str | None) -> Rows:
        """``run``'s rows of the history as numpy columns (kept until the history changes)."""
        run = self.run if run is None else run
        cached = self._rows
        if cached is None or cached[0] is not self._history or cached[1] != run:
            h = self._history
            cached = (h, run, Rows(h.filter(pc.equal(h["run"], run))))
            self._rows = cached
        return cached[2]

    def runs(self) -> list[str]:
        return sorted(set(self._history["run"].to_pylist()))

    def samples(self, run: str | None = None) -> list[str]:
        names = set(self._frame(run).sample.tolist())
        return sorted(s for s in names if s != NOISE_FLOOR_SAMPLE and not is_draw(s))

    def series(self, metric: str, *, sample: str = "model", run: str | None = None):  # noqa: ANN201
        """(rounds, values) of one metric of one sample, by round."""
        df = self._frame(run)
        df = df.where((df.sample == sample) & (df.metric == metric)).by_round()
        return df.round.astype(np.int64), df.value.astype(np.float64)

    def trend(
        self,
        metric: str,
        *,
        sample: str = "model",
        run: str | None = None,
        confidence: float = 0.95,
    ) -> Trend | None:
        """Slope per round (scipy linregress) with a ``confidence`` interval; None if < 2 rounds."""
        from scipy import stats

        rounds, vals = self.series(metric, sample=sample, run=run)
        if rounds.size < 2:
            return None
        hib = self._direction(metric, run)
        if hib is None:  # two-sided: the trend is the distance's
            vals = np.abs(vals - _ideal(metric, float(vals[0])))
        if np.ptp(vals) == 0:
            slope, intercept, stderr, p = 0.0, float(vals[0]), 0.0, 1.0
        else:
            fit = stats.linregress(rounds.astype(float), vals)
            slope, intercept, stderr, p = fit.slope, fit.intercept, fit.stderr, fit.pvalue
        lo = hi = None
        if rounds.size >= 3:
            t = stats.t.ppf(0.5 + confidence / 2, rounds.size - 2)
            lo, hi = slope - t * stderr, slope + t * stderr
        return Trend(
            self.run if run is None else run, sample, metric, int(rounds.size), float(slope),
            float(intercept), None if rounds.size < 3 else float(stderr),
            None if lo is None else float(lo), None if hi is None else float(hi),
            None if rounds.size < 3 else float(p), hib,
        )  # fmt: skip

    def metric_names(self, *, sample: str = "model", run: str | None = None) -> list[str]:
        """The metrics recorded for ``sample``, sorted."""
        df = self._frame(run)
        return sorted(set(df.metric[df.sample == sample].tolist()))

    def trends(self, *, sample: str = "model", run: str | None = None) -> list[Trend]:
        names = self.metric_names(sample=sample, run=run)
        out = [self.trend(m, sample=sample, run=run) for m in names]
        return [t for t in out if t is not None]

    def _direction(self, metric: str, run: str | None) -> bool | None:
        df = self._frame(run)
        rows = df.where(df.metric == metric)
        if len(rows):
            return _as_direction(rows.hib[-1])
        return REGISTRY[metric].higher_is_better

    def latest_round(self, *, sample: str = "model", run: str | None = None) -> int | None:
        rounds = (df := self._frame(run)).round[df.sample == sample]
        return None if rounds.size == 0 else int(rounds.max())

    def evidence(
        self, run: str | None = None, *, sample: str | None = None, round: int | None = None
    ) -> list[Evidence]:
        """Per watched metric and sample: the value at ``round`` (default: each sample's
        latest) against the clean model's band, with its verdict.

        The clean model is the sample's round 0 (else its first measured round) with its
        extra draws; the human baseline rides along as ``noise_floor`` and, when the
        clean model is behind it, as ``capacity_gap``. See :mod:`tailguard.evidence`.
        """
        run = self.run if run is None else run
        df = self._frame(run)
        floor = noise_floor(df)
        out: list[Evidence] = []
        for smp in [sample] if sample is not None else self.samples(run):
            keep = df.sample == smp
            if round is not None:
                keep &= df.round <= round
            sdf = df.where(keep)
            if not len(sdf):
                continue
            bands = sample_bands(df, smp, self.preset, self.embedder_name)
            out += sample_evidence(run, smp, sdf, floor, bands, self.preset)
        return out

    def bands(self, run: str | None = None, *, sample: str = "model") -> dict[str, Band]:
        """Each watched metric's band around the clean model of ``sample`` (what the
        report draws and every verdict reads)."""
        return sample_bands(self._frame(run), sample, self.preset, self.embedder_name)

    def clean_round(self, run: str | None = None, *, sample: str = "model") -> int | None:
        """The round of the clean model: 0 when measured, else the sample's first."""
        rounds = (df := self._frame(run)).round[df.sample == sample]
        return None if rounds.size == 0 else int(rounds.min())

    def capacity_gaps(self, run: str | None = None, *, sample: str = "model") -> list[CapacityGap]:
        """Where the clean model is behind human data beyond its band: a gap that no human
        share closes (it is never alerted on or dialled)."""
        df = self._frame(run)
        floor = noise_floor(df)
        out = []
        for metric, b in sample_bands(df, sample, self.preset, self.embedder_name).items():
            if metric in floor:
                gap = capacity_gap(metric, b, float(floor[metric]))
                if gap is not None:
                    out.append(gap)
        return out

    #: How far (relative) an unwatched metric must be from the clean model for its arrow
    #: to follow the change rather than the slope's confidence interval.
    ARROW_CHANGE: float = 0.10

    def change(self, metric: str, *, sample: str = "model", run: str | None = None) -> Change:
        """The latest value of one metric against the clean model (its first round), with
        the arrow the monitor draws: the direction of the change when it is a
        degradation (a watched metric outside its band, or an unwatched one worse by
        ``ARROW_CHANGE``), else the slope's (``Trend.arrow``)."""
        run = self.run if run is None else run
        rounds, vals = self.series(metric, sample=sample, run=run)
        if rounds.size == 0:
            raise InputError(f"no history of {metric!r} for sample {sample!r} in run {run!r}")
        floor = noise_floor(self._frame(run)).get(metric)
        watched = [x for x in self.evidence(run, sample=sample) if x.metric == metric]
        hib = self._direction(metric, run)
        value = float(vals[-1])
        if watched:
            baseline, degraded = watched[0].baseline, watched[0].degraded
        else:
            baseline = float(vals[0])
            rel = _worse_by(value, baseline, hib, _ideal(metric, baseline))
            degraded = rounds.size > 1 and rel > self.ARROW_CHANGE * max(abs(baseline), _TINY)
        trend = self.trend(metric, sample=sample, run=run)
        if degraded:
            arrow = "↓" if value < baseline else "↑"
        else:
            arrow = "→" if trend is None else trend.arrow
        relative = (value - baseline) / max(abs(baseline), _TINY)
        return Change(
            metric, sample, baseline, value, relative, arrow, bool(degraded), floor is not None
        )

    def alerts(self, run: str | None = None, *, round: int | None = None) -> list[Alert]:
        """Threshold, variance-shrinkage and early-warning alerts at ``round`` (default:
        each sample's latest round)."""
        return raise_alerts(self.evidence(run, round=round), self.preset)

    def alert_history(self, run: str | None = None) -> pa.Table:
        """Every alert of every round, not only the latest: columns run, round, sample,
        rule, metrics, message (one row per alert that fired at that round)."""
        run = self.run if run is None else run
        df = self._frame(run)
        alerts: list[Alert] = []
        for smp in self.samples(run):
            for rnd in sorted(set(df.round[df.sample == smp].tolist())):
                alerts += raise_alerts(self.evidence(run, sample=smp, round=int(rnd)), self.preset)
        return alerts_table(alerts).select(["run", "round", "sample", "rule", "metrics", "message"])

    def status(self, run: str | None = None) -> Status:
        """Evidence and alerts of ``run`` (default: the monitor's run) at its latest rounds."""
        run = self.run if run is None else run
        evidence = self.evidence(run)
        rounds = [e.round for e in evidence]
        return Status(run, max(rounds) if rounds else None, evidence, self.alerts(run))

    def params(self) -> dict[str, Any]:
        return {"preset": self.preset.to_dict(), "run": self.run, "seed": self.seed}


def _remember(key: tuple[Any, ...], value: Any) -> None:
    _PREPARED.pop(key, None)
    _PREPARED[key] = value
    while len(_PREPARED) > PREPARED_CACHE:
        _PREPARED.pop(next(iter(_PREPARED)))


def _ideal(metric: str, baseline: float) -> float:
    """Where a two-sided metric means "no change": its declared ideal, else the baseline."""
    declared = REGISTRY[metric].ideal if metric in REGISTRY else None
    return baseline if declared is None else float(declared)


def _worse_by(value: float, baseline: float, hib: bool | None, ideal: float) -> float:
    """How much worse ``value`` is than ``baseline``; two-sided: farther from the ideal."""
    if hib is None:
        return abs(value - ideal) - abs(baseline - ideal)
    return (baseline - value) if hib else (value - baseline)
