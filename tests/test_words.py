"""One word tokenizer: its definition, its two paths, and the metrics and the gate reading it."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard import words
from tailguard.gate import minhash
from tailguard.gate.dedup import NearDuplicate
from tailguard.gate.verifiers import Quality
from tailguard.metrics import text

# Letters, digits, underscores, apostrophes, hyphens, whitespace, and non-ASCII letters,
# digits (Arabic-Indic zero) and a combining mark (not a letter: it separates).
ALPHABET = "aAbZ09 .,;-_'\t\n\x0b\x1c\u00e9\u00c9\u00df\u4e2d\u0660\u0301!"
TEXTS = st.lists(st.text(alphabet=ALPHABET, max_size=40), min_size=1, max_size=25)


def py_words(t: str) -> list[str]:
    """The definition: the lower-cased text's runs of letters and digits."""
    return [w for w in re.split(r"[\W_]+", t.lower()) if w]


def rows(split: tuple[pa.Array, np.ndarray]) -> list[list[str]]:
    flat, offsets = split
    values = flat.to_pylist()
    return [values[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


@settings(max_examples=80, deadline=None)
@given(TEXTS)
def test_words_are_the_lower_cased_runs_of_letters_and_digits(texts) -> None:
    got = rows(words.split(pa.array(texts)))
    assert got == [py_words(t) for t in texts]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="aAbZ09 .,;-_'\t\n\x0b\x1c!", max_size=40), max_size=25))
def test_the_byte_path_and_the_unicode_path_cut_the_same_words(texts) -> None:
    arr = pa.array(["x", *texts, "y"])
    for typ in (pa.string(), pa.large_string()):
        sliced = arr.cast(typ).slice(1, len(texts))  # an offset into shared buffers
        fast = words.split_ascii(sliced)
        assert rows(fast) == rows(words.split_unicode(sliced)) == rows(words.split(sliced))
        assert rows(fast) == [py_words(t) for t in texts]


@settings(max_examples=40, deadline=None)
@given(TEXTS)
def test_the_metrics_and_the_gate_read_the_same_words(texts) -> None:
    arr = pa.array(texts)
    tokens = text.tokenize(arr)
    hashes, offsets = minhash.words(arr)
    assert offsets.tolist() == tokens.offsets.tolist()
    assert np.diff(offsets).tolist() == Quality().measures(arr)["words"].tolist()
    # one word, one hash, and one token id: the two encodings name the same words
    pairs = set(zip(tokens.ids.tolist(), hashes.tolist(), strict=True))
    assert len(pairs) == len({i for i, _ in pairs}) == len({h for _, h in pairs})
    got = [tokens.vocab.take(pa.array(tokens.ids[a:b])).to_pylist() for a, b in zip(
        tokens.offsets[:-1], tokens.offsets[1:], strict=True)]  # fmt: skip
    assert got == rows(words.split(arr))


def test_packed_words_are_their_bytes_back_to_back() -> None:
    split, _ = words.split(pa.array(["Ab, cd!", "", "\u00c9t\u00e9 9"]))
    data, starts = words.packed(split)
    assert bytes(data).decode() == "abcd\u00e9t\u00e99"
    assert starts.tolist() == [0, 2, 4, 9]


def test_near_duplicates_split_words_as_the_metrics_do() -> None:
    """Version 3: "e-mail" and "e mail" are the same two words, "it's" is two words."""
    assert NearDuplicate.version == "3" and Quality.version == "2"
    ref = pa.table({"id": ["r"], "content": ["please e-mail the whole team before noon today"]})
    near = NearDuplicate(reference=ref, num_perm=64)
    out = near.verify(
        pa.table(
            {
                "id": ["a", "b"],
                "content": [
                    "Please e mail the whole team before noon today!",
                    "please email the whole team before noon today",
                ],
            }
        )
    )
    assert out["matched_id"].to_pylist() == ["r", None]  # "email" is one other word
    assert Quality().measures(pa.array(["it's a dog's life"]))["words"].tolist() == [6]
