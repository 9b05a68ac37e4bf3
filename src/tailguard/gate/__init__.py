"""The gate: verifiers that every synthetic example must pass before training."""

from __future__ import annotations

from tailguard.gate.base import (
    ERROR_CODE,
    FAIL_CODE,
    LEDGER_VERDICT_SCHEMA,
    NO_GATE_CODE,
    PASS_CODE,
    RESULT_VERDICT_SCHEMA,
    VERDICT_SCHEMA,
    Reason,
    Verdict,
    Verifier,
    safe_verify,
    verdicts,
)
from tailguard.gate.config import KINDS, load_config
from tailguard.gate.dedup import ExactDuplicate, FingerprintStore, NearDuplicate
from tailguard.gate.execution import CodeTests, MathAnswer, answers_equal
from tailguard.gate.gate import Gate, GateResult, gate_from_config
from tailguard.gate.judge import ClassifierJudge, Judge, JudgeCache
from tailguard.gate.sandbox import Limits, SandboxResult, run_python, run_tests
from tailguard.gate.verifiers import FunctionVerifier, Quality, Rule, Rules, Schema, load_rules

__all__ = [
    "ERROR_CODE",
    "FAIL_CODE",
    "KINDS",
    "load_config",
    "NO_GATE_CODE",
    "PASS_CODE",
    "LEDGER_VERDICT_SCHEMA",
    "RESULT_VERDICT_SCHEMA",
    "VERDICT_SCHEMA",
    "ClassifierJudge",
    "CodeTests",
    "ExactDuplicate",
    "FingerprintStore",
    "FunctionVerifier",
    "Gate",
    "GateResult",
    "Judge",
    "JudgeCache",
    "Limits",
    "MathAnswer",
    "NearDuplicate",
    "Quality",
    "Reason",
    "Rule",
    "Rules",
    "SandboxResult",
    "Schema",
    "Verdict",
    "Verifier",
    "answers_equal",
    "gate_from_config",
    "load_rules",
    "run_python",
    "run_tests",
    "safe_verify",
    "verdicts",
]
