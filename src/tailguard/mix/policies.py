"""Mixing policies: which pool rows a round may train on, and in what proportion.

A policy is a small, serialisable value (explicit keyword parameters, ``params()``
gives a JSON-able dict) with one pure step, ``select(pool, round, seed)``, that
keeps the eligible rows of a training pool. The batch planner
(:func:`tailguard.mix.plan`) turns those rows into batches.

A *pool* is an Arrow table with at least ``id``, ``origin`` and ``generation``
(``label``, ``round`` and ``status`` are optional). It is what
``Ledger.training_pool(round)`` returns: the reservoir's training split as human
rows, fresh human rows, and accepted synthetic rows. When a ``status`` column is
present, only ``accepted`` rows are ever eligible.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError, InputError, ReservoirError
from tailguard.errors import check_fraction as _check_fraction
from tailguard.mix.streams import row_keys
from tailguard.records import Origin, Status

REQUIRED_COLUMNS = ("id", "origin", "generation")
SYNTHETIC_MODES = ("accumulate", "latest", "subsample")
#: How an anchored plan treats the reservoir: ``"whole"`` (every reservoir example at
#: least once per epoch, ``real_fraction`` the minimum share of every batch) or
#: ``"share"`` (exactly ``real_fraction`` of every batch, however little of the
#: reservoir that covers).
RESERVOIR_MODES = ("whole", "share")


@dataclass(frozen=True, eq=False)
class Selection:
    """A policy's selected rows as masks over the checked pool, so planning copies nothing.

    ``keep`` marks the selected rows (``None``: every row) and ``human`` each
    row's origin. :meth:`table` materialises them in the policy's order: pool
    order, or the human rows first when ``human_first``.
    """

    pool: pa.Table
    human: np.ndarray
    keep: np.ndarray | None = None
    human_first: bool = False
    #: What the policy decided on this pool, stored in the manifest's params (e.g. gaps filled).
    info: dict[str, Any] | None = None

    def mask(self, human: bool | None = None) -> np.ndarray | None:
        """The selected rows (only human or non-human ones if asked); ``None``: every row."""
        if human is None:
            return self.keep
        side = self.human if human else ~self.human
        return side if self.keep is None else self.keep & side

    def rows(self, human: bool | None = None) -> np.ndarray:
        """Positions of the selected rows (only human or non-human ones if asked), ascending."""
        mask = self.mask(human)
        if mask is None:
            return np.arange(self.pool.num_rows, dtype=np.int64)
        return np.flatnonzero(mask)

    def table(self) -> pa.Table:
        """The selected rows as a table, in the policy's order."""
        if self.human_first:
            rows = np.concatenate([self.rows(human=True), self.rows(human=False)])
        elif self.keep is None:
            return self.pool
        else:
            rows = self.rows()
        return self.pool.take(pa.array(rows, pa.int64()))


class Policy(ABC):
    """A mixing policy. Subclasses declare ``name`` and keep their parameters as attributes."""

    name: ClassVar[str]
    #: True when the planner holds every batch to an exact human share.
    anchored: ClassVar[bool] = False

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The policy's parameters as a JSON-able dict (stored in the manifest)."""

    @abstractmethod
    def select(self, pool: pa.Table, round: int, seed: int = 0) -> pa.Table:  # noqa: A002
        """The rows of ``pool`` this policy lets round ``round`` train on."""

    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        """:meth:`select` as a :class:`Selection` (what the planner reads).

        This default wraps ``select``'s table; the built-in policies compute
        masks instead, so the planner never copies the pool.
        """
        rows = self.select(pool, round, seed)
        if "label" not in rows.column_names:
            rows = rows.append_column("label", pa.nulls(rows.num_rows, pa.string()))
        return Selection(pool=rows, human=_as_numpy(_is_human(rows)))

    def resolve(self, selection: Selection) -> Policy:
        """The policy the planner lays out ``selection`` with (a share fixed by the data)."""
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.params() == self.params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params().items()))))


class _MaskPolicy(Policy):
    """A policy that selects by masks: ``select`` is its :meth:`selection`, materialised."""

    def select(self, pool: pa.Table, round: int, seed: int = 0) -> pa.Table:  # noqa: A002
        return self.selection(pool, round, seed).table()

    @abstractmethod
    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        """The rows this policy lets round ``round`` train on, as masks over the pool."""


class HumanOnly(_MaskPolicy):
    """The reservoir alone: every human row, shuffled (stratified by label)."""

    name = "human_only"

    def params(self) -> dict[str, Any]:
        return {}

    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        pool, keep, human = _eligibility(pool, round)
        keep = human if keep is None else keep & human
        _require_humans(int(np.count_nonzero(keep)), self.name)
        return Selection(pool=pool, human=human, keep=keep)


class Replace(_MaskPolicy):
    """Pure synthetic: only the newest generation's accepted examples."""

    name = "replace"

    def params(self) -> dict[str, Any]:
        return {}

    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        pool, keep, human = _eligibility(pool, round)
        synthetic = _synthetic(pool, keep, human, "latest")
        if not synthetic.any():
            raise InputError(
                f"round {round} has no eligible (accepted) synthetic examples to train on "
                "under the 'replace' policy",
                field="status",
            )
        return Selection(pool=pool, human=human, keep=synthetic)


class Accumulate(_MaskPolicy):
    """Every accepted example so far, human and synthetic, shuffled together."""

    name = "accumulate"

    def params(self) -> dict[str, Any]:
        return {}

    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        pool, keep, human = _eligibility(pool, round)
        if pool.num_rows == 0 or (keep is not None and not keep.any()):
            raise InputError(f"round {round} has no eligible examples to train on")
        return Selection(pool=pool, human=human, keep=keep)


class Anchored(_MaskPolicy):
    """Hybrid anchoring: the reservoir re-injected every round, at least its share per batch.

    ``reservoir`` names the reading of the anchor. ``"whole"`` (the default):
    every reservoir training example is trained on at least once per epoch, and
    ``real_fraction`` is the human share of the round's slots, so it sets how many
    synthetic examples are admitted: ``reservoir x (1 - f) / f`` (a seeded
    subsample when more passed the gate; all of them, and a higher human share,
    when fewer did). Every batch holds at least its planned human quota
    (``real_fraction`` of the batch, by largest remainder). ``"share"``: every
    batch holds exactly its quota and every selected synthetic example is used,
    so with little synthetic data only part of the reservoir is seen, and with
    much the reservoir is cycled.

    ``synthetic`` picks the synthetic side: ``"accumulate"`` (every accepted
    synthetic example so far), ``"latest"`` (the newest generation only) or
    ``"subsample"`` (a seeded sample of all accepted synthetic examples, so the
    epoch keeps one size across rounds: ``size`` slots, by default the number
    of human rows in the pool).
    """

    name = "anchored"
    anchored = True
    #: The default human share of every batch (the config, CLI and lab read it here).
    REAL_FRACTION: ClassVar[float] = 0.2

    def __init__(
        self,
        *,
        real_fraction: float = REAL_FRACTION,
        synthetic: str = "accumulate",
        size: int | None = None,
        reservoir: str = "whole",
    ) -> None:
        self.real_fraction = check_fraction(real_fraction)
        if reservoir not in RESERVOIR_MODES:
            raise ConfigError(f"reservoir={reservoir!r} is not one of {', '.join(RESERVOIR_MODES)}")
        self.reservoir = reservoir
        if synthetic not in SYNTHETIC_MODES:
            raise ConfigError(f"synthetic={synthetic!r} is not one of {', '.join(SYNTHETIC_MODES)}")
        if size is not None and (not _is_int(size) or size < 1):
            raise ConfigError(f"size must be a positive integer, got {size!r}")
        if size is not None and synthetic != "subsample":
            raise ConfigError("size= only applies to synthetic='subsample'")
        self.synthetic = synthetic
        self.size = None if size is None else int(size)

    def params(self) -> dict[str, Any]:
        # The exact-share reading stores no ``reservoir`` key: its manifests keep the
        # digests they had before the choice existed (a stored manifest without the
        # key is read back as ``"share"``, see :func:`policy_from_manifest`).
        params: dict[str, Any] = {
            "real_fraction": self.real_fraction,
            "synthetic": self.synthetic,
            "size": self.size,
        }
        if self.reservoir != "share":
            params["reservoir"] = self.reservoir
        return params

    def __repr__(self) -> str:
        params = self.params()
        if type(self) is Anchored:  # its reading of the reservoir, stored or not
            params["reservoir"] = self.reservoir
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"

    def with_real_fraction(self, real_fraction: float) -> Anchored:
        """The same policy at another real fraction (what the Dial turns)."""
        return Anchored(
            real_fraction=real_fraction,
            synthetic=self.synthetic,
            size=self.size,
            reservoir=self.reservoir,
        )

    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        pool, keep, human = _eligibility(pool, round)
        humans = human if keep is None else keep & human
        _require_humans(int(np.count_nonzero(humans)), self.name)
        mode = "accumulate" if self.synthetic == "subsample" else self.synthetic
        if keep is None and mode == "accumulate":
            return Selection(pool=pool, human=human, human_first=True)
        keep = humans | _synthetic(pool, keep, human, mode)
        return Selection(pool=pool, human=human, keep=keep, human_first=True)


class Fresh(_MaskPolicy):
    """New human data each round on top of the synthetic data.

    The caller ingests ``new_human_per_round`` fresh human records each round
    with ``round = r`` (``Ledger.ingest(..., origin="human", round=r)``); the
    training pool of round ``r`` carries them as human rows whose ``round``
    equals ``r``. Fresh trains on those (a seeded sample of exactly
    ``new_human_per_round`` if more are present) plus the accepted synthetic
    examples (``synthetic="latest"``, the newest generation, or
    ``"accumulate"``, all of them). The frozen reservoir is not mixed in: this
    is the fresh-data loop anchoring is compared against.
    """

    name = "fresh"

    def __init__(self, *, new_human_per_round: int = 1000, synthetic: str = "latest") -> None:
        if not _is_int(new_human_per_round) or new_human_per_round < 1:
            raise ConfigError(
                f"new_human_per_round must be a positive integer, got {new_human_per_round!r}"
            )
        if synthetic not in ("accumulate", "latest"):
            raise ConfigError(f"synthetic={synthetic!r} is not one of accumulate, latest")
        self.new_human_per_round = int(new_human_per_round)
        self.synthetic = synthetic

    def params(self) -> dict[str, Any]:
        return {"new_human_per_round": self.new_human_per_round, "synthetic": self.synthetic}

    def selection(self, pool: pa.Table, round: int, seed: int = 0) -> Selection:  # noqa: A002
        pool, keep, human = _eligibility(pool, round)
        if "round" not in pool.column_names:
            raise InputError("the 'fresh' policy needs the pool's round column", field="round")
        fresh = human & _as_numpy(pc.fill_null(pc.equal(pool["round"], round), False))
        if keep is not None:
            fresh &= keep
        fresh_rows = np.flatnonzero(fresh)
        n = self.new_human_per_round
        if len(fresh_rows) < n:
            raise InputError(
                f"the 'fresh' policy expects {n} new human records at round {round}, "
                f"found {len(fresh_rows)}: ingest them with origin='human', round={round}",
                field="round",
            )
        if len(fresh_rows) > n:
            keys = row_keys(pool.take(pa.array(fresh_rows)), seed=seed, salt=0xF2E5)
            fresh = np.zeros(pool.num_rows, dtype=bool)
            fresh[fresh_rows[np.argsort(keys, kind="stable")[:n]]] = True
        keep = fresh | _synthetic(pool, keep, human, self.synthetic)
        return Selection(pool=pool, human=human, keep=keep, human_first=True)


class AccumulateSubsample(Policy):
    """Accumulate everything, then train on a fixed-size seeded sample of it.

    ``size`` slots per round (by default the number of human rows in the pool),
    so the training set does not grow while the pool does: the human share
    shrinks as generations accumulate, unlike anchoring, which fixes it.
    """

    name = "accumulate_subsample"

    def __init__(self, *, size: int | None = None) -> None:
        if size is not None and (not _is_int(size) or size < 1):
            raise ConfigError(f"size must be a positive integer, got {size!r}")
        self.size = None if size is None else int(size)

    def params(self) -> dict[str, Any]:
        return {"size": self.size}

    def select(self, pool: pa.Table, round: int, seed: int = 0) -> pa.Table:  # noqa: A002
        pool = eligible_rows(pool, round)
        if pool.num_rows == 0:
            raise InputError(f"round {round} has no eligible examples to train on")
        size = self.size
        if size is None:
            size = int(np.count_nonzero(pool["origin"].to_numpy(zero_copy_only=False) == "human"))
        if pool.num_rows <= size:
            return pool
        keys = row_keys(pool, seed=seed, salt=0xA5C5)
        return pool.take(pa.array(np.sort(np.argsort(keys, kind="stable")[:size])))


POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (HumanOnly, Replace, Accumulate, AccumulateSubsample, Anchored, Fresh)
}


def policy_from_name(name: str, **params: Any) -> Policy:
    """Build a policy from its name and keyword parameters (e.g. from a manifest)."""
    key = name.strip().lower().replace("-", "_")
    if key not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; valid policies: {', '.join(POLICIES)}")
    try:
        return POLICIES[key](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for policy {key!r}: {exc}") from exc


def policy_from_manifest(manifest: Any) -> Policy:
    """The policy a stored manifest was planned with, rebuilt from its name and params.

    A manifest's params hold the policy's own parameters beside the planner's
    (``batch_size``, ``epochs``, counts); only the ones the policy takes are passed.
    """
    key = str(manifest.policy).strip().lower().replace("-", "_")
    if key not in POLICIES:
        raise ConfigError(
            f"unknown policy {manifest.policy!r}; valid policies: {', '.join(POLICIES)}"
        )
    accepted = inspect.signature(POLICIES[key]).parameters
    params = {k: v for k, v in manifest.params.items() if k in accepted}
    if key == Anchored.name:
        params.setdefault("reservoir", "share")  # manifests from before the choice existed
    return policy_from_name(key, **params)


def check_fraction(value: float, name: str = "real_fraction") -> float:
    """A real fraction must lie in (0, 1]: zero human data is not anchoring."""
    return _check_fraction(value, name)


def eligible_rows(pool: pa.Table, round: int) -> pa.Table:  # noqa: A002
    """Check the pool's columns and keep rows any policy could use at round ``round``.

    Drops rows whose ``status`` (if present) is not ``accepted`` and rows from a
    later round (if ``round`` is present). Adds a null ``label`` when missing.
    """
    pool, keep, _ = _eligibility(pool, round)
    return pool if keep is None else pool.filter(pa.array(keep))


def _eligibility(pool: pa.Table, round: int) -> tuple[pa.Table, np.ndarray | None, np.ndarray]:  # noqa: A002
    """The checked pool, its eligible rows (``None``: all) and its human rows, as masks."""
    if not isinstance(pool, pa.Table):
        raise InputError(f"the pool must be a pyarrow.Table, got {type(pool).__name__}")
    for column in REQUIRED_COLUMNS:
        if column not in pool.column_names:
            raise InputError(f"the pool has no {column!r} column", field=column)
    if "label" not in pool.column_names:
        pool = pool.append_column("label", pa.nulls(pool.num_rows, pa.string()))
    human = _as_numpy(pc.fill_null(_is_human(pool), False))
    synthetic = _as_numpy(pc.fill_null(pc.equal(pool["origin"], Origin.SYNTHETIC.value), False))
    if not (human | synthetic).all():
        other = pool["origin"].filter(pa.array(~(human | synthetic)))
        unknown = sorted(set(map(str, pc.unique(other).to_pylist())))
        raise InputError(f"unknown origin values {unknown} in the pool", field="origin")
    if pool["id"].null_count:
        raise InputError("the pool has null ids", field="id")
    if pool["generation"].null_count:
        raise InputError("the pool has null generations", field="generation")
    keep = None
    if "status" in pool.column_names:
        keep = _as_numpy(pc.fill_null(pc.equal(pool["status"], Status.ACCEPTED.value), False))
    if "round" in pool.column_names:
        early = _as_numpy(pc.fill_null(pc.less_equal(pool["round"], round), False))
        keep = early if keep is None else keep & early
    if keep is not None and keep.all():
        keep = None
    return pool, keep, human


def _as_numpy(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _is_human(pool: pa.Table) -> pa.ChunkedArray:
    return pc.equal(pool["origin"], Origin.HUMAN.value)


def _synthetic(pool: pa.Table, keep: np.ndarray | None, human: np.ndarray, mode: str) -> np.ndarray:
    """The eligible synthetic rows (``"latest"``: of the newest eligible generation only)."""
    synthetic = ~human if keep is None else keep & ~human
    if mode == "latest" and synthetic.any():
        generation = np.asarray(pool["generation"].to_numpy())
        newest = generation[synthetic].max()
        synthetic &= generation == newest
    return synthetic


def _require_humans(n_humans: int, policy: str) -> None:
    if n_humans == 0:
        raise ReservoirError(
            f"the '{policy}' policy needs reservoir (human) examples but the pool has none: "
            "ingest human data and freeze the reservoir first"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
