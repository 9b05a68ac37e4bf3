"""Metrics against reference implementations and hand-computed values."""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import scipy.spatial.distance
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard import metrics as M
from tailguard.errors import InputError
from tailguard.metrics import text

prdc_pkg = pytest.importorskip("prdc")
vendi_pkg = pytest.importorskip("vendi_score.vendi")


def reference_prdc(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints sizes
        return prdc_pkg.compute_prdc(real, fake, k)


def assert_same(ours: dict, ref: dict, tol: float = 1e-6) -> None:
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(ref[key]), abs=tol), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n_real", "n_fake", "dim", "k"),
    [(300, 250, 16, 5), (60, 45, 3, 3), (1200, 900, 64, 5), (40, 40, 2, 1)],
)
def test_prdc_matches_package(dtype, n_real, n_fake, dim, k):
    rng = np.random.default_rng(n_real + dim)
    real = rng.standard_normal((n_real, dim)).astype(dtype)
    fake = (0.7 * rng.standard_normal((n_fake, dim)) + 0.2).astype(dtype)
    assert_same(M.prdc(fake, real, k=k), reference_prdc(real, fake, k))


def test_prdc_identical_sets_and_offset_data():
    rng = np.random.default_rng(1)
    real = (rng.standard_normal((200, 8)) + 1000.0).astype(np.float32)
    ours = M.prdc(real.copy(), real, k=5)
    assert_same(ours, reference_prdc(real, real.copy(), 5))
    assert ours["precision"] == 1.0 and ours["recall"] == 1.0 and ours["coverage"] == 1.0


def test_prdc_tiny_sets_where_the_package_fails():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    # the package needs k + 2 points (it partitions at k + 1); k + 1 is enough by definition
    with pytest.raises(ValueError):
        reference_prdc(real, fake, 3)
    ours = M.prdc(fake, real, k=3)
    assert all(v >= 0 for v in ours.values())
    # with one more point both agree
    real5, fake5 = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert_same(M.prdc(fake5, real5, k=3), reference_prdc(real5, fake5, 3))


def test_prdc_chunking_does_not_change_the_answer(monkeypatch):
    from tailguard.metrics import _knn

    rng = np.random.default_rng(3)
    real = rng.standard_normal((500, 12)).astype(np.float32)
    fake = rng.standard_normal((400, 12)).astype(np.float32) * 0.9
    whole = M.prdc(fake, real, k=4)
    monkeypatch.setattr(_knn, "CHUNK_ELEMENTS", 1000)
    monkeypatch.setattr(_knn, "PAIR_BATCH", 7)
    assert M.prdc(fake, real, k=4, threads=1) == whole
    assert M.prdc(fake, real, k=4, threads=3) == whole  # many chunks, finishing out of order
    assert_same(whole, reference_prdc(real, fake, 4))


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 2.0, float("inf")])
@pytest.mark.parametrize("shape", [(400, 20), (25, 60)])
def test_vendi_matches_package(q, shape):
    rng = np.random.default_rng(shape[0])
    X = rng.standard_normal(shape)
    if q == 0.0 and shape[0] < shape[1]:
        # q = 0 counts nonzero eigenvalues: the package's d x d route counts rounding noise
        assert M.vendi(X, q=0.0) == pytest.approx(shape[0])
        assert vendi_pkg.score_dual(X, q=0.0) > shape[0] + 1
        return
    ref = vendi_pkg.score_dual(X, q="inf" if np.isinf(q) else q)
    assert M.vendi(X, q=q) == pytest.approx(ref, rel=1e-6)


def test_vendi_kernel_form_and_the_score_x_surprise():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((80, 10))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for q in (0.5, 2.0):
        assert M.vendi(X, q=q) == pytest.approx(vendi_pkg.score_K(Xn @ Xn.T, q=q), rel=1e-6)
    # the package's score_X ignores q and always returns the q = 1 score
    assert vendi_pkg.score_X(X, q=2.0) == pytest.approx(M.vendi(X, q=1.0), rel=1e-6)
    assert M.vendi(X, q=2.0) < M.vendi(X, q=1.0)


def test_vendi_closed_forms_and_chunking():
    eye = np.eye(7)
    assert M.vendi(np.repeat(eye, 3, axis=0)) == pytest.approx(7.0)  # 7 orthogonal groups
    assert M.vendi(np.ones((50, 4))) == pytest.approx(1.0)  # one direction
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 16))
    assert M.vendi(X, chunk_rows=128) == pytest.approx(M.vendi(X), rel=1e-10)


def test_frechet_and_mmd_reference():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((400, 5))
    b = rng.standard_normal((300, 5)) * 1.5 + 0.3
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    import scipy.linalg

    covmean = scipy.linalg.sqrtm(ca @ cb).real
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * covmean)
    assert M.frechet_distance(b, a) == pytest.approx(ref, rel=1e-8)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    gamma = 0.1
    k = lambda x, y: np.exp(-gamma * scipy.spatial.distance.cdist(x, y, "sqeuclidean"))  # noqa: E731
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    m, n = len(a), len(b)
    ref = (kaa.sum() - m) / (m * (m - 1)) + (kbb.sum() - n) / (n * (n - 1)) - 2 * kab.mean()
    assert M.mmd_rbf(b, a, gamma=gamma, chunk_rows=64) == pytest.approx(ref, rel=1e-9)


def test_label_metrics_reference_values():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 12 + ["d"] * 5 + ["e"] * 3
    smp = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    p = np.array([60, 30, 10, 0, 0]) / 100
    q = np.array([50, 30, 12, 5, 3]) / 100
    assert M.total_variation(smp, ref) == pytest.approx(0.5 * np.abs(p - q).sum())
    js = scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2
    assert M.js_divergence(smp, ref) == pytest.approx(js)
    ps, qs = (p * 100 + 0.5) / 102.5, (q * 100 + 0.5) / 102.5
    assert M.kl_divergence(smp, ref) == pytest.approx(scipy.stats.entropy(qs, ps, base=2))
    assert M.label_entropy(ref) == pytest.approx(scipy.stats.entropy(q, base=2))
    # bottom 20% of the mass: e (3%), d (5%), c (12%) -> 20%
    assert M.tail_classes(ref).to_pylist() == ["c", "d", "e"]
    assert M.tail_recall(smp, ref) == pytest.approx(1 / 3)
    assert M.tail_mass_ratio(smp, ref) == pytest.approx(0.10 / 0.20)
    table = M.per_class_recall(smp, ref).to_pydict()
    assert table["label"] == ["a", "b", "c", "d", "e"]
    assert table["recall"] == pytest.approx([1.0, 1.0, 10 / 12, 0.0, 0.0])
    # a tail is never empty: when the rarest class holds more than q, it alone is the tail
    assert M.tail_classes(["x", "y", "y"], q=0.2).to_pylist() == ["x"]
    assert M.tail_recall([2, 3], [1, 2, 2, 2, 2, 2, 3]) == pytest.approx(0.0)  # ints work too


def _tokens(t: str) -> list[str]:
    return re.findall(r"[^\W_]+", t.lower())


def test_distinct_n_and_entropy_match_counter():
    rng = np.random.default_rng(7)
    words = np.array("the a cat dog sat on mat red blue green big ran".split())
    texts = [" ".join(rng.choice(words, rng.integers(0, 10))) for _ in range(200)]
    texts[5] = "Hello, World!  it's ünïcode"
    toks = [_tokens(t) for t in texts]
    for n in range(1, 5):
        c = Counter(g for t in toks for g in zip(*[t[i:] for i in range(n)], strict=False))
        assert M.distinct_n(texts, n) == pytest.approx(len(c) / sum(c.values()))
        p = np.array(list(c.values())) / sum(c.values())
        assert M.ngram_entropy(texts, n) == pytest.approx(scipy.stats.entropy(p, base=2))
    assert M.distinct_ns(texts) == {n: M.distinct_n(texts, n) for n in (1, 2, 3, 4)}


def _counter_figures(texts: list[str], n: int) -> tuple[float, float]:
    toks = [_tokens(t) for t in texts]
    c = Counter(g for t in toks for g in zip(*[t[i:] for i in range(n)], strict=False))
    p = np.array(list(c.values())) / sum(c.values())
    return len(c) / sum(c.values()), float(scipy.stats.entropy(p, base=2))


_piece = st.sampled_from(
    ["the", "Cat", "a", "DOG", "x1", "42", "ünï", "Ärger", "é", "_", "-", ",", "  ", "\n", "it's"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_piece, max_size=9).map("".join), min_size=1, max_size=25))
def test_distinct_and_entropy_match_counter_on_mixed_texts(texts):
    """ASCII rows (byte split), non-ASCII rows (regex split), empty rows and words glued
    by punctuation: the packed one-sort counts equal a Counter of n-gram tuples."""
    grams = text.NGrams(M.tokenize(texts))
    for n in range(1, 5):
        distinct, total = grams.distinct(n)
        if total == 0:
            continue
        want_distinct, want_entropy = _counter_figures(texts, n)
        assert distinct / total == pytest.approx(want_distinct, abs=1e-12)
        assert M.ngram_entropy(grams, n) == pytest.approx(want_entropy, abs=1e-9)


def test_ascii_byte_split_equals_the_unicode_regex_split():
    from tailguard.words import split_ascii, split_unicode

    texts = ["Hello, World!", "", "a_b  C3PO-x", "   ", "9 lives\tand 10", "end."] * 3
    arr = pa.array(texts)
    for typ in (pa.string(), pa.large_string()):
        sliced = arr.cast(typ).slice(2, 12)  # an offset into shared buffers
        words, offsets = split_ascii(sliced)
        want_words, want_offsets = split_unicode(sliced)
        assert words.to_pylist() == want_words.to_pylist()
        assert offsets.tolist() == want_offsets.tolist()
    tokens = M.tokenize(["Über Cat", "the cat", "çà et là", "CAT über"])
    rows = [tokens.vocab.take(pa.array(tokens.ids[a:b])).to_pylist()
            for a, b in zip(tokens.offsets[:-1], tokens.offsets[1:], strict=True)]  # fmt: skip
    assert rows == [["über", "cat"], ["the", "cat"], ["çà", "et", "là"], ["cat", "über"]]


def test_large_vocabularies_fall_back_to_level_by_level_ids():

    rng = np.random.default_rng(11)
    texts = [" ".join(f"w{w}" for w in rng.integers(0, 40, rng.integers(0, 8))) for _ in range(300)]
    packed = text.NGrams(M.tokenize(texts))
    assert text._SortedGrams.fits(packed.vocab_size, 4)
    big = text.NGrams(M.tokenize(texts))
    big.vocab_size = 2**20  # 4 x 21 bits cannot be packed: ids are built level by level
    assert not text._SortedGrams.fits(big.vocab_size, 4)
    for n in range(1, 5):
        assert big.distinct(n) == packed.distinct(n)
        assert sorted(big.counts(n)) == sorted(packed.counts(n))
        assert packed.distinct(n)[0] / packed.distinct(n)[1] == pytest.approx(
            _counter_figures(texts, n)[0]
        )


def test_text_coverage_lengths_and_compression():
    ref = ["the cat sat", "the dog ran", "a rare zebra", "the cat ran"]
    smp = ["the cat sat", "the cat sat"]
    assert M.vocab_coverage(smp, ref) == pytest.approx(3 / 8)  # the cat sat / 8 types
    # rare tokens: counts the3 cat2 ran2 sat1 dog1 a1 rare1 zebra1 (12): bottom 20% = 2 tokens
    assert M.rare_vocab_coverage(smp, ref) == pytest.approx(0.5)
    assert M.length_quantiles(ref, (0.0, 0.5, 1.0)) == {0.0: 3.0, 0.5: 3.0, 1.0: 3.0}
    rep = M.compression_ratio(["same words again"] * 200)
    varied = M.compression_ratio([f"text number {i} says {i * 7919 % 1000}" for i in range(200)])
    assert rep > varied > 1.0


def test_self_bleu_matches_nltk():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    rng = np.random.default_rng(8)
    words = np.array("the a cat dog sat on mat red blue green big small ran".split())
    texts = [" ".join(rng.choice(words, rng.integers(0, 9))) for _ in range(40)]
    toks = [_tokens(t) for t in texts]
    smooth = nltk_bleu.SmoothingFunction().method1
    ref = np.mean(
        [
            nltk_bleu.sentence_bleu(toks[:i] + toks[i + 1 :], toks[i], smoothing_function=smooth)
            for i in range(len(toks))
        ]
    )
    assert M.self_bleu(texts, sample_size=1000) == pytest.approx(ref, rel=1e-9)
    assert M.self_bleu(["a b c d e"] * 5) == pytest.approx(1.0)


def test_scalars_reference():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal(500), rng.standard_normal(700) * 2 + 1
    assert M.wasserstein1(a, b) == pytest.approx(scipy.stats.wasserstein_distance(a, b))
    assert M.variance_ratio(a, b) == pytest.approx(a.var(ddof=1) / b.var(ddof=1))
    ratios = M.tail_quantile_ratios(a * 0.5, a, q=0.01)
    assert ratios["lower"] == pytest.approx(0.5) and ratios["upper"] == pytest.approx(0.5)


def test_registry_directions_and_kinds():
    for name, metric in M.REGISTRY.items():
        assert metric.name == name
        assert metric.kind in M.KINDS
        assert metric.higher_is_better in (True, False, None)
    assert M.REGISTRY["vector_variance_ratio"].higher_is_better is None
    assert M.REGISTRY["vector_variance_ratio"].ideal == 1.0
    assert M.REGISTRY["tail_recall"].kind == "tail"
    assert M.REGISTRY["label_js"].kind == "mean" and not M.REGISTRY["label_js"].higher_is_better
    assert M.REGISTRY["distinct_2"]([" a b", "a c"], reference_texts=["a b"]) == pytest.approx(1.0)
    with pytest.raises(InputError):
        M.evaluate(["a"], reference_texts=None)


def _twin_inputs(needs: tuple[str, ...]):
    """Sample and reference inputs for a metric, as the Metric and as its plain function."""
    rng = np.random.default_rng(5)
    words = np.array("the a cat dog sat ran far near red blue tall old new sun rain".split())
    if "vectors" in needs:
        s, r = rng.standard_normal((300, 3)) * 0.8, rng.standard_normal((400, 3))
        s_texts = pa.array([str(list(map(float, row))) for row in s])
        r_texts = pa.array([str(list(map(float, row))) for row in r])
        return (s_texts, None, r_texts, None), (s_texts, r_texts)
    s_texts = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(120)]
    r_texts = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(150)]
    s_labels = list(rng.choice(["x", "y", "z", "w"], 120, p=[0.5, 0.3, 0.15, 0.05]))
    r_labels = list(rng.choice(["x", "y", "z", "w"], 150, p=[0.4, 0.3, 0.2, 0.1]))
    if "labels" in needs:
        return (s_texts, s_labels, r_texts, r_labels), (s_labels, r_labels)
    if "embeddings" in needs:
        ref = M.Reference(r_texts)
        return (s_texts, None, ref, None), (ref.embedder.embed(s_texts), ref.embeddings)
    return (s_texts, None, r_texts, None), (s_texts, r_texts)


@pytest.mark.parametrize("name", sorted(M.REGISTRY))
def test_every_registered_metric_equals_its_functional_twin(name):
    # Iterates the registry: a newly registered metric is covered (and must name its twin).
    metric = M.REGISTRY[name]
    assert metric.function is not None, f"{name} declares no functional twin"
    as_metric, as_function = _twin_inputs(metric.needs)
    value = metric(*as_metric)
    assert math.isfinite(value)
    assert value == pytest.approx(metric.function(*as_function), rel=1e-12, abs=1e-12)


def test_two_sided_twins_take_sample_then_reference():
    rng = np.random.default_rng(1)
    wide, narrow = rng.standard_normal((500, 2)) * 2, rng.standard_normal((500, 2))
    assert M.total_variance_ratio(wide, narrow) == pytest.approx(4.0, rel=0.2)
    assert M.total_variance_ratio(narrow, wide) == pytest.approx(0.25, rel=0.2)
    shrunk = M.prdc(0.3 * narrow, narrow, k=5)  # a collapsed sample: precise, low recall
    assert shrunk["precision"] > 0.9 and shrunk["recall"] < 0.6
