"""The HTML report, opened in a real headless Chromium: it renders, without console errors,
with every chart present. A screenshot is saved next to the report."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from conftest import tiny_lab_run
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tailguard.advise import TaskProfile, advise, advise_from_lab
from tailguard.gate import Gate, NearDuplicate, Quality
from tailguard.lab.models import NGram
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix import Anchored, Dial
from tailguard.monitor import Monitor
from tailguard.report import from_ledger, render, write

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def project(fortunes_records, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("project") / "ledger.duckdb"
    with Ledger.open(path) as led:
        led.add_records(fortunes_records)
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        gate = Gate(
            [Quality(min_words=3), NearDuplicate(reference=led.reservoir_records("all"))],
            progress=False,
        )
        loop = Loop(
            led,
            train=lambda manifest, records: NGram(order=3).fit(records),
            generate=lambda m, n, r, s: m.sample(n, s, generation=max(r, 1), round=r),
            policy=Anchored(real_fraction=0.2),
            gate=gate,
            dial=Dial(watch=["tail_recall", "distinct_2"]),
            monitor=Monitor(),
            n_generate=400,
        )
        loop.run(rounds=3)
    return path


EXPECTED_CHARTS = {"metric-tail_recall", "metric-distinct_2", "mix-main", "gate", "dial"}


def test_report_from_a_ledger_has_every_section(project):
    with Ledger.open(project, read_only=True) as led:
        data = from_ledger(led)
    data.recommendation = advise(TaskProfile(task="general")).lines()
    page = render(data)
    for chart in EXPECTED_CHARTS:
        assert f'data-chart="{chart}"' in page
    assert "Recommendation" in page and "hybrid" in page
    assert not re.search(r"(src|href)=\"(https?:)?//|url\(http|@import", page)  # nothing fetched
    assert "<script" not in page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_report_renders_in_headless_chromium(project, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with Ledger.open(project, read_only=True) as led:
        data = from_ledger(led)
    data.recommendation = advise(TaskProfile(task="general")).lines()
    html_path = write(data, tmp_path / "report.html")
    errors: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(html_path.as_uri())
        charts = page.eval_on_selector_all(
            "figure.chart",
            "els => els.map(e => [e.dataset.chart, "
            "e.querySelector('svg').getBoundingClientRect().width])",
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert all(u.startswith("file://") for u in requests)
    drawn = {name for name, width in charts if width > 100}
    assert drawn >= EXPECTED_CHARTS
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_from_a_lab_comparison_has_axes_and_every_strategy(tmp_path):
    from tailguard.report import from_lab

    result = tiny_lab_run(
        model="ngram", strategies=("replace", "anchored_gated"), generations=2, n_generate=300
    )
    page = render(from_lab(result))
    for chart in ("axes", "metric-tail_recall", "mix-replace", "mix-anchored-gated", "gate"):
        assert f'data-chart="{chart}"' in page
    assert "exact_duplicate" in page or "near_duplicate<" in page  # rejection codes are listed


def test_report_command_writes_a_project_report(project, tmp_path):
    from typer.testing import CliRunner

    from tailguard.cli import app

    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", "--ledger", str(project), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert 'data-chart="mix-main"' in out.read_text()


# ------------------------------------------------------------------ reads at a glance
SHOTS = Path(__file__).resolve().parents[1] / "build" / "report-screenshots"

#: What the browser measures on a page: per chart its markers, x tick labels, band,
#: y label and line colours; the axes table's widths; the alert timeline; the key.
MEASURE = """() => {
  const rgb = c => getComputedStyle(c);
  const charts = [...document.querySelectorAll('figure.chart')].map(f => ({
    chart: f.dataset.chart,
    width: f.querySelector('svg').getBoundingClientRect().width,
    markers: f.querySelectorAll('g[id^="series-"] use').length,
    xticks: [...f.querySelectorAll('g[id^="xtick_"] text')].map(t => t.textContent.trim()),
    band: [...f.querySelectorAll('g[id^="band-"] path')].map(p => rgb(p).fill),
    // the share of the plot's height the band covers (its path is clipped to the plot)
    bandCover: (() => {
      const plot = f.querySelector('g[id^="axes_"] > g[id^="patch_"] path');
      const band = f.querySelector('g[id^="band-"] path');
      if (!plot || !band) return null;
      const p = plot.getBoundingClientRect(), b = band.getBoundingClientRect();
      return Math.max(0, Math.min(p.bottom, b.bottom) - Math.max(p.top, b.top)) / p.height;
    })(),
    baseline: f.querySelectorAll('g[id^="baseline-"]').length,
    ylabel: [...f.querySelectorAll('g[id^="ylabel-"] text')].map(t => t.textContent),
    lines: [...f.querySelectorAll('g[id^="series-"]')].map(g => [g.id,
      rgb(g.querySelector('path')).stroke]),
    human: [...f.querySelectorAll('g[id^="human-"] path')].map(p => rgb(p).fill),
    clean: f.querySelectorAll('g[id^="clean-"]').length,
    ringed: f.querySelectorAll('g[id^="alerted-"] use').length,
    caption: f.querySelector('figcaption').textContent,
    metric: f.dataset.metric || null,
    watched: f.dataset.watched === '1',
    bands: f.dataset.bands ? JSON.parse(f.dataset.bands) : null,
    points: f.dataset.points ? JSON.parse(f.dataset.points) : null,
    series: f.dataset.series ? JSON.parse(f.dataset.series) : null,
  }));
  const t = document.querySelector('#axes-table');
  const tl = document.querySelector('#alert-timeline');
  return {
    charts,
    table: t && {scroll: t.scrollWidth, client: t.clientWidth,
      headers: [...t.querySelectorAll('th')].map(h => h.textContent),
      cells: [...t.querySelectorAll('td')].map(c => c.textContent)},
    timeline: tl && [...tl.children].map(li => ({round: +li.dataset.round,
      align: getComputedStyle(li.querySelector('li')).textAlign,
      text: li.textContent})),
    recommendation: [...document.querySelectorAll('#recommendation strong, #recommendation li')]
      .map(e => e.textContent),
    alerts: [...document.querySelectorAll('li.alert-item')].map(li => ({
      rule: li.dataset.rule, strategy: li.dataset.strategy, sample: li.dataset.sample,
      seed: +li.dataset.seed, drawn: li.dataset.drawn === '1', round: +li.dataset.round,
      metrics: li.dataset.metrics.split(', ').filter(m => m), text: li.textContent})),
    capacity: !!document.querySelector('#capacity-table'),
  };
}"""


def _rgb(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i : i + 2], 16) for i in (0, 2, 4)))


def _measure(html_path: Path, shot: Path) -> dict:
    """Open the report in Chromium at 1,400 px, measure it, save a full-page PNG."""
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html_path.as_uri())
        found = page.evaluate(MEASURE)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert shot.stat().st_size > 10_000
    return found


def _check_glance(found: dict, *, strategies: list[str]) -> list[dict]:
    """What every report must show: returns the metric charts for further checks."""
    from tailguard.palette import HUMAN, strategy_colors

    colours = {s: _rgb(c) for s, c in strategy_colors(strategies).items()}
    metric_charts = [c for c in found["charts"] if c["chart"].startswith("metric-")]
    assert metric_charts, "no metric chart"
    for c in metric_charts:
        name = c["chart"].removeprefix("metric-")
        assert c["width"] > 300, c["chart"]
        assert c["markers"] >= len(strategies), (c["chart"], c["markers"])  # points, not only lines
        assert c["xticks"] and all(re.fullmatch(r"−?\d+", t) for t in c["xticks"]), c["xticks"]
        assert c["ylabel"] == [name]
        if c["watched"]:  # the band the monitor judges by; none where nothing alerts
            assert c["band"] and set(c["band"]) == {_rgb(HUMAN)}, (c["chart"], c["band"])
            assert 0 < c["bandCover"] < 0.9, (c["chart"], c["bandCover"])  # never all of it
        else:
            assert not c["band"], c["chart"]
        assert c["clean"] >= 1  # the clean model's line (round 0, or the first round)
        assert re.search(r"(higher is better|lower is better|two-sided)", c["caption"])
    for c in found["charts"]:  # one colour per strategy, never the human green
        for gid, stroke in c["lines"]:
            strategy = next(
                s for s in strategies if gid.endswith("-" + re.sub(r"[^a-z0-9]+", "-", s))
            )
            assert stroke == colours[strategy], (gid, stroke)
            assert stroke != _rgb(HUMAN)
        assert set(c["human"]) <= {_rgb(HUMAN)}
    return metric_charts


def _outside(value: float, band: dict) -> bool:
    low = -math.inf if band["low"] is None else band["low"]
    high = math.inf if band["high"] is None else band["high"]
    return not low <= value <= high


def _check_agreement(found: dict, *, watched: set[str]) -> None:
    """Alerts, band and words agree, read from the page: every alert's point lies outside
    its drawn band, every drawn point outside its band is alerted (and ringed), every
    watched or alerting metric has a chart, and no strategy the alerts flag at its last
    round is said to keep its tails."""
    charts = {c["metric"]: c for c in found["charts"] if c["metric"]}
    alerts = [a for a in found["alerts"] if a["sample"] == "model"]
    alerting = {m for a in alerts for m in a["metrics"]}
    assert watched | alerting <= set(charts), (watched | alerting) - set(charts)
    for m in watched | alerting:
        assert charts[m]["watched"] and charts[m]["band"], m
    named = set()
    for a in alerts:
        if not a["drawn"]:  # another seed's alert: it says so, and no point of it is drawn
            assert "in other seeds" in a["text"], a
            continue
        for m in a["metrics"]:
            named.add((a["strategy"], a["seed"], a["round"], m))
    outside = set()
    for m, c in charts.items():
        for strategy, seed, rnd, value, _, _ in c["points"]:
            band = c["bands"][strategy]
            if rnd != band["clean_round"] and _outside(value, band):
                outside.add((strategy, seed, rnd, m))
        ringed = sum(1 for p in c["points"] if (p[0], p[1], p[2], m) in named)
        assert c["ringed"] == ringed, (m, c["ringed"], ringed)
    assert named == outside, (named - outside, outside - named)
    words = " ".join(found["recommendation"])
    last = max((p[2] for c in charts.values() for p in c["points"]), default=0)
    for a in alerts:
        if a["drawn"] and a["round"] == last:
            assert f"{a['strategy']} kept its tails" not in words, (a, words)


def _watched(history, run: str) -> set[str]:
    from tailguard.lineage import lineage_monitor

    return set(lineage_monitor(history).bands(run))


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_a_project_report_draws_the_band_it_alerts_by(project, tmp_path):
    """A three-round project: the charts, the alerts and the words read as one."""
    with Ledger.open(project, read_only=True) as led:
        data = from_ledger(led)
        watched = _watched(led.metrics("main"), "main")
        audit = led.audit(run="main").to_pylist()
    data.recommendation = advise(TaskProfile(task="general")).lines()
    found = _measure(write(data, tmp_path / "report.html"), SHOTS / "project.png")
    _check_glance(found, strategies=["main"])
    assert watched >= {"tail_recall", "distinct_2", "label_js"}
    _check_agreement(found, watched=watched)
    # the dial chart's realised share is the audit's human share of every round
    dial = next(c for c in found["charts"] if c["chart"] == "dial")
    realised = {int(r): v for r, v in dial["series"]["main"]["realised"].items()}
    assert realised == {a["round"]: a["human_share"] for a in audit}
    asked = dial["series"]["main"]["asked"]
    assert set(map(int, asked)) == {a["round"] for a in audit if a["round"] >= 1}


def test_the_dial_table_shows_asked_realised_and_the_response(project):
    from tailguard.report import dial_table

    with Ledger.open(project, read_only=True) as led:
        data = from_ledger(led)
        audit = {a["round"]: a["human_share"] for a in led.audit(run="main").to_pylist()}
    table = dial_table(data)
    assert list(table.columns) == ["round", "real_fraction", "realised", "reason", "response"]
    for row in table.to_dict("records"):
        assert row["realised"] == pytest.approx(audit[row["round"]])
        assert f"realised {row['realised']:.0%} human" in row["reason"]
    page = render(data)
    assert "human share asked" in page and "human share realised" in page


def test_every_watched_metric_of_the_rich_preset_is_charted():
    """No cap hides a metric: the rich preset's PRDC recall, coverage and Vendi included."""
    import pyarrow as pa

    from tailguard.metrics import PRESETS
    from tailguard.report import ReportData, metric_specs

    rich = PRESETS["rich"]
    rows = [(r, m) for r in (0, 1) for m in rich.metrics]
    metrics = pa.table({
        "strategy": ["main"] * len(rows), "seed": [0] * len(rows),
        "round": [r for r, _ in rows], "metric": [m for _, m in rows],
        "value": [0.5] * len(rows), "higher_is_better": [True] * len(rows),
    })  # fmt: skip
    specs = metric_specs(ReportData(metrics=metrics))
    names = [s.metric for s in specs]
    assert set(names) == set(rich.metrics)
    assert {"prdc_recall", "prdc_coverage", "vendi"} <= set(names)


@pytest.fixture(scope="module")
def one_round_project(fortunes_records, tmp_path_factory) -> Path:
    """The quickstart: a frozen reservoir and a single `tailguard eval --round 1`."""
    import pyarrow.json  # noqa: F401
    from typer.testing import CliRunner

    from tailguard.cli import app

    root = tmp_path_factory.mktemp("one-round")
    path = root / "ledger.duckdb"
    with Ledger.open(path) as led:
        led.add_records(fortunes_records)
        led.freeze_reservoir("main", holdout=0.1, seed=0)
    model = NGram(order=3).fit(fortunes_records)
    sample = model.sample(400, 1, generation=1, round=1)
    samples = root / "outputs1.jsonl"
    samples.write_text(
        "".join(
            json.dumps({"text": t, "topic": lab})
            for t, lab in zip(
                sample["content"].to_pylist(), sample["label"].to_pylist(), strict=True
            )
        ).replace("}{", "}\n{")
        + "\n"
    )
    result = CliRunner().invoke(
        app,
        ["eval", "--round", "1", "--samples", str(samples), "--label-field", "topic",
         "--ledger", str(path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_a_one_round_project_report_reads_at_a_glance(one_round_project, tmp_path):
    """One evaluated round: every metric chart shows its point, whole-number rounds, the
    baseline and the noise-floor band, the direction; the recommendation is the CLI's."""
    from typer.testing import CliRunner

    from tailguard.cli import app

    out = tmp_path / "report.html"
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--ledger", str(one_round_project), "-o", str(out)])
    assert result.exit_code == 0, result.output
    found = _measure(out, SHOTS / "one-round-project.png")
    charts = _check_glance(found, strategies=["main"])
    assert len(charts) >= 6
    for c in charts:
        assert c["markers"] == 1  # one round, one point
        assert c["xticks"] == ["1"]
    # the same words `tailguard advise --ledger` prints
    cli = runner.invoke(app, ["advise", "--ledger", str(one_round_project)])
    assert cli.exit_code == 0, cli.output
    words = " ".join(cli.output.replace("•", " ").split())  # the terminal wraps long lines
    assert " ".join(" ".join(found["recommendation"]).split()) == words
    # the headline says what the monitor says: alerts (exit 1) or none (exit 0)
    alerting = runner.invoke(app, ["monitor", "--ledger", str(one_round_project)]).exit_code
    assert alerting in (0, 1)
    assert re.match(r"\d+ active alert" if alerting else "no active alerts", words), words


@pytest.fixture(scope="module")
def lab_report(tmp_path_factory) -> tuple[Path, list[str]]:
    from tailguard.report import from_lab

    result = tiny_lab_run(
        model="ngram",
        strategies=("replace", "anchored_gated"),
        generations=4,
        n_generate=300,
        seeds=2,
    )
    data = from_lab(result)
    data.recommendation = advise_from_lab(
        advise(TaskProfile(task="general")), result.axes, alerts=result.alerts,
        generations=result.config.generations,
    ).lines()  # fmt: skip
    path = write(data, tmp_path_factory.mktemp("lab") / "report.html")
    watched = set()
    for run in set(result.ledger_metrics["run"].to_pylist()):
        watched |= _watched(result.ledger_metrics, run)
    return path, sorted(result.axes["strategy"].to_pylist()), watched


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_a_lab_report_reads_at_a_glance(lab_report):
    """Several strategies and seeds: a point per strategy and round, each strategy in its
    palette colour, the axes table inside 1,400 px with money as money, alerts by round."""
    path, strategies, watched = lab_report
    found = _measure(path, SHOTS / "lab.png")
    charts = _check_glance(found, strategies=strategies)
    _check_agreement(found, watched=watched)
    assert any(a["drawn"] for a in found["alerts"])  # replace collapses: the check has teeth
    assert any("lab evidence" in line for line in found["recommendation"])
    for c in charts:
        assert c["markers"] == len(strategies) * 5  # rounds 0..4
        assert c["xticks"] == [str(r) for r in range(5)]
    table = found["table"]
    assert table["scroll"] <= table["client"], table
    assert "data cost" in table["headers"] and "fidelity_loss" not in table["headers"]
    assert any(re.fullmatch(r"\$\d{1,3}(,\d{3})*(\.\d\d)?", cell) for cell in table["cells"])
    timeline = found["timeline"]
    if timeline:  # alerts, earliest round first, left-aligned
        rounds = [t["round"] for t in timeline]
        assert rounds == sorted(set(rounds))
        assert {t["align"] for t in timeline} <= {"left", "start"}
        assert not any(
            re.search(r"[+-]\d{4,}(,\d{3})*\.\d%|\d{4,}\.\d%", t["text"]) for t in timeline
        )


def test_a_vector_lab_report_has_metric_curves_and_numeric_verifiers():
    """A Gaussian lab has vector metrics: each gets a chart; no text verifier is suggested."""
    from tailguard.advise import NUMERIC_GATE, fit_gate_to_data
    from tailguard.report import from_lab

    result = tiny_lab_run(model="gaussian", strategies=("replace", "anchored"), generations=2)
    page = render(from_lab(result))
    for metric in ("vector_tail_lower", "vector_tail_upper", "vector_variance_ratio"):
        assert f'data-chart="metric-{metric}"' in page
    assert "closer to 1 is better" in page  # the two-sided variance ratio
    advice = fit_gate_to_data(advise(TaskProfile()), result.config.dataset.kind)
    assert advice.gate == NUMERIC_GATE
    assert not {"near_duplicate", "rules", "quality"} & set(advice.gate)
    text = fit_gate_to_data(advise(TaskProfile()), "text")
    assert "near_duplicate" in text.gate


def test_alerts_are_kept_per_round_and_changes_on_a_tiny_base_are_absolute():
    import pyarrow as pa

    from tailguard.mix.dial import describe_change
    from tailguard.monitor import Monitor

    assert describe_change(0.9, 1.0) == "-10.0%"
    assert describe_change(0.0172, 0.001) == "+0.0162 (absolute)"  # not +1,620%
    assert describe_change(3.0, 1.0) == "+2 (absolute)"
    rows = [  # tail_recall falls at round 1, recovers at 2, falls again at 3
        (0, "noise_floor", 0.95), (0, "model", 0.95), (1, "model", 0.5), (2, "model", 0.95),
        (3, "model", 0.4),
    ]  # fmt: skip
    history = pa.table({
        "run": ["main"] * 4 + ["main"], "round": pa.array([r for r, _, _ in rows], pa.int32()),
        "sample": [s for _, s, _ in rows], "metric": ["tail_recall"] * 5,
        "value": [v for _, _, v in rows], "higher_is_better": [True] * 5,
    })  # fmt: skip
    alerts = Monitor.from_history(history).alert_history("main").to_pylist()
    assert sorted({a["round"] for a in alerts}) == [1, 3]
    threshold = [a["message"] for a in alerts if a["rule"] == "threshold"]
    assert threshold and all("%" in m or "absolute" in m for m in threshold)


def test_money_reads_as_money():
    from tailguard.report import money

    assert money(1234.4) == "$1,234"
    assert money(23.583) == "$23.58"
    assert money(110.7) == "$110.70"  # a round's cost as the CLI and the advisor quote it
    assert money(float("inf")) == "n/a"


def test_the_terminal_table_uses_the_report_palette(monkeypatch):
    from rich.console import Console

    from tailguard.cli import lab_cmds
    from tailguard.palette import strategy_colors

    result = tiny_lab_run(model="gaussian", strategies=("replace", "anchored"), generations=1)
    console = Console(record=True, force_terminal=True, color_system="truecolor", width=200)
    monkeypatch.setattr(lab_cmds, "console", console)
    lab_cmds.print_lab_result(result)
    out = console.export_text(styles=True)
    for strategy, colour in strategy_colors(result.axes["strategy"].to_pylist()).items():
        r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert f"38;2;{r};{g};{b}m{strategy}" in out


@settings(max_examples=200, deadline=None)
@example(values=[5e-324], baseline=0.0, slack=0.001, hib=None)  # a denormal spread
@given(
    values=st.lists(st.floats(0, 1), min_size=1, max_size=20),
    baseline=st.floats(0, 1),
    slack=st.floats(0.001, 0.5),
    hib=st.sampled_from([True, False, None]),
)
def test_a_metric_chart_shows_its_curve_baseline_and_alert_edge(values, baseline, slack, hib):
    """The curve, the baseline and the band's edge where alerts start are always in view
    with room past them, so the band never fills the chart."""
    from tailguard.report import y_range

    lo, hi = max(baseline - slack, 0.0), baseline + slack
    bottom, top = y_range(values, (baseline, lo, hi), hib)
    assert bottom < min(*values, baseline) <= max(*values, baseline) < top
    if hib is not False:  # higher is better: alerts start below the band
        assert bottom < lo
    if hib is not True:
        assert hi < top


def test_a_band_far_wider_than_the_curve_leaves_the_curve_readable():
    """label_js: a 0.05 absolute threshold around a 0.006 baseline, a curve 0.012 -> 0.03.
    Earlier the band filled the whole chart; now the curve spans a readable share."""
    from tailguard.report import y_range

    values = [0.012, 0.015, 0.02, 0.03]
    bottom, top = y_range(values, (0.006, 0.0, 0.056), False)
    assert (max(values) - min(values)) / (top - bottom) > 0.25
    assert (0.056 - max(bottom, 0.0)) / (top - bottom) < 0.85


def test_a_lab_lineage_without_capacity_gaps_joins_the_others():
    """Tables tagged per strategy and seed keep their types when empty (a lineage with no
    capacity gap beside one with gaps)."""
    import pyarrow as pa

    from tailguard.report.data import _tag

    full = _tag(pa.table({"metric": ["tail_recall"]}), {"strategy": "replace", "seed": 0})
    empty = _tag(full.schema.empty_table().drop_columns(["strategy", "seed"]),
                 {"strategy": "human-only", "seed": 1})  # fmt: skip
    assert pa.concat_tables([full, empty]).num_rows == 1


@pytest.fixture(scope="module")
def collapsing_project(fortunes_records, tmp_path_factory) -> Path:
    """A project that collapses: 600 fortunes, 1,500 candidates a round at temperature 0.5."""
    path = tmp_path_factory.mktemp("collapsing") / "ledger.duckdb"
    with Ledger.open(path) as led:
        led.add_records(fortunes_records.slice(0, 600))
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        Loop(
            led,
            train=lambda manifest, records: NGram(order=3, temperature=0.5).fit(records),
            generate=lambda m, n, r, s: m.sample(n, s, generation=max(r, 1), round=r),
            policy=Anchored(real_fraction=0.2),
            dial=Dial(),
            monitor=Monitor(),
            n_generate=1500,
            n_sample=500,
        ).run(rounds=3)
    return path


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_a_collapsing_project_report_alerts_exactly_outside_its_bands(collapsing_project, tmp_path):
    """With real alerts: every alerted point is outside its drawn band, every point outside
    is alerted and ringed, and the recommendation raises the share it names."""
    from tailguard.advise import recommendation_lines

    with Ledger.open(collapsing_project, read_only=True) as led:
        data = from_ledger(led)
        watched = _watched(led.metrics("main"), "main")
        data.recommendation = recommendation_lines(led)
    found = _measure(write(data, tmp_path / "report.html"), SHOTS / "collapsing.png")
    _check_glance(found, strategies=["main"])
    assert [a for a in found["alerts"] if a["drawn"]], "the collapsing project raised no alert"
    _check_agreement(found, watched=watched)
    assert "active alert(s)" in data.recommendation[0] and "raise" in data.recommendation[0]


def test_unlabelled_training_slots_are_named_by_audit_and_report(fortunes_records, tmp_path):
    """A model that writes texts without labels: every synthetic slot of a round is
    unlabelled; `audit` and the report say how many and what share, per round."""
    from typer.testing import CliRunner

    from tailguard.cli import app

    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as led:
        led.add_records(fortunes_records.slice(0, 400))
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        loop = Loop(
            led,
            train=lambda manifest, records: NGram(order=2).fit(records),
            generate=lambda m, n, r, s: m.sample(n, s, generation=max(r, 1), round=r)[
                "content"
            ].to_pylist(),  # texts only: no labels
            policy=Anchored(real_fraction=0.5),
            n_generate=60,
            batch_size=16,
        )
        loop.run(rounds=2)
        summary = led.round_summary("main").to_pylist()
        page = render(from_ledger(led))
    assert [r["unlabelled"] for r in summary] == [0] + [r["synthetic"] for r in summary[1:]]
    assert summary[1]["unlabelled"] > 0
    out = CliRunner().invoke(app, ["audit", "--json", "--ledger", str(path)])
    rows = json.loads(out.output)["rounds"]
    assert [r["unlabelled"] for r in rows] == [r["unlabelled"] for r in summary]
    assert rows[1]["unlabelled_share"] == pytest.approx(summary[1]["unlabelled"] / rows[1]["total"])
    text = CliRunner().invoke(app, ["audit", "--ledger", str(path)], terminal_width=250).output
    r1 = summary[1]
    assert f"{r1['unlabelled']:,} ({r1['unlabelled'] / r1['total']:.1%})" in text
    note = re.search(r"<p class='muted' id='unlabelled'>(.*?)</p>", page)
    assert note is not None
    assert f"round 1: {r1['unlabelled']:,} of {r1['total']:,}" in note.group(1)
    assert "round 0" not in note.group(1)  # a round with every slot labelled is not named
