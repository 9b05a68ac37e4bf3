"""Metrics that compare a sample with the human reference: tails, diversity, coverage.

Pure functions on numpy arrays and Arrow string arrays; each registered metric
declares ``higher_is_better`` and a ``kind`` (tail, diversity, mean, fidelity).
"""

from __future__ import annotations

from tailguard.metrics.embedders import (
    CachedEmbedder,
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    make_embedder,
)
from tailguard.metrics.embeddings import frechet_distance, mmd_rbf, prdc, spread, vendi
from tailguard.metrics.labels import (
    class_counts,
    js_divergence,
    kl_divergence,
    label_entropy,
    per_class_recall,
    tail_classes,
    tail_mass_ratio,
    tail_recall,
    total_variation,
)
from tailguard.metrics.registry import (
    KINDS,
    PRESETS,
    REGISTRY,
    Comparison,
    Metric,
    Preset,
    Reference,
    Threshold,
    evaluate,
    get_preset,
    register,
)
from tailguard.metrics.scalars import tail_quantile_ratios, variance_ratio, wasserstein1
from tailguard.metrics.text import (
    Tokens,
    compression_ratio,
    distinct_n,
    distinct_ns,
    length_quantiles,
    length_shift,
    ngram_entropy,
    rare_vocab_coverage,
    self_bleu,
    tokenize,
    vocab_coverage,
)
from tailguard.metrics.vectors import (
    decode_vectors,
    last_coordinate_w1,
    tail_width_lower,
    tail_width_upper,
    total_variance_ratio,
)

__all__ = [
    "KINDS",
    "PRESETS",
    "REGISTRY",
    "CachedEmbedder",
    "Comparison",
    "Embedder",
    "HashingEmbedder",
    "Metric",
    "MiniLMEmbedder",
    "Preset",
    "Reference",
    "Threshold",
    "Tokens",
    "class_counts",
    "compression_ratio",
    "decode_vectors",
    "distinct_n",
    "distinct_ns",
    "evaluate",
    "frechet_distance",
    "get_preset",
    "js_divergence",
    "kl_divergence",
    "label_entropy",
    "last_coordinate_w1",
    "length_quantiles",
    "length_shift",
    "make_embedder",
    "mmd_rbf",
    "ngram_entropy",
    "per_class_recall",
    "prdc",
    "rare_vocab_coverage",
    "register",
    "self_bleu",
    "spread",
    "tail_classes",
    "tail_mass_ratio",
    "tail_quantile_ratios",
    "tail_recall",
    "tail_width_lower",
    "tail_width_upper",
    "tokenize",
    "total_variance_ratio",
    "total_variation",
    "variance_ratio",
    "vendi",
    "vocab_coverage",
    "wasserstein1",
]
