"""One lineage's history as tidy tables: what the report shows and the lab collects.

Core-side, so that both clients (``report`` and ``lab``) read one definition: the
metrics, the mix of every round (from :meth:`Ledger.round_summary`), the gate's pass
counts and rejection codes, the dial's decisions and the monitor's alerts of every round;
and the remedies: the gaps ``fill_gaps`` filled per label, the records in quarantine
(screened human records, rolled-back synthetic ones), the rollbacks, and the judges'
pass rates and reasons.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow as pa

from tailguard.monitor import Monitor, alerts_table, preset_for

if TYPE_CHECKING:
    from tailguard.ledger import Ledger


def lineage_tables(ledger: Ledger, run: str) -> dict[str, pa.Table]:
    """Metrics, mix (with the audit's realised ``human_share``), gate, reasons, decisions
    and alerts of run ``run``."""
    history = ledger.metrics(run)
    alerts = lineage_monitor(history).alert_history(run) if history.num_rows else alerts_table([])
    audit = ledger.audit(run=run)
    return {
        "metrics": history.drop_columns(["run"]),
        "mix": audit.select(
            ["round", "human", "synthetic", "human_share", "unlabelled", "by_generation"]
        ),
        "gate": ledger.gate_summary(),
        "reasons": ledger.rejection_reasons(),
        "decisions": ledger.decisions(run).drop_columns(["run"]),
        "alerts": alerts.drop_columns(["run"]),
        "gaps": gaps_filled(ledger, run),
        "quarantined": ledger.quarantined().select(
            ["origin", "generation", "id", "round", "code", "detail", "score"]
        ),
        "rollbacks": _rollbacks(ledger, run),
        **judge_tables(ledger),
    }


def lineage_monitor(history: pa.Table) -> Monitor:
    """The monitor that reads a stored lineage (the preset that measured it): the alerts
    and the report's bands both come from it, so they cannot disagree."""
    return Monitor.from_history(history, preset=preset_for(history))


def gaps_filled(ledger: Ledger, run: str) -> pa.Table:
    """Per ``fill_gaps`` round and label: the gap to the target and the synthetic rows
    that filled it (from the manifest's params)."""
    rows = []
    for rnd in ledger.manifests(run):
        manifest = ledger.manifest(rnd, run)
        if manifest.policy != "fill_gaps":
            continue
        gaps, filled = manifest.params.get("gaps", {}), manifest.params.get("filled", {})
        rows += [
            {"round": rnd, "label": k, "gap": int(g), "filled": int(filled.get(k, 0))}
            for k, g in sorted(gaps.items())
        ]
    schema = pa.schema(
        [("round", pa.int32()), ("label", pa.string()), ("gap", pa.int64()), ("filled", pa.int64())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _rollbacks(ledger: Ledger, run: str) -> pa.Table:
    table = ledger.rollbacks(run)
    if table.num_rows == 0:
        return pa.table({})
    rounds = [", ".join(map(str, r)) for r in table["rounds"].to_pylist()]
    return pa.table(
        {
            "to_round": table["to_round"],
            "rounds": pa.array(rounds, pa.string()),
            "quarantined": table["quarantined"],
            "reason": table["reason"],
            "rolled_at": table["rolled_at"],
            "rolled_by": table["rolled_by"],
        }
    )


def _is_judge(params: str | None) -> bool:
    """A judge's verdict: its parameters name a judge version or a classifier's class."""
    try:
        keys = json.loads(params or "{}")
    except ValueError:
        return False
    return isinstance(keys, dict) and ("judge_version" in keys or "positive" in keys)


def judge_tables(ledger: Ledger) -> dict[str, pa.Table]:
    """``judges``: per round and judge, records, passed and mean score; ``judge_reasons``:
    the judges' most common reasons for a failed verdict."""
    params = ledger.verdict_params()
    if not params:
        return {"judges": pa.table({}), "judge_reasons": pa.table({})}
    judges, reasons = ledger.judge_summary([p for p in params if p and _is_judge(p)])
    return {"judges": judges, "judge_reasons": reasons}
