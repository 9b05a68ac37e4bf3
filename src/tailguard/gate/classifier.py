"""A fast text classifier (hashed word n-grams + logistic regression), saved safely.

Shared by the classifier judge and the contamination detector: both need a
model that trains in seconds on the ledger's own labels, reports its
cross-validated AUC, and can be stored and read back without trusting the file.
A saved model is a joblib file; reading one first checks its SHA-256 against the
hash the caller expects (from ``tailguard.toml``), so a swapped file is refused
before anything is unpickled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tailguard.errors import InputError

#: Hashed features: enough buckets that fortunes-sized vocabularies rarely collide.
N_FEATURES = 1 << 18


def pipeline(*, ngram: tuple[int, int] = (1, 2), seed: int = 0) -> Any:
    """Hashed word 1-2-grams (and character 3-5-grams), tf-idf, logistic regression."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    words = HashingVectorizer(
        n_features=N_FEATURES, ngram_range=ngram, alternate_sign=False, norm=None
    )
    chars = HashingVectorizer(
        n_features=N_FEATURES,
        analyzer="char_wb",
        ngram_range=(3, 5),
        alternate_sign=False,
        norm=None,
    )
    return make_pipeline(
        make_union(words, chars),
        TfidfTransformer(sublinear_tf=True),
        LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced", random_state=seed),
    )


@dataclass(frozen=True)
class Fitted:
    """A trained classifier, its out-of-fold scores and their AUC."""

    model: Any
    auc: float
    oof: np.ndarray  # out-of-fold P(positive) for every training text
    y: np.ndarray  # 1 = positive

    def threshold_for(self, *, precision: float = 0.9) -> float:
        """The lowest out-of-fold score whose flagged set reaches ``precision`` (else 0.5)."""
        order = np.argsort(-self.oof, kind="stable")
        hits = np.cumsum(self.y[order])
        prec = hits / np.arange(1, len(order) + 1)
        ok = np.flatnonzero(prec >= precision)
        return float(self.oof[order][ok[-1]]) if len(ok) else 0.5


def fit(texts: list[str], positive: np.ndarray, *, folds: int = 5, seed: int = 0) -> Fitted:
    """Train on ``texts`` (``positive``: a boolean per text), with ``folds``-fold CV AUC."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(positive, dtype=int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < folds:
        raise InputError(
            f"a classifier needs at least {folds} examples of each class, got {n_pos} positive "
            f"and {n_neg} negative",
            field="label",
        )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    oof = cross_val_predict(pipeline(seed=seed), texts, y, cv=cv, method="predict_proba")[:, 1]
    model = pipeline(seed=seed).fit(texts, y)
    return Fitted(model=model, auc=float(roc_auc_score(y, oof)), oof=oof, y=y)


def save(model: Any, path: str | Path) -> str:
    """Write ``model`` with joblib; the SHA-256 to give :func:`load` (and the config)."""
    import joblib

    path = Path(path)
    joblib.dump(model, path)
    return file_sha256(path)


def load(path: str | Path, sha256: str) -> Any:
    """Read a saved model, refusing it unless its SHA-256 is ``sha256`` (checked first)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InputError("model file not found", file=str(path))
    if not sha256 or file_sha256(path) != sha256.lower():
        raise InputError(
            f"model file's SHA-256 is not {sha256!r}: refusing to load it (a saved model is "
            "code; give the hash `tailguard judge train` printed)",
            file=str(path),
            field="sha256",
        )
    return joblib.load(path)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
