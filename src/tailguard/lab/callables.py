"""The loop's callables for a built-in lab model: one definition for the lab and for projects.

``tailguard.toml``'s ``[model] kind = "ngram"`` and a lab job both train a fresh
model on each round's manifest records and sample candidates from it, so both
build their ``(train, generate, sample)`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from tailguard.errors import ConfigError

#: Offset of the evaluation sample's seed from the round's seed (a stream of its own).
EVAL_SEED_OFFSET = 7919


def loop_callables(
    kind: str, params: Mapping[str, Any] | None = None, *, eval_size: int | None = None
) -> tuple[Callable[..., Any], Callable[..., pa.Table], Callable[..., pa.Table] | None]:
    """``(train, generate, sample)`` for the lab model ``kind`` built with ``params``.

    ``train`` fits a new model on the records each round; ``generate`` samples
    candidates of generation ``round``; ``sample`` (only with ``eval_size``) draws
    the evaluation sample on its own seed stream, else the loop scores candidates.
    """
    from tailguard.lab.models import MODELS

    if kind not in MODELS:
        raise ConfigError(f"unknown model {kind!r}; choose one of {sorted(MODELS)}")
    from tailguard.lab.data import data_only_params

    cls = MODELS[kind]
    skip = data_only_params(kind)  # the data set reads these, the model does not
    params = {k: v for k, v in (params or {}).items() if k not in skip}

    seeded = getattr(cls, "seeded_fit", False)  # e.g. a neural model: its init and batches

    def train(manifest: Any, records: pa.Table) -> Any:
        if seeded:
            return cls(**params).fit(records, seed=manifest.seed)
        return cls(**params).fit(records)

    def generate(model: Any, n: int, round: int, seed: int) -> pa.Table:  # noqa: A002
        return model.sample(n, seed, generation=max(round, 1), round=round)

    if eval_size is None:
        return train, generate, None

    def sample(model: Any, round: int, seed: int) -> pa.Table:  # noqa: A002
        seed += EVAL_SEED_OFFSET
        return model.sample(eval_size, seed, generation=max(round, 1), round=round)

    return train, generate, sample
