from pathlib import Path

import pytest

from tailguard.lab.models import NGram
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix import Anchored
from tailguard.monitor import Monitor

mlflow = pytest.importorskip("mlflow")


def test_each_round_is_logged_to_a_local_mlflow_store(fortunes_records, tmp_path):
    from tailguard.tracking import MlflowTracker

    with Ledger.open(":memory:") as led:
        led.add_records(fortunes_records)
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        loop = Loop(
            led,
            train=lambda manifest, records: NGram(order=2).fit(records),
            generate=lambda m, n, r, s: m.sample(n, s, generation=max(r, 1), round=r),
            policy=Anchored(real_fraction=0.25),
            monitor=Monitor(),
            n_generate=200,
        )
        tracker = MlflowTracker(tmp_path / "mlruns", run="main")
        results = loop.run(rounds=2, on_round=tracker)
    client = tracker.client
    history = client.get_metric_history(tracker.run_id, "tail_recall")
    assert [h.step for h in history] == [0, 1, 2]
    assert [h.value for h in history] == [r.metrics["tail_recall"] for r in results]
    tags = client.get_run(tracker.run_id).data.tags
    assert tags["manifest_digest.round_2"] == results[2].digest
    # a second tracker for the same run name logs into the same MLflow run (resume)
    assert MlflowTracker(tmp_path / "mlruns", run="main").run_id == tracker.run_id


def _loop(led, gate=None):
    return Loop(
        led,
        train=lambda manifest, records: NGram(order=2).fit(records),
        generate=lambda m, n, r, s: m.sample(n, s, generation=max(r, 1), round=r),
        policy=Anchored(real_fraction=0.25),
        gate=gate,
        monitor=Monitor(),
        n_generate=150,
    )


def test_a_round_is_read_back_whole_params_dataset_artifacts_status(fortunes_records, tmp_path):
    import json

    from tailguard.gate import Gate, NearDuplicate, Quality
    from tailguard.tracking import MlflowTracker

    report = tmp_path / "report.html"
    report.write_text("<html>report</html>")
    with Ledger.open(":memory:") as led:
        led.add_records(fortunes_records)
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        gate = Gate([Quality(min_chars=5), NearDuplicate(threshold=0.9)], progress=False)
        with MlflowTracker(tmp_path / "mlruns", run="main", ledger=led, gate=gate) as tracker:
            _loop(led, gate).run(rounds=2, on_round=tracker)
            tracker.log_report(report)
        digests = {r: led.manifest(r, "main").digest for r in (0, 1, 2)}
        manifest = led.manifest(2, "main")
    client = tracker.client
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["round_2.policy"] == manifest.policy == "anchored"
    for key, value in manifest.params.items():
        assert params[f"round_2.{key}"] == (
            value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        )
    assert params["round_0.policy"] == "human_only"
    assert params["gate.quality.min_chars"] == "5"
    assert params["gate.near_duplicate.threshold"] == "0.9"
    inputs = run.inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == [f"main/round_{r}" for r in (0, 1, 2)]
    for i in inputs:
        r = int(i.dataset.name.rsplit("_", 1)[1])
        assert i.dataset.digest == digests[r][:36]
        tags = {t.key: t.value for t in i.tags}
        assert tags["mlflow.data.context"] == "train"
        assert json.loads(i.dataset.profile)["num_rows"] > 0
    audit_files = [a.path for a in client.list_artifacts(tracker.run_id, "audit")]
    assert audit_files == [f"audit/round_{r}.json" for r in (0, 1, 2)]
    audit = json.loads(
        Path(
            client.download_artifacts(tracker.run_id, "audit/round_2.json", str(tmp_path))
        ).read_text()
    )
    assert [row["round"] for row in audit] == [0, 1, 2]
    assert [a.path for a in client.list_artifacts(tracker.run_id, "report")] == [
        "report/report.html"
    ]


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_a_run_ends_with_its_status(tmp_path, error, status):
    from tailguard.tracking import MlflowTracker

    with pytest.raises(type(error)), MlflowTracker(tmp_path / "mlruns", run="x") as tracker:
        raise error
    assert tracker.client.get_run(tracker.run_id).info.status == status
    resumed = MlflowTracker(tmp_path / "mlruns", run="x")  # a resumed run is running again
    assert resumed.run_id == tracker.run_id
    assert resumed.client.get_run(resumed.run_id).info.status == "RUNNING"
