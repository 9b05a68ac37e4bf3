"""The simulation lab: the retraining loop with small real models, many generations and seeds.

>>> from tailguard import lab
>>> result = lab.run(model="ngram", strategies="replace,accumulate,anchored",
...                  generations=10, seeds=3)                          # doctest: +SKIP
>>> result.axes.to_pandas()                                          # doctest: +SKIP

Names are imported on first use: the ``tailguard`` command reads the lab's settings
(:class:`~tailguard.lab.config.LabConfig`) to build its options without loading the
models (scikit-learn, pandas) for every command.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_LAZY = {
    "CostModel": "tailguard.costs",
    "AccumulateSubsample": "tailguard.mix",
    **dict.fromkeys(("AXES_COLUMNS", "score_axes", "summarise"), "tailguard.lab.axes"),
    **dict.fromkeys(("DATASETS", "MODEL_DATA"), "tailguard.lab.data"),
    **dict.fromkeys(("LabConfig", "LabResult", "run", "run_job"), "tailguard.lab.experiment"),
    "Frontier": "tailguard.lab.frontier",
    "MODELS": "tailguard.lab.models",
    "Recovery": "tailguard.lab.recovery",
    **dict.fromkeys(("STRATEGIES", "parse_strategies", "strategy"), "tailguard.lab.strategies"),
}


def __getattr__(name: str) -> Any:
    """``lab.run``, ``lab.LabConfig``... imported when first asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tailguard.lab' has no attribute {name!r}")


def _function(name: str) -> property:
    """``lab.<name>``: the function of the submodule of that name, even once the import
    system has set the name to the submodule (that setting is ignored)."""
    return property(
        lambda self: getattr(importlib.import_module(f"tailguard.lab.{name}"), name),
        lambda self, value: None,
    )


class _Lab(types.ModuleType):
    """``lab.frontier`` and ``lab.recovery`` are the functions."""

    frontier = _function("frontier")
    recovery = _function("recovery")


sys.modules[__name__].__class__ = _Lab

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
