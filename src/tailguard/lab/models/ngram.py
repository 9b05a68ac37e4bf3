"""A class-conditional word n-gram language model, interpolated Kneser-Ney, vectorised.

Fit on human texts whose ``label`` is a category (the fortunes corpus), it
samples a category from the learned category frequencies, then a text from the
category's n-gram distribution. Both are refit from counts every generation,
so a category or an n-gram that a generation does not produce is lost to the
next unless real data brings it back: the tails collapse first.

Smoothing: interpolated Kneser-Ney over the chain

    (category, w[-k..-1]) for k = order-1 .. 1  ->  (category)  ->  global unigram

with one absolute discount per level, ``D = n1 / (n1 + 2 n2)`` (Ney's estimate
from the count-of-counts). The top level uses raw counts, the lower category
levels use continuation counts (how many distinct longer contexts precede a
word), and the global unigram is the plain frequency of every training token,
so any word of the vocabulary can still be drawn. Because every observed count
is >= 1 > D, the interpolation is an exact mixture: the discounted mass
``(c - D) / c(ctx)`` stays at a level and ``D N1+(ctx .) / c(ctx)`` backs off.
Sampling uses that: for all sequences at once, per position, each sequence
picks a level with one uniform draw, then a word by ``searchsorted`` in the
level's global cumulative table of discounted counts. No Python loop runs per
text or per word, only per position.

Tokens are runs of word characters (with apostrophes) and single punctuation
marks; sampled texts join them with spaces and drop the space before closing
punctuation, which tokenises back to the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError, InputError
from tailguard.lab.models.base import ModelBase
from tailguard.records import Origin, make_records

BOS, EOS = 0, 1
_FIRST_WORD = 2
_PUNCT = r"([^\w\s'])"


@dataclass(frozen=True)
class _Level:
    """One context level: sorted context keys, their slices of a word table, back-off mass."""

    keys: np.ndarray  # int64, sorted unique context keys
    start: np.ndarray  # int64, first row of each context in words/cum
    stop: np.ndarray  # int64, one past the last row
    backoff: np.ndarray  # float64, probability of backing off from each context
    words: np.ndarray  # int32, the word of each (context, word) row
    cum: np.ndarray  # float64, global cumulative discounted counts

    def lookup(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.searchsorted(self.keys, q)
        pos = np.minimum(pos, len(self.keys) - 1)
        return pos, self.keys[pos] == q


def tokenize(content: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Texts to (flat token strings, per-text token counts), vectorised in Arrow."""
    spaced = pc.utf8_trim_whitespace(pc.replace_substring_regex(content, _PUNCT, r" \1 "))
    lists = pc.utf8_split_whitespace(spaced)
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    flat = pc.list_flatten(lists)
    keep = pc.greater(pc.utf8_length(flat), 0)  # an empty text splits into one empty token
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    keep_np = keep.to_numpy(zero_copy_only=False)
    lengths = np.bincount(parent[keep_np], minlength=len(lists)).astype(np.int64)
    return flat.filter(keep), lengths


def detokenize(tokens: pa.Array, offsets: np.ndarray) -> pa.Array:
    """Join each text's tokens with spaces, then drop the space before closing marks."""
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), tokens)
    text = pc.binary_join(lists, " ")
    text = pc.replace_substring_regex(text, r" ([.,;:!?)\]}])", r"\1")
    return pc.replace_substring_regex(text, r"([(\[{]) ", r"\1")


class NGram(ModelBase):
    """Class-conditional word n-gram model (``order`` 2 to 4) with interpolated Kneser-Ney.

    ``max_tokens`` caps a sampled text's length (the fortunes' 99th percentile
    is about 235 tokens). ``temperature`` is the sampling-bias knob: the category
    frequencies and every level's discounted counts are raised to ``1 / temperature``
    before sampling (the back-off probabilities are kept), so below 1 the frequent
    words and categories win more often and the tails go faster.
    """

    name = "ngram"
    _param_names = ("order", "max_tokens", "temperature")

    def __init__(self, *, order: int = 3, max_tokens: int = 256, temperature: float = 1.0) -> None:
        if not 2 <= order <= 4:
            raise ConfigError(f"order must be 2, 3 or 4, got {order}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.order = order
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.vocab_: pa.Array | None = None
        self.labels_: pa.Array | None = None
        self.label_cum_: np.ndarray | None = None
        self.levels_: list[_Level] = []
        self.unigram_cum_: np.ndarray | None = None

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, records: pa.Table) -> Self:
        if records.num_rows == 0:
            raise InputError("cannot fit an n-gram model on no texts")
        tokens, lengths = tokenize(records.column("content"))
        enc = pc.dictionary_encode(tokens)
        self.vocab_ = pa.concat_arrays([pa.array(["<s>", "</s>"]), enc.dictionary])
        v = len(self.vocab_)
        label_col = pc.fill_null(records.column("label"), "")
        lab = pc.dictionary_encode(label_col).combine_chunks()
        self.labels_ = lab.dictionary
        label_ids = lab.indices.to_numpy().astype(np.int64)
        n_labels = len(self.labels_)
        if n_labels * float(v) ** (self.order - 1) >= 2.0**62:
            raise ConfigError(f"vocabulary of {v} words is too large for order {self.order}")
        inv_t = 1.0 / self.temperature
        label_counts = np.bincount(label_ids, minlength=n_labels).astype(float)
        self.label_cum_ = np.cumsum(label_counts**inv_t)

        # Flat training stream: each text's words followed by EOS, with its history.
        words = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64) + _FIRST_WORD
        n_texts = len(lengths)
        ends = np.cumsum(lengths)
        stream = np.insert(words, ends, EOS)
        seq_len = lengths + 1
        starts = np.cumsum(seq_len) - seq_len
        text_of = np.repeat(np.arange(n_texts), seq_len)
        pos = np.arange(len(stream)) - starts[text_of]
        token_label = label_ids[text_of]
        history = [
            np.where(pos >= k, stream[np.maximum(np.arange(len(stream)) - k, 0)], BOS)
            for k in range(1, self.order)
        ]  # history[k-1] = the word k positions back

        # Top level: raw counts of (category, last order-1 words) -> word.
        k_top = self.order - 1
        ctx = _pack(token_label, history[:k_top][::-1], v)
        levels: list[_Level] = []
        pair_ctx, pair_word, counts = _count_pairs(ctx, stream, v)
        levels.append(_make_level(pair_ctx, pair_word, counts, inv_t))
        # Lower category levels: continuation counts of the distinct longer contexts.
        for k in range(k_top - 1, -1, -1):
            lower = _drop_oldest(pair_ctx, k + 1, v)
            pair_ctx, pair_word, counts = _count_pairs(lower, pair_word, v)
            levels.append(_make_level(pair_ctx, pair_word, counts, inv_t))
        self.levels_ = levels
        self.unigram_cum_ = np.cumsum(np.bincount(stream, minlength=v).astype(float) ** inv_t)
        return self

    # -- sampling ---------------------------------------------------------------------------
    def sample_ids(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` (category ids, token-id matrix ``n x max_tokens`` padded with EOS)."""
        self._require_fitted("unigram_cum_")
        assert self.label_cum_ is not None and self.unigram_cum_ is not None
        v = len(self.vocab_)
        labels = _draw(self.label_cum_, rng.random(n))
        out = np.full((n, self.max_tokens), EOS, dtype=np.int64)
        hist = np.full((n, self.order - 1), BOS, dtype=np.int64)  # oldest first
        active = np.arange(n)
        for t in range(self.max_tokens):
            if active.size == 0:
                break
            word = self._next_words(labels[active], hist[active], v, rng)
            out[active, t] = word
            hist[active, :-1] = hist[active, 1:]
            hist[active, -1] = word
            active = active[word != EOS]
        return labels, out

    def _next_words(
        self, labels: np.ndarray, hist: np.ndarray, v: int, rng: np.random.Generator
    ) -> np.ndarray:
        m = len(labels)
        word = np.full(m, -1, dtype=np.int64)
        pending = np.arange(m)
        for depth, level in enumerate(self.levels_):
            if pending.size == 0:
                break
            k = self.order - 1 - depth  # words of history at this level
            cols = [hist[pending, -j] for j in range(k, 0, -1)]
            pos, found = level.lookup(_pack(labels[pending], cols, v))
            stay = found & (rng.random(pending.size) >= level.backoff[pos])
            if stay.any():
                p = pos[stay]
                lo = np.where(level.start[p] > 0, level.cum[level.start[p] - 1], 0.0)
                hi = level.cum[level.stop[p] - 1]
                j = np.searchsorted(level.cum, lo + rng.random(p.size) * (hi - lo), side="right")
                word[pending[stay]] = level.words[np.minimum(j, level.stop[p] - 1)]
            pending = pending[~stay]
        if pending.size:
            word[pending] = _draw(self.unigram_cum_, rng.random(pending.size))
        return word

    def sample_texts(self, n: int, seed: int) -> tuple[pa.Array, pa.Array]:
        """``n`` sampled (texts, category labels)."""
        rng = np.random.default_rng(seed)
        labels, ids = self.sample_ids(n, rng)
        is_word = ids >= _FIRST_WORD
        lengths = is_word.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = pc.take(self.vocab_, pa.array(ids[is_word]))
        texts = detokenize(flat, offsets)
        label_text = pc.take(self.labels_, pa.array(labels))
        label_text = pc.if_else(pc.equal(label_text, ""), pa.scalar(None, pa.string()), label_text)
        return texts, label_text

    def sample(self, n: int, seed: int, *, generation: int = 1, round: int = 1) -> pa.Table:  # noqa: A002
        texts, labels = self.sample_texts(n, seed)
        return make_records(
            texts,
            origin=Origin.SYNTHETIC,
            source="lab",
            generator=self.name,
            generation=generation,
            round=round,
            label=labels,
        )

    @property
    def vocabulary_size(self) -> int:
        self._require_fitted("vocab_")
        return len(self.vocab_) - _FIRST_WORD


def _pack(label: np.ndarray, cols: list[np.ndarray], v: int) -> np.ndarray:
    """Context key: category then the words oldest first, in base ``v``."""
    key = label.astype(np.int64)
    for col in cols:
        key = key * v + col
    return key


def _drop_oldest(ctx: np.ndarray, k: int, v: int) -> np.ndarray:
    """The context key with ``k`` words of history, minus its oldest word."""
    vk = v ** (k - 1)
    label = ctx // (vk * v)
    return label * vk + ctx % vk


def _count_pairs(
    ctx: np.ndarray, word: np.ndarray, v: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (context, word) pairs sorted by context then word, with their counts."""
    if ctx.size and (int(ctx.max()) + 1) * v < 2**63:  # the pair packs into 64 bits: one sort
        pair, counts = np.unique(ctx * v + word, return_counts=True)
        return pair // v, pair % v, counts
    ctx_keys, ctx_idx = np.unique(ctx, return_inverse=True)
    pair, counts = np.unique(ctx_idx.astype(np.int64) * v + word, return_counts=True)
    return ctx_keys[pair // v], pair % v, counts


def _make_level(
    pair_ctx: np.ndarray, pair_word: np.ndarray, counts: np.ndarray, inv_t: float = 1.0
) -> _Level:
    n1, n2 = np.count_nonzero(counts == 1), np.count_nonzero(counts == 2)
    d = float(np.clip(n1 / (n1 + 2 * n2), 0.1, 0.9)) if n1 + n2 else 0.5
    keys, start, n_types = np.unique(pair_ctx, return_index=True, return_counts=True)
    totals = np.add.reduceat(counts.astype(np.float64), start)
    return _Level(
        keys=keys,
        start=start.astype(np.int64),
        stop=(start + n_types).astype(np.int64),
        backoff=d * n_types / totals,
        words=pair_word.astype(np.int32),
        cum=np.cumsum((counts - d) ** inv_t),
    )


def _draw(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from an unnormalised cumulative table."""
    return np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), len(cum) - 1)
