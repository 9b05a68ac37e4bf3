"""The lab models' experiment knobs, the regression loop's design and the transformer."""

from __future__ import annotations

import numpy as np
import pytest

from tailguard.lab.models import decode_vectors


def _rows(table, d):  # noqa: ANN001, ANN202
    return {tuple(r) for r in decode_vectors(table.column("content"), dim=d + 1)[:, :d]}


@pytest.mark.parametrize("strategy", ["replace", "accumulate"])
def test_regression_loop_relabels_exactly_the_reservoir_design(strategy: str) -> None:
    from tailguard.lab.config import LabConfig
    from tailguard.lab.job import _Job

    d = 3
    cfg = LabConfig(
        model="regression", strategies=(strategy,), generations=3, seeds=1, recovery_rounds=0,
        model_params={"n_features": d, "n_samples": 60},
    )  # fmt: skip
    job = _Job(cfg, strategy, 0, lambda n: None)
    try:
        job.run()
        train = _rows(job.ledger.reservoir_records("train"), d)
        holdout = _rows(job.ledger.reservoir_records("holdout"), d)
        for g in (1, 2, 3):
            synthetic = job.ledger.records(origin="synthetic", generation=g)
            assert _rows(synthetic, d) == train  # every training x relabelled, nothing else
            assert not _rows(synthetic, d) & holdout
    finally:
        job.ledger.close()


TINY = {"n_layer": 1, "n_head": 2, "d_model": 16, "max_len": 24, "steps": 8, "batch_size": 8}


def _fortunes_subset(n: int = 300):  # noqa: ANN202
    from tailguard.datasets import fortunes

    t = fortunes()
    return t.take(np.random.default_rng(0).permutation(t.num_rows)[:n])


def test_transformer_is_deterministic_given_the_seed() -> None:
    pytest.importorskip("torch")
    from tailguard.lab.models import Transformer

    data = _fortunes_subset()
    a = Transformer(**TINY).fit(data, seed=3).sample(30, seed=5)
    b = Transformer(**TINY).fit(data, seed=3).sample(30, seed=5)
    c = Transformer(**TINY).fit(data, seed=4).sample(30, seed=5)
    assert a.column("content").equals(b.column("content"))
    assert a.column("label").equals(b.column("label"))
    assert not a.column("content").equals(c.column("content"))  # the seed reaches the weights
    texts = a.column("content").to_pylist()
    assert all(0 < len(t) <= TINY["max_len"] for t in texts)
    assert set(a.column("label").to_pylist()) <= set(data.column("label").to_pylist())


def test_transformer_learns_and_temperature_sharpens() -> None:
    pytest.importorskip("torch")
    from tailguard.lab.models import Transformer

    data = _fortunes_subset(400)
    params = {**TINY, "steps": 60, "lr": 1e-2}
    model = Transformer(**params).fit(data, seed=0)
    # Uniform guessing over the vocabulary costs log(V) nats; training must beat it.
    assert model.statistics()["train_loss"] < 0.8 * np.log(model._n_vocab())
    cold = Transformer(**params, temperature=0.3).fit(data, seed=0)
    hot = Transformer(**params, temperature=3.0).fit(data, seed=0)

    def distinct_chars(m) -> int:  # noqa: ANN001
        return len(set("".join(m.sample(60, seed=1).column("content").to_pylist())))

    assert distinct_chars(cold) < distinct_chars(hot)


def test_transformer_runs_in_the_lab_and_refuses_bad_params() -> None:
    pytest.importorskip("torch")
    from tailguard import lab
    from tailguard.errors import ConfigError
    from tailguard.lab.models import Transformer

    result = lab.run(
        model="transformer", strategies="replace,anchored", generations=2, seeds=1,
        n_generate=40, recovery_rounds=0, model_params=TINY, workers=1, out=None, progress=False,
    )  # fmt: skip
    rounds = set(result.metrics.to_pandas()["round"])
    assert rounds == {0, 1, 2}
    assert "tail_recall" in set(result.metrics["metric"].to_pylist())
    with pytest.raises(ConfigError, match="n_head"):
        Transformer(d_model=30, n_head=4)
    with pytest.raises(ConfigError, match="temperature"):
        Transformer(temperature=0)


def test_gaussian_statistics_follow_the_mle_decay_through_lab_run() -> None:
    """Through lab.run: the fitted variance shrinks as E[var_n] = d (1 - 1/M)^n (replace, MLE)."""
    from tailguard import lab

    m, d, gens = 20, 2, 6
    result = lab.run(
        model="gaussian", strategies="replace", generations=gens, seeds=40, n_generate=m,
        recovery_rounds=0, model_params={"n_points": m * 10, "dim": d}, workers=1, out=None,
        progress=False, holdout=0.5,
    )  # fmt: skip
    stats = result.model_stats.to_pandas()
    var = stats[stats.statistic == "variance"].groupby("round")["value"].mean()
    # round 0 fits the reservoir (~100 points); each later round refits M = 20 draws
    expected_ratio = (1 - 1 / m) ** gens
    measured_ratio = var[gens] / var[0]
    assert abs(measured_ratio - expected_ratio) < 0.2, (measured_ratio, expected_ratio)
    w2 = stats[stats.statistic == "w2_to_truth"].groupby("round")["value"].mean()
    assert w2[gens] > w2[0]  # the fit walks away from N(0, I)


def test_sampling_bias_knobs_cut_the_tail() -> None:
    from tailguard.lab.models import Categorical, Gaussian, NGram, zipf_records

    docs = zipf_records(vocab_size=200, n_docs=200, doc_length=20, seed=0)
    plain = Categorical().fit(docs)
    cold = Categorical(temperature=0.5).fit(docs)
    top = Categorical(top_k=10).fit(docs)
    assert (top.sampling_probs() > 0).sum() == 10
    p, q = plain.sampling_probs(), cold.sampling_probs()
    assert q.max() > p.max()  # colder: the head gains
    np.testing.assert_allclose(q, p**2 / (p**2).sum())
    vocab = set(" ".join(top.sample(200, seed=0).column("content").to_pylist()).split())
    assert len(vocab) <= 10

    x = np.random.default_rng(0).standard_normal((5000, 2))
    g = Gaussian(sample_scale=0.25).fit_array(x)
    draws = g.sample_array(20000, np.random.default_rng(1))
    assert abs(draws.var(axis=0).mean() - 0.25 * x.var(axis=0).mean()) < 0.02

    from tailguard.datasets import fortunes

    texts = fortunes().slice(0, 2000)
    hot = NGram(temperature=2.0).fit(texts).sample_texts(300, seed=0)[0]
    coldn = NGram(temperature=0.3).fit(texts).sample_texts(300, seed=0)[0]

    def distinct(a) -> int:  # noqa: ANN001
        return len(set(" ".join(a.to_pylist()).split()))

    assert distinct(coldn) < distinct(hot)


@pytest.mark.parametrize(
    ("model", "params", "match"),
    [
        ("gaussian", {"n_pionts": 10}, "'n_pionts' is not a parameter"),
        ("gaussian", {"dim": 0}, "'dim' must be an integer >= 1"),
        ("gaussian", {"sample_scale": -1.0}, "sample_scale"),
        ("categorical", {"exponent": -1.0}, "exponent"),
        ("categorical", {"weights": [1.0, -2.0]}, "weights"),
        ("categorical", {"top_k": 0}, "top_k"),
        ("mixture", {"weights": [0.5, 0.5]}, "three non-negative cluster shares"),
        ("ngram", {"temperature": 0}, "temperature"),
    ],
)
def test_lab_refuses_bad_model_and_data_params(model: str, params: dict, match: str) -> None:
    from tailguard.errors import ConfigError
    from tailguard.lab import LabConfig

    with pytest.raises(ConfigError, match=match):
        LabConfig(model=model, model_params=params)


def test_categorical_support_and_weights_reach_the_data() -> None:
    from tailguard.lab.data import DATASETS

    docs = DATASETS["zipf"].load({"weights": [0.5, 0.5, 0.0], "n_docs": 50, "doc_length": 4})
    tokens = set(" ".join(docs.column("content").to_pylist()).split())
    assert tokens <= {"tok0", "tok1"} and len(tokens) == 2


def test_evaluation_follows_the_model_data_kind() -> None:
    from tailguard.lab.evaluation import PRIMARY, preset_for_model

    assert preset_for_model("gaussian") == "lab-vectors"
    assert preset_for_model("regression") == "lab-vectors"
    assert preset_for_model("transformer") == "default"  # text, like the n-gram model
    assert preset_for_model("digits") == "lab-labels"
    assert PRIMARY["labels"] == "label_tv"  # does not saturate at 1.0 on ten balanced digits


def test_lab_cli_params_parse_as_toml() -> None:
    from tailguard.errors import ConfigError
    from tailguard.lab.config import parse_params

    got = parse_params(["steps=150", "temperature=0.5", "weights=[0.5, 0.5]", "estimator=mle"])
    assert got == {"steps": 150, "temperature": 0.5, "weights": [0.5, 0.5], "estimator": "mle"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_params(["steps"])
