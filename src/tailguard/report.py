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
from tailguard.lineage import lineage_monitor, lineage_tables  # noqa: E402
from tailguard.metrics import REGISTRY  # noqa: E402
from tailguard.monitor import NOISE_FLOOR_SAMPLE  # noqa: E402
from tailguard.palette import (  # noqa: E402
    ALERT,
    BASELINE,
    HUMAN,
    SYNTHETIC_CMAP,
    strategy_colors,
)

#: The order of the watched metrics on the page: the tails and diversity collapse first.
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
#: After the watched and alerting metrics, the others by what they watch (all are drawn).
KIND_ORDER = ("tail", "diversity", "fidelity", "mean")


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
    - ``references``: strategy, seed, metric, clean_round, clean, human, watched, low,
      high: per lineage, the clean model's value (round 0), the human baseline and, for
      a watched metric, the edges of the band the monitor judges it by (null: open side)
    - ``capacity``: strategy, seed, metric, clean, human, gap, closes_it
    - ``gaps``: round, label, gap, filled (``fill_gaps`` manifests)
    - ``quarantined``: origin, generation, id, round, code, detail, score
    - ``rollbacks``: to_round, rounds, quarantined, reason, rolled_at, rolled_by
    - ``judges``: round, verifier, records, passed, mean_score; ``judge_reasons``:
      verifier, code, reason, count
    - ``audits``: each verifier's latest audit on a labelled sample (``Ledger.verifier_audits``)
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
    references: pa.Table | None = None
    capacity: pa.Table | None = None
    gaps: pa.Table | None = None
    quarantined: pa.Table | None = None
    rollbacks: pa.Table | None = None
    judges: pa.Table | None = None
    judge_reasons: pa.Table | None = None
    audits: pa.Table | None = None
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
    refs = reference_tables(ledger.metrics(run), run)
    return ReportData(
        title=title or f"tailguard report: {run}",
        metrics=_tag(history.filter(pc.invert(is_floor)), tag),
        floor=_tag(history.filter(is_floor), tag),
        audits=ledger.verifier_audits(latest=True),
        **{name: _tag(t, tag) for name, t in {**tables, **refs}.items()},
    )


def from_lab(result: Any, *, title: str | None = None) -> ReportData:
    """A lab comparison: every strategy and seed, plus the five axes.

    Each strategy x seed is its own lineage with its own clean model (its round 0),
    band and alerts (``ledger_metrics``, run ``<strategy>/seed<k>``)."""
    cfg = result.config
    refs: dict[str, list[pa.Table]] = {"references": [], "capacity": []}
    history = getattr(result, "ledger_metrics", None)
    for run in [] if history is None else sorted(set(history["run"].to_pylist())):
        strategy, _, seed = run.rpartition("/seed")
        rows = history.filter(pc.equal(history["run"], run))
        for name, t in reference_tables(rows, run).items():
            refs[name].append(_tag(t, {"strategy": strategy, "seed": int(seed)}))
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
        **{name: pa.concat_tables(ts) if ts else None for name, ts in refs.items()},
        axes=result.axes,
        notes=[
            f"Strategies: {', '.join(cfg.strategies)}; anchored strategies keep "
            f"{cfg.real_fraction:.0%} human examples in every batch. Each strategy and seed "
            "has its own clean model (its round 0), band and alerts: the metric charts draw, "
            "per strategy, its lowest seed (points, band, alerts ringed in red) with the "
            "other seeds' range shaded, and the alert timeline lists that seed's alerts with "
            f"how many of the {cfg.seeds} seeds raised each; the mix charts show that seed "
            "too; the axes table is over every seed."
        ],
    )


def reference_tables(history: pa.Table, run: str) -> dict[str, pa.Table]:
    """Per metric of one lineage: its clean model (round 0), human baseline and, when
    watched, the band the monitor judges it by; and the capacity gaps.

    Read from the same monitor as the alerts (:func:`tailguard.lineage.lineage_monitor`),
    so the band drawn is the band alerted on."""
    schema = pa.schema(
        [("metric", pa.string()), ("clean_round", pa.int32()), ("clean", pa.float64()),
         ("human", pa.float64()), ("watched", pa.bool_()), ("low", pa.float64()),
         ("high", pa.float64())]
    )  # fmt: skip
    gap_schema = pa.schema(
        [("metric", pa.string()), ("clean", pa.float64()), ("human", pa.float64()),
         ("gap", pa.float64()), ("closes_it", pa.string())]
    )  # fmt: skip
    df = history.to_pandas()
    df = df[df["run"] == run]
    monitor = lineage_monitor(history)
    first = monitor.clean_round(run)
    if df.empty or first is None:
        return {"references": schema.empty_table(), "capacity": gap_schema.empty_table()}
    bands = monitor.bands(run)
    at_first = df[df["round"] == first]
    clean = at_first[(at_first["sample"] == "model") | at_first["sample"].str.startswith("model#")]
    clean_mean = clean.groupby("metric")["value"].mean()
    human = df[df["sample"] == NOISE_FLOOR_SAMPLE].sort_values("round")
    human_value = human.groupby("metric")["value"].last()
    rows = []
    for metric, value in clean_mean.items():
        b = bands.get(str(metric))
        rows.append({
            "metric": str(metric), "clean_round": first,
            "clean": float(value) if b is None else b.center,
            "human": float(human_value[metric]) if metric in human_value.index else None,
            "watched": b is not None,
            "low": None if b is None or not np.isfinite(b.low) else b.low,
            "high": None if b is None or not np.isfinite(b.high) else b.high,
        })  # fmt: skip
    gaps = [{**g.to_dict()} for g in monitor.capacity_gaps(run)]
    return {
        "references": pa.Table.from_pylist(rows, schema=schema),
        "capacity": pa.Table.from_pylist(
            [{k: g[k] for k in gap_schema.names} for g in gaps], schema=gap_schema
        ),
    }


def _tag(table: pa.Table, tag: dict[str, Any]) -> pa.Table:
    for key, value in tag.items():
        if key not in table.column_names:
            # typed from the value, so an empty table concatenates with full ones
            kind = pa.scalar(value).type
            table = table.append_column(key, pa.array([value] * table.num_rows, kind))
    return table


# ---------------------------------------------------------------------------- charts
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


def shown_metrics(names: Any, first: Any = ()) -> list[str]:
    """Every metric, ``first`` (the watched and alerting ones) leading in :data:`WATCHED`
    order, then the others by kind: tails, diversity, fidelity, mean. None is left out."""
    names, first = set(names), set(first)

    def key(name: str) -> tuple[int, int, int, str]:
        watched = WATCHED.index(name) if name in WATCHED else len(WATCHED)
        kind = REGISTRY[name].kind if name in REGISTRY else "mean"
        return int(name not in first), watched, KIND_ORDER.index(kind), name

    return sorted(names, key=key)


def flagged_metrics(rule: str, metrics: str) -> list[str]:
    """The metrics an alert says are outside their band: all it names, except the
    variance-shrinkage rule, whose second metric (recall) is named for context."""
    names = [m.strip() for m in str(metrics).split(",") if m.strip()]
    return names[:1] if rule == "variance_shrinkage" else names


def shown_seeds(data: ReportData) -> dict[str, int]:
    """The seed drawn per strategy (its lowest): a lab's seeds each have their own clean
    model, band and alerts, so one seed's points are drawn with its own band."""
    m = data.frame("metrics")
    return (
        {} if m.empty else {str(s): int(v) for s, v in m.groupby("strategy")["seed"].min().items()}
    )


def _model_alerts(data: ReportData) -> pd.DataFrame:
    a = data.frame("alerts")
    if not a.empty and "sample" in a:
        a = a[a["sample"] == "model"]
    return a


@dataclass
class Point:
    """One drawn point of a metric chart: a round of the seed drawn for a strategy."""

    strategy: str
    seed: int
    round: int
    value: float
    #: outside the band the monitor judges by (never at the clean round, the reference)
    outside: bool
    #: the monitor raised an alert naming this metric at this round of this lineage
    alerted: bool


@dataclass
class MetricChart:
    """What one metric chart draws (the renderer draws exactly this and writes it on the
    figure as ``data-`` attributes, so a reader can check the picture against the alerts).

    ``references``: per strategy, the seed drawn, its clean model (``clean``, at
    ``clean_round``), the human baseline (``human``, None when not measured) and the
    band's edges (``low`` / ``high``; None: no band, or an open side)."""

    metric: str
    watched: bool
    higher_is_better: bool | None
    references: dict[str, dict[str, Any]]
    points: list[Point]
    #: per strategy, (rounds, lowest, highest) over every seed (a lab's spread)
    spread: dict[str, tuple[list[int], list[float], list[float]]]

    @property
    def alerting(self) -> bool:
        return any(p.alerted for p in self.points)

    def attrs(self) -> str:
        bands = {s: {k: v for k, v in r.items()} for s, r in self.references.items()}
        points = [[p.strategy, p.seed, p.round, p.value, p.outside, p.alerted] for p in self.points]
        return (
            f' data-metric="{html.escape(self.metric)}" data-watched="{int(self.watched)}"'
            f' data-bands="{html.escape(json.dumps(bands))}"'
            f' data-points="{html.escape(json.dumps(points))}"'
        )


def _outside(value: float, ref: dict[str, Any], rnd: int) -> bool:
    if rnd == ref["clean_round"]:
        return False
    low, high = ref.get("low"), ref.get("high")
    return (low is not None and value < low) or (high is not None and value > high)


def metric_specs(data: ReportData) -> list[MetricChart]:
    """The metric charts: every watched or alerting metric first, then every other one.

    Per strategy, the seed drawn (:func:`shown_seeds`): its points, its clean model and
    human baseline, and (watched metrics only: nothing alerts on the others) the band of
    its clean model from :meth:`Monitor.bands`; a point is alerted when the monitor's
    alerts of that lineage name the metric at that round."""
    m = data.frame("metrics")
    if m.empty:
        return []
    if "sample" in m:
        m = m[m["sample"] == "model"]
    seeds = shown_seeds(data)
    refs = data.frame("references")
    alerts = _model_alerts(data)
    alerted: set[tuple[str, int, int, str]] = set()
    for a in alerts.to_dict("records"):
        for metric in flagged_metrics(a["rule"], a["metrics"]):
            alerted.add((str(a["strategy"]), int(a["seed"]), int(a["round"]), metric))
    ref_of: dict[tuple[str, str], dict[str, Any]] = {}
    for r in refs.to_dict("records"):
        if seeds.get(str(r["strategy"])) == int(r["seed"]):
            ref_of[(str(r["metric"]), str(r["strategy"]))] = {
                "seed": int(r["seed"]), "clean_round": int(r["clean_round"]),
                "clean": float(r["clean"]), "human": _num(r["human"]),
                "low": _num(r["low"]), "high": _num(r["high"]),
                "watched": bool(r["watched"]),
            }  # fmt: skip
    watched = {metric for (metric, _), r in ref_of.items() if r["watched"]}
    first = watched | {metric for *_, metric in alerted}
    out = []
    for metric in shown_metrics(m["metric"].unique(), first):
        sub = m[m["metric"] == metric]
        hib = sub["higher_is_better"].iloc[0] if "higher_is_better" in sub else None
        references, points, spread = {}, [], {}
        for s in sorted(sub["strategy"].unique()):
            seed = seeds[str(s)]
            mine = sub[(sub["strategy"] == s) & (sub["seed"] == seed)].sort_values("round")
            if mine.empty:
                continue
            first_round = int(mine["round"].min())
            ref = ref_of.get((metric, str(s))) or {
                "seed": seed, "clean_round": first_round,
                "clean": float(mine[mine["round"] == first_round]["value"].mean()),
                "human": None, "low": None, "high": None, "watched": False,
            }  # fmt: skip
            if not ref.pop("watched"):
                ref["low"] = ref["high"] = None  # no band: nothing alerts on this metric
            references[str(s)] = ref
            for rnd, value in zip(mine["round"], mine["value"], strict=True):
                key = (str(s), seed, int(rnd), metric)
                points.append(
                    Point(str(s), seed, int(rnd), float(value),
                          _outside(float(value), ref, int(rnd)), key in alerted)
                )  # fmt: skip
            q = sub[sub["strategy"] == s].groupby("round")["value"].agg(["min", "max"])
            if sub[sub["strategy"] == s]["seed"].nunique() > 1:
                spread[str(s)] = ([int(r) for r in q.index], q["min"].tolist(), q["max"].tolist())
        out.append(
            MetricChart(
                metric,
                metric in watched,
                _higher_is_better(metric, hib),
                references,
                points,
                spread,
            )
        )
    return out


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


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


def _y_band(spec: MetricChart) -> tuple[float, float, float]:
    """``(center, low, high)`` for :func:`y_range`: the band's bad edges in view (an open
    side, or no band, collapses to the center)."""
    refs = list(spec.references.values())
    center = float(np.mean([r["clean"] for r in refs])) if refs else 0.0
    lows = [r["low"] for r in refs if r["low"] is not None]
    highs = [r["high"] for r in refs if r["high"] is not None]
    return center, min(lows, default=center), max(highs, default=center)


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
    # room past the curve, and always a clear strip past a bad edge (even when a point
    # sits just beyond it), so the band never fills the chart
    bottom, top = bottom - Y_MARGIN * span, top + Y_MARGIN * span
    if low_bad:
        bottom = min(bottom, lo - ALERT_MARGIN * span)
    if high_bad:
        top = max(top, hi + ALERT_MARGIN * span)
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


def dial_series(data: ReportData) -> dict[str, dict[str, dict[int, float]]]:
    """Per strategy, the share the dial ``asked`` (its decision) and the share each round
    ``realised`` (the audit's human share of the training slots), by round; medians over
    seeds. They differ when too few synthetic examples passed the gate to fill the rest."""
    d, mix = data.frame("decisions"), data.frame("mix")
    out: dict[str, dict[str, dict[int, float]]] = {}
    if not d.empty:
        for s, sub in d.groupby("strategy"):
            asked = sub.groupby("round")["real_fraction"].median()
            out.setdefault(str(s), {})["asked"] = {int(r): float(v) for r, v in asked.items()}
    if not mix.empty and out:
        if "human_share" not in mix:  # tables from before the audit's share was kept
            mix = mix.assign(human_share=mix["human"] / (mix["human"] + mix["synthetic"]))
        for s, sub in mix[mix["strategy"].isin(list(out))].groupby("strategy"):
            got = sub.groupby("round")["human_share"].median()
            out[str(s)]["realised"] = {int(r): float(v) for r, v in got.items()}
    return out


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


def _seeded(data: ReportData) -> bool:
    d = data.frame("decisions")
    return not d.empty and "seed" in d and d["seed"].nunique() > 1


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
    "the average still looks fine. Every metric the monitor watches (or alerts on) is charted "
    "first, then the others. Each point is a measured round. The solid grey line is the clean "
    "model: round 0, the model trained on the human reservoir alone. For a watched metric the "
    "green band around it is the band the monitor judges by (the spread of the clean model's "
    "own samples, never narrower than the metric's alert threshold, open on the good side): "
    "a point outside it is alerted, ringed in red and listed under Alerts, and a point inside "
    "it never is. Unwatched metrics have no band: nothing alerts on them. The dashed green "
    "line is the human baseline: human samples as large as a round's, measured against the "
    "held-out human data exactly as a round is. The distance between the clean model and the "
    "human baseline is the capacity gap, there from round 0 on.",
    "capacity": "Where the clean model is behind people from round 0 on, before any synthetic "
    "data: a capacity gap, not collapse, so it is never alerted on and never moves the dial. "
    "A larger model, more human data in total or more epochs closes it; a higher human share "
    "does not.",
    "mix": "Every training slot by origin: human (green) and synthetic by the generation "
    "that wrote it (orange). A shrinking green share is invisible substitution.",
    "gate": "Share of synthetic candidates that passed every verifier, and the most common "
    "reasons for rejection. Strategies without a gate accept everything unchecked.",
    "dial": "The human share the dial asked for each round and the share the round realised "
    "(the audit's human share of its training slots), with the reason (which says why they "
    "differ) and whether the last change of the share moved the watched metrics.",
    "alerts": "What the monitor raised, round by round, earliest first: exactly the watched "
    "points outside their band on the metric charts (never the clean model's round).",
    "judges": "Policy checkers (a judge function or a trained classifier): the share of "
    "candidates each passed per round, the mean score, and the most common reasons a "
    "candidate failed.",
    "gaps": "Targeted augmentation: per round and label, the gap between the label's human "
    "count and its target, and the accepted synthetic examples admitted to fill it. Labels "
    "already covered get none.",
    "quarantine": "Records set aside, never deleted: human records screened as model-written "
    "or as copies of synthetic data, and synthetic records of rolled-back generations. "
    "Each can be released explicitly.",
    "audits": "Each verifier's latest audit (tailguard gate --audit) on texts known good or "
    "known bad: precision is the share of what it accepts that is good, recall the share of "
    "the good it accepts, specificity the share of the bad it rejects; in brackets the 95% "
    "Wilson interval. Every audit is kept in the ledger with the verifier's version.",
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
        (HUMAN, "human data / human baseline / band"),
        (plt.get_cmap(SYNTHETIC_CMAP)(0.6), "synthetic data"),
        (ALERT, "alert"),
        (BASELINE, "clean model (round 0)"),
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
    return _section(
        "Training mix per round", SECTION_TEXT["mix"], mix_charts(data), unlabelled_note(data),
        sid="mix",
    )  # fmt: skip


def unlabelled_note(data: ReportData) -> str:
    """The rounds that trained on records without a label: how many slots, what share
    (the label metrics count them as the class ``(unlabelled)``)."""
    mix = data.frame("mix")
    if mix.empty or "unlabelled" not in mix or not (mix["unlabelled"] > 0).any():
        return ""
    parts = []
    for strategy, sub in mix[mix["unlabelled"] > 0].groupby("strategy"):
        sub = sub[sub["seed"] == sub["seed"].min()].sort_values("round")
        rounds = ", ".join(
            f"round {int(r.round)}: {int(r.unlabelled):,} of {int(r.human + r.synthetic):,}"
            f" ({r.unlabelled / max(r.human + r.synthetic, 1):.1%})"
            for r in sub.itertuples()
        )
        who = f"{strategy}: " if mix["strategy"].nunique() > 1 else ""
        parts.append(f"{who}{rounds}")
    text = (
        "Unlabelled training slots (records without a label; the label metrics count them "
        "as the class (unlabelled)): " + "; ".join(parts) + "."
    )
    return f"<p class='muted' id='unlabelled'>{html.escape(text)}</p>"


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


def _interval(row: dict[str, Any], name: str) -> str:
    if row[name] is None or pd.isna(row[name]):
        return "n/a"
    return f"{row[name]:.3f} [{row[name + '_low']:.2f}, {row[name + '_high']:.2f}]"


def audits_section(data: ReportData) -> str:
    """Each verifier's latest measured quality: what the advisor quotes for a verifiable task."""
    audits = data.frame("audits")
    if audits.empty:
        return ""
    rows = audits.to_dict("records")
    frame = pd.DataFrame(
        {
            "verifier": [r["verifier"] for r in rows],
            "version": [r["version"] for r in rows],
            "sample": [r["sample"] for r in rows],
            "accepted_good": [f"{r['accepted_good']}/{r['n_good']}" for r in rows],
            "accepted_bad": [f"{r['accepted_bad']}/{r['n_bad']}" for r in rows],
            **{s: [_interval(r, s) for r in rows] for s in ("precision", "recall", "specificity")},
            "audited": [str(r["audited_at"])[:16] for r in rows],
        }
    )
    table = _table(frame, table_id="audits-table")
    return _section("Verifier quality", SECTION_TEXT["audits"], [], table, sid="verifier-audits")


def gaps_section(data: ReportData) -> str:
    return _plain_section(data, "gaps", "Gaps filled per label", "gaps", table_id="gaps-table")


def quarantine_section(data: ReportData) -> str:
    return _plain_section(
        data, "quarantined", "Quarantined records", "quarantine", table_id="quarantine-table"
    )


def rollbacks_section(data: ReportData) -> str:
    return _plain_section(data, "rollbacks", "Rollbacks", "rollbacks", table_id="rollbacks-table")


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


def dial_section(data: ReportData) -> str:
    table = _table(
        dial_table(data), colors=data.colors(), table_id="dial-table",
        formats={"real_fraction": ("human share asked", _share),
                 "realised": ("human share realised", _share),
                 "response": ("response to the last change", str)},
    )  # fmt: skip
    return _section("The dial", SECTION_TEXT["dial"], dial_chart(data), table, sid="dial")


def capacity_section(data: ReportData) -> str:
    """Where the clean model is behind people from round 0 on: not collapse, no alert."""
    gaps = data.frame("capacity")
    if gaps.empty:
        return ""
    seeds = shown_seeds(data)
    if seeds and "seed" in gaps:
        gaps = gaps[
            [
                seeds.get(str(s)) == int(k)
                for s, k in zip(gaps["strategy"], gaps["seed"], strict=True)
            ]
        ]
    several = gaps["strategy"].nunique() > 1 if "strategy" in gaps else False
    cols = (["strategy"] if several else []) + ["metric", "clean", "human", "gap", "closes_it"]
    table = _table(
        gaps[cols], table_id="capacity-table", colors=data.colors(),
        formats={"clean": ("clean model (round 0)", "{:.4g}".format),
                 "human": ("human baseline", "{:.4g}".format),
                 "gap": ("behind people", _share), "closes_it": ("what closes it", str)},
    )  # fmt: skip
    return _section("Capacity gap", SECTION_TEXT["capacity"], [], table, sid="capacity")


def alerts_section(data: ReportData) -> str:
    """The alerts as a timeline: one entry per round, each alert once per strategy.

    In a lab, the entry is the drawn seed's alert (the point ringed on the chart) with
    how many seeds raised it; an alert only other seeds raised says so. Each item names
    its lineage and the metrics it flags as outside their band (``data-`` attributes)."""
    alerts = data.frame("alerts")
    head = f"<section id='alerts'><h2>Alerts</h2><p class='muted'>{SECTION_TEXT['alerts']}</p>"
    if alerts.empty:
        return head + "<p class='muted'>no alerts</p></section>"
    colors = data.colors()
    shown = shown_seeds(data)
    several = alerts["strategy"].nunique() > 1
    seeds = alerts.groupby("strategy")["seed"].nunique().to_dict()
    if not data.frame("metrics").empty:
        m = data.frame("metrics")
        seeds = {
            s: max(seeds.get(s, 0), n) for s, n in m.groupby("strategy")["seed"].nunique().items()
        }
    if "sample" not in alerts:
        alerts = alerts.assign(sample="model")
    rounds = []
    for rnd, at in alerts.sort_values(["round", "strategy", "seed"]).groupby("round"):
        items = []
        keys = ["strategy", "sample", "rule", "metrics"]
        for (s, smp, rule, metrics), g in at.groupby(keys, sort=False):
            who = (
                f"<span class='swatch' style='background:{colors.get(s, BASELINE)}'></span>"
                f"{html.escape(str(s))}: "
                if several
                else ""
            )
            seed = shown.get(str(s), int(g["seed"].min()))
            drawn = seed in set(g["seed"])
            row = g[g["seed"] == seed].iloc[0] if drawn else g.iloc[0]
            n = seeds.get(s, 1)
            share = f" ({g['seed'].nunique()} of {n} seeds)" if n > 1 else ""
            other = "" if drawn else "in other seeds, not the one drawn: "
            flagged = ", ".join(flagged_metrics(rule, metrics))
            items.append(
                f"<li class='alert-item' data-rule='{html.escape(rule)}' "
                f"data-strategy='{html.escape(str(s))}' data-sample='{html.escape(str(smp))}' "
                f"data-seed='{int(row['seed'])}' data-drawn='{int(drawn)}' "
                f"data-round='{int(rnd)}' data-metrics='{html.escape(flagged)}'>{who}"
                f"<span class='rule'>{html.escape(rule.replace('_', ' '))}</span>{other}"
                f"{html.escape(str(row['message']))}{share}</li>"
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
    capacity_section,
    mix_section,
    gate_section,
    judges_section,
    audits_section,
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
