"""Equal volume under a gate: generate until the gate has admitted the round's quota.

A gated round that trained on whatever passed would train on less the stricter its
verifier, and a frontier comparing qualities would compare volumes as much as
verifiers. A real pipeline generates until it has enough that passed; so does the
lab: :func:`until_admitted` wraps the loop's ``generate`` so that a round's candidates
are drawn chunk by chunk, ruled on by the round's own gate as they come, and cut just
after the ``n``-th admitted one. The gate stage then rules on exactly those candidates
(the same verdicts: a lab verifier's decision is a function of its seed and the record),
so the round admits exactly ``n`` and its usage counts every candidate generated and
verified (:class:`tailguard.costs.RoundUsage`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

#: Chunks drawn at most per round; a gate that admits almost nothing stops there (the
#: round then admits fewer than its quota, and its row says so through its volume).
MAX_CHUNKS = 60
#: Seed step between a round's chunks (a stream of its own per chunk).
CHUNK_SEED_STEP = 104_729


def until_admitted(generate: Callable[..., pa.Table], gate: Any) -> Callable[..., pa.Table]:
    """``generate(model, n, round, seed)`` returning candidates of which ``gate`` admits ``n``."""

    def draw(model: Any, n: int, round: int, seed: int) -> pa.Table:  # noqa: A002
        parts: list[pa.Table] = []
        seen: set[str] = set()
        admitted = 0
        for k in range(MAX_CHUNKS):
            chunk = generate(model, n, round, seed + k * CHUNK_SEED_STEP)
            ids = chunk.column("id").to_pylist()
            fresh = np.array([i not in seen for i in ids], dtype=bool)
            _, first = np.unique(np.asarray(ids, dtype=object), return_index=True)
            once = np.zeros(len(ids), dtype=bool)
            once[first] = True
            chunk = chunk.filter(pa.array(fresh & once))  # each content once per round
            if chunk.num_rows == 0:
                parts = parts or [chunk]
                continue
            result = gate.run(chunk)
            ok = dict(zip(result.ids.to_pylist(), result.accepted.tolist(), strict=True))
            passed = np.cumsum([ok[i] for i in chunk.column("id").to_pylist()])
            if admitted + passed[-1] >= n:  # cut just after the n-th admitted candidate
                stop = int(np.searchsorted(passed, n - admitted)) + 1
                parts.append(chunk.slice(0, stop))
                break
            parts.append(chunk)
            seen.update(chunk.column("id").to_pylist())
            admitted += int(passed[-1])
        return pa.concat_tables(parts)

    return draw
