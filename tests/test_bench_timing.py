"""The peer benchmarks' shared timing: warm-ups first, runs alternated, best and median."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _timing import Runs, alternate, schedule, timed  # noqa: E402

names = st.lists(st.text("abcdef", min_size=1, max_size=3), min_size=1, max_size=4, unique=True)


@given(names, st.integers(1, 6))
def test_schedule_alternates_every_side_once_per_pass(sides: list[str], repeat: int) -> None:
    order = schedule(sides, repeat)
    assert len(order) == len(sides) * repeat
    for k in range(repeat):  # A, B, A, B: each pass is the sides in their given order
        assert order[k * len(sides) : (k + 1) * len(sides)] == sides


def test_schedule_rejects_no_runs() -> None:
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        schedule(["a"], 0)


@given(st.lists(st.floats(0.001, 100.0), min_size=1, max_size=9))
def test_best_and_median_of_the_runs(seconds: list[float]) -> None:
    runs = Runs("x", list(seconds), [f"v{i}" for i in range(len(seconds))])
    assert runs.best == min(seconds)
    assert runs.median == statistics.median(seconds)
    assert runs.best_value == f"v{seconds.index(min(seconds))}"


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    runs = Runs("x", [4.0, 1.0, 3.0, 10.0])
    assert (runs.best, runs.median) == (1.0, 3.5)


@given(names, st.integers(1, 4))
def test_alternate_warms_every_side_up_before_any_timed_run(sides: list[str], repeat: int) -> None:
    log: list[str] = []
    durations = iter(range(1, 1000))

    def side(name: str):  # noqa: ANN202
        def run() -> tuple[float, str]:
            log.append(f"run {name}")
            return float(next(durations)), name

        return run

    warm = {name: (lambda n=name: log.append(f"warm {n}")) for name in sides}
    result = alternate({n: side(n) for n in sides}, repeat, warm_up=warm)
    assert log[: len(sides)] == [f"warm {n}" for n in sides]
    assert log[len(sides) :] == [f"run {n}" for n in schedule(sides, repeat)]
    for k, name in enumerate(sides):  # each side got the seconds its turns returned
        expected = [float(1 + k + p * len(sides)) for p in range(repeat)]
        assert result[name].seconds == expected
        assert result[name].values == [name] * repeat


def test_timed_measures_the_call_and_keeps_its_value() -> None:
    seconds, value = timed(lambda: sum(range(10_000)))()
    assert value == sum(range(10_000))
    assert 0.0 <= seconds < 60.0
