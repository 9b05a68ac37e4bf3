"""Judges: a user's scoring function, or a trained classifier, as a verifier.

The usual gate for open-ended data is a policy checker: a classifier or a model
acting as judge. :class:`Judge` calls the user's batch function
``fn(texts) -> (scores, reasons)`` in batches, at most ``concurrency`` calls at a
time, each within ``timeout`` seconds and retried ``retries`` times with
exponential back-off; a score at or above ``threshold`` passes. Answers are
cached by content id and the judge's version, in memory and, with ``cache``, in
a DuckDB file, so a resumed or repeated gate never pays twice for a text.
:class:`ClassifierJudge` is the built-in judge: a scikit-learn text classifier
trained on labelled examples and stored with a hash check.

The user's function runs in killable worker processes (:mod:`tailguard.gate.worker`),
one per concurrent call: a call that overruns ``timeout`` is killed, not abandoned,
so a judge that never returns cannot hold the gate. Its answer is checked there
too: a score must be a finite real number in ``score_range`` (not a bool or a
string), and a reason is cut to :data:`MAX_REASON_CHARS` characters.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from pydantic import AfterValidator, Field

from tailguard.errors import InputError
from tailguard.gate import classifier
from tailguard.gate.base import ERROR_CODE, REQUIRED, Toml, Verifier, verdicts
from tailguard.gate.worker import Worker
from tailguard.ledger.judge_cache import JudgeCacheFile
from tailguard.records import content_ids, normalise_content

BatchFn = Callable[[list[str]], tuple[Sequence[float], Sequence[str]]]


def _entry_shape(entry: str) -> str:
    if ":" not in entry:
        raise ValueError(f"entry must look like module:function, got {entry!r}")
    return entry


def import_entry(entry: str) -> Callable[..., Any]:
    """A user's function by its ``module:function`` name (a ``ValueError`` says why not)."""
    import importlib

    module, _, function = entry.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"entry {entry!r} cannot be imported: {exc}") from None


#: A judge's reason is cut to this many characters (the ledger stores it per record).
MAX_REASON_CHARS = 1000


class _Checked:
    """``fn`` and the check of its answer, run together (in the worker, for a user's judge).

    Returns, per text, ``(score, None)`` or ``(None, what is wrong with the score)``,
    and the reasons as strings of at most :data:`MAX_REASON_CHARS` characters; a
    malformed answer as a whole (not a pair, wrong lengths) raises.
    """

    def __init__(self, fn: BatchFn, low: float, high: float) -> None:
        self.fn, self.low, self.high = fn, low, high

    def __call__(self, texts: list[str]) -> tuple[list[tuple[float | None, str | None]], list[str]]:
        answer = self.fn(list(texts))
        if not isinstance(answer, tuple | list) or len(answer) != 2:
            raise TypeError(f"the judge returned {type(answer).__name__}, not (scores, reasons)")
        scores, reasons = list(answer[0]), list(answer[1])
        if len(scores) != len(texts) or len(reasons) != len(texts):
            raise ValueError(
                f"the judge returned {len(scores)} scores and {len(reasons)} reasons "
                f"for {len(texts)} texts"
            )
        return [self._score(s) for s in scores], [_reason(r) for r in reasons]

    def _score(self, value: Any) -> tuple[float | None, str | None]:
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
            return None, f"score {_short(value)} is a {type(value).__name__}, not a real number"
        try:
            x = float(value)
        except (OverflowError, ValueError, TypeError):
            x = math.inf
        if not math.isfinite(x) or not self.low <= x <= self.high:
            return None, f"score {x!r} is not a finite number in [{self.low:g}, {self.high:g}]"
        return x, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reason(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) <= MAX_REASON_CHARS:
        return text
    return f"{text[: MAX_REASON_CHARS - 40]}... [cut from {len(text):,} characters]"


class JudgeCache:
    """Scores and reasons by (judge key, content id): in memory, and in a DuckDB file if given."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self._memory: dict[tuple[str, str], tuple[float, str]] = {}
        self._file = None if path is None else JudgeCacheFile(path)

    def get(self, key: str, ids: list[str]) -> dict[str, tuple[float, str]]:
        found = {i: self._memory[(key, i)] for i in ids if (key, i) in self._memory}
        missing = [i for i in ids if i not in found]
        if self._file is not None and missing:
            for i, score, reason in self._file.get(key, missing):
                found[i] = self._memory[(key, i)] = (score, reason)
        return found

    def put(self, key: str, answers: dict[str, tuple[float, str]]) -> None:
        for i, value in answers.items():
            self._memory[(key, i)] = value
        if self._file is not None and answers:
            self._file.put(key, answers)


class Judge(Verifier):
    """A user's batch scoring function as a verifier (see the module docstring).

    ``fn(texts)`` returns ``(scores, reasons)``, one of each per text: a score is a
    finite real number in ``score_range`` (``threshold`` decides), anything else fails
    that record with code ``error`` naming the problem. A batch whose calls all
    overran ``timeout`` fails its records with code ``timeout``; one that fails
    otherwise after ``retries`` with ``judge_unavailable``. ``version`` names the
    judge's behaviour in the cache key: change it when the judge changes. ``calls``
    counts the function's calls (for tests and cost checks).
    """

    kind = "judge"
    version = "2"
    row_independent = False  # batches, concurrency and the cache are the judge's own
    codes = ("below_threshold", "timeout", "judge_unavailable")
    #: In ``tailguard.toml`` the function is named ``module:function``.
    toml = {
        "fn": Toml(
            Annotated[str, AfterValidator(_entry_shape)],
            key="entry",
            convert=import_entry,
            default=REQUIRED,
        )
    }
    #: Whether ``fn`` runs in killable worker processes (a user's code) or here (built in).
    isolated: bool = True

    def __init__(
        self,
        fn: BatchFn,
        *,
        threshold: float = 0.5,
        batch_size: Annotated[int, Field(ge=1)] = 32,
        timeout: Annotated[float, Field(gt=0)] = 60.0,
        retries: Annotated[int, Field(ge=0)] = 2,
        backoff: Annotated[float, Field(ge=0)] = 0.5,
        concurrency: Annotated[int, Field(ge=1)] = 4,
        cache: str | Path | None = None,
        judge_version: str = "1",
        score_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not callable(fn):
            raise InputError(f"{fn!r} is not callable", field="fn")
        for key, value, low in (
            ("batch_size", batch_size, 1),
            ("concurrency", concurrency, 1),
            ("retries", retries, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise InputError(f"{key} must be an integer >= {low}, got {value!r}", field=key)
        if not _real(timeout) or timeout <= 0 or not _real(backoff) or backoff < 0:
            raise InputError("timeout must be > 0 and backoff >= 0", field="timeout")
        bounds = tuple(score_range) if isinstance(score_range, tuple | list) else ()
        if len(bounds) != 2 or not all(_real(b) for b in bounds) or not bounds[0] < bounds[1]:
            raise InputError(
                f"score_range must be two finite numbers, low < high, got {score_range!r}",
                field="score_range",
            )
        self.fn = fn
        self.threshold, self.batch_size, self.timeout = float(threshold), batch_size, timeout
        self.retries, self.backoff, self.concurrency = retries, backoff, concurrency
        self.cache = None if cache is None else str(cache)
        self.judge_version = str(judge_version)
        self.score_range = (float(bounds[0]), float(bounds[1]))
        self._cache = JudgeCache(self.cache)
        self._name = getattr(fn, "__name__", "judge")
        self._workers: list[Worker] = []
        self.calls = 0

    def params(self) -> dict[str, Any]:
        out = super().params()
        out["fn"] = _qualname(self.fn)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_workers": []}  # each process forks its own

    def close(self) -> None:
        """Stop the judge's worker processes (they are also stopped with the judge)."""
        for worker in self._workers:
            worker.close()

    @property
    def cache_key(self) -> str:
        """What an answer is cached under: the judge's name, function and versions."""
        return f"{self.name}|{self.kind}|{_qualname(self.fn)}|{self.version}|{self.judge_version}"

    def _call(self, texts: list[str], workers: queue.Queue[Worker | None]) -> Any:
        """One batch through ``fn`` within the timeout, retried with exponential back-off.

        Returns the checked answer (see :class:`_Checked`) or raises ``TimeoutError``
        (every attempt overran) or ``RuntimeError`` (the last attempt failed otherwise).
        """
        last: BaseException | None = None
        timeouts = 0
        worker = workers.get()
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                self.calls += 1
                if worker is None:  # built in: run here, no limit
                    try:
                        return _Checked(self.fn, *self.score_range)(texts)
                    except Exception as exc:  # noqa: BLE001 - retried, then a verdict
                        last = exc
                        continue
                outcome = worker.call(list(texts), self.timeout)
                if outcome.kind == "ok":
                    return outcome.value
                timeouts += outcome.kind == "timeout"
                last = RuntimeError(outcome.value)
        finally:
            workers.put(worker)
        if timeouts == self.retries + 1:
            raise TimeoutError(f"{last} (worker process killed; {timeouts} attempt(s))")
        raise RuntimeError(str(last) if isinstance(last, RuntimeError) else _named(last))

    def _pool(self) -> queue.Queue[Worker | None]:
        """The workers the concurrent calls take turns on (``None``: call in this process)."""
        pool: queue.Queue[Worker | None] = queue.Queue()
        if not self.isolated:
            for _ in range(self.concurrency):
                pool.put(None)
            return pool
        checked = _Checked(self.fn, *self.score_range)
        while len(self._workers) < self.concurrency:
            self._workers.append(Worker(checked))
        for worker in self._workers[: self.concurrency]:
            worker.fn = checked  # the score range may have changed since
            pool.put(worker)
        return pool

    def score(self, texts: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Scores, reasons and an ``ok`` mask (False: no valid score) for texts.

        Where ``ok`` is False the reason says why: it is prefixed by the verdict code
        (``timeout``, ``error`` or ``judge_unavailable``) and a colon.
        """
        ids = content_ids(normalise_content(pa.array(texts, pa.string()))).to_pylist()
        key = self.cache_key
        known = self._cache.get(key, sorted(set(ids)))
        todo = sorted({i for i in ids if i not in known})
        text_of = dict(zip(ids, texts, strict=True))
        batches = [todo[k : k + self.batch_size] for k in range(0, len(todo), self.batch_size)]
        failed: dict[str, str] = {}
        workers = self._pool()
        with ThreadPoolExecutor(max_workers=self.concurrency) as runners:
            work = [
                (b, runners.submit(self._call, [text_of[i] for i in b], workers)) for b in batches
            ]
            for batch, future in work:
                try:
                    checked, reasons = future.result()
                except TimeoutError as exc:
                    failed.update(dict.fromkeys(batch, f"timeout:{exc}"))
                    continue
                except RuntimeError as exc:
                    failed.update(dict.fromkeys(batch, f"judge_unavailable:{exc}"))
                    continue
                fresh = {}
                for i, (value, problem), reason in zip(batch, checked, reasons, strict=True):
                    if problem is None:
                        fresh[i] = (value, reason)
                    else:
                        failed[i] = f"{ERROR_CODE}:the judge's {problem}"
                self._cache.put(key, fresh)
                known.update(fresh)
        score = np.array([known[i][0] if i in known else np.nan for i in ids])
        reasons = [known[i][1] if i in known else failed.get(i, "") for i in ids]
        return score, reasons, np.array([i in known for i in ids])

    def verify(self, batch: pa.Table) -> pa.Table:
        score, reasons, ok = self.score(batch.column("content").to_pylist())
        passed = ok & (np.nan_to_num(score, nan=-np.inf) >= self.threshold)
        code, detail = [], []
        for r, s, k, p in zip(reasons, score, ok, passed, strict=True):
            if p:
                code.append("ok")
                detail.append(r)
            elif k:
                code.append("below_threshold")
                detail.append(f"{r} (score {s:.3f} < {self.threshold:g})")
            else:
                why, _, text = r.partition(":")
                code.append(why)
                detail.append(f"judge unavailable: {text}" if why == "judge_unavailable" else text)
        return verdicts(passed, code, detail, score=score)


class ClassifierJudge(Judge):
    """A trained text classifier as a judge: the score is P(``positive`` class).

    Build it with :meth:`train` (from texts and labels, e.g. a ledger's labelled
    records or a file), from a fitted scikit-learn classifier (``model``), or from
    a saved model's path and its SHA-256 (``model``, ``sha256``): the file is
    hashed before it is unpickled and refused on a mismatch.
    """

    kind = "classifier_judge"
    version = "1"
    isolated = False  # built-in, trusted code: scikit-learn runs here, not in a fork
    #: In ``tailguard.toml`` a saved model's path, and the SHA-256 it was saved with.
    toml = {
        "model": Toml(str),
        "sha256": Toml(Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")], default=REQUIRED),
    }

    def __init__(
        self,
        *,
        model: str | Path | Any,
        sha256: str | None = None,
        positive: str = "on-topic",
        threshold: float = 0.5,
        batch_size: Annotated[int, Field(ge=1)] = 512,
        cache: str | Path | None = None,
    ) -> None:
        if isinstance(model, str | Path):
            fitted, model = classifier.load(model, sha256 or ""), str(model)
        elif hasattr(model, "predict_proba"):
            fitted, model = model, None
        else:
            raise InputError("model must be a saved model's path or a classifier", field="model")
        self._model = fitted
        self.model = model
        self.sha256 = sha256
        self.positive = positive
        super().__init__(
            self._predict,
            threshold=threshold,
            batch_size=batch_size,
            concurrency=1,
            retries=0,
            cache=cache,
            judge_version=sha256 or _model_digest(fitted),
        )
        self._name = None

    def _predict(self, texts: list[str]) -> tuple[list[float], list[str]]:
        p = self._model.predict_proba(texts)[:, 1]
        return p.tolist(), [f"P({self.positive})={v:.2f}" for v in p]

    def params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sha256": self.sha256 or self.judge_version,
            "positive": self.positive,
            "threshold": self.threshold,
            "batch_size": self.batch_size,
            "cache": self.cache,
        }

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[Any],
        *,
        positive: str,
        threshold: float = 0.5,
        seed: int = 0,
        **kwargs: Any,
    ) -> tuple[ClassifierJudge, classifier.Fitted]:
        """Train on labelled texts (``positive``: the label that passes); also its CV fit."""
        y = np.asarray([str(v) == str(positive) for v in labels])
        fitted = classifier.fit(list(texts), y, seed=seed)
        judge = cls(model=fitted.model, positive=str(positive), threshold=threshold, **kwargs)
        return judge, fitted

    def save(self, path: str | Path) -> str:
        """Store the model; returns the SHA-256 to put in ``tailguard.toml``."""
        digest = classifier.save(self._model, path)
        self.model, self.sha256 = str(path), digest
        return digest


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"


def _model_digest(model: Any) -> str:
    import pickle

    return hashlib.sha256(pickle.dumps(model)).hexdigest()[:16]


def _real(value: Any) -> bool:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _named(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}"
