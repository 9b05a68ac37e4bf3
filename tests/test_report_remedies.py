"""The report shows the remedies when a ledger has them: gaps filled per label, judges'
pass rates and reasons, rollbacks and quarantined records; checked in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from tailguard.gate import Gate, Judge, Quality
from tailguard.lab.models import NGram
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix.gaps import FillGaps
from tailguard.report import from_ledger, render, write

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECTIONS = ("judges", "gaps", "rollbacks", "quarantined")


def long_enough(texts: list[str]) -> tuple[list[float], list[str]]:
    """A policy checker: lines of at least eight words are on-policy."""
    n = [len(t.split()) for t in texts]
    return [min(1.0, k / 8) for k in n], [f"{k} words" for k in n]


@pytest.fixture(scope="module")
def ledger_with_remedies(fortunes_records, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("remedies") / "ledger.duckdb"
    with Ledger.open(path) as led:
        led.add_records(fortunes_records.slice(0, 800))
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        loop = Loop(
            led,
            train=lambda manifest, records: NGram(order=2).fit(records),
            generate=lambda m, n, r, s: m.sample(n, s, generation=max(r, 1), round=r),
            policy=FillGaps(target="median"),
            gate=Gate([Quality(min_words=2), Judge(long_enough, threshold=1.0)], progress=False),
            n_generate=200,
        )
        loop.run(2)
        led.rollback(1, reason="tails fell")
        fresh = fortunes_records.slice(900, 3)  # an incoming "human" batch, screened
        led.add_records(fresh)
        human = fresh
        led.quarantine(
            pa.table(
                {
                    "id": human["id"],
                    "code": ["model_written"] * 3,
                    "detail": ["detector score 0.97"] * 3,
                    "score": [0.97] * 3,
                    "matched_id": pa.nulls(3, pa.string()),
                }
            )
        )
    return path


def test_every_remedy_has_its_section_with_its_rows(ledger_with_remedies):
    with Ledger.open(ledger_with_remedies, read_only=True) as led:
        data = from_ledger(led)
        n_rolled = led.rollbacks()["quarantined"][0].as_py()
    gaps = data.frame("gaps")
    assert set(gaps["round"]) == {1, 2} and (gaps["filled"] <= gaps["gap"]).all()
    assert gaps["filled"].sum() > 0
    judges = data.frame("judges")
    assert (
        set(judges["verifier"]) == {"long_enough"} and (judges["passed"] < judges["records"]).all()
    )
    reasons = data.frame("judge_reasons")
    assert reasons["reason"].str.fullmatch(r"\d words").all()  # the score is not in the reason
    assert data.frame("rollbacks")["rounds"].tolist() == ["2"]
    q = data.frame("quarantined")
    assert (q["origin"] == "human").sum() == 3
    assert (q["origin"] == "synthetic").sum() == n_rolled > 0
    assert set(q["code"]) == {"model_written", "rolled_back"}
    page = render(data)
    for sid in SECTIONS:
        assert f"<section id='{sid}'>" in page


def test_a_ledger_without_remedies_shows_none_of_their_sections(frozen):
    page = render(from_ledger(frozen))
    for sid in SECTIONS:
        assert f"<section id='{sid}'>" not in page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_the_browser_sees_the_remedy_tables(ledger_with_remedies, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with Ledger.open(ledger_with_remedies, read_only=True) as led:
        html_path = write(from_ledger(led), tmp_path / "report.html")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html_path.as_uri())
        seen = page.evaluate(
            """ids => Object.fromEntries(ids.map(id => {
                const s = document.getElementById(id);
                const rows = s ? s.querySelectorAll('tbody tr').length : -1;
                const h = s ? s.getBoundingClientRect().height : 0;
                return [id, [rows, h]];
            }))""",
            list(SECTIONS),
        )
        browser.close()
    assert errors == []
    for sid, (rows, height) in seen.items():
        assert rows > 0 and height > 50, (sid, rows, height)
