"""The gate: verifiers that every synthetic example must pass before training."""

from __future__ import annotations

from tailguard.gate.base import (
    LEDGER_VERDICT_SCHEMA,
    RESULT_VERDICT_SCHEMA,
    VERDICT_SCHEMA,
    Verdict,
    Verifier,
    safe_verify,
    verdicts,
)
from tailguard.gate.dedup import ExactDuplicate, NearDuplicate
from tailguard.gate.gate import Gate, GateResult

__all__ = [
    "LEDGER_VERDICT_SCHEMA",
    "RESULT_VERDICT_SCHEMA",
    "VERDICT_SCHEMA",
    "ExactDuplicate",
    "Gate",
    "GateResult",
    "NearDuplicate",
    "Verdict",
    "Verifier",
    "safe_verify",
    "verdicts",
]
