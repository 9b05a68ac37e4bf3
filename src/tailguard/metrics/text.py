"""Text diversity and coverage metrics, vectorised over Arrow string arrays.

Texts are tokenised once into one flat int64 array of token ids plus row
offsets. The tokens are :mod:`tailguard.words`'s words (the gate's too): ASCII rows
(the common case) are split on their raw UTF-8 bytes with numpy, other rows with
Arrow's Unicode regex split; both share one Arrow dictionary encoding.

distinct-n and n-gram counts pack each position's next tokens (with a sentinel
after every text) into one uint64 key, sort the keys once, and read every n off
the sorted prefixes: exact, no hashing, one sort for n = 1..4. When the
vocabulary is too large to pack, n-gram ids are built level by level instead:
the id of an n-gram is the factorised pair (prefix id, last token id).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.metrics import _checks
from tailguard.metrics.labels import tail_mask
from tailguard.metrics.scalars import wasserstein1
from tailguard.words import split_ascii, split_unicode


@dataclass(frozen=True)
class Tokens:
    """Texts as token ids: row ``i`` holds ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    offsets: np.ndarray
    vocab: pa.Array

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self, start: int, stop: int) -> Tokens:
        """Rows ``start:stop``, sharing this vocabulary (so ids stay comparable)."""
        off = self.offsets[start : stop + 1]
        return Tokens(self.ids[off[0] : off[-1]], off - off[0], self.vocab)

    def take(self, rows: np.ndarray) -> Tokens:
        """The given rows, in order (vectorised gather)."""
        lens = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        starts = self.offsets[rows]
        idx = np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1])
        return Tokens(self.ids[idx], offsets, self.vocab)


def tokenize(texts, *, name: str = "texts") -> Tokens:  # noqa: ANN001
    """Lower-case and split ``texts`` into tokens: :mod:`tailguard.words`'s words (runs
    of letters and digits), the words the gate's verifiers read."""
    if isinstance(texts, Tokens):
        return texts
    arr = _checks.texts(texts, name)
    ascii_rows = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)
    return _encode(*_split(arr, ascii_rows), ascii_rows)


def _split(
    arr: pa.Array, ascii_rows: np.ndarray
) -> tuple[pa.Array, np.ndarray, pa.Array, np.ndarray]:
    """The words of the ASCII rows and of the others, each kind split its own way:
    (ASCII words, their row offsets, other words, their row offsets)."""
    none = pa.array([], pa.string()), np.zeros(1, np.int64)
    if ascii_rows.all():
        return (*split_ascii(arr), *none)
    if not ascii_rows.any():
        return (*none, *split_unicode(arr))
    return (
        *split_ascii(arr.filter(pa.array(ascii_rows))),
        *split_unicode(arr.filter(pa.array(~ascii_rows))),
    )


def _encode(
    a_words: pa.Array,
    a_off: np.ndarray,
    u_words: pa.Array,
    u_off: np.ndarray,
    ascii_rows: np.ndarray,
) -> Tokens:
    """Token ids of split words: the ASCII rows' words first, then the others', numbered
    in order of first use, the rows put back in input order."""
    if ascii_rows.all() or not ascii_rows.any():
        words, offsets = (a_words, a_off) if ascii_rows.all() else (u_words, u_off)
        enc = pc.dictionary_encode(words)
        return Tokens(_int64(enc.indices), offsets, enc.dictionary)
    # mixed: encode both kinds together, put rows back in order
    a_rows, u_rows = np.flatnonzero(ascii_rows), np.flatnonzero(~ascii_rows)
    both = pa.concat_arrays([a_words.cast(pa.large_string()), u_words.cast(pa.large_string())])
    enc = pc.dictionary_encode(both)
    stacked = Tokens(
        _int64(enc.indices), np.concatenate([a_off, u_off[1:] + a_off[-1]]), enc.dictionary
    )
    position = np.empty(len(ascii_rows), np.int64)  # row i of the input is row position[i]
    position[a_rows] = np.arange(a_rows.size)
    position[u_rows] = a_rows.size + np.arange(u_rows.size)
    return stacked.take(position)


def words(texts) -> pa.Table:  # noqa: ANN001
    """Each text's tokens as a list of strings, and whether it is ASCII (how it was split).

    Row by row, so batches of a sample can be split anywhere (on Ray) and put back
    together with :func:`from_words`, which numbers them exactly as :func:`tokenize`.
    """
    arr = _checks.texts(texts, "texts", allow_empty=True)
    ascii_rows = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False).astype(bool)
    a_words, a_off, u_words, u_off = _split(arr, ascii_rows)
    kinds = [
        pa.LargeListArray.from_arrays(pa.array(off, pa.int64()), w.cast(pa.large_string()))
        for w, off in ((a_words, a_off), (u_words, u_off))
    ]
    lists = pa.concat_arrays(kinds)
    a_rows = np.flatnonzero(ascii_rows)
    position = np.empty(len(arr), np.int64)
    position[a_rows] = np.arange(a_rows.size)
    position[~ascii_rows] = a_rows.size + np.arange(len(arr) - a_rows.size)
    return pa.table({"words": lists.take(pa.array(position)), "ascii": pa.array(ascii_rows)})


def from_words(lists: pa.Array | pa.ChunkedArray, ascii_rows: np.ndarray) -> Tokens:
    """:func:`tokenize` of the texts whose :func:`words` these are: the same ids."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    lists = lists.cast(pa.large_list(pa.large_string()))
    ascii_rows = np.asarray(ascii_rows, bool)

    def kind(rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        part = lists.filter(pa.array(rows))
        off = part.offsets.to_numpy().astype(np.int64)
        return part.values.slice(off[0], off[-1] - off[0]), off - off[0]

    return _encode(*kind(ascii_rows), *kind(~ascii_rows), ascii_rows)


def _int64(indices: pa.Array) -> np.ndarray:
    return indices.to_numpy(zero_copy_only=False).astype(np.int64)


def tokenize_pair(sample, reference) -> tuple[Tokens, Tokens]:  # noqa: ANN001
    """Tokenise sample and reference over one shared vocabulary."""
    s = _checks.texts(sample, "sample_texts")
    r = _checks.texts(reference, "reference_texts")
    both = tokenize(pa.concat_arrays([s.cast(pa.large_string()), r.cast(pa.large_string())]))
    return both.rows(0, len(s)), both.rows(len(s), len(s) + len(r))


def all_ascii(texts) -> bool | None:  # noqa: ANN001
    """True if every text is ASCII, False if none is, None if mixed (how :func:`tokenize`
    splits them, and so how its vocabulary is ordered)."""
    flags = pc.string_is_ascii(_checks.texts(texts, "texts"))
    if pc.all(flags).as_py() is not False:
        return True
    return False if not pc.any(flags).as_py() else None


def tokenize_against(sample, reference: Tokens, reference_ascii: bool | None):  # noqa: ANN001, ANN201
    """:func:`tokenize_pair` with the reference already tokenised (once per reference).

    The ids come out exactly as a joint tokenisation numbers them (the sample's words
    in order of first use, then the reference's other words), so every metric reads
    the same values; texts of mixed kinds fall back to the joint tokenisation.
    """
    s = _checks.texts(sample, "sample_texts")
    if reference_ascii is None or all_ascii(s) is not reference_ascii:
        return None
    return against(tokenize(s), reference)


def against(st: Tokens, reference: Tokens) -> tuple[Tokens, Tokens]:
    """A sample's own tokens and the reference's over one vocabulary: the sample's words
    in order of first use, then the reference's other words (as a joint tokenisation
    numbers them when both sides are split the same way)."""
    idx = pc.index_in(reference.vocab, value_set=st.vocab)
    new = pc.is_null(idx).to_numpy(zero_copy_only=False)
    pos = pc.fill_null(idx, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    mapping = np.where(new, len(st.vocab) + np.cumsum(new) - 1, pos)
    vocab = pa.concat_arrays(
        [v.cast(pa.large_string()) for v in (st.vocab, reference.vocab.filter(pa.array(new)))]
    )
    return (
        Tokens(st.ids, st.offsets, vocab),
        Tokens(mapping[reference.ids], reference.offsets, vocab),
    )


#: n-gram orders packed into one sort key when the vocabulary allows (distinct-1..4).
PACKED_ORDERS = 4


class NGrams:
    """Exact n-gram counts of a :class:`Tokens`.

    Counting uses :class:`_SortedGrams` (one sort for n = 1..4) whenever the
    vocabulary fits; per-position n-gram ids (:meth:`codes`, for self-BLEU and
    large vocabularies) are built lazily one level at a time.
    """

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self.vocab_size = int(tokens.ids.max()) + 1 if tokens.ids.size else 1
        self._codes: dict[int, np.ndarray] = {1: tokens.ids}
        self._sorted: _SortedGrams | None = None

    @cached_property
    def remaining(self) -> np.ndarray:
        """Tokens from each position to the end of its text (inclusive)."""
        ends = np.repeat(self.tokens.offsets[1:], self.tokens.lengths)
        return ends - np.arange(self.tokens.ids.size)

    def codes(self, n: int) -> np.ndarray:
        """ids of the n-grams starting at each position (meaningless where invalid)."""
        if n in self._codes:
            return self._codes[n]
        prev = self.codes(n - 1)
        m = self.tokens.ids.size - n + 1
        if m <= 0:
            self._codes[n] = np.zeros(0, np.int64)
            return self._codes[n]
        keys = prev[:m] * self.vocab_size + self.tokens.ids[n - 1 :]
        keys[~self.valid(n)] = -1
        codes, _ = pd.factorize(keys, sort=False)
        self._codes[n] = codes.astype(np.int64, copy=False)
        return self._codes[n]

    def valid(self, n: int) -> np.ndarray:
        """Positions where an n-gram starts and stays inside its text."""
        m = max(self.tokens.ids.size - n + 1, 0)
        return self.remaining[:m] >= n

    def _sorted_grams(self, n: int) -> _SortedGrams | None:
        """The packed, sorted keys covering order ``n``, if the vocabulary lets them fit."""
        if self._sorted is not None and self._sorted.orders >= n:
            return self._sorted
        orders = max(n, PACKED_ORDERS)
        if _SortedGrams.fits(self.vocab_size, orders):
            self._sorted = _SortedGrams(self.tokens, self.vocab_size, orders)
            return self._sorted
        return None

    def counts(self, n: int) -> np.ndarray:
        """Occurrence counts of each distinct n-gram (order arbitrary)."""
        grams = self._sorted_grams(n)
        if grams is not None:
            return grams.counts(n)
        codes = self.codes(n)[self.valid(n)]
        if codes.size == 0:
            return np.zeros(0, np.int64)
        c = np.bincount(codes)
        return c[c > 0]

    def distinct(self, n: int) -> tuple[int, int]:
        """(distinct n-grams, total n-grams)."""
        grams = self._sorted_grams(n)
        if grams is not None:
            return grams.distinct(n)
        valid = self.valid(n)
        total = int(valid.sum())
        if total == 0:
            return 0, 0
        codes = self.codes(n)
        return _n_unique(codes[valid]), total


class _SortedGrams:
    """Every position's next ``orders`` token ids packed into one sorted uint64 key.

    The tokens are laid out with a sentinel id (the vocabulary size) after every
    text and a key holds only sentinels past its text's end, so a key's n-prefix
    is a real n-gram exactly when its n-th token is not the sentinel. Sorting the
    keys once puts equal n-prefixes next to each other for every n at the same
    time; a new n-gram starts wherever the prefix changes.
    """

    def __init__(self, tokens: Tokens, vocab_size: int, orders: int) -> None:
        self.orders = orders
        self.bits = vocab_size.bit_length()  # room for ids 0..vocab_size (the sentinel)
        self.sentinel = np.uint64(vocab_size)
        n_tok = tokens.ids.size
        padded = np.full(n_tok + tokens.n_rows + orders, vocab_size, np.uint64)
        padded[np.arange(n_tok) + np.repeat(np.arange(tokens.n_rows), tokens.lengths)] = tokens.ids
        size = n_tok + tokens.n_rows
        key = padded[:size].copy()
        shift, mask = np.uint64(self.bits), np.uint64((1 << self.bits) - 1)
        for j in range(1, orders):
            ended = (key & mask) == self.sentinel  # past a text's end, only sentinels follow
            key <<= shift
            key |= np.where(ended, self.sentinel, padded[j : j + size])
        key.sort()
        self.keys = key

    @staticmethod
    def fits(vocab_size: int, orders: int) -> bool:
        return vocab_size.bit_length() * orders <= 64

    def _prefixes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n-prefixes of the sorted keys, where each is a real n-gram)."""
        prefix = self.keys >> np.uint64(self.bits * (self.orders - n))
        last = prefix & np.uint64((1 << self.bits) - 1)
        return prefix, last != self.sentinel

    def distinct(self, n: int) -> tuple[int, int]:
        prefix, real = self._prefixes(n)
        total = int(np.count_nonzero(real))
        if total == 0:
            return 0, 0
        new = np.empty(prefix.size, bool)
        new[0] = True
        np.not_equal(prefix[1:], prefix[:-1], out=new[1:])
        return int(np.count_nonzero(new & real)), total

    def counts(self, n: int) -> np.ndarray:
        prefix, real = self._prefixes(n)
        starts = np.flatnonzero(np.r_[True, prefix[1:] != prefix[:-1]])
        sizes = np.diff(np.r_[starts, prefix.size])
        return sizes[real[starts]].astype(np.int64)


def _n_unique(codes: np.ndarray) -> int:
    seen = np.zeros(int(codes.max()) + 1, dtype=bool)
    seen[codes] = True
    return int(seen.sum())


def _ngrams(texts) -> NGrams:  # noqa: ANN001
    return texts if isinstance(texts, NGrams) else NGrams(tokenize(texts))


def distinct_ns(texts, ns: tuple[int, ...] = (1, 2, 3, 4)) -> dict[int, float]:  # noqa: ANN001
    """distinct-n for each n: distinct n-grams / all n-grams over the whole sample."""
    grams = _ngrams(texts)
    out = {}
    for n in ns:
        _checks.positive_int(n, "n")
        distinct, total = grams.distinct(n)
        if total == 0:
            raise InputError(f"texts have no {n}-grams (every text is shorter than {n} tokens)")
        out[n] = distinct / total
    return out


def distinct_n(texts, n: int = 2) -> float:  # noqa: ANN001
    """distinct-n (Li et al. 2016): distinct n-grams / all n-grams; higher is more diverse."""
    return distinct_ns(texts, (n,))[n]


def ngram_entropy(texts, n: int = 1) -> float:  # noqa: ANN001
    """Shannon entropy (bits) of the sample's n-gram frequency distribution."""
    _checks.positive_int(n, "n")
    counts = _ngrams(texts).counts(n).astype(np.float64)
    if counts.size == 0:
        raise InputError(f"texts have no {n}-grams")
    p = counts / counts.sum()
    return float(max(0.0, -np.sum(p * np.log2(p))))


def _pair(sample, reference) -> tuple[Tokens, Tokens]:  # noqa: ANN001
    if isinstance(sample, Tokens) and isinstance(reference, Tokens):
        if sample.vocab is not reference.vocab:
            raise InputError("sample and reference tokens must share one vocabulary")
        return sample, reference
    return tokenize_pair(sample, reference)


def vocab_coverage(sample, reference) -> float:  # noqa: ANN001
    """Share of the reference's distinct tokens that occur in the sample."""
    s, r = _pair(sample, reference)
    if r.ids.size == 0:
        raise InputError("reference_texts contain no tokens")
    present = np.zeros(len(s.vocab), dtype=bool)
    present[s.ids] = True
    return float(present[np.unique(r.ids)].mean())


def rare_vocab_coverage(sample, reference, *, q: float = 0.2) -> float:  # noqa: ANN001
    """Share of the reference's rare tokens (bottom ``q`` of its token mass) in the sample."""
    s, r = _pair(sample, reference)
    if r.ids.size == 0:
        raise InputError("reference_texts contain no tokens")
    counts = np.bincount(r.ids, minlength=len(s.vocab))
    present = np.zeros(len(s.vocab), dtype=bool)
    present[s.ids] = True
    return float(present[tail_mask(counts, q)].mean())


def length_shift(sample, reference) -> float:  # noqa: ANN001
    """Wasserstein-1 between token counts per text / the reference's mean token count."""
    s, r = _pair(sample, reference)
    mean_r = r.lengths.mean()
    if mean_r == 0:
        raise InputError("reference_texts contain no tokens")
    return wasserstein1(s.lengths, r.lengths) / mean_r


def length_quantiles(
    texts,  # noqa: ANN001
    quantiles: tuple[float, ...] = (0.01, 0.1, 0.5, 0.9, 0.99),
) -> dict[float, float]:
    """Quantiles of the texts' lengths in tokens."""
    lens = tokenize(texts).lengths
    return {q: float(v) for q, v in zip(quantiles, np.quantile(lens, quantiles), strict=True)}


def compression_ratio(texts) -> float:  # noqa: ANN001
    """UTF-8 size / zlib-compressed size of the concatenated texts; repetition raises it."""
    arr = _checks.texts(texts, "texts")
    data = _raw_bytes(arr)
    if not data:
        raise InputError("texts are all empty: nothing to compress")
    return len(data) / len(zlib.compress(data, 6))


def _raw_bytes(arr: pa.Array) -> bytes:
    """The concatenated UTF-8 bytes of a string array, without copying row by row."""
    offsets_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=offsets_type)[arr.offset : arr.offset + len(arr) + 1]
    if data_buf is None:
        return b""
    return data_buf.to_pybytes()[int(offsets[0]) : int(offsets[-1])]


def self_bleu(
    texts,  # noqa: ANN001
    *,
    max_n: int = 4,
    sample_size: int = 200,
    seed: int = 0,
) -> float:
    """Mean BLEU-``max_n`` of each text against all the others (Zhu et al. 2018).

    On a seeded sample of ``sample_size`` texts, uniform weights, NLTK's smoothing
    method 1 (epsilon 0.1 for an empty precision) and the closest-length brevity
    penalty, matching ``nltk.translate.bleu_score.sentence_bleu``. Higher means the
    texts repeat each other: lower is better.
    """
    _checks.positive_int(max_n, "max_n")
    _checks.positive_int(sample_size, "sample_size", minimum=2)
    tokens = tokenize(texts)
    if tokens.n_rows < 2:
        raise InputError(f"self-BLEU needs at least 2 texts, got {tokens.n_rows}")
    if tokens.n_rows > sample_size:
        rows = np.sort(np.random.default_rng(seed).choice(tokens.n_rows, sample_size, False))
        tokens = tokens.take(rows)
    m = tokens.n_rows
    lens = tokens.lengths
    grams = NGrams(tokens)
    row_of = np.repeat(np.arange(m), lens)
    log_p = np.zeros(m)
    no_unigram_match = np.zeros(m, dtype=bool)
    for n in range(1, max_n + 1):
        valid = grams.valid(n)
        codes = grams.codes(n)[valid]
        rows = row_of[: valid.size][valid]
        num, den = _clipped_matches(codes, rows, m)
        den = np.maximum(den, 1)  # NLTK: Fraction(numerator, max(1, denominator))
        if n == 1:
            no_unigram_match = num == 0
        p = np.where(num == 0, 0.1 / den, num / den)
        log_p += np.log(p) / max_n
    bp = _brevity_penalty(lens)
    with np.errstate(divide="ignore"):
        bleu = np.where(no_unigram_match | (bp == 0), 0.0, bp * np.exp(log_p))
    return float(bleu.mean())


def _clipped_matches(codes: np.ndarray, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per text: n-grams clipped by their max count in any *other* text, and all n-grams."""
    den = np.bincount(rows, minlength=m)
    if codes.size == 0:
        return np.zeros(m, np.int64), den
    pair, cnt = np.unique(codes * m + rows, return_counts=True)
    g, r = pair // m, pair % m
    order = np.lexsort((-cnt, g))
    g, r, cnt = g[order], r[order], cnt[order]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    group = np.cumsum(np.r_[True, g[1:] != g[:-1]]) - 1
    top1, top1_row = cnt[first], r[first]
    has2 = np.r_[first[1:], g.size] - first > 1
    top2 = np.where(has2, cnt[np.minimum(first + 1, g.size - 1)], 0)
    ref_max = np.where(r == top1_row[group], top2[group], top1[group])
    num = np.bincount(r, weights=np.minimum(cnt, ref_max), minlength=m)
    return num.astype(np.int64), den


def _brevity_penalty(lens: np.ndarray) -> np.ndarray:
    """NLTK's brevity penalty against the closest other length (ties to the shorter)."""
    s = np.sort(lens)
    lo = np.searchsorted(s, lens, "left")
    hi = np.searchsorted(s, lens, "right")
    others_same = hi - lo - 1 > 0
    below = np.where(lo > 0, s[np.maximum(lo - 1, 0)], -(10**9))
    above = np.where(hi < s.size, s[np.minimum(hi, s.size - 1)], 10**9)
    closest = np.where(lens - below <= above - lens, below, above)
    ref = np.where(others_same, lens, closest)
    with np.errstate(divide="ignore", over="ignore"):
        bp = np.where(lens > ref, 1.0, np.exp(1 - ref / np.maximum(lens, 1)))
    return np.where(lens == 0, 0.0, bp)
