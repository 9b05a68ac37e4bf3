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
from tailguard.lineage import lineage_tables  # noqa: E402

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
    - ``reasons``: strategy, verifier, code, count
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
    tables = lineage_tables(ledger, run)
    tag = {"strategy": run, "seed": 0}
    return ReportData(
        title=title or f"tailguard report: {run}",
        **{name: _tag(t, tag) for name, t in tables.items()},
    )


def from_lab(result: Any, *, title: str | None = None) -> ReportData:
    """A lab comparison: every strategy and seed, plus the five axes."""
    cfg = result.config
    return ReportData(
        title=title
        or f"tailguard lab: {cfg.model} on {cfg.dataset.name}, {cfg.generations} generations, "
        f"{cfg.seeds} seeds",
        metrics=result.metrics,
        mix=getattr(result, "mix", None),
        gate=getattr(result, "gate", None),
        reasons=getattr(result, "reasons", None),
        decisions=getattr(result, "decisions", None),
        alerts=getattr(result, "alerts", None),
        axes=result.axes,
        notes=[
            f"Strategies: {', '.join(cfg.strategies)}; anchored strategies keep "
            f"{cfg.real_fraction:.0%} human examples in every batch. Metric bands span every "
            f"seed ({cfg.seeds}); the mix charts show seed 0."
        ],
    )


def _tag(table: pa.Table, tag: dict[str, Any]) -> pa.Table:
    for key, value in tag.items():
        if key not in table.column_names:
            table = table.append_column(key, pa.array([value] * table.num_rows))
    return table


# ---------------------------------------------------------------------------- charts
def _svg(fig: plt.Figure, chart_id: str, caption: str, *, wide: bool = False) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg[svg.index("<svg") :], flags=re.S)
    return (
        f'<figure class="chart{" wide" if wide else ""}" data-chart="{chart_id}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _colors(strategies: Any) -> dict[str, str]:
    """One colour per strategy, the same in every chart (assigned in name order)."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sorted(set(strategies)))}


def _rounds_axis(ax: plt.Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round (generation)")


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
        hib = sub["higher_is_better"].iloc[0] if "higher_is_better" in sub else True
        better = (
            "closer to the start" if hib is None or hib != hib else ("higher" if hib else "lower")
        )
        ax.set_title(f"{metric} ({better} is better)", fontsize=11)
        _rounds_axis(ax)
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
        _rounds_axis(ax)
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
    if not gate.empty:
        gate = gate[gate["verifier"] != "none"]  # ungated strategies accept unchecked
    if gate.empty:
        return []
    g = gate.groupby(["strategy", "round"], as_index=False)[["records", "passed"]].sum()
    fig, ax = plt.subplots(figsize=(6.2, 3.0))
    colors = _colors(sorted(g["strategy"].unique()))
    for s, sub in g.groupby("strategy"):
        ax.plot(sub["round"], sub["passed"] / sub["records"], marker="o", color=colors[s], label=s)
    ax.set_ylim(0, 1.05)
    ax.set_title("gate pass rate per round", fontsize=11)
    _rounds_axis(ax)
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
    _rounds_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return [_svg(fig, "dial", "the dial's real fraction, median over seeds")]


#: The axes drawn as bars: (column, title, which way is better).
AXIS_BARS = (
    ("fidelity_loss", "fidelity loss (lower is better)"),
    ("coverage_vs_baseline", "tail coverage vs round 0 (higher)"),
    ("cost", "data cost, $ (lower)"),
    ("real_share_min", "lowest human share of a round"),
    ("recovery_rounds", "rounds to recover (lower)"),
)


def axes_chart(data: ReportData) -> list[str]:
    """The five axes side by side, one small bar panel per axis."""
    axes = data.frame("axes")
    shown = [(c, t) for c, t in AXIS_BARS if c in axes]
    if axes.empty or not shown:
        return []
    fig, panels = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.4), sharey=True)
    colors = _colors(list(axes["strategy"]))
    for ax, (col, title) in zip(np.atleast_1d(panels), shown, strict=True):
        values = axes[col].replace([np.inf], np.nan)
        ax.barh(axes["strategy"], values, color=[colors[s] for s in axes["strategy"]])
        for y, v in enumerate(axes[col]):
            ax.text(0, y, " never" if np.isinf(v) else "", va="center", fontsize=7)
        ax.set_title(title, fontsize=8.5)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return [_svg(fig, "axes", "the five axes per strategy, medians over seeds", wide=True)]


# ---------------------------------------------------------------------------- page
def _table(df: pd.DataFrame, *, limit: int = 40) -> str:
    if df.empty:
        return "<p class='muted'>none</p>"
    shown = df.head(limit).copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: f"{v:,.3f}")
    table = shown.to_html(index=False, escape=True, classes="data", border=0)
    return f"<div class='scroll'>{table}</div>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1180px;
color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #eee;padding-bottom:.2rem;margin-top:2.2rem}
.muted{color:#777}.scroll{overflow-x:auto}.grid{display:flex;flex-wrap:wrap;gap:1rem}
figure.chart{margin:0;flex:1 1 540px;max-width:580px}figure.chart svg{width:100%;height:auto}
figure.wide{flex:1 1 100%;max-width:100%}figcaption{font-size:.8rem;color:#666}
table.data{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
table.data td,table.data th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
table.data td:first-child,table.data th:first-child{text-align:left}
.advice{background:#f3f8f3;border-left:4px solid #2ca02c;padding:.8rem 1.2rem}
.alert{background:#fdf2f2;border-left:4px solid #d62728;padding:.6rem 1rem}
"""


SECTION_TEXT = {
    "axes": "Fidelity: mean relative gap of the primary metric from round 0. Coverage: the "
    "tail metric at the last generation. Cost: the cost model's price of every round. "
    "Provenance: the share of training slots traceable to their origin, and the human share. "
    "Recovery: rounds and money to come back within 5% of baseline after switching to "
    "anchoring.",
    "metrics": "Collapse shows in the tails and in diversity first: watch these fall while "
    "the average still looks fine.",
    "mix": "Every training slot by origin: human (green) and synthetic by the generation "
    "that wrote it. A shrinking green share is invisible substitution.",
    "gate": "Share of synthetic candidates that passed every verifier, and the most common "
    "reasons for rejection. Strategies without a gate accept everything unchecked.",
    "dial": "The real fraction the dial chose each round, with the reason and the evidence "
    "it read.",
}


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
    reasons = data.frame("reasons")
    if not reasons.empty:
        keys = [c for c in ("strategy", "verifier", "code") if c in reasons]
        reasons = reasons.groupby(keys, as_index=False)["count"].sum()
        reasons = reasons.sort_values("count", ascending=False)
    sections = [
        ("Five axes", SECTION_TEXT["axes"], axes_chart(data), _table(data.frame("axes"))),
        ("Tails and diversity over rounds", SECTION_TEXT["metrics"], metric_charts(data), ""),
        ("Training mix per round", SECTION_TEXT["mix"], mix_charts(data), ""),
        ("Gate", SECTION_TEXT["gate"], gate_chart(data), _table(reasons)),
        (
            "The dial",
            SECTION_TEXT["dial"],
            dial_chart(data),
            _table(data.frame("decisions").drop(columns=["evidence"], errors="ignore")),
        ),
    ]
    for title, text, charts, extra in sections:
        if not charts and "<table" not in extra:
            continue
        parts.append(
            f"<h2>{title}</h2><p class='muted'>{html.escape(text)}</p>"
            f"<div class='grid'>{''.join(charts)}</div>{extra}"
        )
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
