"""A categorical distribution over a vocabulary, refit from frequencies.

One record is one token (its ``content``). Refit by frequency, a token that a
generation fails to draw has probability zero from then on: with a Zipf-shaped
vocabulary the rare tokens go first, the cleanest picture of tail loss.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError, InputError
from tailguard.lab.models.base import ModelBase
from tailguard.records import Origin, make_records


class Categorical(ModelBase):
    """Token frequencies; ``smoothing`` adds pseudo-counts to every token seen at fit."""

    name = "categorical"
    _param_names = ("smoothing",)

    def __init__(self, *, smoothing: float = 0.0) -> None:
        if smoothing < 0:
            raise ConfigError(f"smoothing must be >= 0, got {smoothing}")
        self.smoothing = smoothing
        self.vocab_: np.ndarray | None = None
        self.probs_: np.ndarray | None = None

    def fit_counts(self, vocab: np.ndarray, counts: np.ndarray) -> Self:
        counts = np.asarray(counts, dtype=np.float64) + self.smoothing
        if counts.sum() <= 0:
            raise InputError("cannot fit a categorical model on no tokens")
        self.vocab_ = np.asarray(vocab)
        self.probs_ = counts / counts.sum()
        return self

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        self._require_fitted("probs_")
        assert self.probs_ is not None
        cdf = np.cumsum(self.probs_)
        return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)

    def fit(self, records: pa.Table) -> Self:
        vc = pc.value_counts(records.column("content"))
        vocab = vc.field("values").to_numpy(zero_copy_only=False)
        counts = vc.field("counts").to_numpy()
        order = np.argsort(vocab, kind="stable")
        return self.fit_counts(vocab[order], counts[order])

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        idx = self.sample_indices(n, np.random.default_rng(seed))
        assert self.vocab_ is not None
        return make_records(
            pa.array(self.vocab_[idx], pa.string()),
            origin=Origin.SYNTHETIC,
            source="lab",
            generator=self.name,
            generation=generation,
            round=round,
        )


def zipf_tokens(*, vocab_size: int, n: int, exponent: float = 1.1, seed: int = 0) -> np.ndarray:
    """``n`` token names (``tok00042``) drawn from a Zipf law truncated at ``vocab_size``."""
    if vocab_size < 1 or n < 1:
        raise ConfigError("vocab_size and n must be >= 1")
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    p = ranks**-exponent
    idx = np.random.default_rng(seed).choice(vocab_size, size=n, p=p / p.sum())
    width = len(str(vocab_size))
    names = np.char.add("tok", np.char.zfill(idx.astype(str), width))
    return names


def zipf_records(
    *, vocab_size: int = 1000, n: int = 10_000, exponent: float = 1.1, seed: int = 0
) -> pa.Table:
    """Human token records with a Zipf-shaped vocabulary (the categorical lab's reservoir)."""
    tokens = zipf_tokens(vocab_size=vocab_size, n=n, exponent=exponent, seed=seed)
    return make_records(pa.array(tokens, pa.string()), origin=Origin.HUMAN, source="zipf")
