"""Experiment tracking: each round's settings, training set, metrics and evidence in MLflow.

Optional (the ``mlflow`` extra installs MLflow's client, ``mlflow-skinny``, all
logging needs; the full MLflow, server and UI, runs from an environment of its own:
it caps pyarrow below 26, which tailguard's record ids need). The tracker takes a
tracking URI, so a team logs where it already looks: a tracking server
(``http://host:5000``, started with ``mlflow server``) or a plain local directory
(MLflow's file store, no server needed: ``mlflow ui --backend-store-uri DIR`` shows
it, with ``MLFLOW_ALLOW_FILE_STORE=true``); other MLflow URIs work where the
installed client knows them. A resumed loop
logs into the same MLflow run, found by its tailguard run name. Per round the
tracker logs:

- metrics at ``step = round`` and the human share;
- params ``round_<r>.policy``, ``round_<r>.<policy parameter>`` (the fractions)
  and ``gate.<verifier>.<parameter>`` (the verifier settings);
- the training set as a dataset input (``mlflow.data``) whose digest is the
  manifest's digest, tagged ``context = train``;
- the audit (``audit/round_<r>.json``) and, on :meth:`log_report`, the HTML report.

Use it as a context manager so the run ends with its status: ``FINISHED``, or
``FAILED`` on an error, or ``KILLED`` on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tailguard.errors import ConfigError

#: MLflow's limit on a param value's length.
_PARAM_MAX = 6000


def tracking_uri(where: str | Path, base: str | Path = ".") -> str:
    """MLflow's tracking URI for ``where``: a URI as given, a local directory as a file URI.

    A string with a scheme (``http://``, ``https://``, ``sqlite:///``, ``file://``,
    ``postgresql://``, ...) or ``databricks`` is a tracking URI; anything else, and
    every :class:`~pathlib.Path`, is a directory for MLflow's file store, relative to
    ``base`` (a config file's folder) unless absolute.
    """
    if isinstance(where, str) and ("://" in where or where.split(":")[0] == "databricks"):
        return where
    return (Path(base) / where).resolve().as_uri()


def _flat(prefix: str, value: Any) -> dict[str, str]:
    """Nested settings as flat ``a.b.c`` params (MLflow params are strings)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}", v))
        return out
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return {prefix: text[:_PARAM_MAX]}


class MlflowTracker:
    """Log each finished round to an MLflow run named after the tailguard run.

    ``where`` is a tracking URI (a server's ``http://host:port``) or a local
    directory (see :func:`tracking_uri`). ``ledger`` (optional) lets the
    tracker log each round's manifest (policy and fractions as params, the training
    set as a dataset input) and the audit; ``gate`` logs the verifiers' settings once.
    """

    #: The MLflow experiment runs go to unless ``experiment`` names another.
    EXPERIMENT = "tailguard"

    def __init__(
        self,
        where: str | Path,
        *,
        experiment: str = EXPERIMENT,
        run: str = "main",
        ledger: Any = None,
        gate: Any = None,
    ) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError(
                "MLflow tracking needs the mlflow extra: pip install 'tailguard[mlflow]'"
            ) from None
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = tracking_uri(where)
        self.ledger, self.run_name = ledger, run
        try:  # the first request: a server that is down or a wrong URI is named here
            self.client = mlflow.tracking.MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
        except mlflow.exceptions.MlflowException as exc:
            raise ConfigError(f"MLflow tracking at {self.uri} failed: {exc.message}") from None
        self.experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment)
        )
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`tailguard.run` = '{run}'"
        )
        self.run_id = (
            runs[0].info.run_id
            if runs
            else self.client.create_run(
                self.experiment_id, run_name=run, tags={"tailguard.run": run}
            ).info.run_id
        )
        if runs and runs[0].info.status != "RUNNING":
            self.client.update_run(self.run_id, status="RUNNING")  # resumed
        if gate is not None:
            self.log_gate(gate)

    # ------------------------------------------------------------------ logging
    def _params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in logged]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    def log_gate(self, gate: Any) -> None:
        """The gate's verifiers and their settings, as ``gate.<verifier>.<param>`` params."""
        self._params(_flat("gate", gate.params()))

    def __call__(self, result: Any) -> None:
        """Log one round: metrics at step = round, the manifest, the training set, the audit."""
        r = result.round
        for name, value in result.metrics.items():
            self.client.log_metric(self.run_id, name, float(value), step=r)
        if result.real_fraction is not None:
            self.client.log_metric(self.run_id, "real_fraction", result.real_fraction, step=r)
        if result.digest:
            self.client.set_tag(self.run_id, f"manifest_digest.round_{r}", result.digest)
        if self.ledger is not None and r in self.ledger.manifests(self.run_name):
            self.log_manifest(r)
            self.log_audit(r)

    def log_manifest(self, round: int) -> None:  # noqa: A002
        """The round's policy and fractions as params; its training set as a dataset input."""
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag

        manifest = self.ledger.manifest(round, self.run_name)
        params = {f"round_{round}.policy": manifest.policy, f"round_{round}.seed": manifest.seed}
        params.update({f"round_{round}.{k}": v for k, v in manifest.params.items()})
        self._params({k: v for p, x in params.items() for k, v in _flat(p, x).items()})
        slots = manifest.slots.to_pandas()
        counts = manifest.counts()
        dataset = from_pandas(
            slots,
            source=f"{self.ledger.path}#manifest/{self.run_name}/{round}",
            name=f"{self.run_name}/round_{round}",
            digest=manifest.digest[:36],
        )
        tags = [InputTag("mlflow.data.context", "train")]
        tags += [InputTag(f"tailguard.{k}", str(v)) for k, v in counts.items()]
        self.client.log_inputs(
            self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)]
        )

    def log_audit(self, round: int) -> None:  # noqa: A002
        """The audit (human and synthetic shares per round, the alarm) as an artifact."""
        audit = self.ledger.audit(run=self.run_name).to_pylist()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"round_{round}.json"
            path.write_text(json.dumps(audit, indent=1, default=str), encoding="utf-8")
            self.client.log_artifact(self.run_id, str(path), artifact_path="audit")

    def log_report(self, path: str | Path) -> None:
        """A written report (``tailguard report``'s HTML) as an artifact."""
        self.client.log_artifact(self.run_id, str(path), artifact_path="report")

    # ------------------------------------------------------------------ status
    def close(self, status: str = "FINISHED") -> None:
        """End the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.client.set_terminated(self.run_id, status=status)

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt) or (
            issubclass(exc_type, SystemExit) and getattr(rest[0], "code", None) == 130
        ):  # Ctrl-C: the CLI ends with SystemExit(130)
            self.close("KILLED")
        else:
            self.close("FAILED")
