"""Errors tailguard raises on purpose: each says what is wrong and where."""

from __future__ import annotations


class TailguardError(Exception):
    """Base class: a user-facing error the CLI prints and exits non-zero on."""


class InputError(TailguardError, ValueError):
    """Bad input data: names the file, the line (or row) and the field."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason, self.file, self.line, self.field = reason, file, line, field
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join([', '.join(where), reason]) if where else reason}")


class ReservoirError(TailguardError):
    """The frozen reservoir is missing, would be changed, or was tampered with."""


class ConfigError(TailguardError, ValueError):
    """A setting is impossible or unknown; names the key and the reason."""


def check_fraction(value: float, name: str, *, zero: bool = False, one: bool = True) -> float:
    """``value`` as a float fraction, or a :class:`ConfigError` naming ``name``.

    The one validator for shares and fractions: ``(0, 1]`` by default; ``zero=True``
    admits 0, ``one=False`` excludes 1. Booleans and non-numbers are refused.
    """
    interval = f"{'[' if zero else '('}0, 1{']' if one else ')'}"
    message = f"{name} must be a number in {interval}, got {value!r}".strip()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(message)
    f = float(value)
    if not ((f >= 0.0 if zero else f > 0.0) and (f <= 1.0 if one else f < 1.0)):
        raise ConfigError(message)
    return f
