"""The cost-fidelity frontier: sweep the real fraction, find the lowest one whose tails held.

For each real fraction ``f`` the lab runs the retraining loop at one training
volume per round ``V``: ``f = 0`` is pure synthetic (``replace``), ``f = 1`` is
human-only (buying human data to ``V``), and ``0 < f < 1`` trains every round
on exactly ``f`` human examples per batch from the reservoir plus the newest
synthetic generation (``Anchored(f, synthetic="latest", reservoir="share")``, so
the fraction means what it says). Per fraction it reports:

- ``cost_per_round``: the mean cost of a synthetic round (``CostModel.round_cost``
  of its human data bought, generated and verified candidates), median over seeds:
  the lab axes' ``cost_per_generation`` for the same run, and the chart's x;
  ``cost``: the same rounds' total; ``reservoir_cost``: the reservoir owned, charged
  once in round 0 (not per round); ``human_per_round``: the human examples a round
  trains on (``ceil(f x V)``);
- ``tail_ratio`` / ``coverage_ratio``: the primary (tail) metric and the coverage
  metric at the last generation divided by the seed's clean model (round 0, the mean
  of its draws: the band's center), median over seeds and a
  10%-90% seed interval;
- ``tail_drift`` / ``coverage_drift``: each metric's drift at the last generation
  from each seed's clean model (round 0 and its draws), in half-widths of that
  seed's band (:mod:`tailguard.evidence`: above 1 is degraded), median over seeds;
  ``band`` / ``coverage_band``: the band's half-width relative to the clean model's
  value (the noise of its draws, never narrower than the preset's threshold), median
  over seeds;
- ``held``: ``evidence.held_across`` of both metrics' per-seed drifts (the axes'
  ``held`` and the advisor's "kept its tails" read the same). A higher-is-better
  metric only counts a fall (more rare vocabulary than the clean model, from bought
  human data, is no loss); a two-sided metric such as a variance ratio counts drift
  either way.

With ``verifier_quality=(q1, q2, ...)`` the sweep is two-dimensional: beside the
ungated rows (``verifier_quality`` null), every fraction below 1 runs again per quality
``q`` with its synthetic candidates gated by a verifier of that quality on a task with a
ground truth (:mod:`tailguard.lab.verified`: recall and specificity both ``q``;
``verified-replace`` at 0, ``verified-share`` otherwise). Human-only (1) verifies
nothing, so its one ungated row closes every quality's column.
:meth:`Frontier.lowest_safe_by_quality` names each quality's lowest held fraction, and
:meth:`Frontier.by_quality` adds the cost per round there (verification priced).

:attr:`Frontier.lowest_safe` names the lowest held fraction above every fraction that
collapsed. When nothing collapsed, everything did, or the highest swept fraction
collapsed too, the sweep cannot separate a safe share from an unsafe one:
``lowest_safe`` is None and :attr:`Frontier.evidence` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tailguard.costs import CostModel
from tailguard.errors import ConfigError
from tailguard.lab.axes import generation_costs
from tailguard.lab.config import LabConfig
from tailguard.lab.evaluation import (
    COVERAGE,
    PRIMARY,
    clean_bands,
    held,
    seed_drifts,
    seed_ratios,
)
from tailguard.mix import human_slots

#: The fractions swept by default.
FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

COLUMNS = (
    "real_fraction", "strategy", "cost_per_round", "cost", "reservoir_cost", "human_per_round",
    "tail_ratio", "tail_low", "tail_high", "coverage_ratio", "coverage_low", "coverage_high",
    "tail_drift", "coverage_drift", "band", "coverage_band", "held", "seeds",
    "verifier_quality",
)  # fmt: skip


def _lowest(df: pd.DataFrame) -> float | None:
    """The lowest held fraction above every collapsed one, or None (no trade-off shown)."""
    df = df.sort_values("real_fraction")
    lost = df[~df["held"].astype(bool)]
    if df.empty or lost.empty or df["held"].sum() == 0 or not df["held"].iloc[-1]:
        return None
    above = df[df["real_fraction"] > lost["real_fraction"].max()]
    return float(above["real_fraction"].min())


@dataclass
class Frontier:
    """One row per real fraction (:data:`COLUMNS`) and the lowest fraction whose tails held."""

    table: pa.Table
    model: str
    volume: int
    generations: int
    costs: CostModel = field(default_factory=CostModel)
    #: The reservoir's training examples (what a round may take without buying more).
    reservoir: int = 0

    def _ungated(self) -> pd.DataFrame:
        """The one-dimensional sweep: the rows without a verifier."""
        df = self.table.to_pandas()
        return df[df["verifier_quality"].isna()] if "verifier_quality" in df else df

    @property
    def lowest_safe(self) -> float | None:
        """The lowest held fraction (ungated) above every collapsed one; None when the sweep
        shows no trade-off (see :attr:`evidence`)."""
        return _lowest(self._ungated())

    @property
    def qualities(self) -> list[float]:
        """The verifier qualities swept (empty for a one-dimensional frontier)."""
        df = self.table.to_pandas()
        if "verifier_quality" not in df:
            return []
        return sorted(float(q) for q in df["verifier_quality"].dropna().unique())

    def _column(self, quality: float) -> pd.DataFrame:
        """One quality's rows, closed by the ungated human-only row (nothing to verify)."""
        df = self.table.to_pandas()
        gated = df[np.isclose(df["verifier_quality"].astype(float), quality)]
        top = self._ungated()
        top = top[top["real_fraction"] >= 1.0]
        return pd.concat([gated, top]) if not top.empty else gated

    def lowest_safe_by_quality(self) -> dict[float, float | None]:
        """Per verifier quality, the lowest real fraction whose tails held above every one
        that collapsed (None: that quality's sweep shows no trade-off)."""
        return {q: _lowest(self._column(q)) for q in self.qualities}

    def by_quality(self) -> pd.DataFrame:
        """Per quality: the lowest safe fraction, the cost per round there (verification
        priced, ``CostModel.round_cost`` of that row's run) and the fractions that collapsed."""
        rows = []
        for q, f in self.lowest_safe_by_quality().items():
            col = self._column(q).sort_values("real_fraction")
            cost = None
            if f is not None:
                cost = float(col[np.isclose(col["real_fraction"], f)]["cost_per_round"].iloc[0])
            lost = col[~col["held"].astype(bool)]["real_fraction"].tolist()
            rows.append({
                "verifier_quality": q, "lowest_safe": f, "cost_per_round": cost,
                "collapsed": ", ".join(f"{x:g}" for x in lost),
            })  # fmt: skip
        return pd.DataFrame(
            rows, columns=["verifier_quality", "lowest_safe", "cost_per_round", "collapsed"]
        )

    @property
    def evidence(self) -> str:
        """What the sweep can say: the safe share it found, or why it cannot name one."""
        df = self._ungated().sort_values("real_fraction")
        g = f"within {self.generations} generations"
        if df["held"].all():
            return (
                f"no fraction collapsed {g}: the sweep cannot tell a safe share from an "
                "unsafe one (more generations or a smaller volume per round would)"
            )
        if not df["held"].any():
            return (
                f"every fraction collapsed {g}, {df['real_fraction'].max():g} included: "
                "the sweep names no safe share"
            )
        lowest = self.lowest_safe
        if lowest is None:
            top = df["real_fraction"].iloc[-1]
            return (
                f"the highest swept fraction ({top:g}) collapsed {g} while a lower one held: "
                "the verdicts are within the noise; more seeds would decide"
            )
        lost = df[~df["held"]]["real_fraction"]
        return (
            f"lowest real fraction whose tails held: {lowest:g} (every higher fraction held; "
            f"{', '.join(f'{f:g}' for f in lost)} collapsed {g})"
        )

    def row(self, real_fraction: float, quality: float | None = None) -> dict[str, Any]:
        """The row of one fraction: ungated, or gated at ``quality``."""
        df = self._ungated() if quality is None else self._column(quality)
        return df[np.isclose(df["real_fraction"], real_fraction)].iloc[0].to_dict()

    def save(self, directory: Path | str) -> Path:
        """``frontier.parquet`` (the report's data) and ``frontier.png`` into ``directory``."""
        import pyarrow.parquet as pq

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.table, path / "frontier.parquet")
        self.plot(path / "frontier.png")
        return path

    def points(self) -> pd.DataFrame:
        """What :meth:`plot` draws, one row per fraction: ``x`` is the table's
        ``cost_per_round`` (one figure, one definition), ``y`` the tail ratio and
        ``coverage`` the coverage ratio (with their seed intervals), ``held`` the verdict."""
        df = self._ungated()
        return pd.DataFrame({
            "real_fraction": df["real_fraction"], "x": df["cost_per_round"],
            "y": df["tail_ratio"], "low": df["tail_low"], "high": df["tail_high"],
            "coverage": df["coverage_ratio"], "coverage_low": df["coverage_low"],
            "coverage_high": df["coverage_high"], "held": df["held"],
        })  # fmt: skip

    def _one_sided(self) -> tuple[bool, bool]:
        """Whether the tail and the coverage metric are higher-is-better (their bands are
        open above: more of a tail than the clean model is no loss)."""
        from tailguard.lab.data import resolve
        from tailguard.metrics import REGISTRY

        kind = resolve(self.model, None).kind
        return tuple(  # type: ignore[return-value]
            bool(REGISTRY[m].higher_is_better) if m in REGISTRY else True
            for m in (PRIMARY[kind], COVERAGE[kind])
        )

    def plot(self, path: Path | str) -> Path:
        """Cost per round against the tail and the coverage ratio at the last generation,
        one point per fraction, green where it held and red where it collapsed, over
        the clean model's band: the two metrics the verdict reads, side by side."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from tailguard.palette import ALERT, HUMAN

        df = self._ungated()
        pts = self.points()
        grid = bool(self.qualities)
        fig, axes = plt.subplots(1, 3 if grid else 2, figsize=(15 if grid else 10, 4))
        panels = (
            ("y", "low", "high", "band", "tail metric"),
            ("coverage", "coverage_low", "coverage_high", "coverage_band", "coverage"),
        )
        one_sided = self._one_sided()
        for ax, (y, low, high, band, name), up in zip(axes[:2], panels, one_sided, strict=True):
            width = float(df[band].max())
            top = max(1 + width, float(pts[high].max()) * 1.05) if up else 1 + width
            ax.axhspan(1 - width, top, color=HUMAN, alpha=0.15, lw=0,
                       label=f"band of the clean model (-{width:.0%}"
                       + (", open above)" if up else f", +{width:.0%})"))  # fmt: skip
            for kept, colour, label in ((True, HUMAN, "held"), (False, ALERT, "collapsed")):
                sub = pts[pts["held"] == kept]
                if sub.empty:
                    continue
                err = np.abs([sub[y] - sub[low], sub[high] - sub[y]])
                ax.errorbar(sub["x"], sub[y], yerr=err, fmt="o", capsize=3, color=colour,
                            label=label)  # fmt: skip
            for r in pts.itertuples():
                ax.annotate(f"f={r.real_fraction:g}", (r.x, getattr(r, y)), fontsize=8,
                            xytext=(4, 4), textcoords="offset points")  # fmt: skip
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlabel("cost per synthetic round ($, log; the reservoir owned, not included)")
            ax.set_ylabel(f"{name} at generation {self.generations} / clean model")
            ax.set_title(name, fontsize=10)
        axes[0].legend(fontsize=7, loc="lower right")
        if grid:
            self._plot_grid(axes[2])
        fig.suptitle(f"{self.model}: cost-fidelity frontier, volume {self.volume}/round")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out

    def _plot_grid(self, ax: Any) -> None:
        """Held (green) or collapsed (red) per real fraction x verifier quality, the
        ungated sweep as its own row, and each quality's lowest safe fraction ringed."""
        from tailguard.palette import ALERT, HUMAN

        qualities = self.qualities
        rows = [("no gate", self._ungated())] + [(f"{q:g}", self._column(q)) for q in qualities]
        safe = [self.lowest_safe, *self.lowest_safe_by_quality().values()]
        fractions = sorted(self.table.to_pandas()["real_fraction"].unique())
        where = {f: i for i, f in enumerate(fractions)}
        for y, ((_, df), best) in enumerate(zip(rows, safe, strict=True)):
            for r in df.itertuples():
                x = where[r.real_fraction]
                ax.scatter(x, y, s=160, marker="s", color=HUMAN if r.held else ALERT)
                if best is not None and np.isclose(r.real_fraction, best):
                    ax.scatter(x, y, s=380, marker="o", facecolors="none", edgecolors="black")
        ax.set_xticks(range(len(fractions)), [f"{f:g}" for f in fractions])
        ax.set_yticks(range(len(rows)), [name for name, _ in rows])
        ax.set_xlabel("real fraction (ringed: lowest safe)")
        ax.set_ylabel("verifier quality (recall = specificity)")
        ax.set_title("held (green) / collapsed (red)", fontsize=10)


def frontier(
    config: LabConfig | None = None,
    *,
    fractions: tuple[float, ...] | list[float] = FRACTIONS,
    verifier_quality: tuple[float, ...] | list[float] | None = None,
    workers: int | None = None,
    out: Path | str | None = None,
    progress: bool = True,
    known: Any = None,
    **settings: Any,
) -> Frontier:
    """Sweep ``fractions`` at one training volume per round; see the module docstring.

    The experiment is ``config`` with ``settings`` (fields of :class:`LabConfig` by name:
    ``model=``, ``generations=``, ``volume=``, ...) replacing its fields; without a
    ``config``, the frontier's own defaults (``lab.config.COMMANDS["frontier"]``, also
    ``tailguard lab frontier``'s) show the trade-off in about a minute on two cores: Zipf
    documents at 300 per round (a 150-document reservoir), where pure synthetic loses
    rare vocabulary within the 10 generations and a fifth of human data per batch holds
    it (docs/lab.md). The frontier sets the strategies, the real fraction and the
    recovery rounds itself; an unknown setting is refused.

    ``known``: a :class:`~tailguard.lab.LabResult` already run at the same volume,
    generations and seeds; the end points it holds (``replace`` for 0, ``human-only``
    for 1) are read from it instead of being run again (the demo compares them first).

    ``verifier_quality``: sweep every fraction below 1 again per quality, gated by a
    verifier of that recall and specificity (``verifier_bias`` > 0: one that prefers the
    mode); only models with a ground truth (``lab.verified.TASK_MODELS``).
    """
    from tailguard.lab.config import COMMANDS
    from tailguard.lab.experiment import run
    from tailguard.lab.verified import TASK_MODELS

    config = COMMANDS["frontier"].config("frontier", config, **settings)
    model, generations, seeds = config.model, config.generations, config.seeds
    fractions = sorted({float(f) for f in fractions})
    if not fractions or fractions[0] < 0 or fractions[-1] > 1:
        raise ConfigError(f"fractions must lie in [0, 1], got {fractions}")
    qualities = sorted({float(q) for q in verifier_quality or ()})
    if qualities and (qualities[0] < 0 or qualities[-1] > 1):
        raise ConfigError(f"verifier qualities must lie in [0, 1], got {qualities}")
    if qualities and model not in TASK_MODELS:
        raise ConfigError(
            f"a verifier of known quality needs a task with a ground truth; the {model!r} "
            f"model has none (models with one: {', '.join(TASK_MODELS)})"
        )
    costs = config.costs
    if known is not None:
        c = known.config
        if (c.generations, c.seeds) != (generations, seeds) or c.volume is None:
            raise ConfigError(
                f"known= holds {c.generations} generations x {c.seeds} seeds at volume "
                f"{c.volume}; the frontier needs {generations} x {seeds} at one volume"
            )
        if c.costs != costs:
            raise ConfigError(
                f"known= was priced at {c.costs.describe()}; the frontier at {costs.describe()}"
            )
        config = LabConfig.build(config, volume=c.volume, reservoir_size=c.reservoir_size)
    volume = config.volume
    rows, reservoir = [], 0
    for f in fractions:
        name = "replace" if f == 0 else "human-only" if f == 1 else "anchored-share"
        if known is not None and name in known.config.strategies and f in (0.0, 1.0):
            rows.append(_row(known, f, name, generations))
            reservoir = reservoir or _reservoir(known, name)
            continue
        result = run(
            config, strategies=[name], real_fraction=f if 0 < f < 1 else 0.5,
            recovery_rounds=0, workers=workers, out=None, progress=progress,
        )  # fmt: skip
        volume = result.config.volume
        rows.append(_row(result, f, name, generations))
        reservoir = reservoir or _reservoir(result, name)
    for q in qualities:
        for f in (f for f in fractions if f < 1):
            name = "verified-replace" if f == 0 else "verified-share"
            result = run(
                config, strategies=[name], real_fraction=f if f > 0 else 0.5,
                volume=volume, recovery_rounds=0, verifier_quality=q, workers=workers,
                out=None, progress=progress,
            )  # fmt: skip
            rows.append({**_row(result, f, name, generations), "verifier_quality": q})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["verifier_quality"] = frame["verifier_quality"].astype("float64")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    result_frontier = Frontier(table, model, int(volume or 0), generations, costs, reservoir)
    if out is not None:
        result_frontier.save(out)
    return result_frontier


def _reservoir(result: Any, name: str) -> int:
    """The reservoir's training examples: what round 0 (the reservoir alone) trained on."""
    r = result.rounds.to_pandas()
    round0 = r[(r["strategy"] == name) & (r["round"] == 0)]
    return int(round0["human"].median()) if len(round0) else 0


def _row(result: Any, f: float, name: str, generations: int) -> dict[str, Any]:
    kind = result.config.dataset.kind
    metrics = {"tail": PRIMARY[kind], "coverage": COVERAGE[kind]}
    history = result.ledger_metrics.to_pandas()
    drifts = seed_drifts(history, name, kind, generations, dict.fromkeys(metrics.values()))
    # each seed's last generation over its own clean model (the band's center), so
    # the ratio drawn and the verdict read one reference
    ratios = seed_ratios(history, name, kind, generations, list(metrics.values()))
    ratios = {key: ratios[metric].to_numpy() for key, metric in metrics.items()}
    widths = {}
    for key, metric in metrics.items():
        bands = [
            clean_bands(h, kind, [metric])[metric]
            for run, h in history.groupby("run") if str(run).startswith(f"{name}/seed")
        ]  # fmt: skip
        widths[key] = float(np.median([b.half_width / max(abs(b.center), 1e-12) for b in bands]))
    r = result.rounds.to_pandas()
    r = r[r["strategy"] == name]
    synthetic_rounds = r[(r["round"] >= 1) & (r["round"] <= generations)]
    per_seed = synthetic_rounds.groupby("seed")["cost"].sum()
    volume = int(result.config.volume or synthetic_rounds["total"].median())
    human = human_slots(f, volume)
    out: dict[str, Any] = {
        "real_fraction": f,
        "strategy": name,
        "cost_per_round": float(generation_costs(r, generations).median()),
        "cost": float(per_seed.median()),
        "reservoir_cost": float(r[r["round"] == 0]["cost"].median()),
        "human_per_round": human,
        "tail_drift": float(drifts[metrics["tail"]].median()),
        "coverage_drift": float(drifts[metrics["coverage"]].median()),
        "band": widths["tail"],
        "coverage_band": widths["coverage"],
        "held": held(drifts),
        "seeds": int(len(per_seed)),
        "verifier_quality": None,
    }
    for key, values in ratios.items():
        low, mid, high = np.quantile(values, [0.1, 0.5, 0.9])
        out[f"{key}_ratio"], out[f"{key}_low"], out[f"{key}_high"] = mid, low, high
    return out
