"""The HTML report: one self-contained file a team opens from disk after every run.

It is built from tidy Arrow tables (:class:`ReportData`, :mod:`.data`), one row per
strategy, seed, round and measurement, so the same page serves a lab comparison (many
strategies and seeds) and a real project's ledger (one lineage: strategy = run name,
seed 0). What each chart draws is decided apart from drawing it (:mod:`.specs`); the
charts are matplotlib SVG inlined into the page (:mod:`.charts`), beside the tables
(:mod:`.tables`): no script, no network, no file beside it. The page (:mod:`.page`) is
a list of sections (:data:`SECTIONS`, :mod:`.sections`), one function each, so a new
section is one more function. Colours come from :mod:`tailguard.palette`, shared with
the terminal.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before any module of the package imports pyplot

from tailguard.report.charts import (  # noqa: E402
    AXIS_BARS,
    axes_chart,
    dial_chart,
    gate_chart,
    metric_charts,
    mix_charts,
)
from tailguard.report.data import ReportData, from_lab, from_ledger, reference_tables  # noqa: E402
from tailguard.report.page import colour_key, render, write  # noqa: E402
from tailguard.report.sections import (  # noqa: E402
    SECTION_TEXT,
    SECTIONS,
    alerts_section,
    audits_section,
    axes_section,
    capacity_section,
    dial_section,
    gaps_section,
    gate_section,
    judges_section,
    metrics_section,
    mix_section,
    quarantine_section,
    recommendation_section,
    rollbacks_section,
)
from tailguard.report.specs import (  # noqa: E402
    ALERT_MARGIN,
    KIND_ORDER,
    WATCHED,
    Y_MARGIN,
    MetricChart,
    Point,
    definition,
    dial_series,
    direction,
    flagged_metrics,
    metric_specs,
    shown_metrics,
    shown_seeds,
    y_range,
)
from tailguard.report.tables import AXES_COLUMNS, dial_table, money  # noqa: E402

__all__ = [
    "ALERT_MARGIN",
    "AXES_COLUMNS",
    "AXIS_BARS",
    "KIND_ORDER",
    "SECTIONS",
    "SECTION_TEXT",
    "WATCHED",
    "Y_MARGIN",
    "MetricChart",
    "Point",
    "ReportData",
    "alerts_section",
    "audits_section",
    "axes_chart",
    "axes_section",
    "capacity_section",
    "colour_key",
    "definition",
    "dial_chart",
    "dial_section",
    "dial_series",
    "dial_table",
    "direction",
    "flagged_metrics",
    "from_lab",
    "from_ledger",
    "gaps_section",
    "gate_chart",
    "gate_section",
    "judges_section",
    "metric_charts",
    "metric_specs",
    "metrics_section",
    "mix_charts",
    "mix_section",
    "money",
    "quarantine_section",
    "recommendation_section",
    "reference_tables",
    "render",
    "rollbacks_section",
    "shown_metrics",
    "shown_seeds",
    "write",
    "y_range",
]
