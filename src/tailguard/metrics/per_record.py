"""Per-record work of an evaluation (each text's words and embedding) and the tokens
read back from it: the contract a remote engine fulfils, apart from the registry."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa

from tailguard.metrics import text
from tailguard.metrics.embedders import Embedder


class PerRecord(Protocol):
    """Where an evaluation's per-record work runs (each text's words and embedding);
    the set-level figures are then reduced from what it returns, here.
    :class:`tailguard.metrics.distributed.RayRecords` runs it on Ray Data."""

    def run(
        self, texts: pa.Array, embedder: Embedder | None = None
    ) -> tuple[pa.Table, np.ndarray | None]:
        """:func:`tailguard.metrics.text.words` of ``texts`` in their order and, with
        ``embedder``, ``embedder.embed(texts)`` row for row: in one pass."""
        ...


def _flags(words: pa.Table) -> np.ndarray:
    return words["ascii"].to_numpy(zero_copy_only=False).astype(bool)


def _tokens_of(words: pa.Table) -> tuple[text.Tokens, bool | None]:
    """Tokens from :func:`text.words` rows, and whether all (True), none (False) or some
    (None) of the texts are ASCII, as :func:`text.all_ascii` says."""
    flags = _flags(words)
    kind = True if flags.all() else (False if not flags.any() else None)
    return text.from_words(words["words"], flags), kind
