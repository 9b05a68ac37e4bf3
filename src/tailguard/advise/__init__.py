"""The advisor: which strategy, which starting real fraction, which gate, and why.

The rule, from what is known about model collapse:

- **high stakes or open-ended** tasks anchor heavily on human data (real fraction
  0.5) and use synthetic data only to fill under-represented classes: an error that
  compounds is expensive, and open-ended outputs have no checker to catch it;
- **narrow, verifiable** tasks lean synthetic (real fraction at the dial's minimum, 0.15)
  with every generation gated by the task's own checker: a verifier that cannot be
  fooled stops errors from compounding;
- **general assistants** (and narrow tasks with no checker) go hybrid: anchored at
  0.2 with near-duplicate, quality and policy gates.

In every case a fixed human reservoir is kept and re-injected every round, never
below 15%. Given a ledger with history, the advisor also recommends the next
round's fraction from the measured evidence, exactly as the dial would.

The rule is :mod:`.rule`; advice from what a run measured (and priced from a ledger)
is :mod:`.measured`; checked against a lab comparison or frontier, :mod:`.comparison`;
a verifiable task's audited verifiers on a lab's quality frontier, :mod:`.quality`.
"""

from __future__ import annotations

from tailguard.advise.comparison import (
    FRONTIER_MARGIN,
    MEASURED_AS,
    advise_from_frontier,
    advise_from_lab,
)
from tailguard.advise.measured import (
    advise_from_evidence,
    ledger_advice,
    ledger_cost,
    recommend,
    recommendation_lines,
    with_capacity_gaps,
    with_realised_share,
)
from tailguard.advise.quality import (
    FRONTIER_COLUMNS,
    QualityPoint,
    measured_quality,
    place_on_frontier,
    read_quality_frontier,
    with_verifier_audits,
)
from tailguard.advise.rule import (
    MINIMUM,
    NUMERIC_GATE,
    TEXT_KINDS,
    Advice,
    Stakes,
    Task,
    TaskProfile,
    advise,
    fit_gate_to_data,
)

__all__ = [
    "FRONTIER_COLUMNS",
    "FRONTIER_MARGIN",
    "MEASURED_AS",
    "MINIMUM",
    "NUMERIC_GATE",
    "TEXT_KINDS",
    "Advice",
    "QualityPoint",
    "Stakes",
    "Task",
    "TaskProfile",
    "advise",
    "advise_from_evidence",
    "advise_from_frontier",
    "advise_from_lab",
    "fit_gate_to_data",
    "ledger_advice",
    "ledger_cost",
    "measured_quality",
    "place_on_frontier",
    "read_quality_frontier",
    "recommend",
    "recommendation_lines",
    "with_capacity_gaps",
    "with_realised_share",
    "with_verifier_audits",
]
