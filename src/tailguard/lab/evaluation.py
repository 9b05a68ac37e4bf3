"""What the lab measures each round: the loop's monitor, with a preset per data kind.

The loop scores every round's sample against the reservoir's human holdout
through a :class:`tailguard.monitor.Monitor`, so a lab run's metric history is
the one a real run would have. Each data kind reads a preset of
:mod:`tailguard.metrics` by name and has one *primary* metric, the one the axes
(fidelity, coverage, recovery) read:

- ``text`` (n-gram on fortunes): ``default`` (``tail_recall`` is the primary);
- ``tokens`` (Zipf documents, categorical model): ``lab-tokens``
  (``rare_vocab_coverage`` is the primary);
- ``labels`` (digits): ``lab-labels`` (``label_tv``, the total variation between the
  sample's and the holdout's digit frequencies as the fixed classifier reads them:
  ``tail_recall`` saturates at 1.0 on ten balanced digits and hides a drift);
- ``vectors`` (Gaussian, mixture, KDE, regression): ``lab-vectors``
  (``vector_variance_ratio``, two-sided with its ideal at 1).
"""

from __future__ import annotations

from typing import Any

#: The metrics preset of each data kind (a name in ``tailguard.metrics.PRESETS``).
PRESETS: dict[str, str] = {
    "text": "default",
    "tokens": "lab-tokens",
    "labels": "lab-labels",
    "vectors": "lab-vectors",
}
#: The primary metric of each data kind (the axes read it).
PRIMARY = {
    "text": "tail_recall",
    "tokens": "rare_vocab_coverage",
    "labels": "label_tv",
    "vectors": "vector_variance_ratio",
}
#: The tail metric whose last-generation value is the coverage axis. For text it is the
#: holdout's rare vocabulary: at equal volume the holdout is a tenth of a reservoir of
#: about a thousand quotations, whose few tail categories every model still hits
#: (``tail_recall`` stays at 1.0 while pure synthetic loses four fifths of the rare words).
COVERAGE = {
    "text": "rare_vocab_coverage",
    "tokens": "rare_vocab_coverage",
    "labels": "tail_recall",
    "vectors": "vector_tail_width",
}


def monitor_for(kind: str, *, run: str, seed: int = 0) -> Any:
    """A monitor with the data kind's preset (the loop sets its reference and history)."""
    from tailguard.monitor import Monitor

    return Monitor(preset=PRESETS[kind], run=run, seed=seed)


def preset_for_model(model: str) -> str:
    """The metrics preset of a built-in model's data kind (a project's default evaluation)."""
    from tailguard.lab.data import resolve

    return PRESETS[resolve(model, None).kind]
