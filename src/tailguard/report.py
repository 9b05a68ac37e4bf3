"""The HTML report: one self-contained file a team opens from disk after every run.

It is built from tidy Arrow tables (:class:`ReportData`), one row per strategy, seed,
round and measurement, so the same page serves a lab comparison (many strategies and
seeds) and a real project's ledger (one lineage: strategy = run name, seed 0).
Charts are matplotlib SVG inlined into the page: no script, no network, no file
beside it.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from tailguard import __version__  # noqa: E402

#: The metrics drawn first when present: the tails and diversity collapse first.
WATCHED = (
    "tail_recall",
    "tail_mass_ratio",
    "distinct_2",
    "label_js",
    "vocab_coverage",
    "rare_vocab_coverage",
    "label_entropy",
    "ngram_entropy_2",
)
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass
class ReportData:
    """Everything the report shows, as tidy tables (any may be empty).

    - ``metrics``: strategy, seed, round, metric, value, higher_is_better
    - ``mix``: strategy, seed, round, human, synthetic, by_generation (JSON)
    - ``gate``: strategy, seed, round, verifier, records, passed
    - ``reasons``: strategy, verifier, reason, count
    - ``decisions``: strategy, seed, round, real_fraction, reason, evidence
    - ``alerts``: strategy, seed, round, rule, metrics, message
    - ``axes``: one row per strategy, one column per axis
    - ``recommendation``: lines of text (strategy, fraction, gate, reasons)
    """

    title: str = "tailguard report"
    metrics: pa.Table | None = None
    mix: pa.Table | None = None
    gate: pa.Table | None = None
    reasons: pa.Table | None = None
    decisions: pa.Table | None = None
    alerts: pa.Table | None = None
    axes: pa.Table | None = None
    recommendation: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def frame(self, name: str) -> pd.DataFrame:
        table = getattr(self, name)
        return pd.DataFrame() if table is None else table.to_pandas()


def from_ledger(ledger: Any, *, run: str = "main", title: str | None = None) -> ReportData:
    """A project's own lineage, read from its ledger."""
    from tailguard.monitor import Monitor

    tag = {"strategy": run, "seed": 0}
    metrics = _tag(ledger.metrics(run), tag)
    audit = ledger.audit(run=run)
    verdicts = ledger.verdicts()
    gate = reasons = None
    if verdicts.num_rows:
        v = verdicts.to_pandas()
        g = v.groupby(["round", "verifier"], as_index=False).agg(
            records=("passed", "size"), passed=("passed", "sum")
        )
        gate = pa.Table.from_pandas(g.assign(**tag), preserve_index=False)
        failed = v[~v["passed"]].assign(reason=lambda f: f["reason"].map(reason_stem))
        r = failed.groupby(["verifier", "reason"], as_index=False).size()
        reasons = pa.Table.from_pandas(
            r.rename(columns={"size": "count"}).assign(strategy=run), preserve_index=False
        )
    alerts = None
    history = ledger.metrics(run)
    if history.num_rows:
        found = Monitor.from_history(history).alerts(run)
        if found:
            alerts = pa.Table.from_pylist(
                [
                    {
                        **tag,
                        "round": a.round,
                        "rule": a.rule,
                        "metrics": ", ".join(a.metrics),
                        "message": a.message,
                    }
                    for a in found
                ]
            )
    return ReportData(
        title=title or f"tailguard report: {run}",
        metrics=metrics,
        mix=_tag(audit.select(["round", "human", "synthetic", "by_generation"]), tag)
        if audit.num_rows
        else None,
        gate=gate,
        reasons=reasons,
        decisions=_tag(ledger.decisions(run).drop_columns(["run"]), tag),
        alerts=alerts,
    )


def reason_stem(reason: str) -> str:
    """A rejection reason without its record-specific detail (ids, similarities)."""
    stem = re.sub(r"\b[0-9a-f]{32}\b", "<id>", reason)
    return re.sub(r"\s*\((?:[^()]*\d[^()]*)\)", "", stem).strip()


def _tag(table: pa.Table, tag: dict[str, Any]) -> pa.Table:
    for key, value in tag.items():
        if key not in table.column_names:
            table = table.append_column(key, pa.array([value] * table.num_rows))
    return table


# ---------------------------------------------------------------------------- charts
def _svg(fig: plt.Figure, chart_id: str, caption: str) -> str:
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg[svg.index("<svg") :], flags=re.S)
    return (
        f'<figure class="chart" data-chart="{chart_id}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _colors(strategies: list[str]) -> dict[str, str]:
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(strategies)}


def metric_charts(data: ReportData) -> list[str]:
    """One chart per watched metric: median over seeds with a min-max band."""
    m = data.frame("metrics")
    if m.empty:
        return []
    if "sample" in m:
        m = m[m["sample"].isin(["model"])]
    present = [w for w in WATCHED if w in set(m["metric"])]
    strategies = sorted(m["strategy"].unique())
    colors = _colors(strategies)
    out = []
    for metric in present:
        sub = m[m["metric"] == metric]
        fig, ax = plt.subplots(figsize=(6.2, 3.2))
        for s in strategies:
            g = sub[sub["strategy"] == s].groupby("round")["value"]
            if g.ngroups == 0:
                continue
            q = g.quantile([0.0, 0.5, 1.0]).unstack()
            ax.plot(q.index, q[0.5], color=colors[s], label=s, lw=2)
            ax.fill_between(q.index, q[0.0], q[1.0], color=colors[s], alpha=0.18, lw=0)
        hib = bool(sub["higher_is_better"].iloc[0]) if "higher_is_better" in sub else True
        ax.set_title(f"{metric} ({'higher' if hib else 'lower'} is better)", fontsize=11)
        ax.set_xlabel("round (generation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
        out.append(
            _svg(
                fig, f"metric-{metric}", f"{metric} per round: median over seeds, band = min to max"
            )
        )
    return out


def mix_charts(data: ReportData) -> list[str]:
    """Per strategy: training slots per round, human vs synthetic by generation, stacked."""
    mix = data.frame("mix")
    if mix.empty:
        return []
    out = []
    for strategy, sub in mix.groupby("strategy"):
        first_seed = sub["seed"].min()
        sub = sub[sub["seed"] == first_seed].sort_values("round")
        gens = sorted({int(g) for bg in sub["by_generation"] for g in json.loads(bg)})
        fig, ax = plt.subplots(figsize=(6.2, 3.0))
        rounds = sub["round"].to_numpy()
        bottom = sub["human"].to_numpy(dtype=float)
        ax.bar(rounds, bottom, color="#2ca02c", label="human")
        cmap = plt.get_cmap("Oranges")
        for i, g in enumerate(gens):
            vals = np.array([json.loads(bg).get(str(g), 0) for bg in sub["by_generation"]], float)
            ax.bar(
                rounds,
                vals,
                bottom=bottom,
                color=cmap(0.3 + 0.6 * i / max(len(gens), 1)),
                label=f"gen {g}" if len(gens) <= 8 or i in (0, len(gens) - 1) else None,
            )
            bottom = bottom + vals
        ax.set_title(f"training mix per round: {strategy}", fontsize=11)
        ax.set_xlabel("round")
        ax.set_ylabel("training slots")
        ax.legend(fontsize=7, frameon=False, ncol=2)
        out.append(
            _svg(
                fig,
                f"mix-{strategy}",
                f"{strategy}: human (green) and synthetic slots by generation",
            )
        )
    return out


def gate_chart(data: ReportData) -> list[str]:
    gate = data.frame("gate")
    if gate.empty:
        return []
    g = gate.groupby(["strategy", "round"], as_index=False)[["records", "passed"]].sum()
    fig, ax = plt.subplots(figsize=(6.2, 3.0))
    colors = _colors(sorted(g["strategy"].unique()))
    for s, sub in g.groupby("strategy"):
        ax.plot(sub["round"], sub["passed"] / sub["records"], marker="o", color=colors[s], label=s)
    ax.set_ylim(0, 1.05)
    ax.set_title("gate pass rate per round", fontsize=11)
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return [_svg(fig, "gate", "share of synthetic candidates passing every verifier")]


def dial_chart(data: ReportData) -> list[str]:
    d = data.frame("decisions")
    if d.empty:
        return []
    fig, ax = plt.subplots(figsize=(6.2, 3.0))
    colors = _colors(sorted(d["strategy"].unique()))
    for s, sub in d.groupby("strategy"):
        med = sub.groupby("round")["real_fraction"].median()
        ax.step(med.index, med.values, where="post", color=colors[s], label=s, lw=2)
    ax.set_ylim(0, 1)
    ax.set_title("the dial: real (human) fraction per round", fontsize=11)
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return [_svg(fig, "dial", "the dial's real fraction, median over seeds")]


def axes_chart(data: ReportData) -> list[str]:
    axes = data.frame("axes")
    if axes.empty:
        return []
    numeric = [
        c for c in axes.columns if c != "strategy" and pd.api.types.is_numeric_dtype(axes[c])
    ]
    if not numeric:
        return []
    fig, axs = plt.subplots(1, len(numeric), figsize=(2.3 * len(numeric), 2.8))
    axs = np.atleast_1d(axs)
    colors = _colors(list(axes["strategy"]))
    for ax, col in zip(axs, numeric, strict=True):
        ax.barh(axes["strategy"], axes[col], color=[colors[s] for s in axes["strategy"]])
        ax.set_title(col.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return [_svg(fig, "axes", "the five axes per strategy (see the table for units)")]


# ---------------------------------------------------------------------------- page
def _table(df: pd.DataFrame, *, limit: int = 40) -> str:
    if df.empty:
        return "<p class='muted'>none</p>"
    shown = df.head(limit).copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: f"{v:,.3f}")
    return shown.to_html(index=False, escape=True, classes="data", border=0)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1180px;
color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #eee;padding-bottom:.2rem;margin-top:2.2rem}
.muted{color:#777}.grid{display:flex;flex-wrap:wrap;gap:1rem}
figure.chart{margin:0;flex:1 1 540px;max-width:580px}figure.chart svg{width:100%;height:auto}
figcaption{font-size:.8rem;color:#666}
table.data{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
table.data td,table.data th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
table.data td:first-child,table.data th:first-child{text-align:left}
.advice{background:#f3f8f3;border-left:4px solid #2ca02c;padding:.8rem 1.2rem}
.alert{background:#fdf2f2;border-left:4px solid #d62728;padding:.6rem 1rem}
"""


def render(data: ReportData) -> str:
    """The report as one HTML string (inline SVG and CSS only)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    alerts = data.frame("alerts")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(data.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(data.title)}</h1>",
        f"<p class='muted'>tailguard {__version__} · {stamp}</p>",
    ]
    parts += [f"<p>{html.escape(n)}</p>" for n in data.notes]
    if data.recommendation:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in data.recommendation[1:])
        parts.append(
            f"<h2>Recommendation</h2><div class='advice' id='recommendation'>"
            f"<strong>{html.escape(data.recommendation[0])}</strong><ul>{items}</ul>"
            "</div>"
        )
    sections = [
        ("Five axes", axes_chart(data), _table(data.frame("axes"))),
        ("Tails and diversity over rounds", metric_charts(data), ""),
        ("Training mix per round", mix_charts(data), ""),
        (
            "Gate",
            gate_chart(data),
            _table(
                data.frame("reasons").sort_values("count", ascending=False)
                if not data.frame("reasons").empty
                else pd.DataFrame()
            ),
        ),
        (
            "The dial",
            dial_chart(data),
            _table(data.frame("decisions").drop(columns=["evidence"], errors="ignore")),
        ),
    ]
    for title, charts, extra in sections:
        if not charts and not extra:
            continue
        parts.append(f"<h2>{title}</h2><div class='grid'>{''.join(charts)}</div>{extra}")
    parts.append("<h2>Alerts</h2>")
    parts.append(
        f"<div class='alert'>{_table(alerts)}</div>"
        if not alerts.empty
        else "<p class='muted'>no alerts</p>"
    )
    parts.append("</body></html>")
    return "".join(parts)


def write(data: ReportData, path: str | Path) -> Path:
    """Write the report; returns its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data), encoding="utf-8")
    return out
