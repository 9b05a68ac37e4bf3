"""A categorical distribution over a vocabulary, refit from frequencies.

Refit by frequency, a token that a generation fails to draw has probability
zero from then on: with a Zipf-shaped vocabulary the rare tokens go first, the
cleanest picture of tail loss.

One record is one *document*: ``doc_length`` tokens joined by spaces. (A
record per token would not work: the ledger names content, so a thousand
records of one token are one record; a document of independent draws is
unique, and the model counts every token of every document.)
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
    """Token frequencies; ``smoothing`` adds pseudo-counts to every token seen at fit.

    Sampling bias: ``temperature`` samples from ``p ** (1 / temperature)``
    (renormalised) and ``top_k`` keeps only the ``k`` most frequent tokens, as
    language models are often sampled; both cut the tail faster than plain refitting.
    """

    name = "categorical"
    _param_names = ("smoothing", "doc_length", "temperature", "top_k")

    def __init__(
        self, *, smoothing: float = 0.0, doc_length: int = 20, temperature: float = 1.0,
        top_k: int | None = None,
    ) -> None:  # fmt: skip
        if smoothing < 0:
            raise ConfigError(f"smoothing must be >= 0, got {smoothing}")
        if doc_length < 1:
            raise ConfigError(f"doc_length must be >= 1, got {doc_length}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top_k must be >= 1 (or None for no cut), got {top_k}")
        self.smoothing = smoothing
        self.doc_length = doc_length
        self.temperature = temperature
        self.top_k = top_k
        self.vocab_: np.ndarray | None = None
        self.probs_: np.ndarray | None = None

    def fit_counts(self, vocab: np.ndarray, counts: np.ndarray) -> Self:
        counts = np.asarray(counts, dtype=np.float64) + self.smoothing
        if counts.size == 0 or counts.sum() <= 0:
            raise InputError("cannot fit a categorical model on no tokens")
        self.vocab_ = np.asarray(vocab)
        self.probs_ = counts / counts.sum()
        return self

    def sampling_probs(self) -> np.ndarray:
        """The distribution sampled from: the fit, tempered and cut to its ``top_k``."""
        self._require_fitted("probs_")
        assert self.probs_ is not None
        p = self.probs_ ** (1.0 / self.temperature)
        if self.top_k is not None and self.top_k < p.size:
            # ties at the k-th value stay in (a stable rule, no arbitrary pick)
            kth = np.partition(p, p.size - self.top_k)[p.size - self.top_k]
            p = np.where(p >= kth, p, 0.0)
        return p / p.sum()

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cdf = np.cumsum(self.sampling_probs())
        idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        return np.minimum(idx, len(cdf) - 1)

    def fit(self, records: pa.Table) -> Self:
        tokens = pc.list_flatten(pc.utf8_split_whitespace(records.column("content")))
        vc = pc.value_counts(tokens)
        vocab = vc.field("values").to_numpy(zero_copy_only=False)
        counts = vc.field("counts").to_numpy()
        order = np.argsort(vocab, kind="stable")
        return self.fit_counts(vocab[order], counts[order])

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        """``n`` documents of ``doc_length`` independent draws."""
        idx = self.sample_indices(n * self.doc_length, np.random.default_rng(seed))
        assert self.vocab_ is not None
        return make_records(
            _documents(self.vocab_[idx], self.doc_length), origin=Origin.SYNTHETIC,
            source="lab", generator=self.name, generation=generation, round=round,
        )  # fmt: skip


def _documents(tokens: np.ndarray, doc_length: int) -> pa.Array:
    lists = pa.FixedSizeListArray.from_arrays(pa.array(tokens, pa.string()), doc_length)
    return pc.binary_join(lists.cast(pa.list_(pa.string())), " ")


def zipf_tokens(
    *, vocab_size: int, n: int, exponent: float = 1.1, seed: int = 0,
    weights: list[float] | np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """``n`` token names (``tok00042``) from a Zipf law truncated at ``vocab_size``.

    ``weights`` replaces the law with an explicit support: one weight per token
    (``vocab_size`` is then ``len(weights)``).
    """
    if weights is not None:
        p = np.asarray(weights, dtype=np.float64)
        bad = p.ndim != 1 or p.size < 1 or not np.isfinite(p).all() or (p < 0).any()
        if bad or p.sum() <= 0:
            raise ConfigError(
                "weights must be a non-empty list of finite, non-negative numbers "
                f"with a positive sum, got {weights!r}"
            )
        vocab_size = p.size
    if vocab_size < 1 or n < 1:
        raise ConfigError(f"vocab_size and n must be >= 1, got {vocab_size} and {n}")
    if weights is None:
        if not exponent > 0:
            raise ConfigError(f"exponent (the Zipf exponent) must be > 0, got {exponent}")
        p = np.arange(1, vocab_size + 1, dtype=np.float64) ** -exponent
    idx = np.random.default_rng(seed).choice(vocab_size, size=n, p=p / p.sum())
    width = len(str(vocab_size))
    return np.char.add("tok", np.char.zfill(idx.astype(str), width))


def zipf_records(
    *, vocab_size: int = 1000, n_docs: int = 1000, doc_length: int = 20, exponent: float = 1.1,
    seed: int = 0, weights: list[float] | np.ndarray | None = None,
) -> pa.Table:  # fmt: skip
    """Human documents of Zipf-distributed tokens (the categorical lab's reservoir)."""
    if doc_length < 1 or n_docs < 1:
        raise ConfigError(f"n_docs and doc_length must be >= 1, got {n_docs} and {doc_length}")
    tokens = zipf_tokens(
        vocab_size=vocab_size, n=n_docs * doc_length, exponent=exponent, seed=seed, weights=weights
    )
    return make_records(_documents(tokens, doc_length), origin=Origin.HUMAN, source="zipf")
