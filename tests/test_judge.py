"""Judges: batching, timeout, retries with back-off, a concurrency limit, the cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tailguard.errors import InputError
from tailguard.gate import ClassifierJudge, Gate, Judge, gate_from_config


def _table(texts: list[str]) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(len(texts))], "content": texts})


def length_score(texts: list[str]) -> tuple[list[float], list[str]]:
    return [len(t) / 10 for t in texts], [f"{len(t)} chars" for t in texts]


def test_scores_turn_into_verdicts_at_the_threshold_with_reasons():
    judge = Judge(length_score, threshold=0.5)
    out = judge.verify(_table(["abc", "abcde", "abcdefgh"]))
    assert out["passed"].to_pylist() == [False, True, True]
    assert out["code"].to_pylist() == ["below_threshold", "ok", "ok"]
    assert out["score"].to_pylist() == pytest.approx([0.3, 0.5, 0.8])
    assert out["detail"][0].as_py() == "3 chars (score 0.300 < 0.5)"
    assert out["detail"][2].as_py() == "8 chars"


def test_batches_respect_batch_size_and_the_concurrency_limit():
    sizes, active, peak, lock = [], [0], [0], threading.Lock()

    def slow(texts):
        with lock:
            sizes.append(len(texts))
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return [1.0] * len(texts), ["fine"] * len(texts)

    judge = Judge(slow, batch_size=3, concurrency=2)
    judge.verify(_table([f"text {i}" for i in range(10)]))
    assert sorted(sizes) == [1, 3, 3, 3]
    assert peak[0] == 2


def test_failures_are_retried_with_back_off_then_fail_their_records():
    calls = []

    def flaky(texts):
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("try again")
        return [0.9] * len(texts), ["ok"] * len(texts)

    out = Judge(flaky, retries=2, backoff=0.05).verify(_table(["a b", "c d"]))
    assert out["passed"].to_pylist() == [True, True]
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1  # doubling back-off

    def down(texts):
        raise ConnectionError("service down")

    out = Judge(down, retries=1, backoff=0).verify(_table(["x"]))
    assert out["code"].to_pylist() == ["judge_unavailable"]
    assert "service down" in out["detail"][0].as_py()


def test_a_call_over_the_timeout_is_retried_and_then_fails():
    def hangs(texts):
        time.sleep(0.5)
        return [1.0] * len(texts), [""] * len(texts)

    judge = Judge(hangs, timeout=0.05, retries=1, backoff=0)
    out = judge.verify(_table(["x"]))
    assert out["code"].to_pylist() == ["judge_unavailable"]
    assert "no answer within" in out["detail"][0].as_py()
    assert judge.calls == 2


def test_answers_are_cached_by_content_and_version(tmp_path):
    seen = []

    def counting(texts):
        seen.extend(texts)
        return [0.7] * len(texts), ["why"] * len(texts)

    cache = tmp_path / "judge.duckdb"
    Judge(counting, cache=cache).verify(_table(["one", "two", "one"]))
    assert sorted(seen) == ["one", "two"]  # a repeated text is judged once
    out = Judge(counting, cache=cache).verify(_table(["two", "three", "  two "]))
    assert sorted(seen) == ["one", "three", "two"]  # the file cache survives the judge
    assert out["score"].to_pylist() == pytest.approx([0.7] * 3)
    Judge(counting, cache=cache, judge_version="2").verify(_table(["one"]))
    assert sorted(seen) == ["one", "one", "three", "two"]  # a new version asks again


def test_bad_settings_and_a_malformed_answer():
    with pytest.raises(InputError):
        Judge(length_score, concurrency=0)
    out = Judge(lambda t: ([1.0], ["x"]), retries=0).verify(_table(["a", "b"]))
    assert out["code"].to_pylist() == ["judge_unavailable"] * 2


@pytest.fixture(scope="module")
def topic_data(fortunes_records):
    labels = np.asarray(fortunes_records["label"].to_pylist())
    texts = np.asarray(fortunes_records["content"].to_pylist())
    rng = np.random.default_rng(0)
    on = rng.permutation(np.flatnonzero(labels == "computers"))[:400]
    off = rng.permutation(np.flatnonzero(labels != "computers"))[:800]
    rows = np.concatenate([on, off])
    return texts[rows].tolist(), np.where(labels[rows] == "computers", "on-topic", "off-topic")


def test_classifier_judge_learns_a_topic_and_refuses_a_swapped_file(
    topic_data, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    texts, labels = topic_data
    judge, fitted = ClassifierJudge.train(texts[::2], labels[::2], positive="on-topic")
    assert fitted.auc > 0.8
    out = judge.verify(_table(texts[1::2]))
    truth = labels[1::2] == "on-topic"
    passed = out["passed"].to_numpy(zero_copy_only=False)
    assert (passed == truth).mean() > 0.8
    digest = judge.save(tmp_path / "judge.joblib")
    again = ClassifierJudge(model=tmp_path / "judge.joblib", sha256=digest)
    assert again.verify(_table(texts[1:21:2]))["score"].to_pylist() == pytest.approx(
        out["score"].to_pylist()[:10]
    )
    with pytest.raises(InputError, match="SHA-256"):
        ClassifierJudge(model=tmp_path / "judge.joblib", sha256="0" * 64)
    cfg = {
        "verifiers": [
            {"kind": "classifier_judge", "model": "judge.joblib", "sha256": digest},
            {"kind": "judge", "entry": "test_judge:length_score", "threshold": 0.2},
        ]
    }
    gate = gate_from_config(cfg, base_dir=tmp_path, progress=False)
    assert isinstance(gate, Gate) and [v.kind for v in gate.verifiers] == [
        "classifier_judge",
        "judge",
    ]
