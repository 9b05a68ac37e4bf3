"""The answer comparison measured on a kept table of answer pairs (tests/data)."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import pyarrow as pa
import pytest

from tailguard.gate import MathAnswer
from tailguard.gate.execution import _answers_equal, answers_equal

PAIRS = Path(__file__).parent / "data" / "math_answer_pairs.csv"


def _rows() -> list[tuple[str, str, bool]]:
    with PAIRS.open(encoding="utf-8") as f:
        return [(r["answer"], r["reference"], r["equal"] == "true") for r in csv.DictReader(f)]


def _score(compare) -> int:
    right = 0
    for answer, reference, equal in _rows():
        with contextlib.suppress(Exception):  # "cannot compare" counts as wrong
            right += compare(answer, reference)[0] is equal
    return right


def test_the_table_has_at_least_50_pairs_of_both_kinds():
    rows = _rows()
    assert len(rows) >= 50
    assert sum(e for *_, e in rows) >= 25 and sum(not e for *_, e in rows) >= 15


def test_math_verify_beats_the_hand_written_normaliser_on_the_table():
    hand, combined = _score(_answers_equal), _score(answers_equal)
    assert combined > hand
    assert combined >= len(_rows()) - 2  # known miss: 10\% vs 10 (percent leniency)


@pytest.mark.parametrize(
    ("answer", "reference", "equal"),
    [
        (r"\boxed{\frac{1}{2}}", "0.5", True),
        (r"\dfrac{1}{2}", "0.5", True),
        (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True),
        ("x=3", "3", True),
        ("x=3", "4", False),
        (r"\dfrac{1}{3}", "0.5", False),
    ],
)
def test_the_cases_that_could_not_be_compared_now_are(answer, reference, equal):
    assert answers_equal(answer, reference)[0] is equal


def test_math_answer_verifier_passes_latex_answers_and_fails_wrong_ones():
    batch = pa.table(
        {
            "id": ["a", "b", "c"],
            "content": [
                '{"answer": "\\\\dfrac{1}{2}", "reference": "0.5"}',
                '{"answer": "x=3", "reference": "3"}',
                '{"answer": "\\\\frac{\\\\sqrt{3}}{2}", "reference": "\\\\frac{\\\\sqrt{2}}{2}"}',
            ],
        }
    )
    out = MathAnswer().verify(batch)
    assert out.column("passed").to_pylist() == [True, True, False]
    assert out.column("code").to_pylist() == ["ok", "ok", "wrong_answer"]
