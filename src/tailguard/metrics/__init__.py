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
from tailguard.metrics.embeddings import frechet_distance, mmd_rbf, prdc, vendi
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
    ngram_entropy,
    rare_vocab_coverage,
    self_bleu,
    tokenize,
    vocab_coverage,
)

__all__ = [
    "KINDS", "PRESETS", "REGISTRY", "CachedEmbedder", "Comparison", "Embedder",
    "HashingEmbedder", "Metric", "MiniLMEmbedder", "Preset", "Reference", "Threshold", "Tokens",
    "class_counts", "compression_ratio", "distinct_n", "distinct_ns", "evaluate",
    "frechet_distance", "get_preset", "js_divergence", "kl_divergence", "label_entropy",
    "length_quantiles", "make_embedder", "mmd_rbf", "ngram_entropy", "per_class_recall", "prdc",
    "rare_vocab_coverage", "register", "self_bleu", "tail_classes", "tail_mass_ratio",
    "tail_quantile_ratios", "tail_recall", "tokenize", "total_variation", "variance_ratio",
    "vendi", "vocab_coverage", "wasserstein1",
]  # fmt: skip
