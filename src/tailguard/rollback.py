"""Rollback to a clean round: kept importable here; it lives in :mod:`tailguard.ledger.rollback`."""

from __future__ import annotations

from tailguard.ledger.rollback import ROLLED_BACK_CODE, Rollback

__all__ = ["ROLLED_BACK_CODE", "Rollback"]
