"""Ingest speed: tailguard's ledger (JSONL and Parquet) against SQLite ``executemany``.

Both sides do the same work per record: normalise the text, compute its 128-bit
content id (MD5), and store it with its label and provenance. SQLite gets its
fastest documented path: one transaction, ``executemany``, no index, WAL off.

    python bench/ingest.py            # 1,000,000 records
    python bench/ingest.py --quick    # 100,000 records
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sqlite3
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json  # noqa: F401
import pyarrow.parquet as pq

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


def sqlite_ingest(rows: pa.Table, path: Path) -> float:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute(
        "CREATE TABLE records (id TEXT, content TEXT, origin TEXT, source TEXT, label TEXT, "
        "round INTEGER, status TEXT)"
    )
    start = time.perf_counter()
    ws = re.compile(r"\s+")
    texts, labels = rows["text"].to_pylist(), rows["label"].to_pylist()
    data = []
    for text, label in zip(texts, labels, strict=True):
        norm = unicodedata.normalize("NFC", text).strip()
        cid = hashlib.md5(ws.sub(" ", norm).encode()).hexdigest()
        data.append((cid, norm, "human", "bench", label, 0, "accepted"))
    with con:
        con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", data)
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def ledger_ingest(path: Path, db: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with Ledger.open(db) as led:
        res = led.ingest(path, origin="human", source_name="bench", label_field="label")
    return time.perf_counter() - start, res.added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    args = parser.parse_args()
    n = 100_000 if args.quick else args.n
    rows = make_rows(n)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        pq.write_table(rows, tmpdir / "rows.parquet")
        rows.to_pandas().to_json(tmpdir / "rows.jsonl", orient="records", lines=True)
        results = {}
        for fmt in ("parquet", "jsonl"):
            secs, added = ledger_ingest(tmpdir / f"rows.{fmt}", tmpdir / f"{fmt}.duckdb")
            assert added == n, f"expected {n} new records, got {added}"
            results[f"tailguard ({fmt})"] = secs
        results["sqlite executemany"] = sqlite_ingest(rows, tmpdir / "peer.sqlite")
    peer = results["sqlite executemany"]
    print(f"ingest of {n:,} short labelled texts (hashing included)")
    for name, secs in results.items():
        ratio = peer / secs
        print(f"  {name:<22} {secs:7.2f} s  {n / secs:>12,.0f} records/s  {ratio:5.1f}x sqlite")


if __name__ == "__main__":
    main()
