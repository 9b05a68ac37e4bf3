"""The lab's generative models: one protocol, ``fit(records)`` and ``sample(n, seed)``."""

from __future__ import annotations

from tailguard.lab.models.base import GenerativeModel, decode_vectors, encode_vectors
from tailguard.lab.models.categorical import Categorical, zipf_records
from tailguard.lab.models.digits import DigitsMixture, digits_labeller, digits_records
from tailguard.lab.models.gaussian import Gaussian
from tailguard.lab.models.mixture import GaussianMixture, KernelDensity
from tailguard.lab.models.ngram import NGram
from tailguard.lab.models.regression import LinearRegression, expected_test_error
from tailguard.lab.models.transformer import Transformer

#: Model names accepted by ``tailguard.lab.run(model=...)`` and ``tailguard lab run --model``.
MODELS: dict[str, type] = {
    "gaussian": Gaussian,
    "mixture": GaussianMixture,
    "kde": KernelDensity,
    "categorical": Categorical,
    "regression": LinearRegression,
    "ngram": NGram,
    "digits": DigitsMixture,
    "transformer": Transformer,  # needs the optional [torch] extra
}

__all__ = [
    "MODELS",
    "Categorical",
    "DigitsMixture",
    "GaussianMixture",
    "GenerativeModel",
    "Gaussian",
    "KernelDensity",
    "LinearRegression",
    "NGram",
    "Transformer",
    "decode_vectors",
    "digits_labeller",
    "digits_records",
    "encode_vectors",
    "expected_test_error",
    "zipf_records",
]
