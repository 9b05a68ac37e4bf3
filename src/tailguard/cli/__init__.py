"""The ``tailguard`` command: one module per command group, all on one Typer app."""

from __future__ import annotations

from tailguard.cli import demo_cmds, ledger_cmds, monitor_cmds  # noqa: F401  (registers commands)
from tailguard.cli.app import app


def main() -> None:
    """Console entry point."""
    app()


__all__ = ["app", "main"]
