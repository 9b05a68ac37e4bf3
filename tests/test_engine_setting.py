"""``[engine]`` and ``--engine``/``--address``: the README loop on Ray equals it in process."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.config import validate
from tailguard.errors import ConfigError
from tailguard.ledger import Ledger
from tailguard.project import with_engine
from tailguard.records import make_records

LOOP = """
[data]
files = [{ path = "people.jsonl", label_field = "label" }]
holdout = 0.1

[model]
kind = "ngram"

[[gate.verifiers]]
kind = "quality"
min_words = 3

[[gate.verifiers]]
kind = "exact_duplicate"

[[gate.verifiers]]
kind = "near_duplicate"
threshold = 0.8

[gate.references]
eval = "eval.jsonl"

[policy]
name = "anchored"
real_fraction = 0.2

[dial]
enabled = true
watch = ["tail_recall", "rare_vocab_coverage", "distinct_2"]

[loop]
rounds = 2
n_generate = 200
"""


def _project(path, fortunes_records, engine: str = "") -> None:
    path.mkdir()
    (path / "tailguard.toml").write_text(LOOP + engine)
    rows = fortunes_records.slice(0, 800).to_pylist()
    with open(path / "people.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"text": r["content"], "label": r["label"]}) + "\n")
    with open(path / "eval.jsonl", "w") as f:  # copies of the people: named-set matches
        for r in rows[::7]:
            f.write(json.dumps({"text": r["content"]}) + "\n")


def _outcome(path) -> dict[str, pa.Table]:
    with Ledger.open(path / ".tailguard" / "ledger.duckdb", read_only=True) as led:
        cols = ["id", "round", "verifier", "passed", "code", "detail", "score", "matched_id"]
        verdicts = led.verdicts().select(cols)
        records = led.records(origin="synthetic", columns=["id", "round", "status"])
        metrics = led.metrics(run="main")
    keep = [c for c in metrics.column_names if c not in {"created_at", "recorded_at"}]
    return {
        "verdicts": verdicts.sort_by([(c, "ascending") for c in ("round", "id", "verifier")]),
        "records": records.sort_by([("round", "ascending"), ("id", "ascending")]),
        "metrics": metrics.select(keep).sort_by(
            [(c, "ascending") for c in ("round", "sample", "metric") if c in keep]
        ),
    }


def _sets_compared(path) -> dict[str, int]:
    """The sets round 2's near-duplicate verdicts say they compared with, and their sizes."""
    with Ledger.open(path / ".tailguard" / "ledger.duckdb", read_only=True) as led:
        v = led.verdicts(round=2)
    near = v.filter(pa.compute.equal(v["verifier"], "near_duplicate"))
    params = {json.dumps(json.loads(p), sort_keys=True) for p in near["params"].to_pylist()}
    assert len(params) == 1  # one setting for the whole round
    described = json.loads(params.pop())
    sets = {k: x["records"] for k, x in described["references"].items()}
    return {"reservoir": described["reference"]["records"], **sets}


@pytest.mark.slow
def test_the_readme_loop_on_ray_equals_the_loop_in_process(fortunes_records, tmp_path):
    pytest.importorskip("ray")
    from tailguard.engines import RayEngine

    engine = RayEngine(num_cpus=2)
    engine.ray()  # a local Ray of 2 CPUs, which the run joins
    try:
        runner = CliRunner()
        _project(tmp_path / "local", fortunes_records)
        _project(tmp_path / "ray", fortunes_records, '\n[engine]\nkind = "ray"\n')
        local = runner.invoke(app, ["run", str(tmp_path / "local" / "tailguard.toml")])
        assert local.exit_code == 0, local.output
        on_ray = runner.invoke(app, ["run", str(tmp_path / "ray" / "tailguard.toml")])
        assert on_ray.exit_code == 0, on_ray.output
    finally:
        engine.shutdown()
    want, got = _outcome(tmp_path / "local"), _outcome(tmp_path / "ray")
    verdicts = want["verdicts"]
    assert verdicts.num_rows > 900 and set(verdicts["round"].to_pylist()) == {1, 2}
    details = [d or "" for d in verdicts["detail"].to_pylist()]
    assert any(d.startswith("copy of reservoir record") for d in details)
    assert not all(verdicts["passed"].to_pylist())
    # round 2 compares with the whole reservoir, the eval set and round 1's accepted records
    sets = _sets_compared(tmp_path / "local")
    assert sets == _sets_compared(tmp_path / "ray")
    assert sets["reservoir"] == 800 and sets["eval"] == len(range(0, 800, 7))
    assert sets["earlier_generations"] > 100
    for what in ("verdicts", "records", "metrics"):
        assert got[what].cast(want[what].schema).equals(want[what]), what
    assert want["metrics"].num_rows > 0


def test_the_engine_setting_is_checked_and_the_command_line_overrides_it(tmp_path):
    cfg = validate({"engine": {"kind": "ray", "address": "ray://head:10001"}})
    assert (cfg.engine.kind, cfg.engine.address) == ("ray", "ray://head:10001")
    assert validate({}).engine.kind == "local"
    with pytest.raises(ConfigError, match="engine.kind"):
        validate({"engine": {"kind": "spark"}})
    with pytest.raises(ConfigError, match="address, num_cpus and work_dir are for kind"):
        validate({"engine": {"address": "auto"}})
    with pytest.raises(ConfigError, match="engine.num_cpus"):
        validate({"engine": {"kind": "ray", "num_cpus": 0}})
    # the command line wins; another kind drops the file's address
    assert with_engine(cfg, "local", None).engine.address is None
    assert with_engine(validate({}), "ray", "auto").engine.address == "auto"
    assert with_engine(cfg, None, None) is cfg
    with pytest.raises(ConfigError, match="--engine/--address"):
        with_engine(validate({}), None, "auto")
    with pytest.raises(ConfigError, match="--engine/--address"):
        with_engine(validate({}), "spark", None)


def test_a_bad_engine_option_exits_2_before_the_ledger_is_touched(tmp_path):
    path = tmp_path / "tailguard.toml"
    path.write_text('[data]\nbuiltin = "fortunes"\n[model]\nkind = "ngram"\n')
    runner = CliRunner()
    for args in (["--engine", "spark"], ["--address", "auto"]):
        result = runner.invoke(app, ["run", str(path), *args])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "engine" in result.output
    assert not (tmp_path / ".tailguard").exists()
    gated = runner.invoke(app, ["gate", "--round", "1", "--config", str(path), "--engine", "x"])
    assert gated.exit_code == 2 and "Traceback" not in gated.output


def test_duplicate_verifiers_on_ray_share_one_reference_setting(tmp_path):
    from tailguard.project import on_engine

    cfg = validate(
        {
            "engine": {"kind": "ray"},
            "gate": {
                "verifiers": [
                    {"kind": "exact_duplicate", "reference": "none"},
                    {"kind": "near_duplicate"},
                ]
            },
        }
    )
    with pytest.raises(ConfigError, match="same `reference`"):
        on_engine(cfg, object())


class _Shuffled:
    """A PerRecord that works like Ray: the texts in batches of random sizes, each batch
    worked on alone, the results put back in order."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.passes = 0

    def run(self, texts, embedder=None):  # noqa: ANN001, ANN201
        from tailguard.metrics import text

        self.passes += 1
        cuts = np.unique(self.rng.integers(0, len(texts), 5))
        bounds = [0, *[int(c) for c in cuts if c], len(texts)]
        parts = [texts.slice(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
        words = pa.concat_tables([text.words(p) for p in parts if len(p)])
        if embedder is None:
            return words, None
        return words, np.concatenate([embedder.embed(p) for p in parts if len(p)])


def _mixed_sample(fortunes_records) -> tuple[pa.Array, pa.Array]:
    """Fortunes with texts of other scripts among them (the tokenizer's mixed path)."""
    part = fortunes_records.slice(3000, 600)
    texts = ["Ünïcode wörds, naïve café", *part["content"].to_pylist(), "日本語 text", ""]
    labels = ["other", *part["label"].to_pylist(), "other", "other"]
    return pa.array(texts), pa.array(labels)


def test_per_record_work_in_batches_gives_every_metric_of_the_whole(fortunes_records):
    from tailguard.monitor import Monitor

    texts, labels = _mixed_sample(fortunes_records)
    ref = fortunes_records.slice(0, 1500)
    values = {}
    for name, per_record in (("here", None), ("batches", _Shuffled(1))):
        mon = Monitor(preset="rich", embedder="hashing", per_record=per_record)
        mon.set_reference(ref["content"], ref["label"])
        rows = mon.record(1, texts, labels)
        rows = pa.concat_tables([rows, mon.record(2, ref["content"].slice(0, 400))])
        values[name] = list(zip(rows["metric"].to_pylist(), rows["value"].to_pylist(), strict=True))
    assert len(values["here"]) > 30
    assert values["batches"] == values["here"]  # exact: only the work was cut up
    # one pass per side: the reference's words and embeddings together, then the sample's
    assert per_record.passes == 3


@pytest.mark.slow
def test_eval_on_ray_records_the_metrics_of_eval_in_process(fortunes_records, tmp_path):
    pytest.importorskip("ray")
    from tailguard.engines import RayEngine

    texts, _ = _mixed_sample(fortunes_records)
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts.to_pylist()))
    for name in ("local", "ray"):
        with Ledger.open(tmp_path / f"{name}.duckdb") as led:
            led.add_records(fortunes_records.slice(0, 1500))
            led.freeze_reservoir("main", holdout=0.3, seed=0)
    engine = RayEngine(num_cpus=2)
    engine.ray()
    runner = CliRunner()
    args = ["eval", "--round", "1", "--samples", str(samples), "--preset", "rich",
            "--embedder", "hashing"]  # fmt: skip
    try:
        local = runner.invoke(app, [*args, "--ledger", str(tmp_path / "local.duckdb")])
        assert local.exit_code == 0, local.output
        on_ray = runner.invoke(
            app, [*args, "--ledger", str(tmp_path / "ray.duckdb"), "--engine", "ray"]
        )
        assert on_ray.exit_code == 0, on_ray.output
    finally:
        engine.shutdown()
    rows = {}
    for name in ("local", "ray"):
        with Ledger.open(tmp_path / f"{name}.duckdb", read_only=True) as led:
            m = led.metrics(run="main").sort_by("metric")
        rows[name] = m.select(["round", "sample", "metric", "value", "higher_is_better"])
    assert rows["local"].num_rows >= 25  # the rich preset: text and embedding metrics
    assert "prdc_recall" in rows["local"]["metric"].to_pylist()
    assert rows["ray"].equals(rows["local"])


def test_a_bad_engine_option_on_eval_exits_2_and_records_nothing(tmp_path):
    with Ledger.open(tmp_path / "l.duckdb") as led:
        led.add_records(
            make_records(["a b c", "d e f", "g h i", "j k l"], origin="human", source="t")
        )
        led.freeze_reservoir("main", holdout=0.5, seed=0)
    (tmp_path / "s.jsonl").write_text('{"text": "a b c"}\n')
    runner = CliRunner()
    base = ["eval", "--round", "1", "--samples", str(tmp_path / "s.jsonl"),
            "--ledger", str(tmp_path / "l.duckdb")]  # fmt: skip
    for extra in (["--engine", "spark"], ["--address", "auto"]):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "engine" in result.output
    with Ledger.open(tmp_path / "l.duckdb", read_only=True) as led:
        assert led.metrics().num_rows == 0


def test_words_of_batches_number_the_tokens_as_the_whole_does(fortunes_records):
    from tailguard.metrics import text

    texts, _ = _mixed_sample(fortunes_records)
    whole = text.tokenize(texts)
    for seed in range(3):
        words, _ = _Shuffled(seed).run(texts)
        got = text.from_words(words["words"], words["ascii"].to_numpy(zero_copy_only=False))
        assert np.array_equal(got.ids, whole.ids) and np.array_equal(got.offsets, whole.offsets)
        assert got.vocab.to_pylist() == whole.vocab.to_pylist()
