"""Contamination screening: "human" records that a model probably wrote.

Human data is increasingly polluted with model output. :class:`Screener` learns
from the ledger's own provenance and checks incoming human records two ways:

- **copies**: a near-duplicate (MinHash, Jaccard >= ``near_threshold``) of a
  synthetic record already in the ledger, naming its id and generation
  (code ``copies_synthetic``);
- **style**: a detector trained on the ledger's human records vs its synthetic
  records (hashed word and character n-grams, logistic regression),
  cross-validated; a record scoring at or above the threshold is flagged
  (code ``model_written``). The threshold is the lowest out-of-fold score whose
  flagged set reaches ``precision`` (or a fixed ``threshold``).

:func:`screen_ingest` quarantines what it flags (``Ledger.quarantine``): kept,
never deleted, never frozen into a reservoir or trained on until released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.gate import classifier
from tailguard.gate.base import Verifier, verdicts
from tailguard.gate.dedup import NearDuplicate
from tailguard.ledger import Ledger
from tailguard.records import Origin, Status


@dataclass(frozen=True)
class DetectorFit:
    """How well the detector tells the ledger's human from synthetic records."""

    auc: float  # cross-validated, all generators
    auc_by_generator: dict[str, float]
    threshold: float
    precision: float  # out-of-fold, at the threshold
    recall: float
    n_human: int
    n_synthetic: int


class Screener:
    """Screens texts against a ledger's synthetic records and a detector trained on it."""

    NEAR_THRESHOLD = 0.8
    PRECISION = 0.9

    def __init__(
        self,
        *,
        near_threshold: float = NEAR_THRESHOLD,
        precision: float = PRECISION,
        threshold: float | None = None,
        folds: int = 5,
        seed: int = 0,
    ) -> None:
        _check_share("near", near_threshold, low_open=True)
        _check_share("precision", precision, low_open=True)
        if threshold is not None:
            _check_share("threshold", threshold, low_open=False)
        self.near_threshold, self.precision, self.threshold = near_threshold, precision, threshold
        self.folds, self.seed = folds, seed
        self.fit_: DetectorFit | None = None

    def fit(self, ledger: Ledger, *, exclude_ids: list[str] | pa.Array | None = None) -> Screener:
        """Train on the ledger: its human records (not quarantined, not ``exclude_ids``:
        the records about to be screened) vs every synthetic record."""
        human = ledger.records(origin=Origin.HUMAN.value, status=Status.ACCEPTED.value)
        if exclude_ids is not None and len(exclude_ids):
            drop = pc.is_in(human["id"], value_set=pa.array(exclude_ids, pa.string()))
            human = human.filter(pc.invert(drop))
        synthetic = ledger.records(origin=Origin.SYNTHETIC.value)
        if synthetic.num_rows == 0:
            raise InputError("the ledger holds no synthetic records to learn model text from")
        texts = human["content"].to_pylist() + synthetic["content"].to_pylist()
        y = np.r_[np.zeros(human.num_rows, bool), np.ones(synthetic.num_rows, bool)]
        fitted = classifier.fit(texts, y, folds=self.folds, seed=self.seed)
        threshold = (
            self.threshold
            if self.threshold is not None
            else fitted.threshold_for(precision=self.precision)
        )
        flagged = fitted.oof >= threshold
        tp = int(np.sum(flagged & y))
        generators = np.asarray(synthetic["generator"].fill_null("?").to_pylist(), dtype=object)
        by_gen = {}
        from sklearn.metrics import roc_auc_score

        for g in sorted(set(generators.tolist())):
            rows = np.r_[np.ones(human.num_rows, bool), generators == g]
            by_gen[g] = float(roc_auc_score(y[rows], fitted.oof[rows]))
        self.fit_ = DetectorFit(
            auc=fitted.auc,
            auc_by_generator=by_gen,
            threshold=float(threshold),
            precision=tp / max(1, int(flagged.sum())),
            recall=tp / max(1, int(y.sum())),
            n_human=human.num_rows,
            n_synthetic=synthetic.num_rows,
        )
        self._model = fitted.model
        self._near = NearDuplicate(
            reference=synthetic.select(["id", "content"]),
            threshold=self.near_threshold,
            within_pool=False,
        )
        self._generation = dict(
            zip(synthetic["id"].to_pylist(), synthetic["generation"].to_pylist(), strict=True)
        )
        return self

    def screen(self, table: pa.Table) -> pa.Table:
        """A verdict table (``passed``, ``code``, ``detail``, ``score``, ``matched_id``)."""
        if self.fit_ is None:
            raise InputError("fit the screener on a ledger first (Screener().fit(ledger))")
        near = self._near.verify(table)
        copied = ~near["passed"].to_numpy(zero_copy_only=False)
        score = self._model.predict_proba(table["content"].to_pylist())[:, 1]
        styled = score >= self.fit_.threshold
        matched = near["matched_id"].to_pylist()
        code = np.where(copied, "copies_synthetic", np.where(styled, "model_written", None))
        detail = [
            (
                f"J~{s:.2f} with synthetic record {m} (generation {self._generation.get(m)})"
                if c
                else f"detector score {p:.3f} >= {self.fit_.threshold:.3f}"
                if st
                else None
            )
            for c, st, m, s, p in zip(
                copied, styled, matched, near["score"].to_pylist(), score, strict=True
            )
        ]
        return verdicts(~(copied | styled), code.tolist(), detail, score=score, matched_id=matched)


class Screen(Verifier):
    """A fitted :class:`Screener` as a verifier, for gating human ingests."""

    kind = "screen"
    version = "1"
    row_independent = False
    codes = ("copies_synthetic", "model_written")

    def __init__(self, *, screener: Screener) -> None:
        self.screener = screener

    def params(self) -> dict[str, Any]:
        s = self.screener
        return {"near_threshold": s.near_threshold, "threshold": s.fit_ and s.fit_.threshold}

    def verify(self, batch: pa.Table) -> pa.Table:
        return self.screener.screen(batch)


def _check_share(name: str, value: float, *, low_open: bool) -> None:
    """A share or probability: finite, in (0, 1] (``low_open``) or [0, 1]. NaN would
    compare false everywhere and silently flag nothing."""
    ok = math.isfinite(value) and (0 < value <= 1 if low_open else 0 <= value <= 1)
    if not ok:
        span = "(0, 1]" if low_open else "[0, 1]"
        raise InputError(f"--{name} must be a finite number in {span}, got {value}", field=name)


def frozen_members(ledger: Ledger, ids: pa.Array | list[str]) -> pa.Array:
    """Which of ``ids`` are frozen reservoir members: screening never changes them."""
    ids = pa.array(ids, pa.string())
    if not ledger.has_reservoir():
        return pa.array([], pa.string())
    res = ledger.reservoir()
    members = pa.concat_arrays([res.train_ids, res.holdout_ids])
    return pc.filter(ids, pc.is_in(ids, value_set=members))


def screen_ledger(
    ledger: Ledger, ids: pa.Array | list[str], screener: Screener | None = None
) -> pa.Table:
    """Screen the ledger's human records ``ids``; quarantine the flagged ones.

    Frozen reservoir members among ``ids`` are left as they are (see
    :func:`frozen_members`).

    An unfitted ``screener`` (default: ``Screener()``) is fitted on the ledger without them.

    Returns the flagged records' ``id``, ``code``, ``detail``, ``score``, ``matched_id``.
    """
    frozen = frozen_members(ledger, ids)
    if len(frozen):  # frozen means frozen: a member's status never changes
        ids = pc.filter(ids, pc.invert(pc.is_in(pa.array(ids, pa.string()), value_set=frozen)))
    records = ledger.records(origin=Origin.HUMAN.value, status=Status.ACCEPTED.value, ids=ids)
    screener = screener or Screener()
    if screener.fit_ is None:
        screener.fit(ledger, exclude_ids=records["id"])
    if records.num_rows == 0:
        return pa.table({k: [] for k in ("id", "code", "detail", "score", "matched_id")})
    out = screener.screen(records).add_column(0, "id", records["id"])
    flagged = out.filter(pc.invert(out["passed"])).select(
        ["id", "code", "detail", "score", "matched_id"]
    )
    if flagged.num_rows:
        ledger.quarantine(flagged)
    return flagged
