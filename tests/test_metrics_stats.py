"""Statistical behaviour of the metrics with fixed seeds, and invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_corpus
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tailguard import metrics as M


@pytest.fixture
def corpus():
    return make_corpus


def test_coverage_of_identical_distributions_matches_closed_form():
    n_real = n_fake = 150
    k = 5
    expected = 1 - np.prod([(n_real - j) / (n_fake + n_real - j) for j in range(1, k + 1)])
    rng = np.random.default_rng(0)
    cov = [
        M.prdc(rng.standard_normal((n_fake, 4)), rng.standard_normal((n_real, 4)), k=k)["coverage"]
        for _ in range(40)
    ]
    assert np.mean(cov) == pytest.approx(expected, abs=0.01)


def test_shrinking_variance_lowers_recall_and_raises_density():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((800, 8))
    same = M.prdc(rng.standard_normal((800, 8)), real, k=5)
    shrunk = M.prdc(0.6 * rng.standard_normal((800, 8)), real, k=5)
    assert shrunk["recall"] < same["recall"] - 0.2
    assert shrunk["density"] > same["density"] + 0.3


def test_dropping_mixture_modes_lowers_coverage_and_recall():
    rng = np.random.default_rng(2)
    centres = 6.0 * np.eye(8)[:4]

    def mixture(n: int, modes: np.ndarray) -> np.ndarray:
        return modes[rng.integers(0, len(modes), n)] + rng.standard_normal((n, 8))

    real = mixture(800, centres)
    full = M.prdc(mixture(800, centres), real, k=5)
    half = M.prdc(mixture(800, centres[:2]), real, k=5)
    assert half["coverage"] < full["coverage"] - 0.3
    assert half["recall"] < full["recall"] - 0.3
    assert half["precision"] > 0.8  # what is left is still real-looking


def test_vendi_counts_effective_modes():
    rng = np.random.default_rng(3)
    dirs = np.eye(16)
    few = dirs[rng.integers(0, 3, 600)] + 0.01 * rng.standard_normal((600, 16))
    many = dirs[rng.integers(0, 12, 600)] + 0.01 * rng.standard_normal((600, 16))
    assert M.vendi(few) == pytest.approx(3, rel=0.05)
    assert M.vendi(many) == pytest.approx(12, rel=0.05)


def test_text_metrics_fall_when_a_generator_sharpens(corpus):
    ref_t, ref_l = corpus(1500, seed=10)
    same_t, same_l = corpus(1500, seed=11)
    sharp_t, sharp_l = corpus(1500, seed=12, temperature=0.5)
    same = M.evaluate(same_t, same_l, ref_t, ref_l)
    sharp = M.evaluate(sharp_t, sharp_l, ref_t, ref_l)
    for name in ("tail_recall", "tail_mass_ratio", "distinct_2", "rare_vocab_coverage",
                 "label_entropy", "ngram_entropy_1"):  # fmt: skip
        assert sharp[name] < same[name], name
    assert sharp["label_js"] > same["label_js"]


texts_st = st.lists(
    st.lists(st.sampled_from(["a", "b", "c", "dd", "ée", "1"]), max_size=8).map(" ".join),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(texts_st, st.randoms(use_true_random=False))
def test_distinct_n_is_a_share_and_order_free(texts, rnd):
    n_tokens = sum(len(t.split()) for t in texts)
    if n_tokens == 0:
        return
    shuffled = texts[:]
    rnd.shuffle(shuffled)
    d1 = M.distinct_n(texts, 1)
    assert 0 < d1 <= 1
    assert M.distinct_n(shuffled, 1) == pytest.approx(d1)
    assert M.ngram_entropy(shuffled, 1) == pytest.approx(M.ngram_entropy(texts, 1))


labels_st = st.lists(st.sampled_from("abcdef"), min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(labels_st, labels_st)
@example(["a"], ["b", "c", "d", "e", "f", "f"])  # disjoint: summed to 1 + 2e-16 once
def test_label_distances_are_bounded_and_symmetric(a, b):
    tv, js = M.total_variation(a, b), M.js_divergence(a, b)
    assert 0 <= tv <= 1 and 0 <= js <= 1 + 1e-12
    assert tv == pytest.approx(M.total_variation(b, a))
    assert js == pytest.approx(M.js_divergence(b, a))
    assert M.kl_divergence(a, a) == pytest.approx(0, abs=1e-12)
    assert 0 <= M.tail_recall(a, b) <= 1


@settings(max_examples=40, deadline=None)
@given(st.integers(6, 40), st.integers(6, 40), st.integers(1, 5), st.integers(0, 10**6))
def test_prdc_bounds_and_row_order_invariance(n, m, k, seed):
    rng = np.random.default_rng(seed)
    real, fake = rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
    out = M.prdc(fake, real, k=k)
    assert all(0 <= out[key] <= 1 for key in ("precision", "recall", "coverage"))
    assert 0 <= out["density"] <= n / k
    assert M.prdc(fake[rng.permutation(m)], real[rng.permutation(n)], k=k) == out


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(1, 12), st.integers(0, 10**6))
def test_vendi_lies_between_one_and_the_rank(n, d, seed):
    X = np.random.default_rng(seed).standard_normal((n, d))
    v = M.vendi(X)
    assert 1 - 1e-9 <= v <= min(n, d) + 1e-9


_WORDS = st.sampled_from(["cat", "Dog", "sat", "mat", "the", "a", "zebra", "x1", "été", "naïve"])


@given(
    st.lists(st.lists(_WORDS, max_size=6).map(" ".join), min_size=1, max_size=8),
    st.lists(st.lists(_WORDS, max_size=6).map(" ".join), min_size=1, max_size=8),
)
def test_a_reference_tokenised_once_numbers_tokens_as_the_joint_tokenisation(sample, reference):
    """Reusing the reference's tokens must give the very ids (and so every metric value)
    of tokenising sample and reference together."""
    from tailguard.metrics import text
    from tailguard.metrics.registry import Comparison, Reference

    joint = text.tokenize_pair(sample, reference)
    reused = Comparison(sample, None, Reference(reference)).tokens
    for a, b in zip(joint, reused, strict=True):
        assert a.ids.tolist() == b.ids.tolist() and a.offsets.tolist() == b.offsets.tolist()
        assert a.vocab.to_pylist() == b.vocab.to_pylist()
