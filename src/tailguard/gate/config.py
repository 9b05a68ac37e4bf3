"""The ``[gate]`` table of ``tailguard.toml``: which verifiers, with which parameters.

```toml
[gate]
batch_size = 2048              # optional: records per worker batch
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
```
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tailguard.errors import ConfigError, InputError
from tailguard.gate.base import Verifier
from tailguard.gate.dedup import ExactDuplicate, NearDuplicate
from tailguard.gate.execution import CodeTests, MathAnswer
from tailguard.gate.verifiers import Quality, Rules, Schema

if TYPE_CHECKING:
    from tailguard.gate.gate import Gate

#: Verifier kinds a config may name. (``function`` needs Python, not TOML.)
KINDS: dict[str, type[Verifier]] = {
    cls.kind: cls
    for cls in (Schema, Rules, Quality, ExactDuplicate, NearDuplicate, CodeTests, MathAnswer)
}
_PATH_PARAMS = {"schema": "schema", "rules": "rules"}
_DUPLICATE_KINDS = {ExactDuplicate.kind, NearDuplicate.kind}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error is refused with its file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("config file not found", file=str(path)) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise InputError(
            f"not valid TOML: {exc}", file=str(path), line=int(m.group(1)) if m else None
        ) from exc


def needs_reference(config: dict[str, Any]) -> bool:
    """Whether a config has a duplicate verifier that compares with the reservoir."""
    gate = config.get("gate", config)
    return any(
        isinstance(v, dict)
        and v.get("kind") in _DUPLICATE_KINDS
        and v.get("reference", "reservoir") == "reservoir"
        for v in gate.get("verifiers", [])
    )


def gate_from_config(
    config: dict[str, Any],
    *,
    reference: pa.Table | None = None,
    source: str = "config",
    base_dir: str | Path | None = None,
    progress: bool = True,
) -> Gate:
    """Build a :class:`Gate` from a config (the whole file's dict or its ``[gate]`` table).

    ``reference`` is the reservoir (``id``, ``content``) given to duplicate verifiers
    whose ``reference`` is ``"reservoir"`` (the default). Every entry is checked before
    anything runs; an error names the entry and the key.
    """
    from tailguard.engines import engine_from_name
    from tailguard.gate.gate import Gate

    gate = config.get("gate", config)
    if not isinstance(gate, dict):
        raise ConfigError(f"{source}: [gate] must be a table")
    entries = gate.get("verifiers")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{source}: [gate] lists no verifiers; add [[gate.verifiers]] tables "
            f"with a `kind` ({', '.join(sorted(KINDS))})"
        )
    unknown = set(gate) - {"verifiers", "batch_size", "engine", "parallel_min"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [gate]: {sorted(unknown)}")
    base = Path(base_dir) if base_dir is not None else Path(".")
    verifiers = []
    for i, entry in enumerate(entries):
        where = f"{source}: [[gate.verifiers]] #{i + 1}"
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ConfigError(f"{where} needs a `kind` ({', '.join(sorted(KINDS))})")
        params = dict(entry)
        kind = params.pop("kind")
        name = params.pop("name", None)
        if kind not in KINDS:
            raise ConfigError(f"{where}: unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        where = f"{where} ({kind})"
        if kind in _DUPLICATE_KINDS:
            ref = params.pop("reference", "reservoir")
            if ref not in ("reservoir", "none"):
                raise ConfigError(f'{where}: reference must be "reservoir" or "none"')
            params["reference"] = reference if ref == "reservoir" else None
        key = _PATH_PARAMS.get(kind)
        if key and isinstance(params.get(key), str):
            params[key] = base / params[key]
        try:
            verifier = KINDS[kind](**params)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}".replace("__init__() ", "")) from exc
        except InputError as exc:
            raise InputError(
                exc.reason, file=exc.file or source, line=exc.line, field=exc.field
            ) from exc
        if name:
            verifier.name = str(name)
        verifiers.append(verifier)
    kwargs: dict[str, Any] = {"progress": progress}
    if "batch_size" in gate:
        kwargs["batch_size"] = int(gate["batch_size"])
    if "parallel_min" in gate:
        kwargs["parallel_min"] = int(gate["parallel_min"])
    if "engine" in gate:
        try:
            kwargs["engine"] = engine_from_name(str(gate["engine"]))
        except ValueError as exc:
            raise ConfigError(f"{source}: [gate] engine: {exc}") from exc
    return Gate(verifiers, **kwargs)
