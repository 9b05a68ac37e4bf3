"""MLflow tracking read back with ``MlflowClient``: from a local directory (MLflow's
file store) and from a real tracking server (``mlflow server``, SQLite behind it,
artifacts proxied over HTTP), as a team with the MLflow UI runs it.

tailguard logs with the client (``mlflow-skinny``); the server is the full MLflow in
a virtualenv of its own (``.venv-mlflow``, built by ``make setup``): full mlflow 3.17
would pull pyarrow down to 25, whose NFC normalisation changes record ids.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailguard.cli import app
from tailguard.lab.models import NGram
from tailguard.ledger import Ledger
from tailguard.loop import Loop
from tailguard.mix import Anchored
from tailguard.monitor import Monitor

mlflow = pytest.importorskip("mlflow")

#: The full MLflow's command line: $TAILGUARD_MLFLOW, else the Makefile's .venv-mlflow.
MLFLOW_SERVER = os.environ.get("TAILGUARD_MLFLOW") or str(
    Path(__file__).resolve().parent.parent / ".venv-mlflow" / "bin" / "mlflow"
)
#: How long a loaded 2-core machine may take to start the server (imports dominate);
#: a bound on waiting, not a measured speed.
SERVER_START_LIMIT = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_LIMIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(
        f"mlflow server not healthy after {SERVER_START_LIMIT} s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real tracking server for the module: ``(url, artifacts folder)``; killed at the end."""
    if not Path(MLFLOW_SERVER).exists():
        pytest.skip(f"no MLflow server at {MLFLOW_SERVER}: `make setup` builds .venv-mlflow")
    root = tmp_path_factory.mktemp("mlflow_server")
    artifacts, log_path = root / "artifacts", root / "server.log"
    port = _free_port()
    command = [
        MLFLOW_SERVER,
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",  # artifacts go through the server (mlflow-artifacts:/)
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # No background job runner (it serves GenAI jobs, not tracking): fewer processes.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc, log_path)
            yield url, artifacts
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(params=["file_store", "server"])
def store(request, tmp_path):
    """Where a tracker logs: ``(where, experiment, server's artifact folder or None)``.

    A local directory, or the tracking server's ``http://`` URI with an experiment of
    the test's own, so tests sharing the server never meet.
    """
    if request.param == "file_store":
        return tmp_path / "mlruns", "tailguard", None
    url, artifacts = request.getfixturevalue("mlflow_server")
    return url, f"test-{uuid.uuid4().hex[:12]}", artifacts


def _loop(led, gate=None, n_generate=150):
    return Loop(
        led,
        train=lambda manifest, records: NGram(order=2).fit(records),
        generate=lambda m, n, r, s: m.sample(n, s, generation=max(r, 1), round=r),
        policy=Anchored(real_fraction=0.25),
        gate=gate,
        monitor=Monitor(),
        n_generate=n_generate,
    )


def test_each_round_is_logged_to_a_local_mlflow_store(fortunes_records, tmp_path):
    from tailguard.tracking import MlflowTracker

    with Ledger.open(":memory:") as led:
        led.add_records(fortunes_records)
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        tracker = MlflowTracker(tmp_path / "mlruns", run="main")
        results = _loop(led, n_generate=200).run(rounds=2, on_round=tracker)
    client = tracker.client
    history = client.get_metric_history(tracker.run_id, "tail_recall")
    assert [h.step for h in history] == [0, 1, 2]
    assert [h.value for h in history] == [r.metrics["tail_recall"] for r in results]
    tags = client.get_run(tracker.run_id).data.tags
    assert tags["manifest_digest.round_2"] == results[2].digest
    # a second tracker for the same run name logs into the same MLflow run (resume)
    assert MlflowTracker(tmp_path / "mlruns", run="main").run_id == tracker.run_id


def test_a_round_is_read_back_whole_params_metrics_dataset_artifacts_status(
    fortunes_records, tmp_path, store
):
    from tailguard.gate import Gate, NearDuplicate, Quality
    from tailguard.tracking import MlflowTracker

    where, experiment, served = store
    report = tmp_path / "report.html"
    report.write_text("<html><h1>tailguard report</h1></html>")
    with Ledger.open(":memory:") as led:
        led.add_records(fortunes_records)
        led.freeze_reservoir("main", holdout=0.1, seed=0)
        gate = Gate([Quality(min_chars=5), NearDuplicate(threshold=0.9)], progress=False)
        with MlflowTracker(
            where, experiment=experiment, run="main", ledger=led, gate=gate
        ) as tracker:
            results = _loop(led, gate).run(rounds=2, on_round=tracker)
            tracker.log_report(report)
        manifests = {r: led.manifest(r, "main") for r in (0, 1, 2)}
        audit_rows = led.audit(run="main").to_pylist()
    # read back by a client of its own, as another user (or the UI) would
    client = mlflow.tracking.MlflowClient(tracking_uri=tracker.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "main" and run.data.tags["tailguard.run"] == "main"
    assert client.get_experiment(run.info.experiment_id).name == experiment
    # params: each round's policy, seed and fractions; the verifiers' settings
    params = run.data.params
    assert params["round_0.policy"] == "human_only"
    for r in (1, 2):
        manifest = manifests[r]
        assert params[f"round_{r}.policy"] == manifest.policy == "anchored"
        assert params[f"round_{r}.seed"] == str(manifest.seed)
        assert params[f"round_{r}.real_fraction"] == "0.25"
        for key, value in manifest.params.items():
            assert params[f"round_{r}.{key}"] == (
                value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            )
    assert params["gate.quality.min_chars"] == "5"
    assert params["gate.near_duplicate.threshold"] == "0.9"
    # metrics: every metric of every round at step = round, and the human share
    for name in results[0].metrics:
        history = client.get_metric_history(tracker.run_id, name)
        assert [h.step for h in history] == [0, 1, 2]
        assert [h.value for h in history] == pytest.approx(
            [float(res.metrics[name]) for res in results]
        )
    shares = client.get_metric_history(tracker.run_id, "real_fraction")
    assert {h.step: h.value for h in shares} == {
        res.round: pytest.approx(res.real_fraction)
        for res in results
        if res.real_fraction is not None
    }
    assert {h.step: h.value for h in shares}[2] >= 0.25
    # the training set of each round: a dataset input with the manifest's digest
    inputs = run.inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == [f"main/round_{r}" for r in (0, 1, 2)]
    for i in inputs:
        r = int(i.dataset.name.rsplit("_", 1)[1])
        assert i.dataset.digest == manifests[r].digest[:36]
        assert i.dataset.source_type and f"#manifest/main/{r}" in i.dataset.source
        tags = {t.key: t.value for t in i.tags}
        assert tags["mlflow.data.context"] == "train"
        counts = manifests[r].counts()
        assert {k: tags[f"tailguard.{k}"] for k in counts} == {k: str(v) for k, v in counts.items()}
        assert json.loads(i.dataset.profile)["num_rows"] == len(manifests[r].slots)
    # the audit and the report: listed, downloaded and read
    audit_files = [a.path for a in client.list_artifacts(tracker.run_id, "audit")]
    assert audit_files == [f"audit/round_{r}.json" for r in (0, 1, 2)]
    down = tmp_path / "downloaded"
    down.mkdir()
    audit = json.loads(
        Path(client.download_artifacts(tracker.run_id, "audit/round_2.json", str(down))).read_text()
    )
    assert [row["round"] for row in audit] == [0, 1, 2]
    assert audit == json.loads(json.dumps(audit_rows, default=str))
    assert [a.path for a in client.list_artifacts(tracker.run_id, "report")] == [
        "report/report.html"
    ]
    got = client.download_artifacts(tracker.run_id, "report/report.html", str(down))
    assert Path(got).read_text() == report.read_text()
    if served is not None:  # the server: artifacts went over HTTP, into its folder
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        [kept] = served.glob(f"*/{tracker.run_id}/artifacts/report/report.html")
        assert kept.read_text() == report.read_text()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RuntimeError("boom"), "FAILED"),
        (KeyboardInterrupt(), "KILLED"),
        (SystemExit(130), "KILLED"),  # Ctrl-C as the CLI ends it
        (SystemExit(2), "FAILED"),
    ],
)
def test_a_run_ends_with_its_status(store, error, status):
    from tailguard.tracking import MlflowTracker

    where, experiment, _ = store
    with (
        pytest.raises(type(error)),
        MlflowTracker(where, experiment=experiment, run="x") as tracker,
    ):
        raise error
    client = mlflow.tracking.MlflowClient(tracking_uri=tracker.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == status and run.info.end_time is not None
    resumed = MlflowTracker(where, experiment=experiment, run="x")  # running again
    assert resumed.run_id == tracker.run_id
    assert client.get_run(resumed.run_id).info.status == "RUNNING"


def test_tailguard_run_logs_where_tailguard_toml_says(store, tmp_path, monkeypatch):
    """``[mlflow] tracking_uri``: a server's URI, or a directory relative to the config."""
    where, experiment, _ = store
    uri = "mlruns" if isinstance(where, Path) else where  # relative: the config's folder
    project = tmp_path / "project"
    project.mkdir()
    (project / "tailguard.toml").write_text(
        "[data]\nbuiltin = 'fortunes'\n[model]\nkind = 'ngram'\n"
        "[loop]\nrounds = 1\nn_generate = 200\n"
        f"[mlflow]\ntracking_uri = '{uri}'\nexperiment = '{experiment}'\n"
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    result = CliRunner().invoke(app, ["run", str(project / "tailguard.toml")])
    assert result.exit_code == 0, result.output
    uri = where if isinstance(where, str) else (project / "mlruns").resolve().as_uri()
    assert not (tmp_path / "mlruns").exists()
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "main"
    assert run.data.params["round_1.policy"] == "anchored"
    assert sorted(i.dataset.name for i in run.inputs.dataset_inputs) == [
        "main/round_0",
        "main/round_1",
    ]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "audit")] == [
        "audit/round_0.json",
        "audit/round_1.json",
    ]


def test_an_unreachable_server_is_named_and_the_ledger_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    config = tmp_path / "tailguard.toml"
    config.write_text("[data]\nbuiltin = 'fortunes'\n[model]\nkind = 'ngram'\n")
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    ledger = tmp_path / "l.duckdb"
    result = CliRunner().invoke(app, ["run", str(config), "--ledger", str(ledger), "--mlflow", url])
    assert result.exit_code == 2
    assert f"MLflow tracking at {url} failed" in result.output
    assert "Traceback" not in result.output
    with Ledger.open(ledger, read_only=True) as led:
        assert not led.has_reservoir() and led.count() == 0


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ("tracking_uri = ''", "mlflow.tracking_uri", "at least 1 character"),
        ("uri = 'http://127.0.0.1:5000'", "mlflow.uri", "unknown key"),
        ("tracking_uri = 5000", "mlflow.tracking_uri", "valid string"),
    ],
)
def test_a_bad_mlflow_table_names_the_key(tmp_path, table, key, words):
    from tailguard.config import load_config
    from tailguard.errors import ConfigError

    path = tmp_path / "tailguard.toml"
    path.write_text(f"[mlflow]\n{table}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"key '{key}'" in str(err.value) and words in str(err.value)


def test_tracking_uris_and_directories(tmp_path):
    from tailguard.config import load_config
    from tailguard.tracking import MlflowTracker, tracking_uri

    for uri in ("http://127.0.0.1:5000", "https://mlflow.example", "sqlite:///m.db", "databricks"):
        assert tracking_uri(uri) == uri
    assert tracking_uri("runs", base=tmp_path) == (tmp_path / "runs").resolve().as_uri()
    assert tracking_uri(tmp_path / "runs", base="/elsewhere") == (tmp_path / "runs").as_uri()
    assert tracking_uri(Path("runs")) == Path("runs").resolve().as_uri()
    path = tmp_path / "tailguard.toml"
    path.write_text("[mlflow]\ntracking_uri = 'http://127.0.0.1:5000'\n")
    assert load_config(path).mlflow.experiment == MlflowTracker.EXPERIMENT == "tailguard"


@pytest.mark.parametrize("doc", ["README.md", "docs/scale.md"])
def test_the_documented_mlflow_table_is_a_valid_config(doc, tmp_path):
    import re

    from tailguard.config import load_config

    text = (Path(__file__).parent.parent / doc).read_text()
    [table] = [t for t in re.findall(r"```toml\n(.*?)```", text, re.S) if "[mlflow]" in t]
    (tmp_path / "tailguard.toml").write_text(table)
    section = load_config(tmp_path / "tailguard.toml").mlflow
    assert section.tracking_uri == "http://127.0.0.1:5000" and section.experiment == "tailguard"
