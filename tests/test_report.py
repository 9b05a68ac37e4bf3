"""The HTML report, opened in a real headless Chromium: it renders, without console errors,
with every chart present. A screenshot is saved next to the report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import tiny_lab_run

from tailguard.advise import TaskProfile, advise
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
