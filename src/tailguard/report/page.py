"""The page: one self-contained HTML file (inline CSS and SVG, no script, no network),
its colour key and its sections in order."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from tailguard import __version__
from tailguard.palette import ALERT, BASELINE, HUMAN, SYNTHETIC_CMAP
from tailguard.report.data import ReportData
from tailguard.report.sections import SECTIONS

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
