"""Judges: batching, timeout, retries with back-off, a concurrency limit, the cache."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import ConfigError, InputError
from tailguard.gate import ClassifierJudge, Gate, Judge, JudgeCache, gate_from_config
from tailguard.gate.judge import MAX_REASON_CHARS, _Checked


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


class Logged:
    """A judge that logs each call (batch size, start, end) to a file: it runs in a
    worker process, so only the file shows the gate what it did."""

    def __init__(self, path: Path, *, sleep: float = 0.0, fail_first: int = 0) -> None:
        self.path, self.sleep, self.fail_first = path, sleep, fail_first
        self.__name__ = "logged"

    def __call__(self, texts):
        start = time.monotonic()
        before = len(self.calls())
        time.sleep(self.sleep)
        with self.path.open("a") as f:
            f.write(f"{len(texts)} {start} {time.monotonic()} {'|'.join(texts)}\n")
        if before < self.fail_first:
            raise ConnectionError("try again")
        return [0.7] * len(texts), ["why"] * len(texts)

    def calls(self) -> list[tuple[int, float, float, list[str]]]:
        if not self.path.exists():
            return []
        rows = [line.split(" ", 3) for line in self.path.read_text().splitlines()]
        return [(int(n), float(a), float(b), t.split("|")) for n, a, b, t in rows]


def test_batches_respect_batch_size_and_the_concurrency_limit(tmp_path):
    slow = Logged(tmp_path / "calls.log", sleep=0.5)
    judge = Judge(slow, batch_size=3, concurrency=2)
    judge.verify(_table([f"text {i}" for i in range(10)]))
    calls = slow.calls()
    assert sorted(n for n, *_ in calls) == [1, 3, 3, 3]
    events = sorted([(a, 1) for _, a, _, _ in calls] + [(b, -1) for _, _, b, _ in calls])
    running = np.cumsum([d for _, d in events])
    assert running.max() == 2  # two calls at a time, in two worker processes


def test_failures_are_retried_with_back_off_then_fail_their_records(tmp_path):
    flaky = Logged(tmp_path / "calls.log", fail_first=2)
    out = Judge(flaky, retries=2, backoff=0.05, concurrency=1).verify(_table(["a b", "c d"]))
    assert out["passed"].to_pylist() == [True, True]
    starts = [a for _, a, _, _ in flaky.calls()]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.05 and starts[2] - starts[1] >= 0.1  # doubling back-off

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
    assert out["code"].to_pylist() == ["timeout"]
    assert "no answer within" in out["detail"][0].as_py()
    assert judge.calls == 2


def test_answers_are_cached_by_content_and_version(tmp_path):
    counting = Logged(tmp_path / "calls.log")

    def seen():
        return sorted(t for *_, texts in counting.calls() for t in texts)

    cache = tmp_path / "judge.duckdb"
    Judge(counting, cache=cache).verify(_table(["one", "two", "one"]))
    assert seen() == ["one", "two"]  # a repeated text is judged once
    out = Judge(counting, cache=cache).verify(_table(["two", "three", "  two "]))
    assert seen() == ["one", "three", "two"]  # the file cache survives the judge
    assert out["score"].to_pylist() == pytest.approx([0.7] * 3)
    Judge(counting, cache=cache, judge_version="2").verify(_table(["one"]))
    assert seen() == ["one", "one", "three", "two"]  # a new version asks again


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


# Issue #26, item 5: a judge can neither hang the gate nor fool it.


def never_returns(texts):
    if any("hang" in t for t in texts):
        threading.Event().wait()  # blocks for ever
    return [0.9] * len(texts), ["fine"] * len(texts)


def answers_after_30s(texts):
    if any("slow" in t for t in texts):
        time.sleep(30)
    return [0.9] * len(texts), ["fine"] * len(texts)


@pytest.mark.parametrize("fn", [never_returns, answers_after_30s])
def test_a_judge_that_overruns_is_killed_and_the_gate_goes_on(fn):
    judge = Judge(fn, timeout=1, retries=0, batch_size=1, concurrency=1)
    texts = ["first text", "hang here, slow too", "last text"]
    start = time.monotonic()
    result = Gate([judge], progress=False).run(_table(texts))
    elapsed = time.monotonic() - start
    assert result.verdicts["code"].to_pylist() == ["ok", "timeout", "ok"]
    assert "no answer within 1s (worker process killed" in result.verdicts["detail"][1].as_py()
    assert result.accepted.tolist() == [True, False, True]
    assert elapsed < 15  # one 1 s timeout: not for ever, not 30 s
    assert judge._workers[0].restarts == 1
    judge.close()


def scores_of_every_kind(texts):
    values = {
        "inf": float("inf"),
        "nan": float("nan"),
        "string": "0.9",
        "bool": True,
        "big": 1.5,
        "negative": -0.1,
        "none": None,
        "numpy": np.float32(0.75),
        "fine": 0.9,
    }
    return [values[t] for t in texts], [f"said {t}" for t in texts]


def test_a_score_must_be_a_finite_real_number_in_the_range():
    kinds = ["inf", "nan", "string", "bool", "big", "negative", "none", "numpy", "fine"]
    out = Judge(scores_of_every_kind, retries=0).verify(_table(kinds))
    codes = dict(zip(kinds, out["code"].to_pylist(), strict=True))
    details = dict(zip(kinds, out["detail"].to_pylist(), strict=True))
    assert codes == {**dict.fromkeys(kinds[:7], "error"), "numpy": "ok", "fine": "ok"}
    assert "'0.9' is a str, not a real number" in details["string"]
    assert "True is a bool" in details["bool"]
    assert "inf is not a finite number in [0, 1]" in details["inf"]
    assert "1.5 is not a finite number in [0, 1]" in details["big"]
    assert out["score"].to_pylist()[-2:] == pytest.approx([0.75, 0.9])
    wide = Judge(scores_of_every_kind, retries=0, score_range=(-1, 2)).verify(_table(kinds))
    assert wide["code"].to_pylist()[4:6] == ["ok", "below_threshold"]  # 1.5 and -0.1 declared


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.one_of(st.floats(), st.integers(-(10**400), 10**400), st.booleans(), st.text()))
def test_a_score_is_accepted_exactly_when_finite_real_and_in_range(value):
    score, problem = _Checked(length_score, 0.0, 1.0)._score(value)
    valid = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and -1 < value < 2
        and math.isfinite(value)
        and 0 <= value <= 1
    )
    assert (problem is None) is valid
    assert score == (float(value) if valid else None)


def ten_megabyte_reason(texts):
    return [0.1] * len(texts), ["x" * 10_000_000 for _ in texts]


def test_a_reason_is_cut_to_the_stated_length(tmp_path):
    out = Judge(ten_megabyte_reason, cache=tmp_path / "cache.duckdb").verify(_table(["a"]))
    detail = out["detail"][0].as_py()
    assert out["code"].to_pylist() == ["below_threshold"]
    assert len(detail) <= MAX_REASON_CHARS + 40  # the reason and "(score ... < 0.5)"
    assert "[cut from 10,000,000 characters]" in detail


def test_a_bad_score_range_is_refused_by_name():
    for bad in [(1, 0), (0, float("inf")), (0,), "01", (0, "1")]:
        with pytest.raises(InputError, match="score_range"):
            Judge(length_score, score_range=bad)
    with pytest.raises(InputError, match="timeout"):
        Judge(length_score, timeout=float("nan"))


def test_the_config_declares_the_score_range_and_a_bad_one_is_refused(tmp_path):
    def gate(**extra):
        spec = {"kind": "judge", "entry": "test_judge:length_score", "timeout": 5, **extra}
        return gate_from_config({"verifiers": [spec]}, base_dir=tmp_path, progress=False)

    judge = gate(score_range=[0, 10]).verifiers[0]
    assert judge.score_range == (0.0, 10.0) and judge.timeout == 5
    out = judge.verify(_table(["a" * 50]))  # score 5.0: in [0, 10]
    assert out["code"].to_pylist() == ["ok"]
    assert gate().verifiers[0].verify(_table(["a" * 50]))["code"].to_pylist() == ["error"]
    for bad in ([1, 0], [0, 1, 2]):
        with pytest.raises((InputError, ConfigError), match="score_range"):
            gate(score_range=bad)


def test_a_judge_called_again_after_its_threads_ended_still_answers():
    # workers forked by the call threads die with them (the parent-death signal is
    # per thread): the next call must fork fresh ones, not fail on a dying one
    judge = Judge(length_score, retries=0, concurrency=2, batch_size=1)
    for _ in range(5):
        out = judge.verify(_table(["abcdefgh", "abcdefghij", "abcdefghi"]))
        assert out["code"].to_pylist() == ["ok"] * 3
        judge._cache = JudgeCache()  # ask again, not the cache
    judge.close()
