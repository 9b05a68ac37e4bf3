"""The ``[gate]`` table's model: the gate declares its own section, and
:mod:`tailguard.config` composes it into the whole file.

Each ``[[gate.verifiers]]`` entry is validated by its kind's spec, which is built from
the verifier class's own ``__init__`` (:func:`spec_of`): a new verifier is one class
and one :func:`register` call. A key left out takes the verifier's own default. The
gate's own defaults (batch size, slice size) are read from
:class:`~tailguard.gate.base.GateDefaults` (the gate's, below it) when a section is built.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tailguard.gate.base import REQUIRED, GateDefaults, Toml, Verifier
from tailguard.gate.dedup import ExactDuplicate, NearDuplicate
from tailguard.gate.execution import CodeTests, MathAnswer
from tailguard.gate.judge import ClassifierJudge, Judge
from tailguard.gate.verifiers import Quality, Rules, Schema
from tailguard.settings import Strict, config_error


@dataclass(frozen=True)
class Param:
    """How one key of a verifier's table becomes one of its keyword arguments."""

    name: str
    path: bool = False
    convert: Callable[[Any], Any] | None = None
    passed: bool = True


class VerifierSpec(Strict):
    """One ``[[gate.verifiers]]`` table. A key left out takes the verifier's own default."""

    name: str | None = None

    #: The verifier this entry builds.
    VERIFIER: ClassVar[type[Verifier]]
    #: Each field's keyword argument (:func:`spec_of` fills it from the signature).
    PARAMS: ClassVar[dict[str, Param]] = {}

    def params(self, base_dir: Path | None = None) -> dict[str, Any]:
        """The keyword arguments the verifier is built with (only the keys given); a
        ``ValueError`` names a value that cannot become one (a judge's missing function)."""
        out = {}
        for key in self.model_fields_set:
            param = self.PARAMS.get(key)
            if param is None or not param.passed:
                continue
            value = getattr(self, key)
            if param.path and isinstance(value, str) and base_dir is not None:
                value = base_dir / value
            if param.convert is not None and value is not None:
                value = param.convert(value)
            out[param.name] = value
        return out


def _mentions_path(hint: Any) -> bool:
    """Whether a parameter's type takes a ``Path`` (a file, resolved against the config)."""
    if hint is Path:
        return True
    return any(_mentions_path(arg) for arg in typing.get_args(hint))


def _toml_type(hint: Any) -> tuple[Any, Callable[[Any], Any] | None]:
    """A Python parameter type as TOML writes it, and how to turn the TOML value back:
    ``Path`` is written as text, a fixed-length tuple as an array of that length."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        inner, convert = _toml_type(args[0])
        return Annotated[(inner, *hint.__metadata__)], convert  # type: ignore[return-value]
    if origin in (Union, UnionType):
        kept = tuple(a for a in args if a is not Path)
        return Union[kept], None  # noqa: UP007 - the members are only known here
    if origin is tuple and args and Ellipsis not in args and len(set(args)) == 1:
        n = len(args)  # the verifier takes any sequence of that length
        return Annotated[list[args[0]], Field(min_length=n, max_length=n)], None
    return hint, None


def spec_of(cls: type[Verifier]) -> type[VerifierSpec]:
    """The strict model of a ``[[gate.verifiers]]`` table of ``cls.kind``, built from
    ``cls.__init__``: its parameters' names, types and defaults, and ``cls.toml``."""
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    fields: dict[str, Any] = {"kind": (Literal[cls.kind], ...)}
    params: dict[str, Param] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(p.name, Any)
        toml = cls.toml.get(p.name) or Toml(None)
        kind, convert = (toml.type, toml.convert) if toml.type is not None else _toml_type(hint)
        key = toml.key or p.name
        if key in ("kind", "name"):
            raise TypeError(f"{cls.__name__}: a parameter may not be named {key!r}")
        default = toml.default
        if default is None:
            default = REQUIRED if p.default is p.empty else None
        if default is None:
            kind = Union[kind, None]  # noqa: UP007 - left out: the verifier's default
        attr = f"{key}_" if hasattr(BaseModel, key) else key  # ``schema``: BaseModel's own
        alias = key if attr != key else None
        fields[attr] = (kind, Field(... if default is REQUIRED else default, alias=alias))
        params[attr] = Param(p.name, _mentions_path(hint), convert, toml.passed)
    name = "".join(part.title() for part in cls.kind.split("_")) + "Spec"  # QualitySpec
    spec = create_model(  # type: ignore[call-overload]
        name, __base__=VerifierSpec, __module__=__name__, **fields
    )
    spec.__doc__ = f"A ``[[gate.verifiers]]`` table of kind {cls.kind!r} ({cls.__name__})."
    spec.VERIFIER, spec.PARAMS = cls, params
    return spec


def _kind(spec: type[VerifierSpec]) -> str:
    """A spec's ``kind``, which must be its verifier's."""
    (kind,) = spec.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    if kind != spec.VERIFIER.kind:
        raise TypeError(f"{spec.__name__} has kind {kind!r}, its verifier {spec.VERIFIER.kind!r}")
    return kind


#: The verifier kinds a config may name, and their specs (filled by :func:`register`).
VERIFIER_SPECS: dict[str, type[VerifierSpec]] = {}
#: The same kinds' verifier classes.
VERIFIERS: dict[str, type[Verifier]] = {}


def register(cls: type[Verifier]) -> type[VerifierSpec]:
    """Make ``cls`` a kind ``tailguard.toml`` may name: its spec is built from its
    ``__init__`` (:func:`spec_of`). A kind is registered once."""
    if cls.kind in VERIFIER_SPECS:
        raise TypeError(f"verifier kind {cls.kind!r} is registered already")
    spec = spec_of(cls)
    VERIFIER_SPECS[_kind(spec)] = spec
    VERIFIERS[cls.kind] = cls
    globals()[spec.__name__] = spec  # where pickle finds it (a config sent to a worker)
    return spec


def unregister(kind: str) -> None:
    """Forget a registered kind (a plugin's, or a test's)."""
    spec = VERIFIER_SPECS.pop(kind, None)
    VERIFIERS.pop(kind, None)
    if spec is not None:
        globals().pop(spec.__name__, None)


#: The built-in kinds a config may name (``function`` needs Python, not TOML): a new
#: verifier is one class and one entry here (or a ``register`` call of its own).
SPECS: tuple[type[VerifierSpec], ...] = tuple(
    register(cls)
    for cls in (
        Schema,
        Rules,
        Quality,
        ExactDuplicate,
        NearDuplicate,
        CodeTests,
        MathAnswer,
        Judge,
        ClassifierJudge,
    )
)


def _of_its_kind(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A table validated by its ``kind``'s spec, looked up when it is read (so a kind
    registered after this module loaded is known), with pydantic's union errors."""
    if isinstance(value, VerifierSpec):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
    if "kind" not in value:
        raise PydanticCustomError(
            "union_tag_not_found", "Unable to extract tag using discriminator 'kind'"
        )
    kind = value["kind"]
    spec = VERIFIER_SPECS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise PydanticCustomError(
            "union_tag_invalid",
            "Input tag '{tag}' found using 'kind' does not match any of the expected tags: "
            "{expected_tags}",
            {"tag": str(kind), "expected_tags": ", ".join(map(repr, VERIFIER_SPECS))},
        )
    return spec.model_validate(value)


AnyVerifier = Annotated[VerifierSpec, WrapValidator(_of_its_kind)]
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
    # the gate's own defaults, read when a section is built
    batch_size: int = Field(default_factory=lambda: GateDefaults.BATCH_SIZE, ge=1)
    parallel_min: Annotated[int, Field(ge=1)] | None = Field(
        default_factory=lambda: GateDefaults.PARALLEL_MIN
    )
    slice_size: int = Field(default_factory=lambda: GateDefaults.SLICE_SIZE, ge=1)
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
        raise config_error(exc, source, {"gate": raw}, prefix=("gate",)) from None


__all__ = [
    "ENGINES",
    "SPECS",
    "VERIFIERS",
    "VERIFIER_SPECS",
    "GateSection",
    "ReferenceFile",
    "VerifierSpec",
    "register",
    "spec_of",
    "unregister",
    "validate_gate",
]
