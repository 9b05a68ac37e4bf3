"""Inputs that used to end in a traceback or a changed store: non-UTF-8 and deeply
nested Parquet columns, a missing `[data] files` entry, eval of a two-text round."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailguard import limits
from tailguard.errors import ConfigError, InputError
from tailguard.ledger import Ledger
from tailguard.project import load_config, prepare_ledger
from tailguard.readers import read_table

CLI = [sys.executable, "-m", "tailguard.cli"]
TEXTS = ["the cat sat on the mat", "a dog ran far away today"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def non_utf8_name(path: Path) -> Path:
    """A Parquet file whose second column's name holds the bytes ff fe."""
    pq.write_table(pa.table({"text": TEXTS, "zQQz": [1, 2]}), path, store_schema=False)
    path.write_bytes(path.read_bytes().replace(b"zQQz", b"z\xff\xfez"))
    return path


def nested(path: Path, depth: int) -> Path:
    column = pa.array([1, 2])
    for _ in range(depth):
        column = pa.StructArray.from_arrays([column], ["a"])
    pq.write_table(pa.table({"text": TEXTS, "deep": column}), path)
    return path


def test_a_parquet_column_name_that_is_not_utf8_is_named(tmp_path):
    with pytest.raises(InputError, match="column name is not UTF-8") as caught:
        read_table(non_utf8_name(tmp_path / "bad.parquet"))
    assert "bad.parquet" in str(caught.value)


@pytest.mark.parametrize("extra", [1, 16])
def test_parquet_nesting_is_bounded(tmp_path, extra):
    assert read_table(nested(tmp_path / "ok.parquet", limits.NESTING_MAX))[0].num_rows == 2
    deep = limits.NESTING_MAX + extra
    with pytest.raises(InputError, match=f"nested {deep} levels deep; at most"):
        read_table(nested(tmp_path / "deep.parquet", deep))


def test_ingest_of_bad_parquet_exits_2_and_changes_nothing(tmp_path):
    assert cli("init", cwd=tmp_path).returncode == 0
    ledger = tmp_path / ".tailguard" / "ledger.duckdb"
    before = ledger.read_bytes()
    for bad in (non_utf8_name(tmp_path / "n.parquet"), nested(tmp_path / "d.parquet", 80)):
        r = cli("ingest", str(bad), cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and bad.name in r.stderr
    assert ledger.read_bytes() == before


CONFIG = """
[data]
builtin = "fortunes"
files = [{{ path = "{path}" }}]
[model]
kind = "ngram"
"""


def test_a_missing_data_file_is_found_before_the_first_write(tmp_path):
    (tmp_path / "tailguard.toml").write_text(CONFIG.format(path="nosuch.jsonl"))
    r = cli("run", "--rounds", "1", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "data.files.0.path" in r.stderr and "nosuch.jsonl does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / ".tailguard").exists()  # nothing written, not even a ledger


def test_preparing_the_ledger_is_all_or_nothing(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    cfg = tmp_path / "tailguard.toml"
    cfg.write_text(CONFIG.format(path="broken.jsonl"))
    with Ledger.open(tmp_path / "l.duckdb") as led:
        with pytest.raises(InputError, match="broken.jsonl"):
            prepare_ledger(load_config(cfg), led)
        assert led.con.execute("SELECT count(*) FROM records").fetchone()[0] == 0
        assert not led.has_reservoir()
    cfg.write_text(CONFIG.format(path="."))
    with Ledger.open(tmp_path / "l.duckdb") as led, pytest.raises(ConfigError, match="directory"):
        prepare_ledger(load_config(cfg), led)


def test_eval_of_a_hand_made_round_of_two_texts(tmp_path):
    for step in (("init",), ("ingest", "--builtin", "fortunes"), ("reservoir", "freeze")):
        assert cli(*step, cwd=tmp_path).returncode == 0
    samples = tmp_path / "gen1.jsonl"
    samples.write_text("".join(f'{{"text": "{t}"}}\n' for t in TEXTS))
    ingested = cli(
        "ingest",
        str(samples),
        "--origin",
        "synthetic",
        "--generation",
        "1",
        "--round",
        "1",
        cwd=tmp_path,
    )
    assert ingested.returncode == 0, ingested.stderr
    r = cli("eval", "--round", "1", "--samples", str(samples), cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr  # 1: an alert, an answer too
    assert "Traceback" not in r.stderr
    con = duckdb.connect(str(tmp_path / ".tailguard" / "ledger.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT count(*) FROM metrics WHERE round = 1").fetchone()[0]
    finally:
        con.close()
    assert rows > 0
