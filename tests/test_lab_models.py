"""The lab's models: the record protocol, the numeric codec, the n-gram model's speed and law."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError, InputError
from tailguard.lab.models import (
    MODELS,
    Categorical,
    DigitsMixture,
    Gaussian,
    GaussianMixture,
    GenerativeModel,
    KernelDensity,
    LinearRegression,
    NGram,
    decode_vectors,
    digits_records,
    encode_vectors,
    zipf_records,
)
from tailguard.lab.models.base import human_vector_records
from tailguard.lab.models.ngram import detokenize, tokenize
from tailguard.records import SCHEMA


@given(
    st.lists(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=3, max_size=3
        ),
        min_size=1,
        max_size=20,
    )
)
@settings(max_examples=60, deadline=None)
def test_vector_codec_round_trips_exactly(rows: list[list[float]]) -> None:
    x = np.array(rows)
    assert np.array_equal(decode_vectors(encode_vectors(x)), x)


def test_vector_content_is_json() -> None:
    import json

    texts = encode_vectors(np.array([[0.5, -1.25], [1e-7, 3.0]])).to_pylist()
    assert texts == ["[0.5, -1.25]", "[1e-7, 3]"]
    assert [json.loads(t) for t in texts] == [[0.5, -1.25], [1e-7, 3.0]]


def test_vector_codec_refuses_ragged_and_non_finite() -> None:
    with pytest.raises(InputError, match="row 1"):
        decode_vectors(pa.array(["[1, 2]", "[1]"]))
    with pytest.raises(InputError, match="non-finite"):
        encode_vectors(np.array([[np.nan]]))
    with pytest.raises(InputError, match="JSON array of numbers"):
        decode_vectors(pa.array(["[1, x]"]))


def _numeric_human(d: int = 2, n: int = 400) -> pa.Table:
    x = np.random.default_rng(0).standard_normal((n, d)) * [1.0, 3.0][:d]
    return human_vector_records(x, source="unit")


@pytest.mark.parametrize(
    "model",
    [
        Gaussian(),
        Gaussian(estimator="unbiased"),
        GaussianMixture(n_components=2),
        KernelDensity(bandwidth=0.3),
    ],
)
def test_numeric_models_follow_the_protocol(model: GenerativeModel) -> None:
    assert isinstance(model, GenerativeModel)
    fitted = model.fit(_numeric_human())
    out = fitted.sample(300, seed=1, generation=2, round=2)
    assert out.schema == SCHEMA
    assert out.num_rows == 300
    assert set(out.column("origin").to_pylist()) == {"synthetic"}
    assert set(out.column("generation").to_pylist()) == {2}
    x = decode_vectors(out.column("content"))
    assert x.shape == (300, 2)
    assert np.std(x[:, 1]) > 1.5 * np.std(x[:, 0])  # the fitted shape survives sampling
    again = model.clone().fit(_numeric_human()).sample(300, seed=1, generation=2, round=2)
    assert again.column("id").equals(out.column("id"))  # same seed, same sample


def test_gaussian_fit_matches_numpy() -> None:
    x = np.random.default_rng(3).standard_normal((50, 3))
    g = Gaussian().fit_array(x)
    np.testing.assert_allclose(g.cov_, np.cov(x.T, ddof=0))
    u = Gaussian(estimator="unbiased").fit_array(x)
    np.testing.assert_allclose(u.cov_, np.cov(x.T, ddof=1))
    np.testing.assert_allclose(g.mean_, x.mean(0))


def test_categorical_loses_a_token_for_good() -> None:
    human = zipf_records(vocab_size=200, n_docs=100, doc_length=20, seed=0)
    model = Categorical().fit(human)
    seen = len(model.vocab_)
    for g in range(1, 30):
        model = Categorical().fit(model.sample(15, seed=g, generation=g, round=g))
    assert len(model.vocab_) < seen  # rare tokens drawn zero times are gone
    assert (model.probs_ > 0).all()


def test_categorical_documents_are_unique_records() -> None:
    model = Categorical(doc_length=20).fit(zipf_records(vocab_size=50, n_docs=30, seed=1))
    out = model.sample(200, seed=0)
    assert len(set(out.column("id").to_pylist())) == 200
    assert all(len(t.split()) == 20 for t in out.column("content").to_pylist())


def test_regression_relabels_its_fixed_design() -> None:
    m = LinearRegression(n_features=3, n_samples=40, noise=0.5, design_seed=2)
    human = m.human_records(seed=0)
    fitted = m.clone().fit(human)
    out = fitted.sample(40, seed=1)
    rows = decode_vectors(out.column("content"))
    np.testing.assert_allclose(rows[:, :3], m.design())
    resid = rows[:, 3] - m.design() @ fitted.coef_
    assert 0.3 < resid.std() < 0.7


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"n_features": 10, "n_samples": 11}, "must exceed n_features"),
        ({"n_features": 10, "n_samples": 10}, "must exceed n_features"),
        ({"n_features": 0, "n_samples": 10}, "n_features"),
        ({"n_features": 2, "n_samples": 10, "noise": 0.0}, "noise"),
    ],
)
def test_regression_refuses_impossible_settings(kwargs: dict, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        LinearRegression(**kwargs)


def test_digits_model_generates_labelled_images() -> None:
    human = digits_records()
    model = DigitsMixture(n_pca=12, n_components=10).fit(human)
    out = model.sample(500, seed=0)
    x = decode_vectors(out.column("content"), dim=64)
    assert x.min() >= 0 and x.max() <= 16
    labels = out.column("label").to_pylist()
    assert len(set(labels)) >= 8  # a fresh fit still draws most digits


def test_tokenize_detokenize_round_trip() -> None:
    texts = pa.array(["Hello, world. Don't (panic)!", "  two\nlines -- here ", ""])
    tokens, lengths = tokenize(texts)
    assert lengths.tolist() == [9, 5, 0]  # "--" is two marks
    assert tokens.to_pylist()[:4] == ["Hello", ",", "world", "."]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    again, again_lengths = tokenize(detokenize(tokens, offsets))
    assert again.equals(tokens) and again_lengths.tolist() == lengths.tolist()


def _tiny_corpus() -> pa.Table:
    from tailguard.records import make_records

    texts = ["the cat sat on the mat ."] * 30 + ["a dog ran in the park ."] * 10 + ["wizards fly ."]
    labels = ["cats"] * 30 + ["dogs"] * 10 + ["magic"]
    return make_records(texts, origin="human", source="unit", label=labels)


def test_ngram_learns_categories_and_sequences() -> None:
    model = NGram(order=3).fit(_tiny_corpus())
    texts, labels = model.sample_texts(2000, seed=0)
    counts = dict(zip(*np.unique(np.array(labels.to_pylist()), return_counts=True), strict=True))
    assert abs(counts["cats"] / 2000 - 30 / 41) < 0.04
    assert abs(counts["dogs"] / 2000 - 10 / 41) < 0.04
    cat_texts = [
        t for t, lab in zip(texts.to_pylist(), labels.to_pylist(), strict=True) if lab == "cats"
    ]
    # Each seen trigram context is followed by the seen word most of the time.
    share = np.mean([t == "the cat sat on the mat." for t in cat_texts])
    assert share > 0.3


def test_ngram_is_deterministic_per_seed() -> None:
    model = NGram().fit(_tiny_corpus())
    a, b = model.sample(50, seed=5), model.sample(50, seed=5)
    assert a.column("id").equals(b.column("id"))
    assert not a.column("id").equals(model.sample(50, seed=6).column("id"))


def test_ngram_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="order"):
        NGram(order=7)
    with pytest.raises(InputError, match="no texts"):
        NGram().fit(_tiny_corpus().slice(0, 0))


def test_ngram_on_fortunes_samples_like_the_corpus(fortunes_records: pa.Table) -> None:
    # Speed is measured in bench/lab.py; this checks what the samples look like.
    model = NGram().fit(fortunes_records.slice(0, 14_000))
    out = model.sample(2000, seed=0, generation=1, round=1)
    assert out.num_rows == 2000
    # Sampled texts look like the corpus: a realistic spread of lengths and many categories.
    lengths = np.array([len(t.split()) for t in out.column("content").to_pylist()])
    assert 5 < np.median(lengths) < 60
    assert len(set(out.column("label").to_pylist())) > 25


def test_model_registry_lists_every_model() -> None:
    assert set(MODELS) == {
        "gaussian",
        "mixture",
        "kde",
        "categorical",
        "regression",
        "ngram",
        "digits",
        "transformer",
    }
