"""The lab's experiment configuration: everything that defines a run, explicit and serialisable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tailguard.costs import CostModel
from tailguard.errors import ConfigError
from tailguard.lab.data import LabData, check_params, resolve
from tailguard.lab.strategies import StrategySettings, parse_strategies

#: The report's per-run tables, collected from every job's ledger.
LINEAGE_TABLES = ("mix", "gate", "reasons", "decisions", "alerts")


@dataclass(frozen=True)
class LabConfig:
    """Everything that defines an experiment (explicit, serialisable)."""

    model: str = "ngram"
    data: str | None = None
    strategies: tuple[str, ...] = ("replace", "accumulate", "anchored")
    generations: int = 10
    seeds: int = 3
    real_fraction: float = StrategySettings.real_fraction
    n_generate: int | None = None
    eval_size: int | None = None
    batch_size: int = 64
    holdout: float = 0.1
    recovery_rounds: int = 5
    model_params: dict[str, Any] = field(default_factory=dict)
    costs: CostModel = field(default_factory=CostModel)
    seed: int = 0

    def __post_init__(self) -> None:
        strategies = tuple(s.name for s in parse_strategies(list(self.strategies)))
        object.__setattr__(self, "strategies", strategies)
        object.__setattr__(self, "data", resolve(self.model, self.data).name)
        if self.generations < 1:
            raise ConfigError(
                f"generations must be >= 1, got {self.generations}: collapse is "
                "a multi-generation effect, zero generations measure nothing"
            )
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        # Anchoring strategies, and every recovery, need a real fraction in (0, 1].
        StrategySettings(real_fraction=self.real_fraction)
        for name in ("n_generate", "eval_size"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ConfigError(f"{name} must be >= 2, got {value}")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.recovery_rounds < 0:
            raise ConfigError(f"recovery_rounds must be >= 0, got {self.recovery_rounds}")
        check_params(self.model, self.data, self.model_params)  # e.g. refuses T <= d + 1

    @property
    def dataset(self) -> LabData:
        return resolve(self.model, self.data)

    def params(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = self.dataset.name
        out["strategies"] = list(self.strategies)
        out["costs"] = self.costs.params()
        return out
