"""Screening "human" data for model-written text, with planted n-gram output."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailguard.errors import InputError
from tailguard.ledger import Ledger
from tailguard.records import content_ids, normalise_content
from tailguard.screen import Screen, Screener, screen_ledger


def _words_only(texts: pa.Array) -> pa.Array:
    """A model may write an empty line; ingest refuses those, so the test plants words."""
    texts = pa.array(texts).cast(pa.string())
    return texts.filter(
        pa.compute.greater(pa.compute.utf8_length(pa.compute.utf8_trim_whitespace(texts)), 0)
    )


@pytest.fixture(scope="module")
def planted(fortunes_records):
    """A ledger of 3,000 human fortunes and 1,500 n-gram ones (generation 1), and a new
    "human" batch: 400 unseen fortunes with 100 planted n-gram texts (another seed)."""
    from tailguard.lab.models import NGram

    rng = np.random.default_rng(0)
    rows = rng.permutation(fortunes_records.num_rows)
    human = fortunes_records.take(pa.array(rows[:3000]))
    fresh = fortunes_records.take(pa.array(rows[3000:3400]))
    lm = NGram(order=3).fit(human)
    led = Ledger.open(":memory:")
    led.add_records(human)
    texts = _words_only(lm.sample_texts(1500, seed=1)[0])
    led.ingest(
        pa.table({"text": texts}),
        origin="synthetic",
        generator="ngram",
        generation=1,
        round=1,
        source_name="ngram",
    )
    planted_texts = _words_only(lm.sample_texts(100, seed=2)[0])
    incoming = pa.table(
        {
            "text": pa.concat_arrays(
                [fresh["content"].combine_chunks(), planted_texts.cast(pa.string())]
            )
        }
    )
    result = led.ingest(incoming, origin="human", round=1, source_name="incoming")
    ids = content_ids(normalise_content(incoming["text"]))
    truth = dict(zip(ids.to_pylist(), [False] * 400 + [True] * len(planted_texts), strict=True))
    assert result.total > 0
    return led, truth


def test_planted_model_text_is_found_at_the_reported_threshold(planted):
    led, truth = planted
    ids = list(truth)
    screener = Screener(precision=0.9)
    flagged = screen_ledger(led, ids, screener)
    fit = screener.fit_
    assert fit.auc > 0.85 and set(fit.auc_by_generator) == {"ngram"}
    hit = set(flagged["id"].to_pylist())
    planted_ids = {i for i, model in truth.items() if model}
    recall = len(hit & planted_ids) / len(planted_ids)
    precision = len(hit & planted_ids) / max(1, len(hit))
    # the held-in estimate from cross-validation carries over to unseen records
    assert recall >= 0.5 and recall == pytest.approx(fit.recall, abs=0.2)
    assert precision >= 0.6
    # quarantined, kept, never frozen
    q = led.quarantined()
    assert set(q["id"].to_pylist()) == hit
    assert set(q["code"].to_pylist()) <= {"copies_synthetic", "model_written"}
    led.freeze_reservoir()
    frozen = set(led.reservoir_records("all")["id"].to_pylist())
    assert not (frozen & hit) and len(frozen) >= 3000
    assert led.count(origin="human", status="quarantined") == len(hit)


def test_a_copy_of_a_synthetic_record_names_it_and_its_generation(planted):
    led, _ = planted
    synthetic = led.records(origin="synthetic")
    copy = synthetic["content"][0].as_py()
    screener = Screener().fit(led)
    out = screener.screen(pa.table({"id": ["x"], "content": [copy]}))
    assert out["code"].to_pylist() == ["copies_synthetic"]
    assert out["matched_id"][0].as_py() == synthetic["id"][0].as_py()
    assert "generation 1" in out["detail"][0].as_py()
    assert Screen(screener=screener).verify(pa.table({"id": ["x"], "content": [copy]}))[
        "code"
    ].to_pylist() == ["copies_synthetic"]


def test_release_is_explicit_and_logged(fortunes_records):
    led = Ledger.open(":memory:")
    led.add_records(fortunes_records.slice(0, 50))
    some = led.records(origin="human")["id"][:3].to_pylist()
    flagged = pa.table(
        {
            "id": some,
            "code": ["model_written"] * 3,
            "detail": ["d"] * 3,
            "score": [0.9] * 3,
            "matched_id": pa.nulls(3, pa.string()),
        }
    )
    assert led.quarantine(flagged) == 3
    with pytest.raises(InputError):
        led.quarantine(flagged)  # already quarantined: nothing changes
    assert led.release_quarantined(some[:1]) == 1
    assert led.count(origin="human", status="quarantined") == 2
    log = led.quarantine_log()
    assert pc.sum(pc.equal(log["action"], "release")).as_py() == 1 and log.num_rows == 4
    pool_ids = set(led.freeze_reservoir().train_ids.to_pylist()) | set(
        led.reservoir().holdout_ids.to_pylist()
    )
    assert some[0] in pool_ids and not (set(some[1:]) & pool_ids)


def test_screening_frozen_members_never_changes_them(fortunes_records):
    """Members that copy synthetic text (the near-duplicate check would flag them) are
    reported as frozen and keep their status; the reservoir still verifies."""
    from tailguard.lab.models import NGram

    human = fortunes_records.slice(0, 600)
    led = Ledger.open(":memory:")
    led.add_records(human)
    lm = NGram(order=3).fit(human)
    syn = _words_only(lm.sample_texts(300, seed=1)[0])
    led.ingest(
        pa.table({"text": syn}),
        origin="synthetic",
        generator="ngram",
        generation=1,
        round=1,
        source_name="ngram",
    )
    copies = syn.slice(0, 40)
    led.ingest(pa.table({"text": copies}), origin="human", round=0, source_name="copies")
    res = led.freeze_reservoir("main", holdout=0.2)
    ids = content_ids(normalise_content(copies))
    assert pc.all(pc.is_in(ids, value_set=pa.concat_arrays([res.train_ids, res.holdout_ids])))
    before = led.count(origin="human", status="quarantined")
    flagged = screen_ledger(led, ids, Screener())
    assert flagged.num_rows == 0
    assert led.count(origin="human", status="quarantined") == before
    assert led.reservoir().digest == res.digest


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("precision", float("nan")),
        ("precision", float("inf")),
        ("precision", 1.5),
        ("precision", 0.0),
        ("threshold", float("nan")),
        ("threshold", -0.1),
        ("near_threshold", float("nan")),
        ("near_threshold", 2.0),
    ],
)
def test_screen_options_are_finite_and_in_range(option, value):
    with pytest.raises(InputError, match="finite number in"):
        Screener(**{option: value})
