"""From per-seed curves to answers: medians with bands, and the five axes per strategy.

The five axes (one row per strategy, each a median over seeds):

- **fidelity** ``fidelity_loss``: the area between the primary metric's curve
  and its round-0 baseline (the model trained on human data), summed over
  generations 1..G and divided by ``G x |baseline|``: the mean relative gap, 0
  when the strategy never moves away from the human-trained model.
- **coverage** ``coverage``: the tail metric at the last generation
  (``tail_recall`` of categories; for vectors the narrower of the two 1% tail
  widths, ``vector_tail_width``), and ``coverage_vs_baseline``, the same over each
  seed's clean model (its band's center, ``lab.evaluation.seed_ratios``: the ratio the
  frontier and the advisor quote).
- **cost** ``cost``: :meth:`CostModel.round_cost` summed over rounds ``0..G`` (the
  reservoir owned, charged once in round 0, plus every round's human data bought,
  generated and verified candidates), and ``cost_per_generation``: the mean cost of
  a synthetic round ``1..G`` (:func:`generation_costs`), the figure the frontier,
  the advisor and the report quote per round.
- **provenance** ``traceable_share``: the share of training slots whose record
  is in the ledger with its origin and source, over all rounds;
  ``real_share_mean`` / ``real_share_min``: the human share of the training
  slots of the synthetic rounds (``round >= 1``; round 0 is all human by
  construction), per round in ``LabResult.rounds``.
- **held** ``tail_drift`` / ``coverage_drift``: the primary and the coverage
  metric's drift at the last generation from each seed's clean model (round 0
  and its draws), in half-widths of its band (:mod:`tailguard.evidence`; above 1
  is degraded), median over seeds; ``held``: every one of them held across seeds
  (``evidence.held_across``: median drift within the band). The frontier and the
  advisor's "kept its tails" read the same verdict.
- **recovery** ``recovery_rounds`` / ``recovery_cost``: after the last
  generation, a seed whose tail metrics left its clean model's band switches to
  anchoring; the rounds and money it takes to come back inside the band (0 when
  it never left; ``inf`` rounds when it did not come back within the allowed
  rounds). ``recovered_share`` is the share of seeds that came back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from tailguard.lab.evaluation import COVERAGE, held, seed_drifts, seed_ratios, with_coverage

#: Columns of the axes table, in order.
AXES_COLUMNS = (
    "strategy",
    "fidelity_loss",
    "coverage",
    "coverage_vs_baseline",
    "tail_drift",
    "coverage_drift",
    "held",
    "cost",
    "cost_per_generation",
    "traceable_share",
    "real_share_mean",
    "real_share_min",
    "recovery_rounds",
    "recovery_cost",
    "recovered_share",
    "seeds",
)

BAND = (0.1, 0.9)


def summarise(metrics: pa.Table) -> pa.Table:
    """Per strategy, round and metric: the median across seeds and a 10%-90% band."""
    df = metrics.to_pandas()
    g = df.groupby(["strategy", "round", "metric"], sort=True)["value"]
    out = pd.DataFrame(
        {
            "median": g.median(),
            "low": g.quantile(BAND[0]),
            "high": g.quantile(BAND[1]),
            "mean": g.mean(),
            "seeds": g.count(),
        }
    ).reset_index()
    hib = df.groupby("metric")["higher_is_better"].first()
    # True, False, or None (two-sided, e.g. a variance ratio whose ideal is 1)
    out["higher_is_better"] = (
        out["metric"].map(hib).map(lambda v: None if v is None or v != v else bool(v))
    )
    return pa.Table.from_pandas(out, preserve_index=False)


def generation_costs(rounds: pd.DataFrame, generations: int) -> pd.Series:
    """Per seed of one strategy's rounds: the mean cost of its synthetic rounds ``1..G``.

    The one "cost per round" of the lab: the axes' ``cost_per_generation`` and the
    frontier's ``cost_per_round`` are its median over seeds.
    """
    synthetic = rounds[(rounds["round"] >= 1) & (rounds["round"] <= generations)]
    return synthetic.groupby("seed")["cost"].mean()


def score_axes(
    metrics: pa.Table,
    rounds: pa.Table,
    recovery: pa.Table,
    *,
    history: pa.Table,
    primary: str,
    kind: str,
    generations: int,
    strategies: list[str],
) -> pa.Table:
    """The axes table (see the module docstring), one row per strategy in ``strategies``.

    ``history``: every job's ledger metric rows (``LabResult.ledger_metrics``: the clean
    model's draws included), from which each seed's bands are built.
    """
    m = metrics.to_pandas()
    r = rounds.to_pandas()
    rec = recovery.to_pandas()
    cov_name = COVERAGE[kind]
    m = with_coverage(m, kind)
    rows = []
    for s in strategies:
        ms = m[m.strategy == s]
        drifts = seed_drifts(history, s, kind, generations, dict.fromkeys((primary, cov_name)))
        # the coverage kept, over each seed's clean model: the frontier's and advisor's ratio
        kept = seed_ratios(history, s, kind, generations, [cov_name])[cov_name]
        per_seed = []
        for seed, seed_rows in ms.groupby("seed"):
            curve = seed_rows[seed_rows.metric == primary].set_index("round")["value"]
            cov = seed_rows[seed_rows.metric == cov_name].set_index("round")["value"]
            base = curve.get(0, np.nan)
            main = curve[(curve.index >= 1) & (curve.index <= generations)]
            loss = float(np.abs(main - base).sum() / (generations * abs(base))) if base else np.nan
            cov_last = cov.get(generations, np.nan)
            rs = r[(r.strategy == s) & (r.seed == seed)]
            in_run = rs[rs["round"] <= generations]
            synthetic_rounds = in_run[in_run["round"] >= 1]
            after = rs[rs["round"] > generations]
            rr = rec[(rec.strategy == s) & (rec.seed == seed)].iloc[0]
            per_seed.append(
                {
                    "fidelity_loss": loss,
                    "coverage": cov_last,
                    "coverage_vs_baseline": float(kept.get(seed, np.nan)),
                    "cost": in_run["cost"].sum(),
                    "cost_per_generation": generation_costs(rs, generations).mean(),
                    "traceable_share": in_run["traceable"].sum() / in_run["total"].sum(),
                    # over the synthetic rounds only: round 0 is human by construction
                    "real_share_mean": (
                        synthetic_rounds["human"] / synthetic_rounds["total"]
                    ).mean(),
                    "real_share_min": (synthetic_rounds["human"] / synthetic_rounds["total"]).min(),
                    "recovery_rounds": float(rr["rounds"]) if rr["recovered"] else np.inf,
                    "recovery_cost": after["cost"].sum(),
                    "recovered": float(bool(rr["recovered"])),
                }
            )
        p = pd.DataFrame(per_seed)
        rows.append(
            {
                "strategy": s,
                **{c: float(p[c].median()) for c in p.columns if c != "recovered"},
                **{
                    f"{axis}_drift": float(drifts[metric].median()) if len(drifts) else np.nan
                    for axis, metric in (("tail", primary), ("coverage", cov_name))
                },
                "held": held(drifts),
                "recovered_share": float(p["recovered"].mean()),
                "seeds": len(p),
            }
        )
    return pa.Table.from_pandas(
        pd.DataFrame(rows, columns=list(AXES_COLUMNS)), preserve_index=False
    )
