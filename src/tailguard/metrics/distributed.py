"""Per-record work over Parquet shards on Ray: embeddings, words and per-record text metrics.

Every stage reads shards with ``content`` (and ``id``, ``pos`` when they have them)
and writes shards with ``id`` and ``pos`` beside the result, out of core
(``engine.map_parquet``: a :class:`tailguard.engines.RayEngine`; metrics imports no
other part of tailguard). :class:`RayRecords` is the evaluation's
:class:`~tailguard.metrics.registry.PerRecord` on Ray (``[engine] kind = "ray"``):
each text's words and embedding are computed on the cluster, and the set-level
metrics (distinct-n, coverage, PRDC, Vendi, MMD ...) are reduced from them in the
driver, to the same values as in process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from tailguard.metrics import text
from tailguard.metrics.embedders import CachedEmbedder


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


def words_batch(batch: pa.Table) -> pa.Table:
    """Per record: its words (:func:`tailguard.metrics.text.words`) and whether it is ASCII."""
    words = text.words(batch.column("content"))
    return pa.table({**_keys(batch), "words": words["words"], "ascii": words["ascii"]})


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
    return engine.map_parquet(
        EmbedBatch(embedder), source, destination, columns=_columns(source), batch_size=batch_size
    )


def record_metrics_parquet(
    source: str | Path, destination: str | Path, *, engine: Any, batch_size: int = 65_536
) -> str:
    """:func:`record_metrics` for every record of the shards at ``source``."""
    return engine.map_parquet(
        record_metrics, source, destination, columns=_columns(source), batch_size=batch_size
    )


def words_parquet(
    source: str | Path, destination: str | Path, *, engine: Any, batch_size: int = 16_384
) -> str:
    """:func:`words_batch` for every record of the shards at ``source``."""
    return engine.map_parquet(
        words_batch, source, destination, columns=_columns(source), batch_size=batch_size
    )


def _columns(source: str | Path) -> list[str]:
    """``content`` and the keys the shards at ``source`` have (``id``, ``pos``)."""
    names = pads.dataset(str(source), format="parquet").schema.names
    return [c for c in ("pos", "id") if c in names] + ["content"]


class RayRecords:
    """An evaluation's per-record work on Ray Data: the texts leave the driver as Parquet
    shards (``rows_per_file`` rows each, one block of work per file), and each text's
    words, with its embedding when asked, come back as shards in one pass, read in the
    texts' order.

    ``work_dir``: where the shards are written while they are worked on (a folder every
    node reads, for a cluster); unset, a temporary folder of this machine.
    """

    def __init__(
        self,
        engine: Any,
        *,
        work_dir: str | Path | None = None,
        rows_per_file: int = 4096,
        batch_size: int = 4096,
    ) -> None:
        if rows_per_file < 1 or batch_size < 1:
            raise ValueError("rows_per_file and batch_size must be >= 1")
        self.engine, self.work_dir = engine, work_dir
        self.rows_per_file, self.batch_size = rows_per_file, batch_size

    def run(self, texts: pa.Array, embedder: Any = None) -> tuple[pa.Table, np.ndarray | None]:
        """Each text's words and ASCII flag (:func:`tailguard.metrics.text.words`) and,
        with ``embedder``, ``embedder.embed(texts)``. A cached embedder sends only the
        texts its cache lacks (a second pass, when there are any)."""
        cached = isinstance(embedder, CachedEmbedder)
        out = self._run(texts, PerRecordBatch(None if cached else embedder))
        words = out.select(["words", "ascii"])
        if embedder is None:
            return words, None
        if cached:
            return words, embedder.embed(texts, via=self._embed)
        return words, _vectors(out["embedding"], len(texts))

    def _embed(self, embedder: Any, texts: pa.Array) -> np.ndarray:
        if len(texts) == 0:
            return embedder.embed(texts)
        return _vectors(self._run(texts, EmbedBatch(embedder))["embedding"], len(texts))

    def _run(self, texts: pa.Array, fn: Any) -> pa.Table:
        """Write ``texts`` as shards (``pos``, ``content``), map ``fn`` over them on the
        engine, and read its shards back in ``pos`` order."""
        if self.work_dir is not None:
            Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        n = len(texts)
        with tempfile.TemporaryDirectory(prefix="tailguard-eval-", dir=self.work_dir) as tmp:
            source, destination = Path(tmp) / "texts", Path(tmp) / "out"
            source.mkdir()
            table = pa.table({"pos": pa.array(np.arange(n, dtype=np.int64)), "content": texts})
            for i, start in enumerate(range(0, max(n, 1), self.rows_per_file)):
                pq.write_table(
                    table.slice(start, self.rows_per_file), source / f"part-{i:05d}.parquet"
                )
            self.engine.map_parquet(
                fn, source, destination, columns=["pos", "content"], batch_size=self.batch_size
            )
            out = pads.dataset(str(destination), format="parquet").to_table()
        if out.num_rows != n:
            raise RuntimeError(f"Ray returned {out.num_rows} rows for {n} texts")
        return out.sort_by("pos")

    def params(self) -> dict[str, Any]:
        return {"per_record": "ray", **getattr(self.engine, "params", dict)()}


class PerRecordBatch:
    """One batch's words (:func:`words_batch`) and, with an embedder, embeddings."""

    def __init__(self, embedder: Any = None) -> None:
        self.embedder = embedder

    @property
    def __name__(self) -> str:  # noqa: PLW3201 - Ray names operators after it
        return "PerRecord"

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = words_batch(batch)
        if self.embedder is None:
            return out
        return out.append_column("embedding", EmbedBatch(self.embedder)(batch)["embedding"])


def _vectors(column: pa.ChunkedArray, n: int) -> np.ndarray:
    """A fixed-size list column of float32 as an ``n`` x dim array."""
    arr = column.combine_chunks()
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(n, arr.type.list_size), np.float32)


__all__ = [
    "EmbedBatch",
    "PerRecordBatch",
    "RayRecords",
    "embed_parquet",
    "record_metrics",
    "record_metrics_parquet",
    "words_batch",
    "words_parquet",
]
