"""Per-record work over Parquet shards on Ray: embeddings and per-record text metrics.

Both stages read shards with ``id`` and ``content`` and write shards with ``id``
(and ``pos`` when the input has it) beside the result, out of core
(``engine.map_parquet``: a :class:`tailguard.engines.RayEngine`; metrics imports no
other part of tailguard). The monitor's set-level
metrics (PRDC, Vendi, MMD) then read the embedding shards they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _keys(batch: pa.Table) -> dict[str, Any]:
    return {c: batch.column(c) for c in ("pos", "id") if c in batch.column_names}


class EmbedBatch:
    """Embed one batch: ``id`` (``pos``) and ``embedding`` (fixed-size float32 list)."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    @property
    def __name__(self) -> str:  # noqa: PLW3201 - Ray names operators after it
        return "Embed"

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = np.ascontiguousarray(self.embedder.embed(batch.column("content")), np.float32)
        flat = pa.array(vectors.reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        return pa.table({**_keys(batch), "embedding": column})


def record_metrics(batch: pa.Table) -> pa.Table:
    """Per record: characters, words, mean word length, share of non-letter characters."""
    text = batch.column("content")
    chars = pc.utf8_length(text)
    spaces = pc.utf8_length(pc.replace_substring_regex(text, r"\S+", ""))
    visible = pc.cast(pc.subtract(chars, spaces), pa.float64())
    blank = pc.equal(visible, 0.0)
    tokens = pc.list_value_length(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(text)))
    words = pc.if_else(blank, 0, tokens)
    letters = pc.utf8_length(pc.replace_substring_regex(text, r"[^\p{L}]+", ""))
    share = pc.subtract(
        1.0, pc.divide(pc.cast(letters, pa.float64()), pc.max_element_wise(visible, 1.0))
    )
    return pa.table(
        {
            **_keys(batch),
            "chars": chars,
            "words": pc.cast(words, pa.int32()),
            "mean_word_chars": pc.divide(
                visible, pc.max_element_wise(pc.cast(words, pa.float64()), 1.0)
            ),
            "non_letter_share": pc.if_else(blank, 0.0, share),
        }
    )


def embed_parquet(
    embedder: Any,
    source: str | Path,
    destination: str | Path,
    *,
    engine: Any,
    batch_size: int = 4096,
) -> str:
    """Embed every record of the shards at ``source`` into shards at ``destination``.

    ``embedder`` is fitted first if it needs to be (the hashing embedder's document
    frequencies come from the human reference), then shipped to the workers.
    """
    columns = ["id", "content"] + (["pos"] if _has_pos(source) else [])
    return engine.map_parquet(
        EmbedBatch(embedder), source, destination, columns=columns, batch_size=batch_size
    )


def record_metrics_parquet(
    source: str | Path, destination: str | Path, *, engine: Any, batch_size: int = 65_536
) -> str:
    """:func:`record_metrics` for every record of the shards at ``source``."""
    columns = ["id", "content"] + (["pos"] if _has_pos(source) else [])
    return engine.map_parquet(
        record_metrics, source, destination, columns=columns, batch_size=batch_size
    )


def _has_pos(source: str | Path) -> bool:
    import pyarrow.dataset as pads

    return "pos" in pads.dataset(str(source), format="parquet").schema.names


__all__ = ["EmbedBatch", "embed_parquet", "record_metrics", "record_metrics_parquet"]
