"""Embedders: determinism, the on-disk cache, the optional MiniLM model, and evaluate's speed."""

from __future__ import annotations

import numpy as np
import pytest

from tailguard import metrics as M
from tailguard.metrics.embedders import CachedEmbedder, HashingEmbedder, MiniLMEmbedder


def test_hashing_embedder_is_deterministic_and_meaningful():
    ref = ["the cat sat on the mat", "dogs run in the park", "stock prices fell today"]
    a = HashingEmbedder(seed=1).fit(ref)
    b = HashingEmbedder(seed=1).fit(ref)
    X = a.embed(["the cat sat on a mat", "markets and stock prices", ""])
    assert X.dtype == np.float32 and X.shape == (3, 256)
    np.testing.assert_array_equal(
        X, b.embed(["the cat sat on a mat", "markets and stock prices", ""])
    )
    R = a.embed(ref)
    cos = (X[:2] @ R.T) / np.outer(np.linalg.norm(X[:2], axis=1), np.linalg.norm(R, axis=1))
    assert cos[0].argmax() == 0 and cos[1].argmax() == 2
    assert not X[2].any()  # an empty text has no direction
    assert a.params()["idf"] == b.params()["idf"] is not None


def test_cache_returns_the_same_vectors_and_skips_known_texts(tmp_path):
    calls = []

    class Counting(HashingEmbedder):
        def embed(self, texts):
            calls.append(len(texts))
            return super().embed(texts)

    cached = CachedEmbedder(Counting(dim=32), tmp_path)
    first = cached.embed(["a b", "c d", "a b"])
    second = cached.embed(["c d", "e f", "a b"])
    np.testing.assert_array_equal(second[[0, 2]], first[[1, 0]])
    assert calls == [2, 1]  # duplicates and cached texts are embedded once
    again = CachedEmbedder(Counting(dim=32), tmp_path).embed(["e f"])
    np.testing.assert_array_equal(again[0], second[1])
    assert calls == [2, 1]


@pytest.mark.skipif(not MiniLMEmbedder.available(), reason="tailguard[embed] not installed")
def test_minilm_embedder_loads_offline_from_its_package():
    emb = MiniLMEmbedder()
    X = emb.embed(["A cat sits on the mat.", "A kitten rests on a rug.", "Quarterly revenue fell."])
    assert X.shape == (3, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-4)
    assert X[0] @ X[1] > X[0] @ X[2]


def test_default_preset_computes_every_metric_of_the_preset():
    from conftest import make_corpus

    ref_t, ref_l = make_corpus(1500, seed=0)
    smp_t, smp_l = make_corpus(1500, seed=1)
    out = M.evaluate(smp_t, smp_l, ref_t, ref_l)
    assert set(out) == set(M.PRESETS["default"].metrics)
    assert all(np.isfinite(v) for v in out.values())


def test_rich_preset_with_a_prepared_reference():
    from conftest import make_corpus

    ref_t, ref_l = make_corpus(300, seed=0)
    smp_t, smp_l = make_corpus(300, seed=1)
    ref = M.Reference(ref_t, ref_l, embedder=HashingEmbedder(dim=64))
    out = M.evaluate(smp_t, smp_l, ref, preset="rich")
    assert set(out) == set(M.PRESETS["rich"].metrics)
    assert all(np.isfinite(v) for v in out.values())
