"""The cost model: what a strategy's data costs, per example, in one currency.

Defaults (US dollars per example; override any of them):

- ``human = 1.00``: one new human-written or human-labelled example (a short
  text written or checked by a paid annotator). Charged once per distinct human
  example a strategy trains on: reusing the reservoir is free after that.
- ``synthetic = 0.002``: generating one example (about 200 output tokens from a
  hosted model at about $10 per million tokens).
- ``verification = 0.01``: one verifier pass over one synthetic candidate
  (a judge-model call or an automated check with its share of review), charged
  for every candidate a gate sees.

The figures are deliberately round: the ratio between them matters more than
their level, and every report states the prices it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tailguard.errors import ConfigError


@dataclass(frozen=True)
class CostModel:
    """Per-example prices: human data, synthetic generation, verification."""

    human: float = 1.00
    synthetic: float = 0.002
    verification: float = 0.01

    def __post_init__(self) -> None:
        for name, value in self.params().items():
            if not (isinstance(value, int | float) and value >= 0):
                raise ConfigError(f"cost {name} must be a non-negative number, got {value!r}")

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def cost(self, *, human: float = 0, synthetic: float = 0, verified: float = 0) -> float:
        """The price of ``human`` new human examples, ``synthetic`` generated, ``verified``."""
        return human * self.human + synthetic * self.synthetic + verified * self.verification

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
