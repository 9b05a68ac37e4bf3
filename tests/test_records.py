import hashlib
import unicodedata

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailguard.errors import InputError
from tailguard.records import MANIFEST_SLOTS, SCHEMA, Manifest, content_id, make_records


def test_id_is_md5_of_whitespace_collapsed_nfc_text():
    text = "  Cafe\u0301   au\r\nlait \t"
    expected = unicodedata.normalize("NFC", "Cafe\u0301 au lait")
    assert content_id(text) == hashlib.md5(expected.encode()).hexdigest()
    assert len(content_id(text)) == 32  # 128 bits, hex


def test_composed_and_decomposed_accents_share_an_id():
    assert content_id("caf\u00e9") == content_id("cafe\u0301")


def test_different_words_differ():
    assert content_id("hello world") != content_id("hello  worlds")


@given(st.text(min_size=1), st.sampled_from([" ", "\n", "\t", "\r\n", "  "]))
def test_whitespace_runs_never_change_the_id(text, ws):
    if not text.strip():
        return
    spaced = ws + text.replace(" ", ws + ws) + ws
    assert content_id(spaced) == content_id(text.replace(" ", " "))


def test_make_records_fills_provenance_and_schema():
    t = make_records(
        ["a b", "c"],
        origin="synthetic",
        source="gen",
        generator="m0",
        generation=2,
        round=2,
        label=["x", None],
        parent_id=["p", None],
    )
    assert t.schema == SCHEMA
    row = t.to_pylist()[0]
    assert (row["origin"], row["generator"], row["generation"], row["status"]) == (
        "synthetic",
        "m0",
        2,
        "candidate",
    )
    assert make_records(["h"], origin="human", source="s").column("status")[0].as_py() == "accepted"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(origin="human", generator="m"),
        dict(origin="human", generation=1),
        dict(origin="synthetic", generation=0),
        dict(origin="alien"),
    ],
)
def test_inconsistent_provenance_is_refused(kwargs):
    with pytest.raises((InputError, ValueError)):
        make_records(["x"], source="s", **kwargs)


def _manifest(ids, batches, seed=0):
    slots = pa.table(
        {
            "batch": pa.array(batches, pa.int32()),
            "id": ids,
            "origin": ["human"] * len(ids),
            "generation": pa.array([0] * len(ids), pa.int32()),
            "label": [None] * len(ids),
        },
        schema=MANIFEST_SLOTS,
    )
    return Manifest(round=1, slots=slots, policy="p", params={"a": 1}, seed=seed)


def test_manifest_digest_covers_order_batches_and_header():
    base = _manifest(["a", "b", "c"], [0, 0, 1])
    assert base.digest == _manifest(["a", "b", "c"], [0, 0, 1]).digest
    assert base.digest != _manifest(["b", "a", "c"], [0, 0, 1]).digest
    assert base.digest != _manifest(["a", "b", "c"], [0, 1, 1]).digest
    assert base.digest != _manifest(["a", "b", "c"], [0, 0, 1], seed=1).digest
    # a string boundary shift must change the digest ("ab","c" vs "a","bc")
    assert _manifest(["ab", "c"], [0, 0]).digest != _manifest(["a", "bc"], [0, 0]).digest
    assert base.batches() == [["a", "b"], ["c"]]
    assert base.counts() == {"total": 3, "human": 3, "synthetic": 0}


@given(st.lists(st.text(max_size=12), min_size=1, max_size=40))
def test_ids_are_the_same_on_the_small_and_the_large_path(texts):
    """Small batches are hashed in Python, large ones in DuckDB: one id rule for both."""
    import tailguard.records as rec

    normal = rec.normalise_content(pa.array(texts))
    small = rec.content_ids(normal).to_pylist()
    copies = -(-rec.SMALL_BATCH // len(texts))
    big = rec.content_ids(pa.chunked_array([normal] * copies)).to_pylist()[: len(texts)]
    assert small == big
    keys = rec.content_keys(normal).to_pylist()
    assert small == [hashlib.md5(k.encode()).hexdigest() for k in keys]


def _scratch_query() -> None:
    from tailguard.ledger.scratch import scratch

    with scratch() as con:
        assert con.sql("SELECT 41 + 1").fetchall() == [(42,)]


def test_a_child_forked_while_the_scratch_lock_is_held_still_computes_ids() -> None:
    """The lab forks workers while other threads may be hashing ids: the child must not
    inherit a lock that nobody will release."""
    import multiprocessing as mp

    from tailguard.ledger import scratch

    _scratch_query()  # the parent has its own scratch database when it forks
    ctx = mp.get_context("fork")
    with scratch._SCRATCH_LOCK:
        child = ctx.Process(target=_scratch_query)
        child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0


@given(st.lists(st.text(alphabet=st.sampled_from("ab \t\n\x0b\x0c\r\u00a0\u2003é"), max_size=12),
                min_size=1, max_size=30))  # fmt: skip
def test_the_ledger_recomputes_the_ids_make_records_gives(texts):
    """The ledger's SQL check of stored content (byte search, regex only where needed)
    agrees with the ids computed at ingest, for every kind of whitespace."""
    import duckdb

    import tailguard.records as rec
    from tailguard.ledger import _SQL_CONTENT_ID

    normal = rec.normalise_content(pa.array(texts))
    con = duckdb.connect()
    con.register("t", pa.table({"content": normal}))
    in_sql = [r[0] for r in con.execute(f"SELECT {_SQL_CONTENT_ID} FROM t").fetchall()]
    assert in_sql == rec.content_ids(normal).to_pylist()
