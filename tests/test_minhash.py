"""MinHash internals against plain-Python references: words, token hashes, signatures."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.gate import minhash

# Letters, digits, punctuation, every whitespace Arrow splits on, and non-ASCII text.
ALPHABET = "aAbZ09 .,;-'\t\n\x0b\x1c\u00e9\u00c9\u00df\u4e2d!"


def py_words(text: str) -> list[str]:
    """The definition (:mod:`tailguard.words`): lower-cased runs of letters and digits."""
    return [t for t in re.split(r"[\W_]+", text.lower()) if t]


def py_token_hash(token: bytes) -> int:
    """The closed form of :func:`minhash.hash_tokens` before its finaliser."""
    m = minhash._TOKEN_MULT
    return sum((b + 1) * pow(m, j, 1 << 64) for j, b in enumerate(token)) % (1 << 64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=40), min_size=1, max_size=25))
def test_words_split_like_the_definition_and_equal_words_hash_equal(texts):
    hashes, offsets = minhash.words(pa.array(texts))
    expected = [py_words(t) for t in texts]
    assert np.diff(offsets).tolist() == [len(w) for w in expected]
    flat = [w for ws in expected for w in ws]
    by_word: dict[str, int] = {}
    for word, h in zip(flat, hashes.tolist(), strict=True):
        assert by_word.setdefault(word, h) == h  # one word, one hash
    assert len(set(by_word.values())) == len(by_word)  # distinct words, distinct hashes


def test_ascii_and_unicode_texts_hash_a_word_the_same_and_chunks_do_not_matter(monkeypatch):
    texts = ["Hello, World! it's 42", "h\u00e9llo hello WORLD it S"]
    h, off = minhash.words(pa.array(texts))
    first, second = h[off[0] : off[1]], h[off[1] : off[2]]
    assert first[0] == second[1] and first[1] == second[2]  # hello, world
    assert first[2] == second[3] and first[3] == second[4]  # it, s: the apostrophe splits
    monkeypatch.setattr(minhash, "TEXT_CHUNK", 8)  # one or two texts per step
    h2, off2 = minhash.words(pa.array(texts * 5))
    assert (h2 == np.tile(h, 5)).all()
    assert (np.diff(off2) == np.tile(np.diff(off), 5)).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=30), min_size=1, max_size=20))
def test_token_hash_is_the_polynomial_then_the_finaliser(tokens):
    data = np.frombuffer(b"".join(tokens), np.uint8)
    starts = np.cumsum([0] + [len(t) for t in tokens[:-1]]).astype(np.int64)
    got = minhash.hash_tokens(data, starts)
    raw = np.array([py_token_hash(t) for t in tokens], np.uint64)
    lens = np.array([len(t) for t in tokens], np.uint64)
    assert (got == minhash._fmix64(raw ^ lens * minhash._MIX[1])).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet="ab cd ef", max_size=60), min_size=1, max_size=30))
def test_signatures_are_the_minimum_of_affine_permutations_mod_2_32(texts):
    x, offsets = minhash.shingles(pa.array(texts), 2)
    sig = minhash.signatures_of_shingles(x, offsets, num_perm=16, seed=5, threads=1)
    a, b = minhash.permutations(16, 5)
    assert (a % 2 == 1).all()
    for i in range(len(texts)):
        xs = x[offsets[i] : offsets[i + 1]].astype(np.uint64)
        if len(xs) == 0:
            assert (sig[i] == minhash.EMPTY).all()
            continue
        perm = (a.astype(np.uint64) * xs[None, :] + b.astype(np.uint64)) % (1 << 32)
        expected = np.minimum(perm.min(axis=1), int(minhash.EMPTY) - 1)
        assert (sig[i] == expected).all()


def test_threads_and_chunks_give_the_same_signatures(monkeypatch):
    rng = np.random.default_rng(0)
    texts = [
        " ".join(rng.choice([f"w{i}" for i in range(300)], rng.integers(0, 80)))
        for _ in range(3000)
    ]
    x, offsets = minhash.shingles(pa.array(texts))
    one = minhash.signatures_of_shingles(x, offsets, threads=1)
    many = minhash.signatures_of_shingles(x, offsets, threads=4)
    monkeypatch.setattr(minhash, "CHUNK", 64)  # documents split over chunks
    small = minhash.signatures_of_shingles(x, offsets, threads=1)
    assert (one == many).all() and (one == small).all()


def test_estimated_jaccard_is_close_to_the_true_jaccard():
    rng = np.random.default_rng(1)
    vocab = np.array([f"w{i}" for i in range(100_000)])
    est, true = [], []
    for keep in (20, 50, 80, 95):
        base = list(rng.choice(vocab, 100, replace=False))
        other = base[:keep] + list(rng.choice(vocab, 100 - keep, replace=False))
        sig = minhash.signatures(
            pa.array([" ".join(base), " ".join(other)]), num_perm=512, shingle=1
        )
        est.append((sig[0] == sig[1]).mean())
        true.append(keep / (200 - keep))
    assert np.abs(np.array(est) - np.array(true)).max() < 0.07


def test_a_text_longer_than_a_step_is_hashed_whole(monkeypatch):
    text = " ".join(f"w{i % 50}" for i in range(400))
    before = minhash.words(pa.array([text]))
    monkeypatch.setattr(minhash, "TEXT_CHUNK", 64)
    minhash._power_tables.cache_clear()
    after = minhash.words(pa.array([text, "w1 w2"]))
    minhash._power_tables.cache_clear()
    assert (after[0][:400] == before[0]).all() and after[1].tolist() == [0, 400, 402]


def py_exact(text: str) -> str:
    """The definition of an exact-duplicate key: letter/digit runs, lower-cased, spaced."""
    return " ".join(t for t in re.split(r"[\W_]+", text.lower()) if t)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="aAb 1.,\t\u00e9\u00c9-", max_size=12), min_size=1, max_size=40))
def test_text_keys_are_equal_exactly_when_the_normalised_texts_are(texts):
    keys = minhash.text_keys(pa.array(texts)).tolist()
    norm = [py_exact(t) for t in texts]
    for i in range(len(texts)):
        for j in range(len(texts)):
            assert (keys[i] == keys[j]) == (norm[i] == norm[j]), (texts[i], texts[j])


def test_text_keys_ignore_case_spacing_and_punctuation_in_any_script():
    keys = minhash.text_keys(
        pa.array(
            ["Hello,  World!", "hello world", "hello-world.", "world hello", "HELLO \u2014 world"]
        )
    )
    assert keys[0] == keys[1] == keys[2] == keys[4] and keys[3] != keys[0]


def py_best_matches(sig_q, sig_r, threshold, bands, rows, cap):
    """LSH by dictionaries of band tuples: per bucket the first ``cap`` (valid) records
    in index order are candidates; the best similarity wins, ties to the lowest index."""
    self_match = sig_r is None
    sig_r = sig_q if self_match else sig_r
    buckets: dict[tuple, list[int]] = {}
    for j in range(len(sig_r)):
        if sig_r[j, 0] == minhash.EMPTY:
            continue
        for b in range(bands):
            buckets.setdefault((b, *sig_r[j, b * rows : (b + 1) * rows].tolist()), []).append(j)
    out = []
    for i in range(len(sig_q)):
        best, best_s = -1, -1.0
        if sig_q[i, 0] != minhash.EMPTY:
            cands = set()
            for b in range(bands):
                members = buckets.get((b, *sig_q[i, b * rows : (b + 1) * rows].tolist()), [])
                if self_match:
                    members = [j for j in members if j < i]
                cands.update(members[:cap])
            for j in sorted(cands):
                s = float((sig_q[i] == sig_r[j]).mean())
                if s >= threshold and s > best_s:
                    best, best_s = j, s
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("against_self", [False, True])
def test_best_matches_equal_a_dictionary_lsh_record_for_record(against_self):
    rng = np.random.default_rng(4)
    vocab = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(vocab, 30)) for _ in range(120)]
    texts = []
    for i in range(400):  # copies, near copies (one word changed), repeats and empties
        words = base[rng.integers(len(base))].split()
        for _ in range(rng.integers(0, 3)):
            words[rng.integers(len(words))] = vocab[rng.integers(len(vocab))]
        texts.append("" if i % 50 == 0 else " ".join(words))
    sig = minhash.signatures(pa.array(texts), num_perm=32)
    bands, rows = minhash.optimal_bands(0.7, 32)
    sig_q, sig_r = (sig, None) if against_self else (sig[:200], sig[200:])
    match, sim = minhash.best_matches(sig_q, sig_r, 0.7, bands=bands, rows=rows, cap=3)
    expected = py_best_matches(sig_q, sig_r, 0.7, bands, rows, 3)
    assert (match == expected).all() and (match >= 0).sum() > 20
    ref = sig if against_self else sig_r
    hit = match >= 0
    assert np.allclose(sim[hit], (sig_q[hit] == ref[match[hit]]).mean(axis=1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="aZ 1.\t\n\x0b\x0c\r\x1c_\u00e9", max_size=20), max_size=30))
def test_quality_counts_non_letters_like_the_regex_on_any_text(texts):
    from tailguard.gate.verifiers import _non_letters

    arr = pa.array(texts, pa.string())
    expected = pc.count_substring_regex(arr, r"[^\p{L}\s]").to_numpy(zero_copy_only=False)
    ascii_only = pa.array([t.encode("ascii", "ignore").decode() for t in texts], pa.string())
    expected_ascii = pc.count_substring_regex(ascii_only, r"[^\p{L}\s]")
    assert (_non_letters(arr) == expected).all()
    assert (_non_letters(ascii_only) == expected_ascii.to_numpy(zero_copy_only=False)).all()
    assert (_non_letters(ascii_only.slice(1)) == expected_ascii.to_numpy()[1:]).all()
