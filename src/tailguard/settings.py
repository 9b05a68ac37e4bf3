"""What every section of ``tailguard.toml`` shares: strict models, fractions, the TOML
reader and the one-line-per-problem error.

It sits below the owners of each section (the gate's ``[gate]`` model lives in the
gate) and below :mod:`tailguard.config`, which composes the whole file, so a
section can be declared where its settings are used without an import cycle.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from tailguard import limits
from tailguard.errors import ConfigError, InputError, check_fraction


def fraction(*, zero: bool = False, one: bool = True) -> AfterValidator:
    """A share checked like every other share of tailguard (open or closed ends)."""
    return AfterValidator(lambda v: check_fraction(v, "", zero=zero, one=one))


Fraction = Annotated[float, fraction()]
Share = Annotated[float, fraction(zero=True)]


class Strict(BaseModel):
    """Unknown keys and values of the wrong type are refused (TOML has types)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


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


def read_toml_file(path: Path) -> dict[str, Any]:
    """A config file's TOML as a dict; a missing, unreadable or non-UTF-8 file is named."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `tailguard init`)") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    return parse_toml(text, file=str(path))


def config_error(
    exc: ValidationError,
    source: str,
    raw: Any = None,
    prefix: tuple[str, ...] = (),
) -> ConfigError:
    """One line per problem: the file, the dotted key and pydantic's reason."""
    lines = []
    for err in exc.errors():
        loc = list(prefix) + [str(part) for part in err["loc"]]
        key = ".".join(loc) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: key {key!r}: {msg}")
    return ConfigError("\n".join(lines))


__all__ = [
    "Fraction",
    "Share",
    "Strict",
    "config_error",
    "fraction",
    "parse_toml",
    "read_toml_file",
]
