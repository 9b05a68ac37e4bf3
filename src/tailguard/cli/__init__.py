"""The ``tailguard`` command: one module per command group, all on one Typer app.

This module stays light: :func:`main` handles Ctrl-C before it imports the command
modules (which pull in DuckDB, NumPy and PyArrow), so an interrupt during start-up
ends with one line too.
"""

from __future__ import annotations

import sys
import types
from typing import Any

COMMAND_MODULES = (
    "advise_cmds",
    "demo_cmds",
    "gate_cmds",
    "lab_cmds",
    "ledger_cmds",
    "mix_cmds",
    "monitor_cmds",
    "report_cmds",
    "rollback_cmds",
    "run_cmds",
    "screen_cmds",
)


def load_app() -> Any:
    """The Typer app with every command group registered on it."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"tailguard.cli.{name}")
    from tailguard.cli.app import app

    return app


def main() -> None:
    """Console entry point."""
    from tailguard.cli import interrupt

    interrupt.install()
    try:
        load_app()()
    except KeyboardInterrupt:
        interrupt.exit_interrupted()
    except Exception:
        if not interrupt.interrupted():
            raise
        interrupt.exit_interrupted()


class _Cli(types.ModuleType):
    """``tailguard.cli.app`` is the Typer app with every command, as it always was,
    even once the import system has set the name to the submodule of that name."""

    @property
    def app(self) -> Any:
        return load_app()

    @app.setter
    def app(self, value: Any) -> None:
        pass  # the import system naming the submodule ``tailguard.cli.app``


sys.modules[__name__].__class__ = _Cli

__all__ = ["app", "main"]
