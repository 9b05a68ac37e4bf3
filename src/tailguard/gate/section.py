"""The ``[gate]`` table's model: the gate declares its own section, and
:mod:`tailguard.config` composes it into the whole file.

Each ``[[gate.verifiers]]`` entry is validated by its verifier's spec; a key left
out takes the verifier's own default. The gate's own defaults (batch size, slice
size) are read from :class:`~tailguard.gate.gate.Gate` when a section is built:
``gate.gate`` builds a gate from this section, so it is named, not imported.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from tailguard.gate.base import Verifier
from tailguard.gate.dedup import ExactDuplicate, NearDuplicate
from tailguard.gate.execution import CodeTests, MathAnswer
from tailguard.gate.judge import ClassifierJudge, Judge
from tailguard.gate.verifiers import Quality, Rules, Schema
from tailguard.settings import Strict, config_error


def _gate_default(attr: str) -> Callable[[], Any]:
    def read() -> Any:
        return getattr(importlib.import_module("tailguard.gate.gate").Gate, attr)

    return read


class VerifierSpec(Strict):
    """One ``[[gate.verifiers]]`` table. A key left out takes the verifier's own default."""

    name: str | None = None

    #: Parameters naming a file, resolved against the config file's folder.
    PATHS: ClassVar[tuple[str, ...]] = ()
    #: The verifier this entry builds.
    VERIFIER: ClassVar[type[Verifier]]

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
    VERIFIER: ClassVar[type[Verifier]] = Schema
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
    VERIFIER: ClassVar[type[Verifier]] = Rules
    rules: str | list[dict[str, Any]]
    PATHS: ClassVar[tuple[str, ...]] = ("rules",)


class QualitySpec(VerifierSpec):
    kind: Literal["quality"]
    VERIFIER: ClassVar[type[Verifier]] = Quality
    min_chars: Annotated[int, Field(ge=0)] | None = None
    max_chars: Annotated[int, Field(ge=1)] | None = None
    min_words: Annotated[int, Field(ge=0)] | None = None
    ngram: Annotated[int, Field(ge=1, le=64)] | None = None
    max_repeated_ngrams: float | None = None
    max_non_letters: float | None = None


class ExactDuplicateSpec(VerifierSpec):
    kind: Literal["exact_duplicate"]
    VERIFIER: ClassVar[type[Verifier]] = ExactDuplicate
    reference: Literal["reservoir", "none"] = "reservoir"
    #: Which sets of ``[gate.references]`` to compare with (default: every one).
    references: list[str] | None = None
    within_pool: bool | None = None


class NearDuplicateSpec(VerifierSpec):
    kind: Literal["near_duplicate"]
    VERIFIER: ClassVar[type[Verifier]] = NearDuplicate
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
    VERIFIER: ClassVar[type[Verifier]] = CodeTests
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
    VERIFIER: ClassVar[type[Verifier]] = MathAnswer
    reference_column: str | None = None
    tolerance: float | None = None
    timeout: float | None = None


class JudgeSpec(VerifierSpec):
    """A user's batch scoring function ``module:function`` (``texts -> scores, reasons``)."""

    kind: Literal["judge"]
    VERIFIER: ClassVar[type[Verifier]] = Judge
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
    VERIFIER: ClassVar[type[Verifier]] = ClassifierJudge
    model: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    positive: str | None = None
    threshold: float | None = None
    batch_size: int | None = Field(None, ge=1)
    cache: str | None = None
    PATHS: ClassVar[tuple[str, ...]] = ("model", "cache")


#: The verifier kinds a config may name (``function`` needs Python, not TOML): the one
#: registration of a verifier, whose spec names its class (``VERIFIER``).
SPECS: tuple[type[VerifierSpec], ...] = (
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


def _kind(spec: type[VerifierSpec]) -> str:
    """A spec's ``kind``, which must be its verifier's."""
    (kind,) = spec.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    if kind != spec.VERIFIER.kind:
        raise TypeError(f"{spec.__name__} has kind {kind!r}, its verifier {spec.VERIFIER.kind!r}")
    return kind


VERIFIER_SPECS: dict[str, type[VerifierSpec]] = {_kind(spec): spec for spec in SPECS}
AnyVerifier = Annotated[Union[SPECS], Field(discriminator="kind")]  # noqa: UP007
ENGINES = ("in_process", "process_pool", "ray")


#: A reference set's name: a word (it names the set in a duplicate's verdict detail).
_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class ReferenceFile(Strict):
    """A named reference set of ``[gate.references]``: a file and its text field."""

    path: str
    text_field: str = "text"


class GateSection(Strict):
    verifiers: Annotated[list[AnyVerifier], Field(min_length=1)]
    #: Named sets every duplicate verifier compares with (an evaluation set to
    #: decontaminate against): ``eval = "data/eval.jsonl"`` or ``{path, text_field}``.
    references: dict[str, str | ReferenceFile] = Field(default_factory=dict)
    #: Compare each round's candidates with the synthetic records accepted before it.
    earlier_generations: bool = True
    batch_size: int = Field(default_factory=_gate_default("BATCH_SIZE"), ge=1)
    parallel_min: Annotated[int, Field(ge=1)] | None = Field(
        default_factory=_gate_default("PARALLEL_MIN")
    )
    slice_size: int = Field(default_factory=_gate_default("SLICE_SIZE"), ge=1)
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


def validate_gate(raw: dict[str, Any], *, source: str = "config") -> GateSection:
    """A ``[gate]`` table alone (a dict) as a :class:`GateSection`, or a named error."""
    try:
        return GateSection.model_validate(raw)
    except ValidationError as exc:
        raise config_error(
            exc, source, {"gate": raw}, prefix=("gate",), tags=VERIFIER_SPECS
        ) from None


__all__ = [
    "ENGINES",
    "SPECS",
    "VERIFIER_SPECS",
    "GateSection",
    "ReferenceFile",
    "VerifierSpec",
    "validate_gate",
]
