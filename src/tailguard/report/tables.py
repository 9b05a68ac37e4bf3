"""The page's tables: headers in words, numbers formatted (money as money), strategies
in their colour; and the dial's decisions as a table."""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd

from tailguard.report.data import ReportData


def money(value: float) -> str:
    """Money as money: $1,234 (cents below $1,000, as the CLI quotes a round's cost)."""
    if value != value or np.isinf(value):
        return "n/a"
    return f"${value:,.0f}" if abs(value) >= 1000 else f"${value:,.2f}"


def _share(v: float) -> str:
    return f"{v:.0%}"


def _rounds(v: float) -> str:
    return "never" if np.isinf(v) else f"{v:g}"


#: The axes table's columns: header and format (others: the name in words, 3 decimals).
AXES_COLUMNS: dict[str, tuple[str, Any]] = {
    "strategy": ("strategy", str),
    "fidelity_loss": ("fidelity loss", "{:.3f}".format),
    "coverage": ("tail coverage", "{:.3f}".format),
    "coverage_vs_baseline": ("coverage vs clean model", _share),
    "cost": ("data cost", money),
    "cost_per_generation": ("cost per generation", money),
    "traceable_share": ("traceable slots", _share),
    "real_share_mean": ("human share (mean)", _share),
    "real_share_min": ("human share (lowest)", _share),
    "recovery_rounds": ("rounds to recover", _rounds),
    "recovery_cost": ("recovery cost", money),
    "recovered_share": ("seeds recovered", _share),
    "seeds": ("seeds", "{:g}".format),
}


def _cell(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:,.3f}"
    return str(v)


def _table(
    df: pd.DataFrame, *, limit: int = 40, formats: dict[str, tuple[str, Any]] | None = None,
    table_id: str | None = None, colors: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """A readable table: headers in words, numbers formatted, strategies in their colour."""
    if df.empty:
        return "<p class='muted'>none</p>"
    formats = formats or {}
    shown = df.head(limit)
    cols = list(shown.columns)
    numeric = {c: pd.api.types.is_numeric_dtype(shown[c]) for c in cols}
    align = {c: " class='num'" if numeric[c] else "" for c in cols}
    head = "".join(
        f"<th{align[c]}>{html.escape(formats.get(c, (c.replace('_', ' '), None))[0])}</th>"
        for c in cols
    )
    rows = []
    for record in shown.to_dict("records"):
        cells = []
        for c in cols:
            fmt = formats.get(c, (None, _cell))[1] or _cell
            text = html.escape(fmt(record[c]))
            if c == "strategy" and colors and record[c] in colors:
                text = f"<span class='swatch' style='background:{colors[record[c]]}'></span>{text}"
            cells.append(f"<td{align[c]}>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    more = f"<p class='muted'>first {limit} of {len(df)} rows</p>" if len(df) > limit else ""
    attr = f" id='{table_id}'" if table_id else ""
    return (
        f"<div class='table'{attr}><table class='data'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>{more}"
    )


def dial_table(data: ReportData) -> pd.DataFrame:
    """The dial's decisions: the share asked and realised, the reason (which says why they
    differ) and the dose-response of the last change (``response.summary``)."""
    d = data.frame("decisions")
    if d.empty:
        return d
    realised, response = [], []
    for text in d.get("evidence", pd.Series([None] * len(d))):
        try:
            ev = json.loads(text) if text else {}
        except ValueError:
            ev = {}
        share = ev.get("share") or {}
        realised.append(float(share["realised"]) if "realised" in share else np.nan)
        response.append((ev.get("response") or {}).get("summary") or "")
    out = d.drop(columns=["evidence"], errors="ignore").assign(realised=realised, response=response)
    lead = ["strategy", "seed"] if out.get("seed", pd.Series([0])).nunique() > 1 else []
    if lead == [] and out.get("strategy", pd.Series([0])).nunique() > 1:
        lead = ["strategy"]
    return out[[*lead, "round", "real_fraction", "realised", "reason", "response"]]
