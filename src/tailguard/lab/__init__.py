"""The simulation lab: the retraining loop with small real models, many generations and seeds.

>>> from tailguard import lab
>>> result = lab.run(model="ngram", strategies="replace,accumulate,anchored",
...                  generations=10, seeds=3)                          # doctest: +SKIP
>>> result.axes.to_pandas()                                          # doctest: +SKIP
"""

from __future__ import annotations

from tailguard.costs import CostModel
from tailguard.lab.axes import AXES_COLUMNS, score_axes, summarise
from tailguard.lab.data import DATASETS, MODEL_DATA
from tailguard.lab.experiment import LabConfig, LabResult, run, run_job
from tailguard.lab.frontier import Frontier, frontier
from tailguard.lab.models import MODELS
from tailguard.lab.recovery import Recovery, recovery
from tailguard.lab.strategies import STRATEGIES, parse_strategies, strategy
from tailguard.mix import AccumulateSubsample

__all__ = [
    "AXES_COLUMNS",
    "DATASETS",
    "MODELS",
    "MODEL_DATA",
    "STRATEGIES",
    "AccumulateSubsample",
    "CostModel",
    "Frontier",
    "LabConfig",
    "LabResult",
    "Recovery",
    "frontier",
    "parse_strategies",
    "recovery",
    "run",
    "run_job",
    "score_axes",
    "strategy",
    "summarise",
]
