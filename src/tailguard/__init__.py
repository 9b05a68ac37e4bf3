"""tailguard: keep models from collapsing when they are retrained on synthetic data."""

from __future__ import annotations

__version__ = "0.1.0"

from tailguard.errors import ConfigError, InputError, ReservoirError, TailguardError  # noqa: E402
from tailguard.ledger import Ledger  # noqa: E402
from tailguard.records import SCHEMA, Manifest, Origin, Status, content_id, make_records  # noqa: E402


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy attribute
    """``tailguard.Loop`` without importing the loop's dependencies on ``import tailguard``."""
    if name == "Loop":
        from tailguard.loop import Loop

        return Loop
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
