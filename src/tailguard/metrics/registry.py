"""The metric registry, presets and :func:`evaluate`.

Each registered :class:`Metric` has a name, a direction (``higher_is_better``)
and a ``kind`` - ``tail``, ``diversity``, ``mean`` or ``fidelity`` - so the
monitor can tell a thinning tail from a moving average. A :class:`Preset`
bundles metrics with default thresholds (like evidently's presets). The
functional twins live in :mod:`labels`, :mod:`text`, :mod:`embeddings` and
:mod:`scalars`; the registry only wires them to a :class:`Comparison`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tailguard.errors import ConfigError, InputError
from tailguard.metrics import _checks, embeddings, labels, text, vectors
from tailguard.metrics.embedders import Embedder, HashingEmbedder
from tailguard.metrics.per_record import PerRecord, _flags, _tokens_of

Kind = Literal["tail", "diversity", "mean", "fidelity"]
KINDS = ("tail", "diversity", "mean", "fidelity")


class Reference:
    """The human reference (texts and optional labels), prepared once and reused.

    Keeps the reference's fitted embedder and embeddings, so evaluating many
    samples against one reference (as the lab does) pays for them once.
    ``per_record``: where its words and embeddings are computed (default: here).
    """

    def __init__(
        self,
        texts: Any,
        labels: Any = None,
        *,
        embedder: Embedder | None = None,
        per_record: PerRecord | None = None,
    ) -> None:
        self.per_record = per_record
        self.texts = _checks.texts(texts, "reference_texts")
        self.labels = None if labels is None else _checks.labels(labels, "reference_labels")
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise InputError(
                f"reference_labels has {len(self.labels)} rows but reference_texts has "
                f"{len(self.texts)}"
            )
        self._embedder = embedder

    @cached_property
    def embedder(self) -> Embedder:
        emb = self._embedder if self._embedder is not None else HashingEmbedder()
        if hasattr(emb, "fit"):
            emb.fit(self.texts)
        return emb

    @cached_property
    def embeddings(self) -> np.ndarray:
        if self.per_record is not None:
            return _per_record(self, self.embedder, embeddings=True)["embeddings"]
        return self.embedder.embed(self.texts)

    @cached_property
    def words(self) -> pa.Table:
        """Each text's words (:func:`text.words`), from ``per_record`` when set."""
        if self.per_record is not None:
            return _per_record(self, None, embeddings=False)["words"]
        return text.words(self.texts)

    @cached_property
    def tokens(self) -> tuple[text.Tokens, bool | None]:
        """The texts tokenised once, and whether they are all ASCII (see text.all_ascii)."""
        if self.per_record is not None:
            return _tokens_of(self.words)
        return text.tokenize(self.texts), text.all_ascii(self.texts)

    @cached_property
    def vectors(self) -> np.ndarray:
        """The texts as numeric records (JSON arrays), decoded once."""
        return vectors.decode_vectors(self.texts)


class Comparison:
    """One sample against one :class:`Reference`; shared work is computed once, lazily."""

    def __init__(
        self,
        sample_texts: Any,
        sample_labels: Any,
        reference: Reference,
        *,
        seed: int = 0,
        per_record: PerRecord | None = None,
    ) -> None:
        self.per_record = per_record
        self.texts = _checks.texts(sample_texts, "sample_texts")
        self.labels = (
            None if sample_labels is None else _checks.labels(sample_labels, "sample_labels")
        )
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise InputError(
                f"sample_labels has {len(self.labels)} rows but sample_texts has {len(self.texts)}"
            )
        self.reference = reference
        self.seed = seed

    @cached_property
    def words(self) -> pa.Table:
        """Each text's words (:func:`text.words`), from ``per_record`` when set."""
        if self.per_record is not None:
            return _per_record(self, None, embeddings=False)["words"]
        return text.words(self.texts)

    def prepare(self, *, embeddings: bool) -> None:
        """With ``per_record``: the reference's and the sample's per-record work, each in
        one pass (words, and embeddings when a metric needs them)."""
        if self.per_record is None:
            return
        ref = self.reference
        if ref.per_record is not None:
            _per_record(ref, ref.embedder if embeddings else None, embeddings=embeddings)
        _per_record(self, ref.embedder if embeddings else None, embeddings=embeddings)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and self.reference.labels is not None

    @cached_property
    def class_counts(self) -> labels.ClassCounts:
        return labels.class_counts(self.labels, self.reference.labels)

    @cached_property
    def tokens(self) -> tuple[text.Tokens, text.Tokens]:
        if self.per_record is None:
            pair = text.tokenize_against(self.texts, *self.reference.tokens)
            return pair or text.tokenize_pair(self.texts, self.reference.texts)
        # the words come from per_record; numbered exactly as the lines above number them
        words = self.words
        own, own_ascii = _tokens_of(words)
        ref, ref_ascii = self.reference.tokens
        if ref_ascii is not None and own_ascii is ref_ascii:
            return text.against(own, ref)
        both = pa.concat_tables([words, self.reference.words.select(words.column_names)])
        joint = text.from_words(both["words"], _flags(both))
        n = len(self.texts)
        return joint.rows(0, n), joint.rows(n, both.num_rows)

    @cached_property
    def ngrams(self) -> text.NGrams:
        return text.NGrams(self.tokens[0])

    @cached_property
    def embeddings(self) -> np.ndarray:
        if self.per_record is not None:
            return _per_record(self, self.reference.embedder, embeddings=True)["embeddings"]
        return self.reference.embedder.embed(self.texts)

    @cached_property
    def vectors(self) -> np.ndarray:
        return vectors.decode_vectors(self.texts, dim=self.reference.vectors.shape[1])

    @cached_property
    def prdc(self) -> dict[str, float]:
        return embeddings.prdc(self.embeddings, self.reference.embeddings, k=5)


def _per_record(
    owner: Reference | Comparison, embedder: Embedder | None, *, embeddings: bool
) -> dict[str, Any]:
    """The per-record work of ``owner``'s texts in one pass of its ``per_record``; what it
    returns is kept as ``owner``'s ``words`` (and ``embeddings``)."""
    done = owner.__dict__
    if "words" in done and (not embeddings or "embeddings" in done):
        return done
    words, vectors = owner.per_record.run(owner.texts, embedder if embeddings else None)
    done.setdefault("words", words)
    if vectors is not None:
        done["embeddings"] = vectors
    return done


@dataclass(frozen=True)
class Metric:
    """A registered metric: what it is called, which way is better, and what it watches."""

    name: str
    #: True, False, or None: two-sided, the distance from ``ideal`` (or the baseline) is bad.
    higher_is_better: bool | None
    kind: Kind
    needs: tuple[str, ...]
    compute: Callable[[Comparison], float] = field(repr=False)
    description: str = ""
    #: The plain function of ``(sample, reference)`` this metric computes (its functional twin).
    function: Callable[[Any, Any], float] | None = field(default=None, repr=False)
    #: The value that means "no change" for a two-sided metric (None: the baseline).
    ideal: float | None = None

    def __call__(
        self,
        sample_texts: Any,
        sample_labels: Any = None,
        reference_texts: Any = None,
        reference_labels: Any = None,
    ) -> float:
        ref = (
            reference_texts
            if isinstance(reference_texts, Reference)
            else Reference(reference_texts, reference_labels)
        )
        return float(self.compute(Comparison(sample_texts, sample_labels, ref)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "higher_is_better": self.higher_is_better,
            "kind": self.kind,
            "needs": list(self.needs),
            "description": self.description,
            "ideal": self.ideal,
        }


REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric to the registry (names are unique)."""
    if metric.higher_is_better not in (True, False, None):
        raise ConfigError(f"metric {metric.name!r}: higher_is_better must be True, False or None")
    if metric.kind not in KINDS:
        raise ConfigError(f"metric {metric.name!r}: kind must be one of {KINDS}")
    if metric.name in REGISTRY:
        raise ConfigError(f"a metric named {metric.name!r} is already registered")
    REGISTRY[metric.name] = metric
    return metric


def _or_zero(fn: Callable[[text.NGrams, int], float], c: Comparison, n: int) -> float:
    """A sample too short to hold any n-gram has no n-gram diversity: 0, not an error."""
    distinct, total = c.ngrams.distinct(n)
    return fn(c.ngrams, n) if total else 0.0


def _sample_only(fn: Callable[..., float], **kwargs: Any) -> Callable[[Any, Any], float]:
    """A one-sided function as a twin of ``(sample, reference)``: the reference is unused."""

    def twin(sample: Any, reference: Any = None) -> float:
        return fn(sample, **kwargs)

    twin.__name__ = getattr(fn, "__name__", "twin")
    return twin


def _key(fn: Callable[..., dict[str, float]], key: str) -> Callable[[Any, Any], float]:
    """One entry of a function returning several figures, as a twin."""

    def twin(sample: Any, reference: Any) -> float:
        return fn(sample, reference)[key]

    twin.__name__ = f"{getattr(fn, '__name__', 'twin')}[{key}]"
    return twin


def _m(
    name: str,
    hib: bool | None,
    kind: Kind,
    needs: str,
    fn: Callable[[Comparison], float],
    doc: str,
    twin: Callable[[Any, Any], float],
    *,
    ideal: float | None = None,
) -> None:
    register(Metric(name, hib, kind, tuple(needs.split()), fn, doc, twin, ideal))


_m(
    "label_tv",
    False,
    "mean",
    "labels",
    lambda c: labels.total_variation(c.class_counts),
    "total variation between class distributions",
    labels.total_variation,
)
_m(
    "label_js",
    False,
    "mean",
    "labels",
    lambda c: labels.js_divergence(c.class_counts),
    "Jensen-Shannon divergence (bits) between class distributions",
    labels.js_divergence,
)
_m(
    "label_kl",
    False,
    "mean",
    "labels",
    lambda c: labels.kl_divergence(c.class_counts),
    "smoothed KL(reference || sample) in bits",
    labels.kl_divergence,
)
_m(
    "label_entropy",
    True,
    "diversity",
    "labels",
    lambda c: labels.label_entropy(c.labels),
    "entropy (bits) of the sample's labels",
    _sample_only(labels.label_entropy),
)
_m(
    "tail_recall",
    True,
    "tail",
    "labels",
    lambda c: labels.tail_recall(c.class_counts),
    "share of the reference's rare classes present in the sample",
    labels.tail_recall,
)
_m(
    "tail_mass_ratio",
    True,
    "tail",
    "labels",
    lambda c: labels.tail_mass_ratio(c.class_counts),
    "sample mass on the rare classes / reference mass on them",
    labels.tail_mass_ratio,
)
for _n in (1, 2, 3, 4):
    _m(
        f"distinct_{_n}",
        True,
        "diversity",
        "texts",
        lambda c, n=_n: _or_zero(text.distinct_n, c, n),
        f"distinct {_n}-grams / all {_n}-grams",
        _sample_only(text.distinct_n, n=_n),
    )
for _n in (1, 2):
    _m(
        f"ngram_entropy_{_n}",
        True,
        "diversity",
        "texts",
        lambda c, n=_n: _or_zero(text.ngram_entropy, c, n),
        f"entropy (bits) of {_n}-gram frequencies",
        _sample_only(text.ngram_entropy, n=_n),
    )
_m(
    "vocab_coverage",
    True,
    "diversity",
    "texts",
    lambda c: text.vocab_coverage(*c.tokens),
    "share of the reference vocabulary used by the sample",
    text.vocab_coverage,
)
_m(
    "rare_vocab_coverage",
    True,
    "tail",
    "texts",
    lambda c: text.rare_vocab_coverage(*c.tokens),
    "share of the reference's rare tokens (bottom 20% of mass) used by the sample",
    text.rare_vocab_coverage,
)
_m(
    "compression_ratio",
    False,
    "diversity",
    "texts",
    lambda c: text.compression_ratio(c.texts),
    "raw / zlib-compressed size; repetition raises it",
    _sample_only(text.compression_ratio),
)
_m(
    "length_shift",
    False,
    "mean",
    "texts",
    lambda c: text.length_shift(*c.tokens),
    "Wasserstein-1 between token lengths / mean reference length",
    text.length_shift,
)
_m(
    "self_bleu",
    False,
    "diversity",
    "texts",
    lambda c: text.self_bleu(c.tokens[0], seed=c.seed),
    "mean BLEU-4 of each text vs the others",
    _sample_only(text.self_bleu),
)
_m(
    "prdc_precision",
    True,
    "fidelity",
    "embeddings",
    lambda c: c.prdc["precision"],
    "share of samples inside some reference k-NN ball",
    _key(embeddings.prdc, "precision"),
)
_m(
    "prdc_recall",
    True,
    "tail",
    "embeddings",
    lambda c: c.prdc["recall"],
    "share of reference points inside some sample k-NN ball",
    _key(embeddings.prdc, "recall"),
)
_m(
    "prdc_density",
    True,
    "fidelity",
    "embeddings",
    lambda c: c.prdc["density"],
    "mean number of reference balls holding a sample, / k",
    _key(embeddings.prdc, "density"),
)
_m(
    "prdc_coverage",
    True,
    "tail",
    "embeddings",
    lambda c: c.prdc["coverage"],
    "share of reference balls holding at least one sample",
    _key(embeddings.prdc, "coverage"),
)
_m(
    "vendi",
    True,
    "diversity",
    "embeddings",
    lambda c: embeddings.vendi_of_rows(c.embeddings),
    "Vendi score (cosine kernel, q=1) of the sample's non-empty texts",
    _sample_only(embeddings.vendi_of_rows),
)
_m(
    "embedding_spread",
    True,
    "diversity",
    "embeddings",
    lambda c: embeddings.spread(c.embeddings, c.reference.embeddings),
    "total variance of sample embeddings / reference's",
    embeddings.spread,
)
_m(
    "frechet",
    False,
    "fidelity",
    "embeddings",
    lambda c: embeddings.frechet_distance(c.embeddings, c.reference.embeddings),
    "Fréchet distance between Gaussian fits of the embeddings",
    embeddings.frechet_distance,
)
_m(
    "mmd",
    False,
    "fidelity",
    "embeddings",
    lambda c: embeddings.mmd_rbf(c.embeddings, c.reference.embeddings),
    "unbiased RBF MMD^2 (median-heuristic bandwidth)",
    embeddings.mmd_rbf,
)


_m(
    "vector_variance_ratio",
    None,
    "diversity",
    "vectors",
    lambda c: vectors.total_variance_ratio(c.vectors, c.reference.vectors),
    "total variance of numeric records / the reference's (1: no change)",
    vectors.total_variance_ratio,
    ideal=1.0,
)
_m(
    "vector_tail_lower",
    True,
    "tail",
    "vectors",
    lambda c: vectors.tail_width_lower(c.vectors, c.reference.vectors),
    "width of the last coordinate's lower 1% tail / the reference's",
    vectors.tail_width_lower,
)
_m(
    "vector_tail_upper",
    True,
    "tail",
    "vectors",
    lambda c: vectors.tail_width_upper(c.vectors, c.reference.vectors),
    "width of the last coordinate's upper 1% tail / the reference's",
    vectors.tail_width_upper,
)
_m(
    "vector_w1",
    False,
    "fidelity",
    "vectors",
    lambda c: vectors.last_coordinate_w1(c.vectors, c.reference.vectors),
    "Wasserstein-1 between the last coordinates",
    vectors.last_coordinate_w1,
)


@dataclass(frozen=True)
class Threshold:
    """When a watched metric counts as degraded, always in its *bad* direction.

    ``relative``: worse than the baseline by more than ``value`` x |baseline|;
    ``change``: worse than the baseline by more than ``value`` (absolute);
    ``above`` / ``below``: the value itself is past ``value`` (e.g. density above 1.5).
    """

    kind: Literal["relative", "change", "above", "below"]
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class Preset:
    """Metrics computed together, with the thresholds the monitor watches."""

    name: str
    metrics: tuple[str, ...]
    thresholds: dict[str, Threshold]
    #: (density metric, bound, recall metric): density past the bound while recall falls
    shrinkage: tuple[str, float, str] | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in (*self.metrics, *self.thresholds) if m not in REGISTRY]
        if unknown:
            raise ConfigError(f"preset {self.name!r} names unknown metrics: {unknown}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metrics": list(self.metrics),
            "thresholds": {k: v.to_dict() for k, v in self.thresholds.items()},
            "shrinkage": list(self.shrinkage) if self.shrinkage else None,
        }


_DEFAULT_METRICS = (
    "label_tv", "label_js", "label_kl", "label_entropy", "tail_recall", "tail_mass_ratio",
    "distinct_1", "distinct_2", "distinct_3", "distinct_4", "ngram_entropy_1", "ngram_entropy_2",
    "vocab_coverage", "rare_vocab_coverage", "compression_ratio", "length_shift",
)  # fmt: skip
_DEFAULT_THRESHOLDS = {
    "tail_recall": Threshold("relative", 0.10),
    "distinct_2": Threshold("relative", 0.10),
    "tail_mass_ratio": Threshold("relative", 0.25),
    "rare_vocab_coverage": Threshold("relative", 0.15),
    "label_js": Threshold("change", 0.05),
    "length_shift": Threshold("change", 0.25),
}
PRESETS: dict[str, Preset] = {
    "default": Preset("default", _DEFAULT_METRICS, _DEFAULT_THRESHOLDS),
    "rich": Preset(
        "rich",
        (
            *_DEFAULT_METRICS,
            "self_bleu",
            "prdc_precision",
            "prdc_recall",
            "prdc_density",
            "prdc_coverage",
            "vendi",
            "embedding_spread",
            "frechet",
            "mmd",
        ),
        {
            **_DEFAULT_THRESHOLDS,
            "prdc_recall": Threshold("relative", 0.10),
            "prdc_coverage": Threshold("relative", 0.10),
            "vendi": Threshold("relative", 0.10),
            "self_bleu": Threshold("relative", 0.10),
            "prdc_density": Threshold("above", 1.5),
        },
        shrinkage=("prdc_density", 1.5, "prdc_recall"),
    ),  # fmt: skip
    # The lab's presets, one per data kind of its built-in models (tailguard.lab.evaluation).
    "lab-tokens": Preset(
        "lab-tokens",
        ("rare_vocab_coverage", "vocab_coverage", "ngram_entropy_1", "distinct_1"),
        {
            "rare_vocab_coverage": Threshold("relative", 0.15),
            "vocab_coverage": Threshold("relative", 0.10),
        },
    ),
    "lab-labels": Preset(
        "lab-labels",
        ("tail_recall", "tail_mass_ratio", "label_js", "label_tv", "label_entropy"),
        {
            "tail_recall": Threshold("relative", 0.10),
            "tail_mass_ratio": Threshold("relative", 0.25),
            "label_js": Threshold("change", 0.05),
        },
    ),
    "lab-vectors": Preset(
        "lab-vectors",
        ("vector_variance_ratio", "vector_tail_lower", "vector_tail_upper", "vector_w1"),
        {
            "vector_variance_ratio": Threshold("relative", 0.10),
            "vector_tail_lower": Threshold("relative", 0.10),
            "vector_tail_upper": Threshold("relative", 0.10),
        },
    ),
}


def get_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    return PRESETS[preset]


def evaluate(
    sample_texts: Any,
    sample_labels: Any = None,
    reference_texts: Any = None,
    reference_labels: Any = None,
    *,
    preset: str | Preset = "default",
    metrics: Iterable[str] | None = None,
    embedder: Embedder | None = None,
    seed: int = 0,
    per_record: PerRecord | None = None,
) -> dict[str, float]:
    """Compute a preset's metrics for a sample against the reference.

    ``reference_texts`` may be a prepared :class:`Reference` (then
    ``reference_labels`` and ``embedder`` are taken from it). Label metrics are
    left out when either side has no labels. ``metrics`` overrides the preset's list.
    ``per_record``: where the per-record work (words, embeddings) runs, e.g. on Ray;
    the figures are the same as in this process.
    """
    if reference_texts is None:
        raise InputError("reference_texts is required")
    ref = (
        reference_texts
        if isinstance(reference_texts, Reference)
        else Reference(reference_texts, reference_labels, embedder=embedder, per_record=per_record)
    )
    names = list(metrics) if metrics is not None else list(get_preset(preset).metrics)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}: see tailguard.metrics.REGISTRY")
    comp = Comparison(sample_texts, sample_labels, ref, seed=seed, per_record=per_record)
    names = [n for n in names if "labels" not in REGISTRY[n].needs or comp.has_labels]
    if any("texts" in REGISTRY[n].needs or "embeddings" in REGISTRY[n].needs for n in names):
        comp.prepare(embeddings=any("embeddings" in REGISTRY[n].needs for n in names))
    aside = [n for n in names if n in GIL_FREE]
    with ThreadPoolExecutor(1) if aside else nullcontext() as pool:
        # Metrics that spend their time in C with the GIL released use the second core.
        futures = {n: pool.submit(REGISTRY[n].compute, comp) for n in aside}
        values = {n: REGISTRY[n].compute(comp) for n in names if n not in futures}
        values.update({n: f.result() for n, f in futures.items()})
    return {n: float(values[n]) for n in names}


#: Metrics :func:`evaluate` runs in a thread of their own (zlib releases the GIL).
GIL_FREE = frozenset({"compression_ratio"})
