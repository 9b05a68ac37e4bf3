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
