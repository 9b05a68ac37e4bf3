"""The one validated model of ``tailguard.toml``; every command loads it with :func:`load_config`.

Pydantic checks every key before anything runs: an unknown key or a value of the
wrong type is refused with the file, the key's dotted name (``gate.verifiers.1.threshold``)
and the reason. Every default is read from the class that uses it (``Anchored``,
``Dial``, ``Ledger``, ``Loop``, ``Gate``, each verifier), lazily, so this module
imports nothing of ours but ``errors`` when it is loaded. Relative paths in the
file (the ledger, data files, rules and schema files) resolve against the
config file's folder, whichever directory a command runs from.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from tailguard import limits
from tailguard.errors import ConfigError, InputError, check_fraction

#: The config file every command reads from the current directory by default.
CONFIG_FILE = Path("tailguard.toml")
#: Where the ledger lives unless ``[project] ledger`` says otherwise.
LEDGER_FILE = ".tailguard/ledger.duckdb"


def owner_default(owner: str, attr: str) -> Callable[[], Any]:
    """A ``default_factory`` reading ``attr`` of class ``"module:Class"`` when first needed."""

    def read() -> Any:
        module, _, cls = owner.partition(":")
        return getattr(getattr(importlib.import_module(module), cls), attr)

    return read


def _fraction(*, zero: bool = False, one: bool = True) -> AfterValidator:
    return AfterValidator(lambda v: check_fraction(v, "", zero=zero, one=one))


Fraction = Annotated[float, _fraction()]
Share = Annotated[float, _fraction(zero=True)]


class _Strict(BaseModel):
    """Unknown keys and values of the wrong type are refused (TOML has types)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


# ---------------------------------------------------------------------- [project] [data] [model]
class ProjectSection(_Strict):
    ledger: str = LEDGER_FILE


class FileSource(_Strict):
    path: str
    text_field: str = "text"
    label_field: str | None = None


class DataSection(_Strict):
    builtin: Literal["fortunes", "wordnet"] | None = None
    files: list[FileSource] = Field(default_factory=list)
    holdout: Annotated[float, _fraction(zero=True, one=False)] = Field(
        default_factory=owner_default("tailguard.ledger:Ledger", "HOLDOUT")
    )
    seed: int = Field(0, ge=0, le=limits.SEED_MAX)

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if self.builtin is None and not self.files:
            raise ValueError('name the human data: `builtin = "fortunes"` or `files = [...]`')
        return self


class ModelSection(_Strict):
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


# ---------------------------------------------------------------------- [gate]
class VerifierSpec(_Strict):
    """One ``[[gate.verifiers]]`` table. A key left out takes the verifier's own default."""

    name: str | None = None

    #: Parameters naming a file, resolved against the config file's folder.
    PATHS: ClassVar[tuple[str, ...]] = ()

    def params(self, base_dir: Path | None = None) -> dict[str, Any]:
        """The keyword arguments the verifier is built with (only the keys given)."""
        out = {
            k: getattr(self, k)
            for k in self.model_fields_set
            if k not in ("kind", "name", "reference", "references")
        }
        for key in self.PATHS:
            if isinstance(out.get(key), str) and base_dir is not None:
                out[key] = base_dir / out[key]
        return out


class SchemaSpec(VerifierSpec):
    kind: Literal["schema"]
    schema_: str | dict[str, Any] = Field(alias="schema")
    PATHS: ClassVar[tuple[str, ...]] = ("schema",)

    def params(self, base_dir: Path | None = None) -> dict[str, Any]:
        out = super().params(base_dir)
        out["schema"] = out.pop("schema_")
        if isinstance(out["schema"], str) and base_dir is not None:
            out["schema"] = base_dir / out["schema"]
        return out


class RulesSpec(VerifierSpec):
    kind: Literal["rules"]
    rules: str | list[dict[str, Any]]
    PATHS: ClassVar[tuple[str, ...]] = ("rules",)


class QualitySpec(VerifierSpec):
    kind: Literal["quality"]
    min_chars: Annotated[int, Field(ge=0)] | None = None
    max_chars: Annotated[int, Field(ge=1)] | None = None
    min_words: Annotated[int, Field(ge=0)] | None = None
    ngram: Annotated[int, Field(ge=1, le=64)] | None = None
    max_repeated_ngrams: float | None = None
    max_non_letters: float | None = None


class ExactDuplicateSpec(VerifierSpec):
    kind: Literal["exact_duplicate"]
    reference: Literal["reservoir", "none"] = "reservoir"
    #: Which sets of ``[gate.references]`` to compare with (default: every one).
    references: list[str] | None = None
    within_pool: bool | None = None


class NearDuplicateSpec(VerifierSpec):
    kind: Literal["near_duplicate"]
    reference: Literal["reservoir", "none"] = "reservoir"
    references: list[str] | None = None
    threshold: float | None = None
    num_perm: Annotated[int, Field(ge=2, le=4096)] | None = None
    shingle: Annotated[int, Field(ge=1, le=64)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    within_pool: bool | None = None
    max_bucket: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    weights: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None

    def params(self, base_dir: Path | None = None) -> dict[str, Any]:
        out = super().params(base_dir)
        if out.get("weights") is not None:
            out["weights"] = tuple(out["weights"])
        return out


class CodeTestsSpec(VerifierSpec):
    kind: Literal["code_tests"]
    wall_seconds: float | None = None
    cpu_seconds: int | None = None
    memory_mb: int | None = None
    file_size_mb: int | None = None
    open_files: int | None = None
    processes: int | None = None
    disk_mb: int | None = None
    inodes: int | None = None
    cpu_cores: float | None = None


class MathAnswerSpec(VerifierSpec):
    kind: Literal["math_answer"]
    reference_column: str | None = None
    tolerance: float | None = None
    timeout: float | None = None


class JudgeSpec(VerifierSpec):
    """A user's batch scoring function ``module:function`` (``texts -> scores, reasons``)."""

    kind: Literal["judge"]
    entry: str
    threshold: float | None = None
    batch_size: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0)
    backoff: float | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=1)
    cache: str | None = None
    judge_version: str | None = None
    score_range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    PATHS: ClassVar[tuple[str, ...]] = ("cache",)

    @model_validator(mode="after")
    def _entry_shape(self) -> JudgeSpec:
        if ":" not in self.entry:
            raise ValueError(f"entry must look like module:function, got {self.entry!r}")
        return self

    def params(self, base_dir: Path | None = None) -> dict[str, Any]:
        import importlib

        out = super().params(base_dir)
        module, _, function = out.pop("entry").partition(":")
        try:
            out["fn"] = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"entry {self.entry!r} cannot be imported: {exc}") from None
        return out


class ClassifierJudgeSpec(VerifierSpec):
    """A saved text classifier (``tailguard judge train``) and the SHA-256 it printed."""

    kind: Literal["classifier_judge"]
    model: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    positive: str | None = None
    threshold: float | None = None
    batch_size: int | None = Field(None, ge=1)
    cache: str | None = None
    PATHS: ClassVar[tuple[str, ...]] = ("model", "cache")


AnyVerifier = Annotated[
    SchemaSpec
    | RulesSpec
    | QualitySpec
    | ExactDuplicateSpec
    | NearDuplicateSpec
    | CodeTestsSpec
    | MathAnswerSpec
    | JudgeSpec
    | ClassifierJudgeSpec,
    Field(discriminator="kind"),
]
#: The verifier kinds a config may name (``function`` needs Python, not TOML).
VERIFIER_SPECS: dict[str, type[VerifierSpec]] = {
    cls.model_fields["kind"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in (
        SchemaSpec,
        RulesSpec,
        QualitySpec,
        ExactDuplicateSpec,
        NearDuplicateSpec,
        CodeTestsSpec,
        MathAnswerSpec,
        JudgeSpec,
        ClassifierJudgeSpec,
    )
}
ENGINES = ("in_process", "process_pool", "ray")


#: A reference set's name: a word (it names the set in a duplicate's verdict detail).
_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class ReferenceFile(_Strict):
    """A named reference set of ``[gate.references]``: a file and its text field."""

    path: str
    text_field: str = "text"


class GateSection(_Strict):
    verifiers: Annotated[list[AnyVerifier], Field(min_length=1)]
    #: Named sets every duplicate verifier compares with (an evaluation set to
    #: decontaminate against): ``eval = "data/eval.jsonl"`` or ``{path, text_field}``.
    references: dict[str, str | ReferenceFile] = Field(default_factory=dict)
    #: Compare each round's candidates with the synthetic records accepted before it.
    earlier_generations: bool = True
    batch_size: int = Field(
        default_factory=owner_default("tailguard.gate.gate:Gate", "BATCH_SIZE"), ge=1
    )
    parallel_min: Annotated[int, Field(ge=1)] | None = Field(
        default_factory=owner_default("tailguard.gate.gate:Gate", "PARALLEL_MIN")
    )
    slice_size: int = Field(
        default_factory=owner_default("tailguard.gate.gate:Gate", "SLICE_SIZE"), ge=1
    )
    engine: Literal["in_process", "process_pool", "ray"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_the_missing_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("verifiers"):
            raise ValueError(
                "[gate] lists no verifiers; add [[gate.verifiers]] tables with a `kind` "
                f"({', '.join(sorted(VERIFIER_SPECS))})"
            )
        return data

    @field_validator("references")
    @classmethod
    def _set_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _SET_NAME.fullmatch(name) or name == "reservoir":
                raise ValueError(
                    f"reference set name {name!r} must be a word (letters, digits, _ or -, "
                    "starting with a letter) other than 'reservoir'"
                )
        return value

    def reference_files(self, base_dir: Path | None = None) -> dict[str, ReferenceFile]:
        """Each named reference set as a file (relative paths against ``base_dir``)."""
        out = {}
        for name, ref in self.references.items():
            spec = ReferenceFile(path=ref) if isinstance(ref, str) else ref
            if base_dir is not None:
                spec = spec.model_copy(update={"path": str(base_dir / spec.path)})
            out[name] = spec
        return out

    @model_validator(mode="after")
    def _known_sets(self) -> GateSection:
        for i, v in enumerate(self.verifiers):
            unknown = sorted(set(getattr(v, "references", None) or ()) - set(self.references))
            if unknown:
                raise ValueError(
                    f"gate.verifiers.{i}.references names {', '.join(map(repr, unknown))}, "
                    f"not a set of [gate.references] ({', '.join(self.references) or 'none'})"
                )
        return self

    @property
    def needs_reference(self) -> bool:
        """Whether a duplicate verifier compares with the frozen reservoir."""
        return any(getattr(v, "reference", None) == "reservoir" for v in self.verifiers)


# ---------------------------------------------------------------------- [policy] [dial] ...
class PolicySection(_Strict):
    name: str = "anchored"
    real_fraction: Fraction | None = Field(
        default_factory=owner_default("tailguard.mix.policies:Anchored", "REAL_FRACTION")
    )
    synthetic: Literal["accumulate", "latest", "subsample"] | None = None
    reservoir: Literal["whole", "share"] | None = None
    new_human_per_round: int | None = Field(None, ge=1, le=limits.VOLUME_MAX)
    #: ``fill_gaps``: each label's target count ("median", a floor, or {label = count}).
    target: Literal["median"] | Annotated[int, Field(ge=0)] | dict[str, int] | None = None


def _dial_default(attr: str) -> Callable[[], Any]:
    return owner_default("tailguard.mix.dial:Dial", attr)


class DialSection(_Strict):
    enabled: bool = False
    start: Fraction = Field(default_factory=_dial_default("START"))
    minimum: Fraction = Field(default_factory=_dial_default("MINIMUM"))
    maximum: Fraction = Field(default_factory=_dial_default("MAXIMUM"))
    step: Fraction = Field(default_factory=_dial_default("STEP"))
    patience: int = Field(default_factory=_dial_default("PATIENCE"), ge=1)
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


class MonitorSection(_Strict):
    preset: str = Field(default_factory=owner_default("tailguard.monitor:Monitor", "PRESET"))
    #: hashing | minilm | module:function; unset: the sentence model when installed
    #: for a preset with embedding metrics, else hashing
    embedder: str | None = None

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, value: str | None) -> str | None:
        if value is not None and value not in ("hashing", "minilm", "auto") and ":" not in value:
            raise ValueError(f"must be hashing, minilm or module:function, got {value!r}")
        return value


def _loop_default(attr: str) -> Callable[[], Any]:
    return owner_default("tailguard.loop:Loop", attr)


class LoopSection(_Strict):
    rounds: int = Field(5, ge=1, le=limits.RUN_ROUNDS_MAX)
    n_generate: int = Field(default_factory=_loop_default("N_GENERATE"), ge=1, le=limits.VOLUME_MAX)
    #: Texts evaluated per round (and the human baseline's sample size); unset:
    #: ``n_generate`` up to ``Loop.N_SAMPLE``.
    n_sample: int | None = Field(None, ge=1, le=limits.VOLUME_MAX)
    batch_size: int = Field(
        default_factory=_loop_default("BATCH_SIZE"), ge=1, le=limits.BATCH_SIZE_MAX
    )
    seed: int = Field(default_factory=_loop_default("SEED"), ge=0, le=limits.SEED_MAX)
    run: str = Field(default_factory=_loop_default("RUN"))


class AuditSection(_Strict):
    human_floor: Share = Field(
        default_factory=owner_default("tailguard.ledger:Ledger", "AUDIT_FLOOR")
    )


def _screen_default(attr: str) -> Callable[[], Any]:
    return owner_default("tailguard.screen:Screener", attr)


class ScreenSection(_Strict):
    """``tailguard screen``'s defaults: when a "human" record copies a synthetic one, and
    the out-of-fold precision (or a fixed score) at which the detector flags."""

    near_threshold: Annotated[float, _fraction(one=False)] = Field(
        default_factory=_screen_default("NEAR_THRESHOLD")
    )
    precision: Fraction = Field(default_factory=_screen_default("PRECISION"))
    threshold: Share | None = None


class ReservoirSection(_Strict):
    """A digest pinned outside the ledger: every command that reads the reservoir checks it."""

    digest: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None


class MlflowSection(_Strict):
    """Where ``tailguard run`` logs each round: a tracking server's URI
    (``http://127.0.0.1:5000``), another MLflow URI or a local directory (MLflow's
    file store, relative to the config file's folder)."""

    tracking_uri: Annotated[str, Field(min_length=1)]
    experiment: Annotated[str, Field(min_length=1)] = Field(
        default_factory=owner_default("tailguard.tracking:MlflowTracker", "EXPERIMENT")
    )


class EngineSection(_Strict):
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


def _cost_default(attr: str) -> Callable[[], Any]:
    return owner_default("tailguard.costs:CostModel", attr)


Price = Annotated[float, Field(ge=0)]


class CostsSection(_Strict):
    """Prices per example (US dollars) every cost is computed at: human data bought or
    owned (the reservoir), a generated candidate, a verified candidate. The advisor
    builds its ``CostModel(**section.model_dump())`` from them."""

    human: Price = Field(default_factory=_cost_default("human"))
    synthetic: Price = Field(default_factory=_cost_default("synthetic"))
    verification: Price = Field(default_factory=_cost_default("verification"))


class ProjectConfig(_Strict):
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
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file (run `tailguard init`)") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    return validate(parse_toml(text, file=str(p)), source=str(p), base_dir=p.parent)


def parse_toml(text: str, *, file: str) -> dict[str, Any]:
    """TOML text as a dict; a syntax error is refused with its file and line."""
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        raise InputError(
            f"arrays or tables nest deeper than the limit of {limits.NESTING_MAX}", file=file
        ) from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise InputError(
            f"not valid TOML: {exc}", file=file, line=int(m.group(1)) if m else None
        ) from None
    depth = limits.nesting_depth(raw) - 1  # the document's own table is no nesting
    if depth > limits.NESTING_MAX:
        raise InputError(
            f"arrays or tables nest {depth} deep; the limit is {limits.NESTING_MAX}", file=file
        )
    return raw


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


def validate_gate(raw: dict[str, Any], *, source: str = "config") -> GateSection:
    """A ``[gate]`` table alone (a dict) as a :class:`GateSection`, or a named error."""
    try:
        return GateSection.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, source, {"gate": raw}, prefix=("gate",)) from None


def config_error(
    exc: ValidationError, source: str, raw: Any = None, prefix: tuple[str, ...] = ()
) -> ConfigError:
    """One line per problem: the file, the dotted key and pydantic's reason."""
    lines = []
    for err in exc.errors():
        loc = list(prefix) + [str(part) for part in err["loc"]]
        # A discriminated union adds the verifier's kind to the path: drop it.
        if len(loc) > 3 and loc[:2] == ["gate", "verifiers"] and loc[3] in VERIFIER_SPECS:
            del loc[3]
        key = ".".join(loc) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: key {key!r}: {msg}")
    return ConfigError("\n".join(lines))


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
    "owner_default",
    "validate",
    "validate_gate",
]
