"""The one validated model of ``tailguard.toml``; every command loads it with :func:`load_config`.

Pydantic checks every key before anything runs: an unknown key or a value of the
wrong type is refused with the file, the key's dotted name (``gate.verifiers.1.threshold``)
and the reason. Every default is imported from the class that uses it (``Anchored``,
``Dial``, ``Ledger``, ``Loop``, ``Monitor``, ``Screener``, ``MlflowTracker``,
``CostModel``); the ``[gate]`` table is the gate's own model
(:mod:`tailguard.gate.section`). This module sits above the core it composes.
Relative paths in the
file (the ledger, data files, rules and schema files) resolve against the
config file's folder, whichever directory a command runs from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from tailguard import limits
from tailguard.costs import CostModel
from tailguard.gate.section import VERIFIER_SPECS, GateSection, VerifierSpec, validate_gate
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix.dial import Dial
from tailguard.mix.policies import Anchored, Policy, policy_from_name
from tailguard.monitor import Monitor
from tailguard.screen import Screener
from tailguard.settings import (
    Fraction,
    Share,
    Strict,
    config_error,
    fraction,
    parse_toml,
    read_toml_file,
)
from tailguard.tracking import MlflowTracker

#: The config file every command reads from the current directory by default.
CONFIG_FILE = Path("tailguard.toml")
#: Where the ledger lives unless ``[project] ledger`` says otherwise.
LEDGER_FILE = ".tailguard/ledger.duckdb"


def default_of(owner: type, attr: str) -> Any:
    """A field's default read from ``owner.attr`` each time a section is built, so the
    class that uses a setting keeps its only declaration (and a changed default reaches
    the config)."""
    return Field(default_factory=lambda: getattr(owner, attr))


# ---------------------------------------------------------------------- [project] [data] [model]
class ProjectSection(Strict):
    ledger: str = LEDGER_FILE


class FileSource(Strict):
    path: str
    text_field: str = "text"
    label_field: str | None = None


class DataSection(Strict):
    builtin: Literal["fortunes", "wordnet"] | None = None
    files: list[FileSource] = Field(default_factory=list)
    holdout: Annotated[float, fraction(zero=True, one=False)] = default_of(Ledger, "HOLDOUT")
    seed: int = Field(0, ge=0, le=limits.SEED_MAX)

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if self.builtin is None and not self.files:
            raise ValueError('name the human data: `builtin = "fortunes"` or `files = [...]`')
        return self


class ModelSection(Strict):
    kind: str | None = None
    entry: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_model(self) -> ModelSection:
        if (self.kind is None) == (self.entry is None):
            raise ValueError(
                "give exactly one of `kind` (a lab model) or `entry` (module:function)"
            )
        if self.entry is not None and ":" not in self.entry:
            raise ValueError(f"entry must look like module:function, got {self.entry!r}")
        return self


# ---------------------------------------------------------------------- [policy] [dial] ...
class PolicySection(Strict):
    name: str = "anchored"
    real_fraction: Fraction | None = default_of(Anchored, "REAL_FRACTION")
    synthetic: Literal["accumulate", "latest", "subsample"] | None = None
    reservoir: Literal["whole", "share"] | None = None
    new_human_per_round: int | None = Field(None, ge=1, le=limits.VOLUME_MAX)
    #: ``fill_gaps``: each label's target count ("median", a floor, or {label = count}).
    target: Literal["median"] | Annotated[int, Field(ge=0)] | dict[str, int] | None = None

    def policy(self, **extra: Any) -> Policy:
        """The policy this section names: only the keys given are passed (and ``extra``,
        such as ``mix --size``), so a key left out keeps that policy's own default and
        ``fill_gaps`` keeps its natural share unless ``real_fraction`` is named."""
        given = {k: getattr(self, k) for k in self.model_fields_set if k != "name"}
        params = {k: v for k, v in {**given, **extra}.items() if v is not None}
        return policy_from_name(self.name, **params)


def policy_section(source: str = "options", **given: Any) -> PolicySection:
    """A ``[policy]`` section from keyword values (a command's options), ``None`` left out;
    a bad value is refused with the key's name."""
    try:
        return PolicySection.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise config_error(exc, source) from None


class DialSection(Strict):
    enabled: bool = False
    start: Fraction = default_of(Dial, "START")
    minimum: Fraction = default_of(Dial, "MINIMUM")
    maximum: Fraction = default_of(Dial, "MAXIMUM")
    step: Fraction = default_of(Dial, "STEP")
    patience: int = Field(default_factory=lambda: Dial.PATIENCE, ge=1)
    watch: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in (("floor", "minimum"), ("ceiling", "maximum")):
                if old in data:
                    raise ValueError(f"`{old}` is now called `{new}`")
        return data

    @model_validator(mode="after")
    def _ordered(self) -> DialSection:
        if not self.minimum <= self.start <= self.maximum:
            raise ValueError(
                f"needs minimum <= start <= maximum, got "
                f"{self.minimum} <= {self.start} <= {self.maximum}"
            )
        return self


class MonitorSection(Strict):
    preset: str = default_of(Monitor, "PRESET")
    #: hashing | minilm | module:function; unset: the sentence model when installed
    #: for a preset with embedding metrics, else hashing
    embedder: str | None = None

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, value: str | None) -> str | None:
        if value is not None and value not in ("hashing", "minilm", "auto") and ":" not in value:
            raise ValueError(f"must be hashing, minilm or module:function, got {value!r}")
        return value


class LoopSection(Strict):
    rounds: int = Field(5, ge=1, le=limits.RUN_ROUNDS_MAX)
    n_generate: int = Field(default_factory=lambda: Loop.N_GENERATE, ge=1, le=limits.VOLUME_MAX)
    #: Texts evaluated per round (and the human baseline's sample size); unset:
    #: ``n_generate`` up to ``Loop.N_SAMPLE``.
    n_sample: int | None = Field(None, ge=1, le=limits.VOLUME_MAX)
    batch_size: int = Field(default_factory=lambda: Loop.BATCH_SIZE, ge=1, le=limits.BATCH_SIZE_MAX)
    seed: int = Field(default_factory=lambda: Loop.SEED, ge=0, le=limits.SEED_MAX)
    run: str = default_of(Loop, "RUN")


class AuditSection(Strict):
    human_floor: Share = default_of(Ledger, "AUDIT_FLOOR")


class ScreenSection(Strict):
    """``tailguard screen``'s defaults: when a "human" record copies a synthetic one, and
    the out-of-fold precision (or a fixed score) at which the detector flags."""

    near_threshold: Annotated[float, fraction(one=False)] = Field(
        default_factory=lambda: Screener.NEAR_THRESHOLD
    )
    precision: Fraction = Field(default_factory=lambda: Screener.PRECISION)
    threshold: Share | None = None


class ReservoirSection(Strict):
    """A digest pinned outside the ledger: every command that reads the reservoir checks it."""

    digest: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None


class MlflowSection(Strict):
    """Where ``tailguard run`` logs each round: a tracking server's URI
    (``http://127.0.0.1:5000``), another MLflow URI or a local directory (MLflow's
    file store, relative to the config file's folder)."""

    tracking_uri: Annotated[str, Field(min_length=1)]
    experiment: Annotated[str, Field(min_length=1)] = Field(
        default_factory=lambda: MlflowTracker.EXPERIMENT
    )


class EngineSection(Strict):
    """Where the heavy stages run: ``local`` (this process) or ``ray`` (Ray Data over the
    ledger's Parquet shards: a local Ray, or the cluster at ``address``)."""

    kind: Literal["local", "ray"] = "local"
    #: A Ray cluster (``ray://head:10001`` or ``auto``); unset: start a local Ray.
    address: Annotated[str, Field(min_length=1)] | None = None
    #: CPUs of a local Ray (unset: all of this machine's); ignored with ``address``.
    num_cpus: Annotated[int, Field(ge=1)] | None = None
    #: Where a round's shards are written: a folder every node reads (a shared
    #: filesystem) for a cluster; unset: a temporary folder on this machine.
    work_dir: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _ray_only(self) -> EngineSection:
        if self.kind == "local" and {"address", "num_cpus", "work_dir"} & self.model_fields_set:
            raise ValueError('address, num_cpus and work_dir are for kind = "ray"')
        return self


Price = Annotated[float, Field(ge=0)]


class CostsSection(Strict):
    """Prices per example (US dollars) every cost is computed at: human data bought or
    owned (the reservoir), a generated candidate, a verified candidate. The advisor
    builds its ``CostModel(**section.model_dump())`` from them."""

    human: Price = default_of(CostModel, "human")
    synthetic: Price = default_of(CostModel, "synthetic")
    verification: Price = default_of(CostModel, "verification")


class ProjectConfig(Strict):
    """All of ``tailguard.toml``. ``base_dir`` is the folder relative paths resolve against."""

    project: ProjectSection = Field(default_factory=ProjectSection)
    data: DataSection | None = None
    model: ModelSection | None = None
    gate: GateSection | None = None
    policy: PolicySection = Field(default_factory=PolicySection)
    dial: DialSection = Field(default_factory=DialSection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    loop: LoopSection = Field(default_factory=LoopSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    reservoir: ReservoirSection | None = None
    screen: ScreenSection = Field(default_factory=ScreenSection)
    mlflow: MlflowSection | None = None
    costs: CostsSection = Field(default_factory=CostsSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def resolve(self, path: str | Path) -> Path:
        """``path`` as the config means it: relative to the config file's folder."""
        p = Path(path)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def ledger_path(self) -> Path:
        return self.resolve(self.project.ledger)


# ---------------------------------------------------------------------- loading
def load_config(path: str | Path = CONFIG_FILE) -> ProjectConfig:
    """Read and validate ``tailguard.toml``; errors name the file, the key and the reason."""
    p = Path(path)
    return validate(read_toml_file(p), source=str(p), base_dir=p.parent)


def validate(
    raw: dict[str, Any], *, source: str = "config", base_dir: str | Path = "."
) -> ProjectConfig:
    """A parsed ``tailguard.toml`` (a dict) as a :class:`ProjectConfig`, or a named error."""
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, source, raw) from None
    config._base_dir = Path(base_dir)
    return config


__all__ = [
    "CONFIG_FILE",
    "LEDGER_FILE",
    "AuditSection",
    "DataSection",
    "DialSection",
    "EngineSection",
    "GateSection",
    "LoopSection",
    "ModelSection",
    "MonitorSection",
    "PolicySection",
    "ProjectConfig",
    "ProjectSection",
    "ReservoirSection",
    "VERIFIER_SPECS",
    "VerifierSpec",
    "config_error",
    "load_config",
    "parse_toml",
    "default_of",
    "validate",
    "validate_gate",
]
