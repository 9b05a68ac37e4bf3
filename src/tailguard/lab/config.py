"""The lab's experiment configuration: everything that defines a run, explicit and serialisable.

:class:`LabConfig` is the one declaration of an experiment's settings: ``lab.run``,
``lab.frontier`` and ``lab.recovery`` take one (or its fields by name, checked by
:meth:`LabConfig.build`), and ``tailguard lab run / frontier / recovery`` build one
option per field from its :class:`Option`. A new setting is one field. The few defaults
that differ per command, and the settings a command sets itself, are :data:`COMMANDS`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from tailguard import limits
from tailguard.costs import CostModel
from tailguard.errors import ConfigError
from tailguard.lab.strategies import StrategySettings, parse_strategies
from tailguard.ledger import Ledger
from tailguard.loop import Loop

if TYPE_CHECKING:
    from tailguard.lab.data import LabData

#: ``volume="auto"``: the default equal training volume (see :func:`default_volume`).
AUTO = "auto"
#: The auto volume's ceiling (candidates a generation writes by default).
AUTO_VOLUME = 2000
#: Models whose synthetic data is a relabelling of the reservoir's own design: a
#: volume beyond it means nothing, so their auto volume is the policy's own.
POLICY_VOLUME_MODELS = ("regression",)

#: The report's per-run tables, collected from every job's ledger.
LINEAGE_TABLES = ("mix", "gate", "reasons", "decisions", "alerts")


def parse_volume(text: str) -> int | str | None:
    """``--volume``: a number of examples, ``auto`` or ``policy`` (no equal volume)."""
    value = text.strip().lower()
    if value in ("auto", "policy"):
        return None if value == "policy" else AUTO
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"--volume: {text!r} is not a number of examples, 'auto' or 'policy'"
        ) from None


def parse_params(items: list[str]) -> dict[str, object]:
    """``key=value`` options as a dict; values read as TOML (numbers, lists), else as text."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected key=value, e.g. steps=150")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


@dataclass(frozen=True)
class Option:
    """How a lab setting is written on the command line: ``--name-with-dashes`` (or
    ``flags``), a number or a text (read by ``parse``), bounded by ``min`` and ``max``;
    ``many``: repeatable, the values read together."""

    help: str
    flags: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    parse: Callable[[Any], Any] | None = None
    many: bool = False


def setting(default: Any = MISSING, *, factory: Any = MISSING, **option: Any) -> Any:
    """A :class:`LabConfig` field and its command-line :class:`Option`."""
    return field(default=default, default_factory=factory, metadata={"option": Option(**option)})


@dataclass(frozen=True)
class LabConfig:
    """Everything that defines an experiment (explicit, serialisable)."""

    model: str = setting("ngram", help="Model (see `tailguard lab list`).")
    data: str | None = setting(None, help="Human data (default: the model's own).")
    strategies: tuple[str, ...] = setting(
        ("replace", "accumulate", "anchored"), help="Comma-separated strategy names."
    )
    generations: int = setting(
        10, help="Synthetic generations per run.", min=1, max=limits.GENERATIONS_MAX
    )
    seeds: int = setting(
        3, help="Seeds (each judged by its own clean model).", min=1, max=limits.SEEDS_MAX
    )
    real_fraction: float = setting(
        StrategySettings.real_fraction, help="Human share per batch for anchoring (0 < f <= 1)."
    )
    n_generate: int | None = setting(
        None, help="Candidates per generation.", min=1, max=limits.VOLUME_MAX
    )
    #: Training examples per round, the same for every strategy: human-only buys fresh
    #: human examples to reach it, pure synthetic generates it, anchoring is the reservoir
    #: plus synthetic data. ``"auto"`` (the default): :func:`default_volume`, larger than
    #: the reservoir; ``None``: each strategy trains on what its policy selects (the
    #: classic collapse experiments, where accumulating data grows every round).
    volume: int | str | None = setting(
        AUTO,
        help="Training examples per round for every strategy (equal volume): a number, "
        "'auto' (larger than the reservoir) or 'policy' (each strategy's own).",
        parse=parse_volume,
    )
    #: Reservoir size (human examples frozen, holdout included) when ``volume`` is set;
    #: default ``volume // 2``, so the volume is larger than the reservoir.
    reservoir_size: int | None = setting(
        None,
        help="With --volume: human records frozen (default volume/2).",
        min=1,
        max=limits.VOLUME_MAX,
    )
    #: New human records per round for ``fresh`` (default ``n_generate // 4``).
    fresh_per_round: int | None = setting(
        None, help="fresh: new human records per round.", min=1, max=limits.VOLUME_MAX
    )
    eval_size: int | None = setting(
        None, help="Texts per evaluation sample.", min=1, max=limits.VOLUME_MAX
    )
    batch_size: int = setting(
        Loop.BATCH_SIZE, help="Examples per batch.", min=1, max=limits.BATCH_SIZE_MAX
    )
    holdout: float = setting(Ledger.HOLDOUT, help="The reservoir's share held out to evaluate.")
    recovery_rounds: int = setting(
        5,
        help="Anchored rounds allowed to recover a collapsed run.",
        flags=("--recovery-rounds", "--rounds"),
        min=0,
        max=limits.RUN_ROUNDS_MAX,
    )
    model_params: dict[str, Any] = setting(
        factory=dict,
        help="A model or data parameter, key=value (repeatable), e.g. steps=150.",
        flags=("--param",),
        parse=parse_params,
        many=True,
    )
    costs: CostModel = setting(
        factory=CostModel,
        help="Prices per example, e.g. human=0.5,synthetic=0.001,verification=0.02",
        parse=CostModel.parse,
    )
    seed: int = setting(0, help="Base seed.", min=0, max=limits.SEED_MAX)
    #: The verified strategies' verifier: its recall and specificity (one knob) and its
    #: preference for the mode (``lab.verified.KnobVerifier``).
    verifier_quality: float | None = setting(
        None, help="The verified strategies' verifier: recall = specificity, in [0, 1]."
    )
    verifier_bias: float = setting(0.0, help="The verifier's preference for the mode (0: none).")

    def __post_init__(self) -> None:
        from tailguard.lab.data import check_params, resolve  # the models: on first use

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
        if isinstance(self.volume, str) and self.volume != AUTO:
            raise ConfigError(
                f"volume must be a number of examples, 'auto' or None, got {self.volume!r}"
            )
        for name in ("n_generate", "eval_size", "volume", "reservoir_size"):
            if name == "volume" and self.volume == AUTO:
                continue
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ConfigError(f"{name} must be >= 2, got {value}")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.recovery_rounds < 0:
            raise ConfigError(f"recovery_rounds must be >= 0, got {self.recovery_rounds}")
        if self.fresh_per_round is not None and self.fresh_per_round < 1:
            raise ConfigError(f"fresh_per_round must be >= 1, got {self.fresh_per_round}")
        check_params(self.model, self.data, self.model_params)  # e.g. refuses T <= d + 1
        self._check_verifier()
        if self.volume == AUTO:
            object.__setattr__(self, "volume", default_volume(self))
        if self.reservoir_size is not None and self.volume is None:
            raise ConfigError("reservoir_size only applies with volume= (an equal-volume run)")

    def _check_verifier(self) -> None:
        """A verified strategy needs a quality in [0, 1] and a model with a ground truth."""
        from tailguard.lab.strategies import VERIFIED
        from tailguard.lab.verified import TASK_MODELS

        q = self.verifier_quality
        if q is not None and not 0.0 <= q <= 1.0:
            raise ConfigError(f"verifier_quality must lie in [0, 1], got {q}")
        if self.verifier_bias < 0:
            raise ConfigError(f"verifier_bias must be >= 0, got {self.verifier_bias}")
        if set(VERIFIED) & set(self.strategies) and self.model not in TASK_MODELS:
            raise ConfigError(
                f"the verified strategies need a task with a ground truth; the {self.model!r} "
                f"model has none (models with one: {', '.join(TASK_MODELS)})"
            )

    @classmethod
    def build(cls, config: LabConfig | None = None, **overrides: Any) -> LabConfig:
        """``config`` (default: every field's default) with ``overrides`` replacing its
        fields, checked again; a key that is no field of :class:`LabConfig` (or of
        ``config``'s class) is refused. A comma-separated ``strategies`` string is split,
        ``None`` for ``model_params`` and ``costs`` means their defaults."""
        known = {f.name for f in fields(cls if config is None else type(config))}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown lab setting {', '.join(map(repr, unknown))}; "
                f"the settings are: {', '.join(sorted(known))}"
            )
        if isinstance(overrides.get("strategies"), str):
            names = overrides["strategies"].split(",")
            overrides["strategies"] = tuple(n for n in names if n.strip())
        elif overrides.get("strategies") is not None:
            overrides["strategies"] = tuple(overrides["strategies"])
        if "model_params" in overrides:
            overrides["model_params"] = dict(overrides["model_params"] or {})
        if "costs" in overrides and overrides["costs"] is None:
            overrides["costs"] = CostModel()
        if config is None:
            return cls(**overrides)
        return replace(config, **overrides) if overrides else config

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default, unchecked (what the command line shows)."""
        return {
            f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            for f in fields(cls)
        }

    @property
    def dataset(self) -> LabData:
        from tailguard.lab.data import resolve

        return resolve(self.model, self.data)

    def params(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = self.dataset.name
        out["strategies"] = list(self.strategies)
        out["costs"] = self.costs.params()
        return out


@dataclass(frozen=True)
class Command:
    """What one lab command changes of :class:`LabConfig`: the defaults that differ for
    it, and the settings it sets itself (refused when given)."""

    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: tuple[str, ...] = ()

    def config(self, name: str, config: LabConfig | None = None, **settings: Any) -> LabConfig:
        """``config`` (default: this command's defaults) with ``settings`` replacing its
        fields; a setting the command sets itself, or no field, is refused."""
        fixed = sorted(set(self.fixed) & set(settings))
        if fixed:
            raise ConfigError(f"lab {name} sets {', '.join(map(repr, fixed))} itself")
        if config is None:
            settings = {**self.defaults, **settings}
        return LabConfig.build(config, **settings)


#: The lab's commands (``lab.run``, ``lab.frontier``, ``lab.recovery`` and the CLI's
#: ``tailguard lab ...``): the frontier sweeps Zipf documents at 300 per round (the
#: trade-off in about a minute on two cores), recovery a Gaussian (it collapses within a
#: few generations, so both routes back are measured in seconds).
COMMANDS: dict[str, Command] = {
    "run": Command(),
    "frontier": Command(
        {"model": "categorical", "volume": 300},
        fixed=("strategies", "real_fraction", "recovery_rounds", "verifier_quality"),
    ),
    "recovery": Command({"model": "gaussian"}, fixed=("strategies", "generations")),
}


def default_volume(config: LabConfig) -> int | None:
    """The auto volume: ``min(AUTO_VOLUME, n_human / 1.1)``, the reservoir half of it.

    Larger than the reservoir (``volume // 2``), so that the trade-off bites, and small
    enough that human-only can buy the rest from the data held back: the reservoir plus
    the purchase, ``1.05 x volume``, fits the data set. A model that relabels the
    reservoir's own design (regression) keeps its policy's volume (``None``).
    """
    if config.model in POLICY_VOLUME_MODELS:
        return None
    if config.n_generate is not None:
        return None  # an explicit candidates-per-generation count is a policy-volume run
    n_human = config.dataset.load(config.model_params).num_rows
    return max(2, min(AUTO_VOLUME, int(n_human / 1.1)))


def human_budget(config: LabConfig, n_human: int, n_generate: int) -> tuple[int, int]:
    """``(reservoir, stream)``: human records frozen, and held back to buy or stream in.

    The stream serves ``fresh`` (``generations x fresh_per_round``) and, with a
    ``volume``, human-only's purchase (``volume`` minus the reservoir's training
    split). A setting the data set cannot supply is refused here, before anything
    runs, with the numbers.
    """
    from tailguard.lab.strategies import STRATEGIES, StrategySettings

    per_round = 0
    if "fresh" in config.strategies:
        settings = StrategySettings(
            real_fraction=config.real_fraction, n_generate=n_generate,
            fresh_per_round=config.fresh_per_round,
        )  # fmt: skip
        per_round = STRATEGIES["fresh"].parts(settings).fresh_per_round
    fresh = per_round * config.generations
    data = config.dataset.name
    if config.volume is None:
        reservoir = n_human - fresh
        if fresh > n_human // 2:
            raise ConfigError(
                f"the 'fresh' strategy needs {per_round} new human records per round x "
                f"{config.generations} generations = {fresh:,}, but {data} holds {n_human:,} "
                f"human records and at least half of them ({n_human - n_human // 2:,}) stay "
                "in the reservoir: lower fresh_per_round or generations"
            )
        return reservoir, fresh
    reservoir = config.reservoir_size or config.volume // 2
    train = reservoir - round(config.holdout * reservoir)
    buy = max(0, config.volume - train) if "human-only" in config.strategies else 0
    stream = max(fresh, buy)
    if reservoir + stream > n_human:
        raise ConfigError(
            f"{data} runs out of human data: {n_human:,} human records, but the reservoir "
            f"takes {reservoir:,} and {stream:,} more are needed (human-only buys "
            f"{buy:,} to reach volume {config.volume:,}; fresh streams {fresh:,}): lower "
            "volume, reservoir_size, fresh_per_round or generations"
        )
    return reservoir, stream
