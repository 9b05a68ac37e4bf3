"""One lineage's history as tidy tables: what the report shows and the lab collects.

Core-side, so that both clients (``report`` and ``lab``) read one definition: the
metrics, the mix of every round (from :meth:`Ledger.round_summary`), the gate's pass
counts and rejection codes, the dial's decisions and the monitor's alerts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from tailguard.monitor import Alert, Monitor, alerts_table

if TYPE_CHECKING:
    from tailguard.ledger import Ledger


def lineage_tables(ledger: Ledger, run: str) -> dict[str, pa.Table]:
    """Metrics, mix, gate, reasons, decisions and alerts of run ``run``."""
    history = ledger.metrics(run)
    alerts = alert_history(history, run)
    audit = ledger.audit(run=run)
    return {
        "metrics": history.drop_columns(["run"]),
        "mix": audit.select(["round", "human", "synthetic", "by_generation"]),
        "gate": ledger.gate_summary(),
        "reasons": ledger.rejection_reasons(),
        "decisions": ledger.decisions(run).drop_columns(["run"]),
        "alerts": alerts_table(alerts).drop_columns(["run"]),
    }


def alert_history(history: pa.Table, run: str) -> list[Alert]:
    """Every round's alerts, as the monitor raised them when that round was measured.

    The monitor judges a sample at its latest round; replaying the history round by
    round keeps the alerts of earlier rounds (a timeline) instead of the last round's only.
    """
    if history.num_rows == 0:
        return []
    mine = history.filter(pc.equal(history["run"], run))
    out: list[Alert] = []
    for r in sorted(set(mine["round"].to_pylist())):
        upto = Monitor.from_history(mine.filter(pc.less_equal(mine["round"], r)))
        out += [a for a in upto.alerts(run) if a.round == r]
    return out
