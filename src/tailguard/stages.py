"""The stages of a round, in order, where a resumed run picks up, and the contracts of
the parts that run them.

The gate, the dial and the monitor are whatever objects keep these contracts
(:class:`RoundGate`, :class:`RoundDial`, :class:`RoundMonitor`): the in-process
:class:`~tailguard.gate.Gate` and the Ray gate, :class:`~tailguard.mix.Dial`,
:class:`~tailguard.monitor.Monitor`, or a user's own. Each Protocol lists exactly what
the loop calls, so a part that keeps it runs in a loop; the names are imported only
for type checking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from tailguard.ledger import Ledger
    from tailguard.mix.dial import Decision, Evidence

STAGES = ("generate", "gate", "dial", "plan", "train", "evaluate")


def next_stage(last: tuple[int, str] | None) -> tuple[int, str]:
    """The (round, stage) after the last finished one; (0, first stage) for a new run."""
    if last is None:
        return 0, STAGES[0]
    rnd, stage = last
    i = STAGES.index(stage)
    return (rnd + 1, STAGES[0]) if i == len(STAGES) - 1 else (rnd, STAGES[i + 1])


class GateOutcome(Protocol):
    """What a gated round reports: the ids it accepted and rejected."""

    @property
    def accepted_ids(self) -> Sized: ...

    @property
    def rejected_ids(self) -> Sized: ...


@runtime_checkable
class RoundGate(Protocol):
    """The ``gate`` stage: rule on round ``round``'s synthetic candidates in ``ledger``,
    store the verdicts and move each candidate to accepted or rejected."""

    def run_round(self, ledger: Ledger, round: int) -> GateOutcome: ...  # noqa: A002


@runtime_checkable
class RoundDial(Protocol):
    """The ``dial`` stage: the human share of round ``round`` from the monitor's evidence.

    ``params()`` and ``resume(decisions, **params)`` rebuild it on a resumed run by
    replaying the decisions it made (each replayed share must match the stored one)."""

    def decide(self, round: int, evidence: Iterable[Evidence]) -> Decision: ...  # noqa: A002

    def params(self) -> dict[str, Any]: ...

    @classmethod
    def resume(cls, decisions: pa.Table, **params: Any) -> RoundDial: ...


@runtime_checkable
class RoundMonitor(Protocol):
    """The ``evaluate`` stage and the dial's evidence: metrics of each round's sample
    against the human holdout (``reference``), the clean model's draws, the human
    baseline, and the history they are read from."""

    reference: Any

    def use_reference(self, digest: str) -> bool: ...

    def set_reference(
        self, texts: Any, labels: Any = None, *, digest: str | None = None
    ) -> Any: ...

    def load(self, table: pa.Table) -> Any: ...

    def evidence(self, run: str | None = None) -> list[Evidence]: ...

    def record(
        self,
        round: int,  # noqa: A002
        texts: Any,
        labels: Any = None,
        *,
        sample: str = "model",
        run: str | None = None,
    ) -> pa.Table: ...

    def record_draws(
        self,
        round: int,  # noqa: A002
        draws: list[tuple[Any, Any]],
        *,
        sample: str = "model",
        run: str | None = None,
    ) -> pa.Table | None: ...

    def cached_noise_floor(
        self, digest: str, labelled: bool, *, size: int, run: str | None = None
    ) -> pa.Table | None: ...

    def record_noise_floor(
        self,
        train_texts: Any,
        train_labels: Any = None,
        *,
        size: int,
        run: str | None = None,
        digest: str | None = None,
    ) -> pa.Table: ...


#: Each part's Protocol, by the name the loop's keyword gives it.
PARTS: dict[str, type] = {"gate": RoundGate, "dial": RoundDial, "monitor": RoundMonitor}


def missing(part: str, value: Any) -> list[str]:
    """What ``value`` lacks of the ``part`` Protocol (``gate``, ``dial`` or ``monitor``):
    the names of its methods and attributes that ``value`` does not have."""
    protocol = PARTS[part]
    names = [n for n in protocol.__dict__ if not n.startswith("_")]
    names += list(getattr(protocol, "__annotations__", {}))
    return sorted({n for n in names if not hasattr(value, n)})
