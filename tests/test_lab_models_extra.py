"""The lab models' experiment knobs, the regression loop's design and the transformer."""

from __future__ import annotations

import numpy as np
import pytest

from tailguard.lab.models import decode_vectors


def _rows(table, d):  # noqa: ANN001, ANN202
    return {tuple(r) for r in decode_vectors(table.column("content"), dim=d + 1)[:, :d]}


@pytest.mark.parametrize("strategy", ["replace", "accumulate"])
def test_regression_loop_relabels_exactly_the_reservoir_design(strategy: str) -> None:
    from tailguard.lab.config import LabConfig
    from tailguard.lab.job import _Job

    d = 3
    cfg = LabConfig(
        model="regression", strategies=(strategy,), generations=3, seeds=1, recovery_rounds=0,
        model_params={"n_features": d, "n_samples": 60},
    )  # fmt: skip
    job = _Job(cfg, strategy, 0, lambda n: None)
    try:
        job.run()
        train = _rows(job.ledger.reservoir_records("train"), d)
        holdout = _rows(job.ledger.reservoir_records("holdout"), d)
        for g in (1, 2, 3):
            synthetic = job.ledger.records(origin="synthetic", generation=g)
            assert _rows(synthetic, d) == train  # every training x relabelled, nothing else
            assert not _rows(synthetic, d) & holdout
    finally:
        job.ledger.close()
