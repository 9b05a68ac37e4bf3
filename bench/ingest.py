"""Ingest speed: tailguard's ledger (JSONL and Parquet) against SQLite ``executemany``
and against DuckDB's own insert of the same rows from Arrow.

Both sides do the same work per record, from the same file: read it, normalise
the text, compute its 128-bit content id (MD5), and store it with its label and
provenance. SQLite gets its fastest documented path: the file read by pyarrow's
columnar reader (``pyarrow.parquet.read_table``, ``pyarrow.json.read_json``),
one transaction, one ``executemany`` fed by a generator, no index, journal and
sync off.
The second peer is the floor under tailguard's own store: DuckDB's own insert
reading the SAME file (``read_parquet`` / ``read_json``) into a fresh ledger file by
one ``INSERT ... SELECT`` that normalises the text and computes the MD5 id in SQL,
on every core (open, insert, commit, close timed, as for tailguard). Its ratio to
tailguard's ingest of that format is the target for Parquet (>= 0.9).

    python bench/ingest.py            # 1,000,000 records
    python bench/ingest.py --quick    # 100,000 records

Every side is warmed up on a 1,000-record file first, then the sides run in turn
(``--repeat`` times each, default 3) into a fresh store, so a busy machine hurts
them alike; best and median wall times are printed with the load average, and the
CPU seconds (all threads) of the best run: they barely move with load. The run
ends by checking that both sides computed the same content ids.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import resource
import sqlite3
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json
import pyarrow.parquet as pq
from _timing import Run, alternate, load_average

from tailguard.ledger import Ledger

WORDS = np.array(
    "the of and to in is was for on that with as by at from his her an which are be this "
    "anchor model data human tail rare class round batch drift gate verify sample label "
    "cat dog ocean river music quiet bright cold warm fast slow old new".split()
)


def make_rows(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 14, n)
    words = WORDS[rng.integers(0, len(WORDS), lengths.sum())]
    cuts = np.cumsum(lengths)[:-1]
    texts = [" ".join(chunk) + f" {i}" for i, chunk in enumerate(np.split(words, cuts))]
    labels = np.char.add("class-", rng.zipf(1.6, n).clip(max=200).astype(str))
    return pa.table({"text": texts, "label": labels})


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_rows(src: Path) -> pa.Table:
    """The peer's reader: pyarrow's columnar reader for the file's format."""
    if src.suffix == ".parquet":
        return pq.read_table(src, columns=["text", "label"])
    return pyarrow.json.read_json(src)


def sqlite_ingest(src: Path, path: Path) -> None:
    path.unlink(missing_ok=True)
    rows = read_rows(src)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute(
        "CREATE TABLE records (id TEXT, content TEXT, origin TEXT, source TEXT, label TEXT, "
        "round INTEGER, status TEXT)"
    )
    ws = re.compile(r"\s+")
    texts, labels = rows["text"].to_pylist(), rows["label"].to_pylist()

    def data() -> Iterator[tuple]:
        for text, label in zip(texts, labels, strict=True):
            norm = unicodedata.normalize("NFC", text).strip()
            cid = hashlib.md5(ws.sub(" ", norm).encode()).hexdigest()
            yield cid, norm, "human", "bench", label, 0, "accepted"

    with con:
        con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", data())
    con.close()


def ledger_ingest(path: Path, db: Path) -> int:
    db.unlink(missing_ok=True)
    with Ledger.open(db) as led:
        return led.ingest(path, origin="human", source_name="bench", label_field="label").added


def duckdb_insert(src: Path, db: Path) -> int:
    """DuckDB's own path from the same file: read, normalise and hash in one statement."""
    db.unlink(missing_ok=True)
    reader = "read_parquet" if src.suffix == ".parquet" else "read_json"
    with Ledger.open(db) as led:
        led.con.begin()
        n = led.con.execute(
            "INSERT INTO records (id, content, origin, source, generator, generation, "
            "parent_id, label, round, status, created_at, meta) "
            "SELECT md5(regexp_replace(c, '\\s+', ' ', 'g')), c, 'human', 'bench', NULL, 0, "
            "NULL, label, 0, 'accepted', now(), NULL FROM (SELECT regexp_replace("
            "nfc_normalize(replace(text, chr(13) || chr(10), chr(10))), '^\\s+|\\s+$', '', 'g') "
            f"AS c, label::VARCHAR AS label FROM {reader}(?))",
            [str(src)],
        ).fetchall()[0][0]
        led.con.commit()
    return n


def with_cpu(fn: Callable[[], object]) -> Run:
    """A timed run that also reports its CPU seconds (all threads) with its result."""

    def run() -> tuple[float, tuple[float, object]]:
        wall, cpu = time.perf_counter(), cpu_seconds()
        out = fn()
        return time.perf_counter() - wall, (cpu_seconds() - cpu, out)

    return run


def write_files(rows: pa.Table, tmpdir: Path, stem: str) -> None:
    pq.write_table(rows, tmpdir / f"{stem}.parquet")
    rows.to_pandas().to_json(tmpdir / f"{stem}.jsonl", orient="records", lines=True)


def sides(tmpdir: Path, stem: str) -> dict[str, Callable[[], object]]:
    """Every side's run over the files named ``stem``, each into its own fresh store."""
    out: dict[str, Callable[[], object]] = {}
    for fmt in ("parquet", "jsonl"):
        src = tmpdir / f"{stem}.{fmt}"
        out[f"tailguard ({fmt})"] = partial(ledger_ingest, src, tmpdir / f"{stem}-{fmt}.duckdb")
        out[f"sqlite ({fmt})"] = partial(sqlite_ingest, src, tmpdir / f"{stem}-{fmt}.sqlite")
        out[f"duckdb insert ({fmt})"] = partial(duckdb_insert, src, tmpdir / f"{stem}-{fmt}.db")
    return out


def ids_of(db: Path) -> list[str]:
    """A store's content ids, sorted (a ledger file or the SQLite peer's)."""
    if db.suffix == ".sqlite":
        peer = sqlite3.connect(db)
        ids = [row[0] for row in peer.execute("SELECT id FROM records ORDER BY id")]
        peer.close()
        return ids
    with Ledger.open(db, read_only=True) as led:
        return led.con.execute("SELECT id FROM records ORDER BY id").fetchnumpy()["id"].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side, alternated")
    args = parser.parse_args()
    n = 100_000 if args.quick else args.n
    rows = make_rows(n)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        write_files(rows, tmpdir, "rows")
        write_files(make_rows(1000, seed=1), tmpdir, "warm")
        warm = sides(tmpdir, "warm")
        timed = sides(tmpdir, "rows")
        runs = alternate({k: with_cpu(v) for k, v in timed.items()}, args.repeat, warm_up=warm)
        for name, r in runs.items():
            if not name.startswith("sqlite"):
                added = r.best_value[1]
                assert added == n, f"{name}: expected {n} new records, got {added}"
        ours = ids_of(tmpdir / "rows-parquet.duckdb")
        for peer in ("rows-parquet.sqlite", "rows-parquet.db", "rows-jsonl.db"):
            assert ids_of(tmpdir / peer) == ours, f"content ids differ from {peer}'s"
    print(
        f"ingest of {n:,} short labelled texts from the same file (hashing included), "
        f"best / median of {args.repeat} alternated runs, load average {load_average()}"
    )
    for name, r in runs.items():
        fmt = "jsonl" if "jsonl" in name else "parquet"
        peer = runs[f"sqlite ({fmt})"].best
        cpu = r.best_value[0]
        print(
            f"  {name:<25} {r.span()} s  {n / r.best:>11,.0f} records/s  "
            f"{peer / r.best:5.2f}x sqlite ({fmt})  ({cpu:.2f} CPU s)"
        )
    for fmt in ("parquet", "jsonl"):
        ratio = runs[f"duckdb insert ({fmt})"].best / runs[f"tailguard ({fmt})"].best
        target = f" (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})"
        print(
            f"tailguard ({fmt}) runs at {ratio:.2f} of DuckDB's own insert from the same file"
            + (target if fmt == "parquet" else "")
        )
    jsonl = runs["tailguard (jsonl)"].best / runs["tailguard (parquet)"].best
    print(
        f"tailguard's JSONL ingest takes {jsonl:.2f}x its Parquet ingest "
        f"(target <= 1.5: {'met' if jsonl <= 1.5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
