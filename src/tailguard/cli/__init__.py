"""The ``tailguard`` command: one module per command group, all on one Typer app."""

from __future__ import annotations

import tailguard.cli.advise_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.demo_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.gate_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.lab_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.ledger_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.mix_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.monitor_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.report_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.rollback_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.run_cmds  # noqa: F401  (registers its commands)
import tailguard.cli.screen_cmds  # noqa: F401  (registers its commands)
from tailguard.cli.app import app


def main() -> None:
    """Console entry point."""
    app()


__all__ = ["app", "main"]
