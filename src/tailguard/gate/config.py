"""The ``[gate]`` table of ``tailguard.toml``: which verifiers, with which parameters.

```toml
[gate]
batch_size = 2048              # optional: records per worker batch
slice_size = 100000            # optional: candidates read and searched at a time
engine = "process_pool"        # optional: in_process | process_pool | ray

[[gate.verifiers]]
kind = "quality"
min_chars = 20

[[gate.verifiers]]
kind = "near_duplicate"        # compared with the frozen reservoir unless reference = "none"
threshold = 0.8

[[gate.verifiers]]
kind = "rules"
name = "policy"                # optional: to tell two verifiers of one kind apart
rules = "rules.toml"           # relative to the config file

[gate.references]              # optional: named sets every duplicate verifier checks
eval = "data/eval.jsonl"       # or {path = "...", text_field = "question"}
```

``earlier_generations = true`` (the default) also compares each round's candidates
with the synthetic records accepted in earlier rounds.

The table is validated by :class:`tailguard.gate.section.GateSection` (which
:mod:`tailguard.config` composes into the whole file's model); this module turns each
validated entry into its :class:`Verifier`.
:func:`tailguard.gate.gate_from_config` builds the :class:`Gate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tailguard.errors import ConfigError, InputError
from tailguard.gate.base import Verifier
from tailguard.gate.section import VERIFIERS, GateSection, VerifierSpec, validate_gate
from tailguard.settings import read_toml_file

#: Verifier kinds a config may name, and their classes (registered once, by
#: :func:`tailguard.gate.section.register`).
KINDS: dict[str, type[Verifier]] = VERIFIERS


@dataclass(frozen=True)
class GateFile:
    """The gate's view of a ``tailguard.toml``: its ``[gate]`` table and the folder its
    relative paths resolve against (the whole file is :func:`tailguard.config.load_config`'s)."""

    gate: GateSection | None
    base_dir: Path


def load_config(path: str | Path = "tailguard.toml") -> GateFile:
    """Read a config file's ``[gate]`` table; errors name the file, the key and the reason."""
    p = Path(path)
    raw = read_toml_file(p).get("gate")
    gate = None if raw is None else gate_section({"gate": raw}, source=str(p))
    return GateFile(gate, p.parent)


def gate_section(config: Any, *, source: str = "config") -> GateSection:
    """The validated ``[gate]`` of a config: a loaded file (anything with a ``gate``), the
    section, or a plain dict (the whole file's or the ``[gate]`` table's)."""
    if isinstance(config, GateSection):
        return config
    if isinstance(config, dict):
        if "gate" not in config:
            return validate_gate(config, source=source)
        if not isinstance(config["gate"], dict):
            raise ConfigError(f"{source}: key 'gate': must be a table")
        return validate_gate(config["gate"], source=source)
    if config.gate is None:
        raise ConfigError(f"{source}: no [gate] table (see docs/gate.md for the format)")
    return config.gate


def needs_reference(config: Any) -> bool:
    """Whether a config has a duplicate verifier that compares with the reservoir."""
    return gate_section(config).needs_reference


def read_references(
    section: GateSection, *, base_dir: str | Path | None = None, source: str = "config"
) -> dict[str, pa.Table]:
    """The named reference sets of ``[gate.references]``, read (``id``, ``content``)."""
    from tailguard.readers import read_table
    from tailguard.records import content_ids, normalise_content

    out = {}
    for name, spec in section.reference_files(None if base_dir is None else Path(base_dir)).items():
        try:
            table, _ = read_table(spec.path, text_field=spec.text_field)
        except InputError as exc:
            raise InputError(
                f"{exc.reason} (reference set gate.references.{name} of {source})",
                file=exc.file,
                line=exc.line,
                field=exc.field,
            ) from None
        except OSError as exc:
            raise InputError(
                f"cannot read it: {exc.strerror or exc} (reference set gate.references.{name} "
                f"of {source})",
                file=spec.path,
            ) from None
        texts = normalise_content(table[spec.text_field])
        out[name] = pa.table({"id": content_ids(texts), "content": texts})
    return out


def build_verifier(
    spec: VerifierSpec,
    *,
    reference: pa.Table | None = None,
    references: dict[str, pa.Table] | None = None,
    base_dir: str | Path | None = None,
    where: str = "config",
) -> Verifier:
    """The verifier one validated ``[[gate.verifiers]]`` entry describes; duplicate
    verifiers get the reservoir (unless ``reference = "none"``) and every named set."""
    try:
        params = spec.params(None if base_dir is None else Path(base_dir))
    except ValueError as exc:
        raise InputError(str(exc), file=where) from exc
    if "reference" in type(spec).model_fields:  # a duplicate verifier: the tables it names
        params["reference"] = reference if spec.reference == "reservoir" else None
        chosen = spec.references if spec.references is not None else list(references or {})
        params["references"] = {n: (references or {})[n] for n in chosen} or None
    try:
        verifier = spec.VERIFIER(**params)
    except InputError as exc:
        raise InputError(
            exc.reason, file=exc.file or where, line=exc.line, field=exc.field
        ) from exc
    if spec.name:
        verifier.name = spec.name
    return verifier


__all__ = [
    "KINDS",
    "GateFile",
    "load_config",
    "build_verifier",
    "gate_section",
    "needs_reference",
    "read_references",
]
