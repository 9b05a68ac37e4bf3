"""tailguard: keep models from collapsing when they are retrained on synthetic data."""

from __future__ import annotations

__version__ = "0.1.0"

from tailguard.errors import ConfigError, InputError, ReservoirError, TailguardError  # noqa: E402

#: Imported on first use: ``import tailguard`` (and so the ``tailguard`` command's
#: start-up, which handles Ctrl-C first) does not load DuckDB, PyArrow or NumPy.
_LAZY = {
    "Ledger": "tailguard.ledger",
    "Loop": "tailguard.loop",
    **dict.fromkeys(
        ("SCHEMA", "Manifest", "Origin", "Status", "content_id", "make_records"),
        "tailguard.records",
    ),
}


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy attribute
    """``tailguard.Ledger``, ``tailguard.Loop``... imported when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tailguard' has no attribute {name!r}")


__all__ = [
    "Loop",
    "SCHEMA",
    "ConfigError",
    "InputError",
    "Ledger",
    "Manifest",
    "Origin",
    "ReservoirError",
    "Status",
    "TailguardError",
    "__version__",
    "content_id",
    "make_records",
]
