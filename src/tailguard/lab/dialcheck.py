"""How a project's dial behaves over seeds: does it spend human data only on collapse?

One project config (``tailguard.toml`` as a :class:`~tailguard.config.ProjectConfig`)
runs its loop once per seed, each over its own copy of the frozen ledger, and every
decision is read back: the share asked, the share the round realised (the audit's
human share of its training slots), whether the share rose or fell, and the first
round whose evidence is outside a watched metric's band (the drift crossing the
clean model's noise band). A steady loop should rarely raise the share and should
lower it; a collapsing one should raise it within a round or two of the crossing.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Columns of :attr:`DialBehaviour.decisions`.
COLUMNS = ("seed", "round", "asked", "realised", "move", "degraded", "crossed")


@dataclass
class DialBehaviour:
    """Per seed and round: the dial's decision and the evidence it read."""

    decisions: pd.DataFrame
    rounds: int

    @property
    def raise_share(self) -> float:
        """The share of decisions that raised the human share."""
        return float((self.decisions["move"] == "raised").mean())

    @property
    def lowered_seeds(self) -> int:
        """Seeds in which the dial lowered the share at least once."""
        lowered = self.decisions[self.decisions["move"] == "lowered"]
        return int(lowered["seed"].nunique())

    def reaction(self) -> pd.DataFrame:
        """Per seed: the first round whose evidence crossed the band, and the first
        decision after it that raised the share (rounds later; NaN when none)."""
        rows = []
        for seed, d in self.decisions.groupby("seed"):
            crossed = d[d["degraded"] != ""]["crossed"]
            first = int(crossed.min()) if len(crossed) else None
            after = first if first is not None else -1
            raised = d[(d["move"] == "raised") & (d["round"] > after)]
            delay = (
                float(raised["round"].min() - first)
                if first is not None and len(raised)
                else np.nan
            )
            rows.append({"seed": seed, "crossed": first, "raised_after": delay})
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        reaction = self.reaction()
        crossed = reaction.dropna(subset=["crossed"])
        return {
            "seeds": int(self.decisions["seed"].nunique()),
            "decisions": len(self.decisions),
            "raised": float(self.raise_share),
            "lowered_seeds": self.lowered_seeds,
            "crossed_seeds": len(crossed),
            "max_delay": float(crossed["raised_after"].max()) if len(crossed) else None,
            "realised_first": float(self.decisions.groupby("round")["realised"].median().iloc[0]),
            "realised_last": float(self.decisions.groupby("round")["realised"].median().iloc[-1]),
        }


def dial_behaviour(config: Any, *, seeds: int = 10, rounds: int = 5) -> DialBehaviour:
    """Run the loop ``config`` describes over ``seeds`` seeds of ``rounds`` rounds each
    (the reservoir frozen once and copied, so every seed starts from the same one)."""
    from tailguard.ledger import Ledger
    from tailguard.project import build_loop, prepare_ledger

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tailguard-dialcheck-") as tmp:
        frozen = Path(tmp) / "frozen.duckdb"
        with Ledger.open(frozen) as ledger:
            prepare_ledger(config, ledger)
        for seed in range(seeds):
            path = Path(tmp) / f"seed{seed}.duckdb"
            shutil.copy(frozen, path)
            seeded = config.model_copy(
                update={"loop": config.loop.model_copy(update={"seed": seed})}
            )
            with Ledger.open(path) as ledger:
                loop = build_loop(seeded, ledger)
                loop.run(rounds)
                rows += _decisions(ledger, loop.run_name, seed)
            path.unlink()
    return DialBehaviour(pd.DataFrame(rows, columns=list(COLUMNS)), rounds)


def _decisions(ledger: Any, run: str, seed: int) -> list[dict[str, Any]]:
    import json

    audit = {r["round"]: r["human_share"] for r in ledger.audit(run=run).to_pylist()}
    out = []
    previous = None
    for row in sorted(ledger.decisions(run=run).to_pylist(), key=lambda r: r["round"]):
        evidence = json.loads(row["evidence"]) if row["evidence"] else {}
        share = float(row["real_fraction"])
        before = previous if previous is not None else evidence.get("dial", {}).get("start", share)
        move = "raised" if share > before else "lowered" if share < before else "held"
        metrics = evidence.get("metrics", [])
        read_round = max((int(m.get("round", -1)) for m in metrics), default=-1)
        out.append(
            {
                "seed": seed,
                "round": int(row["round"]),
                "asked": share,
                "realised": audit.get(row["round"]),
                "move": move,
                "degraded": ",".join(evidence.get("degraded", [])),
                "crossed": read_round,
            }
        )
        previous = share
    return out
