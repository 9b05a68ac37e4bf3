"""Lab tasks with a ground truth, and a verifier whose quality is a knob.

A team that gates synthetic data with its own verifier (tests, a checker, a judge)
needs to know how good that verifier must be before leaning synthetic is safe. The
lab answers it on tasks where a sample's correctness is known exactly, so the
verifier's quality can be set rather than estimated:

- ``regression``: a record ``[x_1, ..., x_d, y]`` is *correct* when its label lies
  within :data:`REGRESSION_TOLERANCE` noise standard deviations of the true function
  ``x . w*`` (the data's own labels pass about 95% of the time: a correct label is one
  the true process could have written);
- ``ngram`` (fortunes): a generated quotation is *correct* when its label is its true
  category: the category whose human quotations make its words most likely (naive
  Bayes over all the human quotations, every category equally likely a priori). The
  verifier knows the true source. A mislabelled human quotation is wrong (1 of 1,438
  passes), a human quotation is right 99% of the time, and a rare category's generated
  texts pass about as often as a common one's, so a perfect verifier does not cut the
  tails (a bar of "every word is a word of the category's" passed 7% of a rare
  category's texts and a third of a common one's).

:class:`KnobVerifier` implements the gate's ``Verifier`` contract (a verdict table
with ``code`` and ``detail``), so it runs in the real ``Gate`` inside the lab's
real ``Loop``. It accepts a correct sample with probability ``recall`` and a wrong
one with probability ``1 - specificity``. In the terms of the issue, ``recall`` is
``r`` and ``specificity`` is ``p`` (a wrong sample passes with probability
``1 - p``). Each decision is a deterministic function of ``seed`` and the record's
content id, so a resumed gate rules the same way.

``bias > 0`` makes the verifier prefer the mode: every acceptance probability is
multiplied by ``typicality ** bias``, where typicality is 1 for the most common
region or class (the centre of the design, the most common category) and falls
towards the tails, so a biased verifier narrows what the model is retrained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import ConfigError, check_fraction
from tailguard.gate.base import Verifier, verdicts

#: A regression label is correct within this many noise standard deviations of ``x . w*``.
REGRESSION_TOLERANCE = 2.0

#: Add-k smoothing of the naive Bayes reading that names a quotation's true category.
NGRAM_SMOOTHING = 0.01

#: Models with a ground truth the knob verifier can read.
TASK_MODELS = ("regression", "ngram")


@dataclass(frozen=True)
class Task:
    """A ground truth over a batch of records, and how typical each record is.

    ``correct(batch)`` is a boolean per record; ``typicality(batch)`` a value in
    ``(0, 1]``, 1 at the mode (what a biased verifier prefers).
    """

    name: str
    definition: str
    correct: Callable[[pa.Table], np.ndarray]
    typicality: Callable[[pa.Table], np.ndarray]


def task_for(model: str, params: dict[str, Any], human: pa.Table) -> Task:
    """The ground truth of ``model``'s data (refused for a model without one)."""
    if model == "regression":
        return _regression_task(params)
    if model == "ngram":
        return _ngram_task(human)
    raise ConfigError(
        f"the {model!r} model has no ground truth for a verifier of known quality; "
        f"models with one: {', '.join(TASK_MODELS)}"
    )


def _regression_task(params: dict[str, Any]) -> Task:
    from tailguard.lab.models.base import decode_vectors
    from tailguard.lab.models.regression import LinearRegression

    own = LinearRegression._param_names
    model = LinearRegression(**{k: v for k, v in params.items() if k in own})
    w, sigma, d = model.true_coef(), model.noise, model.n_features

    def rows(batch: pa.Table) -> np.ndarray:
        return decode_vectors(batch.column("content"), dim=d + 1)

    def correct(batch: pa.Table) -> np.ndarray:
        r = rows(batch)
        return np.abs(r[:, -1] - r[:, :-1] @ w) <= REGRESSION_TOLERANCE * sigma

    def typicality(batch: pa.Table) -> np.ndarray:
        x = rows(batch)[:, :-1]  # the design is standard Gaussian: its mode is the origin
        return np.exp(-0.5 * np.maximum((x**2).sum(axis=1) - d, 0.0) / d)

    return Task(
        "regression",
        f"the label is within {REGRESSION_TOLERANCE:g} noise sd of the true function",
        correct,
        typicality,
    )


def _words(content: pa.Array | pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Every text's lower-cased tokens, flat, and how many each text has."""
    from tailguard.lab.models.ngram import tokenize

    tokens, lengths = tokenize(content)
    return pc.utf8_lower(tokens).to_numpy(zero_copy_only=False).tolist(), lengths


def _ngram_task(human: pa.Table) -> Task:
    """A quotation is correct when its label is its true category.

    The true category is the one whose human quotations make the text's words most
    likely: multinomial naive Bayes over every human quotation, with add-
    :data:`NGRAM_SMOOTHING` smoothing and every category equally likely a priori (a
    prior by size would read a rare category's texts as a common one's, and a perfect
    verifier would then cut the tails). Words no human quotation uses carry no evidence.
    """
    labels = pc.fill_null(human.column("label"), "").to_numpy(zero_copy_only=False)
    names, counts = np.unique(labels, return_counts=True)
    index = {c: i for i, c in enumerate(names.tolist())}
    words, lengths = _words(human.column("content"))
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    owner = np.repeat([index[c] for c in labels.tolist()], lengths)
    table = np.zeros((len(names), len(vocab)))
    np.add.at(table, (owner, np.array([vocab[w] for w in words], dtype=np.int64)), 1.0)
    log_p = np.log(
        (table + NGRAM_SMOOTHING)
        / (table.sum(axis=1, keepdims=True) + NGRAM_SMOOTHING * len(vocab))
    )
    share = dict(zip(names.tolist(), (counts / counts.max()).tolist(), strict=True))

    def claimed(batch: pa.Table) -> np.ndarray:
        return pc.fill_null(batch.column("label"), "").to_numpy(zero_copy_only=False)

    def correct(batch: pa.Table) -> np.ndarray:
        w, lens = _words(batch.column("content"))
        idx = np.array([vocab.get(x, -1) for x in w], dtype=np.int64)
        row = np.repeat(np.arange(len(lens)), lens)
        known = idx >= 0
        scores = np.zeros((len(lens), len(names)))
        np.add.at(scores, row[known], log_p[:, idx[known]].T)
        truth = scores.argmax(axis=1)
        said = np.array([index.get(c, -1) for c in claimed(batch).tolist()], dtype=np.int64)
        return (truth == said) & (np.bincount(row[known], minlength=len(lens)) > 0)

    def typicality(batch: pa.Table) -> np.ndarray:
        # the most common category is the mode; a rare one is a tail
        return np.array([share.get(x, min(share.values())) for x in claimed(batch)])

    return Task(
        "ngram",
        "its label is its true category: the one whose human quotations make its words "
        "most likely (naive Bayes, every category equally likely a priori)",
        correct,
        typicality,
    )


def _uniform(ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """One uniform number per content id and seed (SplitMix64 of the id's first 64 bits)."""
    raw = np.array([int(str(i)[:16], 16) for i in ids.to_pylist()], dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = raw + np.uint64(seed + 1) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class KnobVerifier(Verifier):
    """A verifier of set quality on a lab task: accepts a correct sample with probability
    ``recall`` and a wrong one with probability ``1 - specificity`` (times
    ``typicality ** bias``: ``bias > 0`` prefers the mode)."""

    kind: ClassVar[str] = "knob"
    version: ClassVar[str] = "1"
    codes: ClassVar[tuple[str, ...]] = ("rejected_correct", "rejected_wrong")
    columns: ClassVar[tuple[str, ...]] = ("label",)

    def __init__(
        self,
        *,
        task: Task,
        recall: float = 1.0,
        specificity: float = 1.0,
        bias: float = 0.0,
        seed: int = 0,
    ) -> None:
        recall = check_fraction(recall, "recall", zero=True)
        specificity = check_fraction(specificity, "specificity", zero=True)
        if bias < 0:
            raise ConfigError(f"bias must be >= 0, got {bias}")
        self.task, self.recall, self.specificity = task, recall, specificity
        self.bias, self.seed = bias, seed

    def params(self) -> dict[str, Any]:
        return {
            "task": self.task.name, "recall": self.recall, "specificity": self.specificity,
            "bias": self.bias, "seed": self.seed,
        }  # fmt: skip

    def verify(self, batch: pa.Table) -> pa.Table:
        """Accept each record with the knob's probability for its true correctness."""
        ok = self.task.correct(batch)
        p = np.where(ok, self.recall, 1.0 - self.specificity)
        if self.bias:
            p = p * self.task.typicality(batch) ** self.bias
        passed = _uniform(batch.column("id"), self.seed) < p
        code = np.where(ok, "rejected_correct", "rejected_wrong").astype(object)
        truth = np.where(ok, "correct", "wrong")
        fate = np.where(passed, "accepted", "rejected")
        detail = np.char.add(np.char.add(truth, f" by the {self.task.name} truth, "), fate)
        return verdicts(passed, code, detail.astype(object), score=p)
