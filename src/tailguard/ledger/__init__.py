"""The provenance ledger: every example, where it came from, and what was done with it.

A DuckDB file (``:memory:`` for tests and the lab) holds the records, the frozen
human reservoir, the gate's verdicts, each round's training manifest, the metric
history and the dial's decisions. Writes go in as Arrow tables inside one
transaction: a write lands whole or not at all.

:class:`Ledger` is the front users know. Each concern is a store of its own module,
all sharing the one connection of :mod:`tailguard.ledger.connection`:

=================  ===========================================================
``schema``         the tables' DDL, migrations, row schemas, shared helpers
``connection``     opening, file checks, lock wait, release and hand-over
                   (the writer's hold between stages), transactions,
                   snapshot and restore, the run lock (one run per project)
``records``        records, ingest, status moves, label corrections
``reservoir``      the frozen reservoir, its checks and pinning
``digests``        the reservoir's digests
``fingerprints``   stored fingerprints
``verdicts``       verdicts, Parquet export and import, verifier audits
``manifests``      training pools, manifests, round summary and audit
``history``        metrics, decisions, stages, change history
``quarantine``     quarantine, release and rollback
``rollback``       the rollback's own tables and rules
``judge_cache``    a judge's answers, in a DuckDB file of its own
``scratch``        the process's in-memory DuckDB for SQL over Arrow tables
=================  ===========================================================
"""

from __future__ import annotations

from tailguard.ledger import rollback as _rollback
from tailguard.ledger.connection import (
    LedgerBase,
    ProjectChanged,
    RunInProgress,
    holder,
    refuse_during_run,
    run_holder,
    run_lock,
)
from tailguard.ledger.digests import _content_digest, _reservoir_digest
from tailguard.ledger.files import check_ledger_file
from tailguard.ledger.fingerprints import FingerprintStore
from tailguard.ledger.history import HistoryStore
from tailguard.ledger.manifests import ManifestStore
from tailguard.ledger.quarantine import QuarantineStore
from tailguard.ledger.records import IngestResult, RecordStore
from tailguard.ledger.reservoir import Reservoir, ReservoirStore
from tailguard.ledger.schema import (
    _DDL,
    _SQL_CONTENT_ID,
    AUDIT_SCHEMA,
    FINGERPRINT_TABLE,
    METRIC_SCHEMA,
    VERDICT_SCHEMA,
    check_round,
)
from tailguard.ledger.verdicts import VerdictStore

#: What :meth:`Ledger.rollback` returns (defined in :mod:`tailguard.ledger.rollback`).
Rollback = _rollback.Rollback

__all__ = [
    "AUDIT_SCHEMA",
    "FINGERPRINT_TABLE",
    "METRIC_SCHEMA",
    "VERDICT_SCHEMA",
    "_DDL",
    "_SQL_CONTENT_ID",
    "IngestResult",
    "Ledger",
    "ProjectChanged",
    "Reservoir",
    "Rollback",
    "RunInProgress",
    "_content_digest",
    "_reservoir_digest",
    "check_ledger_file",
    "check_round",
    "holder",
    "refuse_during_run",
    "run_holder",
    "run_lock",
]


class Ledger(
    RecordStore,
    ReservoirStore,
    FingerprintStore,
    VerdictStore,
    ManifestStore,
    HistoryStore,
    QuarantineStore,
    LedgerBase,
):
    """The provenance store. Open with :meth:`Ledger.open`; use as a context manager.

    Its methods are those of the stores it is made of, all on one connection.
    """
