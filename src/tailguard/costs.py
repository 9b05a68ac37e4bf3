"""The one cost function: what a round used, at per-example prices, in one currency.

A round is priced from what it *used* (:class:`RoundUsage`), never from a guessed
volume:

- ``human_bought``: new human examples first trained on that round (fresh or bought
  data, not the reservoir), at ``human`` each;
- ``reservoir_owned``: the reservoir's training examples, bought once and charged
  once, in round 0 (a run's first round), for every strategy; never again per round;
- ``generated``: synthetic candidates generated, at ``synthetic`` each;
- ``verified``: candidates the round's gate ruled on, at ``verification`` each.

Default prices (US dollars per example; ``tailguard.toml [costs]`` or ``--costs``
override any of them):

- ``human = 1.00``: one new human-written or human-labelled example (a short
  text written or checked by a paid annotator).
- ``synthetic = 0.002``: generating one example (about 200 output tokens from a
  hosted model at about $10 per million tokens).
- ``verification = 0.01``: one verifier pass over one synthetic candidate
  (a judge-model call or an automated check with its share of review).

The figures are deliberately round: the ratio between them matters more than
their level, and every report states the prices it used. The lab's per-round
table, its axes, the frontier (table and chart), the recovery experiment, the
advisor and the report all price rounds with :meth:`CostModel.round_cost`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tailguard.errors import ConfigError

#: The usage columns a round summary carries (``Ledger.round_summary``) and their
#: :class:`RoundUsage` fields.
SUMMARY_COLUMNS = {"bought": "human_bought", "generated": "generated", "verified": "verified"}


@dataclass(frozen=True)
class RoundUsage:
    """What one round used: human examples bought, reservoir owned, generated, verified.

    Each field is a count, or an array of counts (one per round) for a whole table.
    """

    human_bought: Any = 0
    reservoir_owned: Any = 0
    generated: Any = 0
    verified: Any = 0

    @classmethod
    def from_summary(cls, summary: Any, *, reservoir: int) -> RoundUsage:
        """Per round of a ``Ledger.round_summary`` table (one run, by round): the usage
        columns as arrays, with the ``reservoir`` training examples owned in the run's
        first round (round 0)."""
        rounds = np.asarray(summary["round"], dtype=np.int64)
        owned = np.zeros(len(rounds), dtype=np.int64)
        if len(rounds):
            owned[rounds == rounds.min()] = int(reservoir)
        cols = {field: np.asarray(summary[col], dtype=np.int64)
                for col, field in SUMMARY_COLUMNS.items()}  # fmt: skip
        return cls(reservoir_owned=owned, **cols)


@dataclass(frozen=True)
class CostModel:
    """Per-example prices: human data, synthetic generation, verification."""

    human: float = 1.00
    synthetic: float = 0.002
    verification: float = 0.01

    def __post_init__(self) -> None:
        for name, value in self.params().items():
            if isinstance(value, bool) or not (isinstance(value, int | float) and value >= 0):
                raise ConfigError(f"cost {name} must be a non-negative number, got {value!r}")

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def round_cost(self, usage: RoundUsage) -> Any:
        """The price of a round's usage: a float, or an array for per-round arrays."""
        human = usage.human_bought + usage.reservoir_owned
        return (
            human * self.human
            + usage.generated * self.synthetic
            + (usage.verified * self.verification)
        )

    def describe(self) -> str:
        """The prices, as every page that quotes a cost states them."""
        return (
            f"${self.human:g} per human example, ${self.synthetic:g} per generated, "
            f"${self.verification:g} per verified candidate"
        )

    @classmethod
    def parse(cls, text: str | None) -> CostModel:
        """``"human=0.5,synthetic=0.001"`` (any subset) over the defaults."""
        if not text:
            return cls()
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in cls.__dataclass_fields__:
                raise ConfigError(
                    f"bad cost {part!r}: write name=price with name one of "
                    f"{', '.join(cls.__dataclass_fields__)}"
                )
            try:
                values[key] = float(value)
            except ValueError:
                raise ConfigError(f"cost {key} must be a number, got {value!r}") from None
        return cls(**values)
