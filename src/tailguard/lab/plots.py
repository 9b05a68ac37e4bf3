"""Plots of lab results: each metric's median curve per strategy, with its band."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc


def plot_curves(
    summary: pa.Table,
    floor: pa.Table,
    *,
    strategies: list[str],
    title: str,
    path: Path,
    metrics: list[str] | None = None,
) -> Path:
    """A grid of panels (one per metric), a line per strategy, the 10-90% band shaded.

    ``summary`` and ``floor`` are a lab result's tables of those names.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary
    summary = table.to_pandas()
    names = metrics or _default_metrics(list(summary["metric"].unique()))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        part = summary[summary.metric == name]
        for strategy in strategies:
            s = part[part.strategy == strategy].sort_values("round")
            (line,) = ax.plot(s["round"], s["median"], marker="o", ms=3, label=strategy)
            ax.fill_between(s["round"], s["low"], s["high"], color=line.get_color(), alpha=0.15)
        human = floor.filter(pc.equal(floor["metric"], name))
        if human.num_rows:
            ax.axhline(
                float(pc.mean(human["value"]).as_py()),
                color="grey",
                ls=":",
                lw=1,
                label="human (floor)",
            )
        ax.set_title(name)
        ax.set_xlabel("generation")
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _default_metrics(available: list[str]) -> list[str]:
    preferred = [
        "tail_recall", "tail_mass_ratio", "distinct_2", "rare_vocab_coverage", "label_js",
        "vocab_coverage", "vector_variance_ratio", "vector_tail_lower", "vector_tail_upper",
        "vector_w1", "label_entropy",
    ]  # fmt: skip
    chosen = [m for m in preferred if m in available]
    return chosen[:6] or available[:6]
