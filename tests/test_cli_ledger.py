import json

from typer.testing import CliRunner

from tailguard import __version__
from tailguard.cli import app
from tailguard.ledger import Ledger
from tailguard.records import MANIFEST_SLOTS, Manifest

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_walkthrough_init_ingest_freeze_show(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / "tailguard.toml").exists()
    from tailguard.gate import Gate
    from tailguard.project import load_config

    config = load_config(tmp_path / "tailguard.toml")  # the starter config is valid
    assert config.policy.name == "anchored" and len(Gate.from_config(config.gate).verifiers) == 3
    assert (tmp_path / ".tailguard" / "ledger.duckdb").exists()
    (tmp_path / "d.jsonl").write_text(
        "\n".join(json.dumps({"text": f"t{i}", "c": "x" if i % 4 else "y"}) for i in range(40))
    )
    first = runner.invoke(app, ["ingest", "d.jsonl", "--label-field", "c"])
    assert first.exit_code == 0 and "40 added" in first.output
    again = runner.invoke(app, ["ingest", "d.jsonl", "--label-field", "c"])
    assert "0 added" in again.output and "40 already" in again.output
    assert runner.invoke(app, ["reservoir", "freeze", "--holdout", "0.25"]).exit_code == 0
    shown = runner.invoke(app, ["reservoir", "show", "--json"])
    info = json.loads(shown.output)
    # per label round(0.25 n), halves away from zero: y 10 -> 3, x 30 -> 8
    assert info["size"] == 40 and info["holdout"] == 11 and info["labels"]["y"]["holdout"] == 3


def test_bad_file_exits_nonzero_and_leaves_ledger(tmp_path):
    led = tmp_path / "l.duckdb"
    Ledger.open(led).close()
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n')
    result = runner.invoke(app, ["ingest", str(tmp_path / "bad.jsonl"), "--ledger", str(led)])
    assert result.exit_code != 0
    assert "line 2" in result.output
    with Ledger.open(led) as check:
        assert check.count() == 0


def test_no_ledger_here_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["audit"])
    assert result.exit_code == 2 and "tailguard init" in result.output


def test_audit_exit_code_and_export(tmp_path, small_human):
    led_path = tmp_path / "l.duckdb"
    with Ledger.open(led_path) as led:
        led.add_records(small_human)
        res = led.freeze_reservoir("main", holdout=0.2)
        ids = res.train_ids.to_pylist()[:8]
        slots = {
            "batch": [0] * 8,
            "id": ids,
            "origin": ["human"] * 8,
            "generation": [0] * 8,
            "label": [None] * 8,
        }
        import pyarrow as pa

        led.write_manifest(
            Manifest(round=0, slots=pa.table(slots).cast(MANIFEST_SLOTS), policy="human_only")
        )
    ok = runner.invoke(app, ["audit", "--ledger", str(led_path), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["rounds"][0]["human_share"] == 1.0
    out = tmp_path / "r0.parquet"
    exp = runner.invoke(app, ["export", "--round", "0", "-o", str(out), "--ledger", str(led_path)])
    assert exp.exit_code == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table["id"].to_pylist() == ids and "origin" in table.column_names
    refused = runner.invoke(app, ["audit", "--ledger", str(led_path), "--floor", "1.01"])
    assert refused.exit_code == 2 and "must be a number in [0, 1]" in refused.output
    flagged = runner.invoke(app, ["audit", "--ledger", str(led_path), "--floor", "1"])
    assert flagged.exit_code == 0  # a share equal to the floor is not below it


def test_the_configured_ledger_path_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tailguard.toml").write_text('[project]\nledger = "elsewhere/l.duckdb"\n')
    Ledger.open(tmp_path / "elsewhere" / "l.duckdb").close()
    result = runner.invoke(app, ["audit"])
    assert result.exit_code == 0 and "no manifests yet" in result.output


def test_freeze_measures_the_human_baseline_so_the_first_eval_is_not_zero(tmp_path, monkeypatch):
    from tailguard.datasets import fortunes
    from tailguard.monitor import NOISE_FLOOR_SAMPLE, Monitor

    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0
    human = fortunes().slice(0, 600)
    with Ledger.open(".tailguard/ledger.duckdb") as led:
        led.add_records(human)
    out = runner.invoke(app, ["reservoir", "freeze", "--holdout", "0.2"])
    assert out.exit_code == 0 and "human baseline of run main" in out.output, out.output
    with Ledger.open(".tailguard/ledger.duckdb", read_only=True) as led:
        floor = led.metrics("main")
    assert {s.split("#")[0] for s in floor["sample"].to_pylist()} == {NOISE_FLOOR_SAMPLE}
    assert "distinct_2" in floor["metric"].to_pylist()
    # a model that repeats a handful of human texts: its first eval is its clean reference,
    # and its gap to the human baseline is reported as a capacity gap, not as collapse
    rows = [{"text": t} for t in human["content"].to_pylist()[:20]] * 5
    (tmp_path / "out.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = runner.invoke(app, ["eval", "--round", "1", "--samples", "out.jsonl"])
    assert out.exit_code == 0, out.output
    with Ledger.open(".tailguard/ledger.duckdb", read_only=True) as led:
        history = led.metrics("main")
    assert history.num_rows > floor.num_rows  # the floor was not measured twice
    (e,) = [x for x in Monitor.from_history(history).evidence() if x.metric == "distinct_2"]
    assert e.baseline_round == 1 and not e.degraded and e.capacity_gap > 0.5
    assert "capacity gap on distinct_2" in " ".join(out.output.split())
    # the baseline was measured on samples of all 480 training texts, this round has 100
    words = " ".join(out.output.split())
    assert "baseline is measured on samples of 480 texts ([loop] n_sample)" in words
    assert "this sample has 100" in words
