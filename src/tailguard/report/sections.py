"""The page's sections, top to bottom (:data:`SECTIONS`): one function each, returning
its HTML (or "" when it has nothing to show), so a new section is one more function."""

from __future__ import annotations

import html
import re
from typing import Any

import pandas as pd

from tailguard.palette import BASELINE
from tailguard.report.charts import (
    _slug,
    axes_chart,
    dial_chart,
    gate_chart,
    metric_charts,
    mix_charts,
)
from tailguard.report.data import ReportData
from tailguard.report.specs import flagged_metrics, shown_seeds
from tailguard.report.tables import AXES_COLUMNS, _share, _table, dial_table

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
