"""Experiment tracking: each round's metrics and manifest digest, logged to MLflow.

Optional (the ``mlflow`` extra). The store is a local directory (MLflow's file
store), so nothing needs a server: ``mlflow ui --backend-store-uri DIR`` shows it.
A resumed loop logs into the same MLflow run, found by its tailguard run name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tailguard.errors import ConfigError


class MlflowTracker:
    """Log each finished round to an MLflow run named after the tailguard run."""

    def __init__(
        self, directory: str | Path, *, experiment: str = "tailguard", run: str = "main"
    ) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError(
                "MLflow tracking needs the mlflow extra: pip install 'tailguard[mlflow]'"
            ) from None
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = Path(directory).resolve().as_uri()
        self.client = mlflow.tracking.MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
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

    def __call__(self, result: Any) -> None:
        """Log one round: every metric at step = round, the digest and the human share."""
        for name, value in result.metrics.items():
            self.client.log_metric(self.run_id, name, float(value), step=result.round)
        if result.real_fraction is not None:
            self.client.log_metric(
                self.run_id, "real_fraction", result.real_fraction, step=result.round
            )
        if result.digest:
            self.client.set_tag(self.run_id, f"manifest_digest.round_{result.round}", result.digest)
