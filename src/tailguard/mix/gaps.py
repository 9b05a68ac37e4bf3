"""Targeted augmentation: synthetic examples only where a label's human data is thin.

High-stakes tasks anchor on human data and use synthetic data only to fill
under-represented classes. :class:`FillGaps` keeps every human row and admits,
per label, accepted synthetic rows up to that label's *gap*: its target count
minus its human count. A label already at or above its target gets none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from tailguard.errors import ConfigError
from tailguard.mix.policies import (
    POLICIES,
    SYNTHETIC_MODES,
    Anchored,
    Policy,
    Selection,
    _eligibility,
    _is_int,
    _require_humans,
    _synthetic,
    check_fraction,
)
from tailguard.mix.streams import row_keys

Target = str | int | Mapping[str, int]


class FillGaps(Anchored):
    """Every human row, plus accepted synthetic rows per label up to the label's gap.

    ``target`` sets each label's target count: ``"median"`` (the median human
    count over labels), a whole number (a floor every label is raised to), or a
    ``{label: count}`` table (labels it leaves out get nothing). Unlabelled
    synthetic rows are never admitted. Which synthetic rows fill a gap is a seeded
    draw, the same on any machine. The planner keeps every batch's human share
    exact: by default the natural share (human rows / all selected rows, so each
    row is seen once an epoch), or ``real_fraction`` if given. The manifest's
    params record each label's ``gaps`` and the synthetic rows that ``filled`` them.
    """

    name = "fill_gaps"
    anchored = True
    TARGET: ClassVar[str] = "median"

    def __init__(
        self,
        *,
        target: Target = TARGET,
        real_fraction: float | None = None,
        synthetic: str = "accumulate",
    ) -> None:
        if synthetic not in SYNTHETIC_MODES[:2]:
            raise ConfigError(f"synthetic={synthetic!r} is not one of accumulate, latest")
        if isinstance(target, str):
            if target != "median":
                raise ConfigError(
                    f"target={target!r}: give 'median', a count, or a {{label: count}} table"
                )
        elif isinstance(target, Mapping):
            bad = {k: v for k, v in target.items() if not _is_int(v) or v < 0}
            if bad:
                raise ConfigError(f"target counts must be whole numbers >= 0, got {bad}")
            target = {str(k): int(v) for k, v in target.items()}
        elif not _is_int(target) or target < 0:
            raise ConfigError(f"target must be 'median', a count >= 0 or a table, got {target!r}")
        else:
            target = int(target)
        self.target = target
        self.real_fraction = None if real_fraction is None else check_fraction(real_fraction)
        self.synthetic = synthetic
        self.size = None

    def params(self) -> dict[str, Any]:
        target = dict(self.target) if isinstance(self.target, Mapping) else self.target
        return {"target": target, "real_fraction": self.real_fraction, "synthetic": self.synthetic}

    def with_real_fraction(self, real_fraction: float) -> FillGaps:
        """The same policy at another human share (what the Dial turns)."""
        return FillGaps(target=self.target, real_fraction=real_fraction, synthetic=self.synthetic)

    def targets(self, human_counts: Mapping[str, int], labels: list[str]) -> dict[str, int]:
        """Each label's target count, given the human count of every label."""
        if isinstance(self.target, Mapping):
            return {label: int(self.target.get(label, 0)) for label in labels}
        if self.target == "median":
            counts = [n for n in human_counts.values() if n > 0]
            level = int(np.median(counts)) if counts else 0
            return dict.fromkeys(labels, level)
        return dict.fromkeys(labels, int(self.target))

    def gaps(self, pool: pa.Table, round: int) -> dict[str, int]:  # noqa: A002
        """Each label's gap at round ``round``: its target minus its human count, at least 0."""
        pool, keep, human = _eligibility(pool, round)
        return self._gaps(pool, human if keep is None else keep & human)[0]

    def _gaps(self, pool: pa.Table, humans: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
        labels = np.asarray(pool["label"].to_numpy(zero_copy_only=False), dtype=object)
        human_labels = labels[humans & (labels != None)]  # noqa: E711 - numpy mask
        names, counts = np.unique(human_labels.astype(str), return_counts=True)
        human_counts = dict(zip(names.tolist(), counts.tolist(), strict=True))
        known = labels[labels != None].astype(str)  # noqa: E711
        every = sorted(set(known.tolist()) | set(human_counts))
        if isinstance(self.target, Mapping):
            every = sorted(set(every) | set(self.target))
        targets = self.targets(human_counts, every)
        gaps = {k: max(0, targets[k] - human_counts.get(k, 0)) for k in every}
        return gaps, labels

    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        pool, keep, human = _eligibility(pool, round)
        humans = human if keep is None else keep & human
        _require_humans(int(np.count_nonzero(humans)), self.name)
        gaps, labels = self._gaps(pool, humans)
        candidates = np.flatnonzero(_synthetic(pool, keep, human, self.synthetic))
        admitted = np.zeros(pool.num_rows, dtype=bool)
        filled: dict[str, int] = {}
        if len(candidates):
            cand_labels = labels[candidates]
            named = cand_labels != None  # noqa: E711
            candidates, cand_labels = candidates[named], cand_labels[named].astype(str)
            keys = row_keys(pool.take(pa.array(candidates, pa.int64())), seed=seed, salt=0xF111)
            order = np.lexsort((keys, cand_labels))  # by label, then a seeded shuffle
            candidates, cand_labels = candidates[order], cand_labels[order]
            names, first, counts = np.unique(cand_labels, return_index=True, return_counts=True)
            rank = np.arange(len(candidates)) - np.repeat(first, counts)
            cap = np.array([gaps.get(n, 0) for n in names.tolist()], dtype=np.int64)
            take = rank < np.repeat(cap, counts)
            admitted[candidates[take]] = True
            filled = {
                n: int(min(c, g)) for n, c, g in zip(names.tolist(), counts, cap, strict=True)
            }
        info = {
            "real_fraction": self.real_fraction,  # None: the natural share (real_fraction_used)
            "gaps": gaps,
            "filled": {k: filled.get(k, 0) for k in gaps},
        }
        return Selection(
            pool=pool, human=human, keep=humans | admitted, human_first=True, info=info
        )

    def resolve(self, selection: Selection) -> Policy:
        """Anchored at the human share, over an epoch long enough to hold every selected row."""
        n_human = int(np.count_nonzero(selection.mask(human=True)))
        n_synthetic = len(selection.rows()) - n_human
        f = self.real_fraction
        if f is None:
            f = n_human / (n_human + n_synthetic)
        if n_synthetic == 0 or f == 1:
            return Anchored(real_fraction=1.0)
        size = max(math.ceil(n_human / f), math.ceil(n_synthetic / (1 - f)))
        return Anchored(real_fraction=f, synthetic="subsample", size=size)


POLICIES[FillGaps.name] = FillGaps
