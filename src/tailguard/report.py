"""The HTML report: one self-contained file a team opens from disk after every run.

It is built from tidy Arrow tables (:class:`ReportData`), one row per strategy, seed,
round and measurement, so the same page serves a lab comparison (many strategies and
seeds) and a real project's ledger (one lineage: strategy = run name, seed 0).
Charts are matplotlib SVG inlined into the page (text kept as text, so the browser
test reads the tick labels): no script, no network, no file beside it. The page is a
list of sections (:data:`SECTIONS`), one function each, so a new section is one more
function. Colours come from :mod:`tailguard.palette`, shared with the terminal.
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
import pyarrow.compute as pc  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

from tailguard import __version__  # noqa: E402
from tailguard.lineage import lineage_tables  # noqa: E402
from tailguard.metrics import PRESETS, REGISTRY  # noqa: E402
from tailguard.monitor import NOISE_FLOOR_SAMPLE  # noqa: E402
from tailguard.palette import (  # noqa: E402
    ALERT,
    BASELINE,
    HUMAN,
    SYNTHETIC_CMAP,
    strategy_colors,
)

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
    "vector_tail_lower",
    "vector_tail_upper",
    "vector_variance_ratio",
    "vector_w1",
    "prdc_recall",
    "prdc_coverage",
    "vendi",
)
#: After the watched ones, other metrics by what they watch; at most this many charts.
KIND_ORDER = ("tail", "diversity", "fidelity", "mean")
MAX_METRIC_CHARTS = 8


@dataclass
class ReportData:
    """Everything the report shows, as tidy tables (any may be empty).

    - ``metrics``: strategy, seed, round, metric, value, higher_is_better (the model's)
    - ``floor``: strategy, seed, metric, value: the noise floor (human samples of the
      rounds' size from the reservoir's training split, measured against the holdout)
    - ``mix``: strategy, seed, round, human, synthetic, by_generation (JSON)
    - ``gate``: strategy, seed, round, verifier, records, passed
    - ``reasons``: strategy, verifier, code, count
    - ``decisions``: strategy, seed, round, real_fraction, reason, evidence
    - ``alerts``: strategy, seed, round, rule, metrics, message (every round's)
    - ``gaps``: round, label, gap, filled (``fill_gaps`` manifests)
    - ``quarantined``: origin, generation, id, round, code, detail, score
    - ``rollbacks``: to_round, rounds, quarantined, reason, rolled_at, rolled_by
    - ``judges``: round, verifier, records, passed, mean_score; ``judge_reasons``:
      verifier, code, reason, count
    - ``axes``: one row per strategy, one column per axis
    - ``recommendation``: lines of text, the same the CLI prints
    """

    title: str = "tailguard report"
    metrics: pa.Table | None = None
    floor: pa.Table | None = None
    mix: pa.Table | None = None
    gate: pa.Table | None = None
    reasons: pa.Table | None = None
    decisions: pa.Table | None = None
    alerts: pa.Table | None = None
    gaps: pa.Table | None = None
    quarantined: pa.Table | None = None
    rollbacks: pa.Table | None = None
    judges: pa.Table | None = None
    judge_reasons: pa.Table | None = None
    axes: pa.Table | None = None
    recommendation: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def frame(self, name: str) -> pd.DataFrame:
        table = getattr(self, name)
        return pd.DataFrame() if table is None else table.to_pandas()

    def colors(self) -> dict[str, str]:
        """Each strategy's colour: the palette over every strategy the report names."""
        names: set[str] = set()
        for name in ("metrics", "mix", "gate", "decisions", "alerts", "axes"):
            table = getattr(self, name)
            if table is not None and "strategy" in table.column_names:
                names |= set(table["strategy"].to_pylist())
        return strategy_colors(names)


def from_ledger(ledger: Any, *, run: str = "main", title: str | None = None) -> ReportData:
    """A project's own lineage, read from its ledger."""
    tables = lineage_tables(ledger, run)
    tag = {"strategy": run, "seed": 0}
    history = tables.pop("metrics")
    is_floor = pc.equal(history["sample"], NOISE_FLOOR_SAMPLE)
    return ReportData(
        title=title or f"tailguard report: {run}",
        metrics=_tag(history.filter(pc.invert(is_floor)), tag),
        floor=_tag(history.filter(is_floor), tag),
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
        floor=result.floor,
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
def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def _svg(fig: plt.Figure, chart_id: str, caption: str, *, wide: bool = False) -> str:
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg[svg.index("<svg") :], flags=re.S)
    return (
        f'<figure class="chart{" wide" if wide else ""}" data-chart="{chart_id}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _rounds_axis(ax: plt.Axes, rounds: Any) -> None:
    """Whole-number rounds, half a round of margin, so one round is a visible point."""
    values = [int(r) for r in rounds]
    if values:
        ax.set_xlim(min(values) - 0.5, max(values) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("round (generation)")


def _legend(ax: plt.Axes) -> None:
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def direction(metric: str, stored: Any = None) -> str:
    """Which way is better, in words, from the metric registry (else the stored flag)."""
    known = REGISTRY.get(metric)
    hib = known.higher_is_better if known is not None else stored
    if hib is None or (isinstance(hib, float) and hib != hib):
        ideal = known.ideal if known is not None else None
        where = "the baseline" if ideal is None else f"{ideal:g}"
        return f"two-sided: closer to {where} is better"
    return "higher is better" if bool(hib) else "lower is better"


def definition(metric: str) -> str:
    """The metric's one-line definition from the registry."""
    known = REGISTRY.get(metric)
    return known.description if known is not None and known.description else metric


def shown_metrics(names: Any) -> list[str]:
    """The watched metrics first, then the others by kind: tails, diversity, fidelity, mean."""
    names = set(names)

    def key(name: str) -> tuple[int, int, str]:
        watched = WATCHED.index(name) if name in WATCHED else len(WATCHED)
        kind = REGISTRY[name].kind if name in REGISTRY else "mean"
        return watched, KIND_ORDER.index(kind), name

    return sorted(names, key=key)[:MAX_METRIC_CHARTS]


def metric_charts(data: ReportData) -> list[str]:
    """One chart per shown metric: per strategy the median over seeds (points and line)
    with a min-max band, over the baseline (dashed) and the noise floor (green band)."""
    m = data.frame("metrics")
    if m.empty:
        return []
    if "sample" in m:
        m = m[m["sample"] == "model"]
    floor = data.frame("floor")
    colors = data.colors()
    out = []
    for metric in shown_metrics(m["metric"].unique()):
        sub = m[m["metric"] == metric]
        chart = f"metric-{metric}"
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        band = _reference_lines(
            ax, chart, sub, floor[floor["metric"] == metric] if len(floor) else floor
        )
        for s in sorted(sub["strategy"].unique()):
            q = sub[sub["strategy"] == s].groupby("round")["value"].quantile([0.0, 0.5, 1.0])
            q = q.unstack()
            if (q[1.0] > q[0.0]).any():
                ax.fill_between(q.index, q[0.0], q[1.0], color=colors[s], alpha=0.15, lw=0)
            ax.plot(
                q.index, q[0.5], color=colors[s], label=s, lw=2, marker="o", ms=5,
                gid=f"series-{chart}-{_slug(s)}",
            )  # fmt: skip
        hib = sub["higher_is_better"].iloc[0] if "higher_is_better" in sub else None
        ax.set_ylim(*y_range(sub["value"], band, _higher_is_better(metric, hib)))
        ax.set_title(f"{metric} ({direction(metric, hib)})", fontsize=10.5)
        ax.set_ylabel(metric, fontsize=9).set_gid(f"ylabel-{chart}")
        _rounds_axis(ax, sub["round"])
        ax.grid(alpha=0.3)
        _legend(ax)
        out.append(_svg(fig, chart, f"{metric}: {definition(metric)}. {direction(metric, hib)}."))
    return out


def tolerance(metric: str, level: float) -> float:
    """How far from ``level`` the monitor lets ``metric`` move before it alerts.

    The metric's relative or absolute threshold in the presets (the same in every preset
    that watches it); 0 for a metric no preset watches.
    """
    for preset in PRESETS.values():
        t = preset.thresholds.get(metric)
        if t is not None and t.kind == "relative":
            return t.value * abs(level)
        if t is not None and t.kind == "change":
            return t.value
    return 0.0


def _reference_lines(
    ax: plt.Axes, chart: str, sub: pd.DataFrame, floor: pd.DataFrame
) -> tuple[float, float, float]:
    """The baseline (dashed) and, around it, the band inside which the monitor stays quiet;
    returns ``(baseline, band low, band high)`` (the band is the baseline alone when no
    noise floor was measured).

    As in the monitor, the baseline is the noise floor when it was measured (human
    samples of the rounds' size against the holdout, median over seeds), else the first
    measured round. The band is the noise floor's spread over seeds widened by the
    metric's alert threshold: a point outside it, on the bad side, is a degradation.
    """
    metric = str(sub["metric"].iloc[0])
    if len(floor):
        baseline = float(floor["value"].median())
        label = "baseline: human sample (noise floor)"
        slack = tolerance(metric, baseline) or 0.004 * max(abs(baseline), 1e-9)
        lo, hi = float(floor["value"].min()) - slack, float(floor["value"].max()) + slack
        if min(floor["value"].min(), sub["value"].min()) >= 0:  # no band below an empty sample
            lo = max(lo, 0.0)
        if definition(metric).startswith("share"):  # nor above all of the reference
            hi = min(hi, 1.0)
        ax.axhspan(
            lo, hi, color=HUMAN, alpha=0.16, lw=0, gid=f"band-{chart}",
            label="human baseline ± alert threshold",
        )  # fmt: skip
    else:
        first = int(sub["round"].min())
        baseline = float(sub[sub["round"] == first]["value"].median())
        label = f"baseline: round {first}"
        lo = hi = baseline
    ax.axhline(baseline, color=BASELINE, lw=1, ls="--", gid=f"baseline-{chart}", label=label)
    return baseline, lo, hi


def _higher_is_better(metric: str, stored: Any) -> bool | None:
    known = REGISTRY.get(metric)
    hib = known.higher_is_better if known is not None else stored
    if hib is None or (isinstance(hib, float) and hib != hib):
        return None
    return bool(hib)


#: Margin around what a metric chart must show, as a share of its span; past the band's
#: alert edge a wider one, so the clear area beyond the band reads at a glance.
Y_MARGIN = 0.08
ALERT_MARGIN = 0.25


def y_range(
    values: Any, band: tuple[float, float, float], higher_is_better: bool | None
) -> tuple[float, float]:
    """A metric chart's y range: the curve, the baseline and the band's edge on the bad
    side (where alerts start) always in view, with room past that edge, so the band
    never fills the chart and the curve is not squashed by the band's harmless side.

    The band's edge on the good side is shown only as far as the curve reaches (a
    two-sided metric has two bad sides, both shown).
    """
    baseline, lo, hi = band
    vals = [float(v) for v in values]
    low_bad, high_bad = higher_is_better is not False, higher_is_better is not True
    shown = [*vals, baseline, *([lo] if low_bad else []), *([hi] if high_bad else [])]
    bottom, top = min(shown), max(shown)
    span = top - bottom
    if span < 1e-12:  # flat (or a denormal spread, whose margins would round to nothing)
        span = max(abs(baseline), 1e-9) * 0.1
    below = ALERT_MARGIN if low_bad and bottom == lo else Y_MARGIN
    above = ALERT_MARGIN if high_bad and top == hi else Y_MARGIN
    bottom, top = bottom - below * span, top + above * span
    if min(vals + [lo]) >= 0:
        bottom = max(bottom, -Y_MARGIN * span)  # hardly below zero for a count or a share
    return bottom, top


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
        chart = f"mix-{strategy}"
        fig, ax = plt.subplots(figsize=(6.4, 3.0))
        rounds = sub["round"].to_numpy()
        bottom = sub["human"].to_numpy(dtype=float)
        bars = ax.bar(rounds, bottom, color=HUMAN, label="human")
        for i, patch in enumerate(bars.patches):
            patch.set_gid(f"human-{chart}-{i}")
        cmap = plt.get_cmap(SYNTHETIC_CMAP)
        for i, g in enumerate(gens):
            vals = np.array([json.loads(bg).get(str(g), 0) for bg in sub["by_generation"]], float)
            ax.bar(
                rounds,
                vals,
                bottom=bottom,
                color=cmap(0.3 + 0.6 * i / max(len(gens), 1)),
                label=f"synthetic gen {g}" if len(gens) <= 8 or i in (0, len(gens) - 1) else None,
            )
            bottom = bottom + vals
        ax.set_title(f"training mix per round: {strategy}", fontsize=10.5)
        _rounds_axis(ax, rounds)
        ax.set_ylabel("training slots")
        _legend(ax)
        out.append(
            _svg(
                fig,
                chart,
                f"{strategy}: human (green) and synthetic slots by generation (orange)",
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
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    colors = data.colors()
    for s, sub in g.groupby("strategy"):
        ax.plot(
            sub["round"], sub["passed"] / sub["records"], marker="o", color=colors[s], label=s,
            gid=f"series-gate-{_slug(s)}",
        )  # fmt: skip
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("passed")
    ax.set_title("gate pass rate per round", fontsize=10.5)
    _rounds_axis(ax, g["round"])
    ax.grid(alpha=0.3)
    _legend(ax)
    return [_svg(fig, "gate", "share of synthetic candidates passing every verifier")]


def dial_chart(data: ReportData) -> list[str]:
    d = data.frame("decisions")
    if d.empty:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    colors = data.colors()
    for s, sub in d.groupby("strategy"):
        med = sub.groupby("round")["real_fraction"].median()
        ax.step(
            med.index, med.values, where="post", color=colors[s], label=s, lw=2, marker="o",
            ms=5, gid=f"series-dial-{_slug(s)}",
        )  # fmt: skip
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("human share")
    ax.set_title("the dial: human share per round", fontsize=10.5)
    _rounds_axis(ax, d["round"])
    ax.grid(alpha=0.3)
    _legend(ax)
    return [_svg(fig, "dial", "the dial's human (real) fraction, median over seeds")]


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
    colors = data.colors()
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


# ---------------------------------------------------------------------------- tables
def money(value: float) -> str:
    """Money as money: $1,234 (cents below $100)."""
    if value != value or np.isinf(value):
        return "n/a"
    return f"${value:,.0f}" if abs(value) >= 100 else f"${value:,.2f}"


def _share(v: float) -> str:
    return f"{v:.0%}"


def _rounds(v: float) -> str:
    return "never" if np.isinf(v) else f"{v:g}"


#: The axes table's columns: header and format (others: the name in words, 3 decimals).
AXES_COLUMNS: dict[str, tuple[str, Any]] = {
    "strategy": ("strategy", str),
    "fidelity_loss": ("fidelity loss", "{:.3f}".format),
    "coverage": ("tail coverage", "{:.3f}".format),
    "coverage_vs_baseline": ("coverage vs baseline", _share),
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


# ---------------------------------------------------------------------------- page
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1240px;
color:#222;padding:0 1rem;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #eee;padding-bottom:.2rem;margin-top:2.2rem}
.muted{color:#666}.grid{display:flex;flex-wrap:wrap;gap:1rem}
figure.chart{margin:0;flex:1 1 560px;max-width:610px}figure.chart svg{width:100%;height:auto}
figure.wide{flex:1 1 100%;max-width:100%}figcaption{font-size:.82rem;color:#555}
.table{overflow-x:auto}
table.data{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;width:100%}
#axes-table{table-layout:fixed}#axes-table td,#axes-table th{overflow-wrap:anywhere}
#axes-table .num{white-space:normal}
table.data th{font-weight:600;vertical-align:bottom;white-space:normal;background:#f6f6f6}
table.data td,table.data th{padding:.3rem .5rem;border-bottom:1px solid #e6e6e6;
text-align:left}
table.data td{font-variant-numeric:tabular-nums}
table.data .num{text-align:right;white-space:nowrap}
.swatch{display:inline-block;width:.75em;height:.75em;border-radius:2px;margin-right:.35em;
vertical-align:baseline}
.key{font-size:.85rem;color:#444}.key span.item{margin-right:1.1rem;white-space:nowrap}
.advice{background:#f6f7f9;border-left:4px solid @BASELINE@;padding:.8rem 1.2rem}
.advice.alerting{background:#fdf3f3;border-left-color:@ALERT@}
.advice ul{margin:.4rem 0 0;padding-left:1.2rem}
ol.timeline{list-style:none;padding:0;margin:.5rem 0;border-left:3px solid @ALERT@}
ol.timeline>li{padding:.3rem 0 .5rem 1rem;text-align:left}
ol.timeline .when{font-weight:600}
ol.timeline ul{margin:.2rem 0;padding-left:1.1rem;text-align:left}
.rule{display:inline-block;font-size:.75rem;font-weight:600;color:#fff;background:@ALERT@;
border-radius:3px;padding:0 .35rem;margin-right:.4rem}
""".replace("@ALERT@", ALERT).replace("@BASELINE@", BASELINE)


SECTION_TEXT = {
    "axes": "Fidelity: mean relative gap of the primary metric from round 0. Coverage: the "
    "tail metric at the last generation. Cost: every round priced by one function of what it "
    "used (human data bought, candidates generated and verified; the reservoir, owned, "
    "once in round 0); cost per generation: the mean of the synthetic rounds. "
    "Provenance: the share of training slots traceable to their origin, and the human share. "
    "Recovery: rounds and money to come back within 5% of baseline after switching to "
    "anchoring.",
    "metrics": "Collapse shows in the tails and in diversity first: watch these fall while "
    "the average still looks fine. Each point is a measured round (median over seeds, band = "
    "min to max). The dashed line is the baseline: human samples as large as a round's, "
    "measured against the held-out human reference exactly as a round is (the noise floor). "
    "The green band around it is that baseline widened by the metric's alert threshold: a "
    "point outside it on the bad side is a degradation.",
    "mix": "Every training slot by origin: human (green) and synthetic by the generation "
    "that wrote it (orange). A shrinking green share is invisible substitution.",
    "gate": "Share of synthetic candidates that passed every verifier, and the most common "
    "reasons for rejection. Strategies without a gate accept everything unchecked.",
    "dial": "The human share the dial chose each round, with the reason and the evidence it read.",
    "alerts": "What the monitor raised, round by round, earliest first.",
    "judges": "Policy checkers (a judge function or a trained classifier): the share of "
    "candidates each passed per round, the mean score, and the most common reasons a "
    "candidate failed.",
    "gaps": "Targeted augmentation: per round and label, the gap between the label's human "
    "count and its target, and the accepted synthetic examples admitted to fill it. Labels "
    "already covered get none.",
    "quarantine": "Records set aside, never deleted: human records screened as model-written "
    "or as copies of synthetic data, and synthetic records of rolled-back generations. "
    "Each can be released explicitly.",
    "rollbacks": "Rollbacks to a clean round: the later rounds set aside (their manifests stay "
    "as history) and the synthetic records quarantined.",
}


def _section(title: str, text: str, charts: list[str], extra: str = "", *, sid: str = "") -> str:
    if not charts and "<table" not in extra:
        return ""
    return (
        f"<section id='{sid}'><h2>{title}</h2><p class='muted'>{html.escape(text)}</p>"
        f"<div class='grid'>{''.join(charts)}</div>{extra}</section>"
    )


def colour_key(data: ReportData) -> str:
    """What each colour means, once for the whole page."""
    fixed = [
        (HUMAN, "human data / noise floor"),
        (plt.get_cmap(SYNTHETIC_CMAP)(0.6), "synthetic data"),
        (ALERT, "alert"),
        (BASELINE, "baseline"),
    ]
    items = [
        (c if isinstance(c, str) else matplotlib.colors.to_hex(c), label) for c, label in fixed
    ]
    items += [(c, s) for s, c in data.colors().items()]
    spans = "".join(
        f"<span class='item'><span class='swatch' style='background:{c}'></span>"
        f"{html.escape(label)}</span>"
        for c, label in items
    )
    return f"<p class='key' id='colour-key'>{spans}</p>"


def recommendation_section(data: ReportData) -> str:
    if not data.recommendation:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in data.recommendation[1:])
    alerting = " alerting" if re.match(r"\d+ active alert", data.recommendation[0]) else ""
    return (
        f"<section id='recommendation-section'><h2>Recommendation</h2>"
        f"<div class='advice{alerting}' id='recommendation'>"
        f"<strong>{html.escape(data.recommendation[0])}</strong><ul>{items}</ul></div></section>"
    )


def axes_section(data: ReportData) -> str:
    table = _table(
        data.frame("axes"), formats=AXES_COLUMNS, table_id="axes-table", colors=data.colors()
    )
    return _section("Five axes", SECTION_TEXT["axes"], axes_chart(data), table, sid="axes")


def metrics_section(data: ReportData) -> str:
    return _section(
        "Tails and diversity over rounds", SECTION_TEXT["metrics"], metric_charts(data),
        sid="metrics",
    )  # fmt: skip


def mix_section(data: ReportData) -> str:
    return _section("Training mix per round", SECTION_TEXT["mix"], mix_charts(data), sid="mix")


def gate_section(data: ReportData) -> str:
    reasons = data.frame("reasons")
    if not reasons.empty:
        keys = [c for c in ("strategy", "verifier", "code") if c in reasons]
        reasons = reasons.groupby(keys, as_index=False)["count"].sum()
        reasons = reasons.sort_values("count", ascending=False)
    table = _table(reasons, colors=data.colors())
    return _section("Gate", SECTION_TEXT["gate"], gate_chart(data), table, sid="gate")


def _plain_section(data: ReportData, name: str, title: str, text_key: str, **kw: Any) -> str:
    """A section of one table, shown only when the table has rows."""
    frame = data.frame(name).drop(columns=["strategy", "seed"], errors="ignore")
    if frame.empty:
        return ""
    return _section(title, SECTION_TEXT[text_key], [], _table(frame, **kw), sid=_slug(name))


def judges_section(data: ReportData) -> str:
    judges = data.frame("judges").drop(columns=["strategy", "seed"], errors="ignore")
    if judges.empty:
        return ""
    judges["pass_rate"] = judges["passed"] / judges["records"].clip(lower=1)
    table = _table(judges, formats={"pass_rate": ("pass rate", _share)}, table_id="judges-table")
    reasons = data.frame("judge_reasons").drop(columns=["strategy", "seed"], errors="ignore")
    extra = table + ("" if reasons.empty else _table(reasons, table_id="judge-reasons-table"))
    return _section("Judges", SECTION_TEXT["judges"], [], extra, sid="judges")


def gaps_section(data: ReportData) -> str:
    return _plain_section(data, "gaps", "Gaps filled per label", "gaps", table_id="gaps-table")


def quarantine_section(data: ReportData) -> str:
    return _plain_section(
        data, "quarantined", "Quarantined records", "quarantine", table_id="quarantine-table"
    )


def rollbacks_section(data: ReportData) -> str:
    return _plain_section(data, "rollbacks", "Rollbacks", "rollbacks", table_id="rollbacks-table")


def dial_section(data: ReportData) -> str:
    decisions = data.frame("decisions").drop(columns=["evidence"], errors="ignore")
    table = _table(
        decisions, formats={"real_fraction": ("human share", _share)}, colors=data.colors()
    )
    return _section("The dial", SECTION_TEXT["dial"], dial_chart(data), table, sid="dial")


def alerts_section(data: ReportData) -> str:
    """The alerts as a timeline: one entry per round, each alert once per strategy."""
    alerts = data.frame("alerts")
    head = f"<section id='alerts'><h2>Alerts</h2><p class='muted'>{SECTION_TEXT['alerts']}</p>"
    if alerts.empty:
        return head + "<p class='muted'>no alerts</p></section>"
    colors = data.colors()
    several = alerts["strategy"].nunique() > 1
    seeds = alerts.groupby("strategy")["seed"].nunique().to_dict()
    rounds = []
    for rnd, at in alerts.sort_values(["round", "strategy", "seed"]).groupby("round"):
        items = []
        for (s, rule, _metrics), g in at.groupby(["strategy", "rule", "metrics"], sort=False):
            who = (
                f"<span class='swatch' style='background:{colors.get(s, BASELINE)}'></span>"
                f"{html.escape(str(s))}: "
                if several
                else ""
            )
            share = f" ({g['seed'].nunique()} of {seeds[s]} seeds)" if seeds[s] > 1 else ""
            items.append(
                f"<li class='alert-item' data-rule='{html.escape(rule)}'>{who}"
                f"<span class='rule'>{html.escape(rule.replace('_', ' '))}</span>"
                f"{html.escape(str(g['message'].iloc[0]))}{share}</li>"
            )
        rounds.append(
            f"<li data-round='{int(rnd)}'><div class='when'>round {int(rnd)}</div>"
            f"<ul>{''.join(items)}</ul></li>"
        )
    return head + f"<ol class='timeline' id='alert-timeline'>{''.join(rounds)}</ol></section>"


#: The page, top to bottom: one function per section, each returning HTML (or "").
SECTIONS = (
    recommendation_section,
    axes_section,
    metrics_section,
    mix_section,
    gate_section,
    judges_section,
    gaps_section,
    dial_section,
    rollbacks_section,
    quarantine_section,
    alerts_section,
)


def render(data: ReportData) -> str:
    """The report as one HTML string (inline SVG and CSS only)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(data.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(data.title)}</h1>",
        f"<p class='muted'>tailguard {__version__} · {stamp}</p>",
    ]
    parts += [f"<p>{html.escape(n)}</p>" for n in data.notes]
    parts.append(colour_key(data))
    parts += [section(data) for section in SECTIONS]
    parts.append("</body></html>")
    return "".join(parts)


def write(data: ReportData, path: str | Path) -> Path:
    """Write the report; returns its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data), encoding="utf-8")
    return out
