"""One lineage's history as tidy tables: what the report shows and the lab collects.

Core-side, so that both clients (``report`` and ``lab``) read one definition: the
metrics, the mix of every round (from :meth:`Ledger.round_summary`), the gate's pass
counts and rejection codes, the dial's decisions and the monitor's alerts of every round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from tailguard.monitor import Monitor, alerts_table, preset_for

if TYPE_CHECKING:
    from tailguard.ledger import Ledger


def lineage_tables(ledger: Ledger, run: str) -> dict[str, pa.Table]:
    """Metrics, mix, gate, reasons, decisions and alerts of run ``run``."""
    history = ledger.metrics(run)
    alerts = (
        Monitor.from_history(history, preset=preset_for(history)).alert_history(run)
        if history.num_rows
        else alerts_table([])
    )
    audit = ledger.audit(run=run)
    return {
        "metrics": history.drop_columns(["run"]),
        "mix": audit.select(["round", "human", "synthetic", "by_generation"]),
        "gate": ledger.gate_summary(),
        "reasons": ledger.rejection_reasons(),
        "decisions": ledger.decisions(run).drop_columns(["run"]),
        "alerts": alerts.drop_columns(["run"]),
    }
