"""A gate whose rounds run on Ray Data: ``[engine] kind = "ray"`` in ``tailguard.toml``.

:class:`RayGate` keeps :meth:`Gate.run_round`'s contract (gate a round, store its
verdicts, move its candidates, return a :class:`GateResult`), so the loop and the CLI
call it as they call the in-process gate. The round's candidates and the sets they
are compared with leave the ledger as Parquet shards and are gated on Ray
(:func:`tailguard.gate.distributed.gate_round_on_ray`); the verdicts are the
in-process gate's, record for record.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from tailguard.errors import ConfigError
from tailguard.gate.base import RESULT_VERDICT_SCHEMA
from tailguard.gate.dedup import ExactDuplicate, NearDuplicate
from tailguard.gate.gate import Gate, GateResult
from tailguard.records import Origin, Status

if TYPE_CHECKING:
    from tailguard.engines import RayEngine
    from tailguard.ledger import Ledger


class RayGate:
    """``gate``'s verifiers run on ``engine`` over Parquet shards of the ledger.

    ``reservoir``: whether the duplicate verifiers compare with the frozen reservoir
    (all of it, as the project's in-process gate does). Build ``gate``'s duplicate
    verifiers without a reference: the reservoir is read from its shards, so the
    driver never holds it. ``work_dir`` holds the shards of a round while it is gated
    (a temporary directory by default, removed afterwards).
    """

    def __init__(
        self,
        gate: Gate,
        engine: RayEngine,
        *,
        reservoir: bool = True,
        work_dir: str | Path | None = None,
    ) -> None:
        for v in gate.verifiers:
            if isinstance(v, ExactDuplicate | NearDuplicate) and v.reference["records"]:
                raise ConfigError(
                    f"verifier {v.name!r} holds its reference in memory: on Ray the "
                    "reservoir is read from the ledger's shards (build it with reference=None)"
                )
        self.gate, self.engine, self.reservoir = gate, engine, reservoir
        self.work_dir = work_dir

    @property
    def verifiers(self) -> list[Any]:
        return self.gate.verifiers

    @property
    def earlier_generations(self) -> bool:
        return self.gate.earlier_generations

    def params(self) -> dict[str, Any]:
        return self.gate.params()

    def prepare(self) -> int:
        """Nothing to fingerprint ahead: Ray computes the reference's signatures per round."""
        return 0

    def run_round(self, ledger: Ledger, round: int) -> GateResult:  # noqa: A002
        """Gate round ``round``'s synthetic candidates on Ray, as :meth:`Gate.run_round`."""
        from tailguard.gate.distributed import gate_round_on_ray

        where = {
            "round": round,
            "status": Status.CANDIDATE.value,
            "origin": Origin.SYNTHETIC.value,
        }
        if ledger.count(**where) == 0:
            return _result(pa.table([], schema=RESULT_VERDICT_SCHEMA), self.gate)
        reservoir = self.reservoir and ledger.has_reservoir()
        if self.work_dir is not None:
            Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tailguard-ray-", dir=self.work_dir) as tmp:
            gate_round_on_ray(
                self.gate,
                ledger,
                round,
                tmp,
                engine=self.engine,
                reservoir=reservoir,
                reservoir_split="all",
            )
            shards = sorted(str(p) for p in (Path(tmp) / "verdicts").rglob("*.parquet"))
            verdicts = pads.dataset(shards).to_table().sort_by("pos")
        return _result(verdicts.select(RESULT_VERDICT_SCHEMA.names), self.gate)

    def __repr__(self) -> str:
        return f"RayGate({self.gate.verifiers!r}, {self.engine.params()!r})"


def _result(verdicts: pa.Table, gate: Gate) -> GateResult:
    """The round's outcome from its verdicts: a record is accepted when it passed all."""
    verdicts = verdicts.cast(RESULT_VERDICT_SCHEMA)
    decided = verdicts.group_by("id", use_threads=False).aggregate([("passed", "all")])
    decided = decided.sort_by("id")
    accepted = np.asarray(
        pc.fill_null(decided["passed_all"], False).to_numpy(zero_copy_only=False), bool
    )
    return GateResult(
        ids=decided["id"].combine_chunks(),
        accepted=accepted,
        verdicts=verdicts,
        verifiers=tuple(v.name for v in gate.verifiers),
    )


def ray_engine(address: str | None, num_cpus: int | None) -> RayEngine:
    """The engine of ``[engine] kind = "ray"``: Ray starts on first use, not here."""
    from tailguard.engines import RayEngine

    return RayEngine(address=address, num_cpus=num_cpus)


__all__ = ["RayGate", "ray_engine"]
