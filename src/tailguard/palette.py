"""One meaning per colour, for the terminal (rich) and the HTML report alike.

Human data is always green and synthetic data orange (by generation); an alert is red;
strategies and runs draw from their own palette, which holds none of those colours, and
get their colour from their name's place in the sorted set of names shown together, so
a strategy has one colour in every chart of a report and in the terminal table of the
same run.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Human data: reservoir slots, the human share, the noise floor (human vs human).
HUMAN = "#2ca02c"
#: Synthetic data: a matplotlib colormap, darker for later generations.
SYNTHETIC_CMAP = "Oranges"
#: An alert, a degradation.
ALERT = "#d62728"
#: The baseline a metric is measured against.
BASELINE = "#444444"
#: Strategies and runs (no green, orange or red: those mean human, synthetic, alert).
STRATEGIES = (
    "#1f77b4",
    "#9467bd",
    "#8c564b",
    "#17becf",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#393b79",
)


def strategy_colors(names: Iterable[str]) -> dict[str, str]:
    """One colour per name, assigned in sorted order (the same set gives the same colours)."""
    return {s: STRATEGIES[i % len(STRATEGIES)] for i, s in enumerate(sorted(set(names)))}
