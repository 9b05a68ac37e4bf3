r"""The one word tokenizer: what a word is for the metrics and for the gate.

A word is a maximal run of letters and digits (Unicode ``\p{L}`` and ``\p{N}``) of
the lower-cased text; every other character separates words ("Don't stop" is
``don``, ``t``, ``stop``). The text metrics count these words
(:mod:`tailguard.metrics.text`) and the gate's duplicate and quality verifiers hash
them (:mod:`tailguard.gate.minhash`), so a word in a metric and a word in a verdict
are the same thing.

Vectorised over Arrow string arrays: ASCII texts are cut on their raw UTF-8 bytes
with numpy (byte classes by comparison, which the CPU vectorises), any other text
with Arrow's Unicode kernels (lower-case, regex split); both give the same words.
Imports nothing of tailguard, so every layer may use it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: What separates words: any run of characters that are not letters or digits.
SEPARATOR = r"[^\p{L}\p{N}]+"


def string_offsets(arr: pa.Array) -> np.ndarray:
    """Byte offsets of each string of a (large) string array, from its own buffers."""
    kind = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    off = np.frombuffer(arr.buffers()[1], kind)[arr.offset : arr.offset + len(arr) + 1]
    return off.astype(np.int64)


def split(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The words of every text: ``(words, offsets)``, a flat string array of lower-cased
    words (none empty) and the int64 word offsets of each text (text ``i`` holds
    ``words[offsets[i]:offsets[i + 1]]``). Nulls have no words."""
    if len(arr) and pc.all(pc.string_is_ascii(arr)).as_py() is not False:
        return split_ascii(arr)
    return split_unicode(arr)


def split_ascii(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """:func:`split` of ASCII texts, straight from their UTF-8 bytes.

    A word starts at a letter or digit that follows a separator or begins a text;
    the letters and digits, lower-cased and packed together, hold the words back to
    back, so the word starts are the offsets of a new Arrow string array (no copy
    per word).
    """
    row_off = string_offsets(arr)
    lo, hi = int(row_off[0]), int(row_off[-1])
    row_off -= lo
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, np.uint8, hi - lo, lo) if hi > lo else np.zeros(0, np.uint8)
    folded = data | np.uint8(0x20)  # lower case for letters; digits already have the bit
    alnum = (folded - np.uint8(ord("a"))) < np.uint8(26)
    alnum |= (data - np.uint8(ord("0"))) < np.uint8(10)
    start = alnum.copy()
    start[1:] &= ~alnum[:-1]
    inner = row_off[1:-1][row_off[1:-1] < len(data)]
    start[inner] = alnum[inner]  # a text's first byte may start a word
    starts = np.flatnonzero(start)
    offsets = np.searchsorted(starts, row_off).astype(np.int64)
    chars = folded[alnum]
    before = np.cumsum(alnum, dtype=np.int64)
    str_off = np.empty(len(starts) + 1, np.int64)
    str_off[:-1] = before[starts] - 1  # letters and digits before each word's first
    str_off[-1] = len(chars)
    big = len(chars) >= 2**31
    words = pa.Array.from_buffers(
        pa.large_string() if big else pa.string(),
        len(starts),
        [None, pa.py_buffer(str_off if big else str_off.astype(np.int32)), pa.py_buffer(chars)],
    )
    return words, offsets


def split_unicode(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """:func:`split` of any texts, with Arrow's Unicode kernels."""
    lists = pc.split_pattern_regex(pc.utf8_lower(arr), SEPARATOR)
    flat = pc.list_flatten(lists)
    keep = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    list_off = lists.offsets.to_numpy().astype(np.int64)
    kept_before = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return flat.filter(pa.array(keep)), kept_before[list_off - list_off[0]]


def packed(words: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The words' UTF-8 bytes back to back and where each word starts in them (a view
    of the array's own buffers), for hashing them without a copy."""
    off = string_offsets(words)
    if len(words) == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    data = np.frombuffer(words.buffers()[2], np.uint8, off[-1] - off[0], off[0])
    return data, off[:-1] - off[0]
