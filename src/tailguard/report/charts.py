"""The charts: matplotlib figures inlined as SVG (text kept as text, so a browser test
reads the tick labels), each drawing what :mod:`tailguard.report.specs` decided."""

from __future__ import annotations

import html
import io
import json
import re
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, PercentFormatter

from tailguard.palette import ALERT, BASELINE, HUMAN, SYNTHETIC_CMAP
from tailguard.report.data import ReportData
from tailguard.report.specs import (
    MetricChart,
    _seeded,
    _y_band,
    definition,
    dial_series,
    direction,
    metric_specs,
    y_range,
)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def _svg(
    fig: plt.Figure, chart_id: str, caption: str, *, wide: bool = False, attrs: str = ""
) -> str:
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg[svg.index("<svg") :], flags=re.S)
    return (
        f'<figure class="chart{" wide" if wide else ""}" data-chart="{chart_id}"{attrs}>{svg}'
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


def metric_charts(data: ReportData) -> list[str]:
    """One chart per metric (:func:`metric_specs`): per strategy the seed drawn (points
    and line; alerted points ringed in red), the clean model's line and its band (watched
    metrics), and the human baseline (dashed); the gap between the two lines is the
    capacity gap."""
    colors = data.colors()
    return [_draw_metric(spec, colors) for spec in metric_specs(data)]


def _draw_metric(spec: MetricChart, colors: dict[str, str]) -> str:
    metric, chart = spec.metric, f"metric-{spec.metric}"
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    several = len(spec.references) > 1
    humans = [r["human"] for r in spec.references.values() if r["human"] is not None]
    bottom, top = y_range(
        [p.value for p in spec.points] + humans, _y_band(spec), spec.higher_is_better
    )
    drawn: dict[tuple[str, Any], str] = {}  # identical references are drawn once
    for s, ref in spec.references.items():
        tag = f"{chart}-{_slug(s)}" if several else chart
        band = (ref["low"], ref["high"])
        if band != (None, None) and ("band", band) not in drawn:
            drawn[("band", band)] = s
            # an open side runs past the chart's edge (the band is clipped to the plot)
            margin = top - bottom
            lo = bottom - margin if ref["low"] is None else ref["low"]
            hi = top + margin if ref["high"] is None else ref["high"]
            ax.axhspan(
                lo, hi, color=HUMAN, alpha=0.16, lw=0,
                gid=f"band-{tag}", label="band of the clean model: no alert inside",
            )  # fmt: skip
        if ("clean", ref["clean"]) not in drawn:
            drawn[("clean", ref["clean"])] = s
            ax.axhline(
                ref["clean"], color=BASELINE, lw=1.2, gid=f"clean-{tag}",
                label=f"clean model (round {ref['clean_round']})",
            )  # fmt: skip
        if ref["human"] is not None and ("human", ref["human"]) not in drawn:
            drawn[("human", ref["human"])] = s
            ax.axhline(
                ref["human"], color=HUMAN, lw=1.2, ls="--", gid=f"baseline-{tag}",
                label="human baseline (same size)",
            )  # fmt: skip
    ringed = False
    for s in spec.references:
        if s in spec.spread:
            rounds, low, high = spec.spread[s]
            ax.fill_between(rounds, low, high, color=colors[s], alpha=0.12, lw=0)
        pts = [p for p in spec.points if p.strategy == s]
        ax.plot(
            [p.round for p in pts], [p.value for p in pts], color=colors[s], label=s, lw=2,
            marker="o", ms=5, gid=f"series-{chart}-{_slug(s)}",
        )  # fmt: skip
        hot = [p for p in pts if p.alerted]
        if hot:
            ax.plot(
                [p.round for p in hot], [p.value for p in hot], ls="none", marker="o", ms=10,
                mfc="none", mec=ALERT, mew=1.6, gid=f"alerted-{chart}-{_slug(s)}",
                label=None if ringed else "alerted (outside the band)",
            )  # fmt: skip
            ringed = True
    ax.set_ylim(bottom, top)
    hib = spec.higher_is_better
    ax.set_title(f"{metric} ({direction(metric, hib)})", fontsize=10.5)
    ax.set_ylabel(metric, fontsize=9).set_gid(f"ylabel-{chart}")
    _rounds_axis(ax, [p.round for p in spec.points])
    ax.grid(alpha=0.3)
    _legend(ax)
    judged = (
        "Green band: the clean model's noise band, widened to the alert threshold; a point "
        "outside it on the bad side is alerted (ringed in red)."
        if spec.watched
        else "Not watched: no band, no alert."
    )
    caption = (
        f"{metric}: {definition(metric)}. {direction(metric, hib)}. {judged} The distance "
        "from the clean model's line to the human baseline (dashed) is the capacity gap."
    )
    return _svg(fig, chart, caption, attrs=spec.attrs())


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
    """Asked (dashed, hollow markers) and realised (solid) human share, per strategy."""
    series = dial_series(data)
    if not series:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    colors = data.colors()
    rounds: list[int] = []
    for s, kinds in series.items():
        for kind, style in (("asked", {"ls": "--", "mfc": "white"}), ("realised", {"ls": "-"})):
            points = kinds.get(kind, {})
            if not points:
                continue
            rounds += list(points)
            ax.step(
                list(points), list(points.values()), where="post", color=colors[s], lw=2,
                marker="o", ms=5, label=f"{s}: {kind}", gid=f"series-dial-{kind}-{_slug(s)}",
                **style,
            )  # fmt: skip
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("human share")
    ax.set_title("the dial: human share asked and realised", fontsize=10.5)
    _rounds_axis(ax, rounds)
    ax.grid(alpha=0.3)
    _legend(ax)
    attrs = f' data-series="{html.escape(json.dumps(series))}"'
    caption = (
        "asked (dashed): the share the dial chose; realised (solid): the human share of the "
        "round's training slots (the audit). With the whole reservoir re-injected, a round "
        "realises less than asked when too few synthetic examples passed the gate"
    )
    return [
        _svg(fig, "dial", caption + (", median over seeds" if _seeded(data) else ""), attrs=attrs)
    ]


#: The axes drawn as bars: (column, title, which way is better).
AXIS_BARS = (
    ("fidelity_loss", "fidelity loss (lower is better)"),
    ("coverage_vs_baseline", "tail coverage vs clean model (higher)"),
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
