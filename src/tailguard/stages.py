"""The stages of a round, in order, and where a resumed run picks up."""

from __future__ import annotations

STAGES = ("generate", "gate", "dial", "plan", "train", "evaluate")


def next_stage(last: tuple[int, str] | None) -> tuple[int, str]:
    """The (round, stage) after the last finished one; (0, first stage) for a new run."""
    if last is None:
        return 0, STAGES[0]
    rnd, stage = last
    i = STAGES.index(stage)
    return (rnd + 1, STAGES[0]) if i == len(STAGES) - 1 else (rnd, STAGES[i + 1])
