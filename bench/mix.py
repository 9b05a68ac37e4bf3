"""Benchmark: tailguard's anchored batch planner vs Hugging Face `interleave_datasets`.

Both produce a training order over the same ids: 20% human, 80% synthetic,
batches of 1,024. The peer gets its fastest path (datasets built from Arrow
tables of ids, the interleaved ids read back as one Arrow column). Both sides
are warmed up on 10,000 ids, then run in turn (``--repeat`` times each, default
3). We report best and median times with the load average, the ratio of the
best runs, and the largest deviation of any batch's human share from 20%
(tailguard's must be 0).

    .venv/bin/python bench/mix.py            # 10,000,000 ids
    .venv/bin/python bench/mix.py --quick    # 1,000,000 ids
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from _timing import alternate, load_average
from rich.console import Console
from rich.table import Table

from tailguard.mix import Anchored, plan

BATCH = 1024
FRACTION = 0.2


def hex_ids(n: int, rng: np.random.Generator) -> pa.Array:
    """n distinct-looking 32-hex-digit ids, like tailguard's content ids (built vectorised)."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((n, 32), np.uint8)
    text[:, 0::2], text[:, 1::2] = digits[raw >> 4], digits[raw & 15]
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())]
    )


def make_pool(n_human: int, n_synthetic: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = n_human + n_synthetic
    is_syn = np.arange(n) >= n_human
    labels = np.array([f"class_{i}" for i in range(10)])
    return pa.table(
        {
            "id": hex_ids(n, rng),
            "origin": pa.array(np.where(is_syn, "synthetic", "human")),
            "generation": pa.array(np.where(is_syn, rng.integers(1, 5, n), 0).astype(np.int32)),
            "label": pa.array(labels[rng.integers(0, 10, n)]),
        }
    )


def share_deviation(is_human: np.ndarray) -> tuple[float, int]:
    """Over full batches: the largest |human share - 20%|, and how many batches miss their
    exact quota (floor or ceiling of 0.2 x 1024 = 204.8 human slots; 0 is the best possible)."""
    full = len(is_human) // BATCH * BATCH
    humans = is_human[:full].reshape(-1, BATCH).sum(axis=1)
    quota = FRACTION * BATCH
    off = int(np.count_nonzero((humans < np.floor(quota)) | (humans > np.ceil(quota))))
    return float(np.abs(humans / BATCH - FRACTION).max()), off


def run_tailguard(pool: pa.Table, seed: int) -> tuple[float, np.ndarray, int]:
    start = time.perf_counter()
    manifest = plan(pool, Anchored(real_fraction=FRACTION), round=1, batch_size=BATCH, seed=seed)
    elapsed = time.perf_counter() - start
    is_human = manifest.slots["origin"].to_numpy(zero_copy_only=False) == "human"
    return elapsed, is_human, manifest.slots.num_rows


def run_peer(pool: pa.Table, n_human: int, seed: int) -> tuple[float, np.ndarray, int]:
    import datasets

    datasets.disable_progress_bars()
    start = time.perf_counter()
    human = datasets.Dataset(pool.select(["id"]).slice(0, n_human))
    synthetic = datasets.Dataset(pool.select(["id"]).slice(n_human))
    mixed = datasets.interleave_datasets(
        [human, synthetic],
        probabilities=[FRACTION, 1 - FRACTION],
        seed=seed,
        stopping_strategy="first_exhausted",
    )
    ids = mixed.with_format("arrow")[:]["id"]  # materialise the training order
    elapsed = time.perf_counter() - start
    human_ids = pool["id"].slice(0, n_human)
    is_human = pa.compute.is_in(ids, value_set=human_ids.combine_chunks()).to_numpy(
        zero_copy_only=False
    )
    return elapsed, is_human, len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/10 size (1,000,000 ids)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per side, alternated")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    n_human, n_synthetic = 2_000_000 // scale, 8_000_000 // scale
    console = Console(width=120)
    # No progress bar while timing: a refresh thread would compete for the GIL.
    console.print(f"building the pool, then warm-up and {args.repeat} alternated runs per side")
    pool = make_pool(n_human, n_synthetic, args.seed)
    small = pool.slice(0, 10_000)  # page in the code paths, not the data
    small_human = min(n_human, 2_000)

    def ours(p: pa.Table) -> Callable[[], tuple[float, tuple[np.ndarray, int]]]:
        return lambda: _split(run_tailguard(p, args.seed))

    def peer(p: pa.Table, k: int) -> Callable[[], tuple[float, tuple[np.ndarray, int]]]:
        return lambda: _split(run_peer(p, k, args.seed))

    names = ("tailguard.mix.plan", "datasets.interleave_datasets")
    runs = alternate(
        dict(zip(names, (ours(pool), peer(pool, n_human)), strict=True)),
        args.repeat,
        warm_up=dict(zip(names, (ours(small), peer(small, small_human)), strict=True)),
    )

    n = n_human + n_synthetic
    table = Table(
        title=f"Planning {n:,} ids into batches of {BATCH:,} at {FRACTION:.0%} human, "
        f"best / median of {args.repeat} alternated runs (load average {load_average()})"
    )
    for col in ("", "seconds", "ids/s (best)", "slots", "max |share - 20%|", "batches off quota"):
        table.add_column(col, justify="right")
    for name, r in runs.items():
        human, slots = r.best_value
        worst, off = share_deviation(human)
        table.add_row(
            name, r.span(), f"{n / r.best:,.0f}", f"{slots:,}", f"{worst:.4f}", f"{off:,}"
        )
    console.print(table)
    console.print(
        "(0.2 x 1,024 = 204.8 is not whole: exact batches hold 204 or 205 human "
        "examples, so 0.0008 is the least possible share deviation)"
    )
    best_ours, best_peer = runs[names[0]].best, runs[names[1]].best
    console.print(
        f"speed-up: [bold]{best_peer / best_ours:.1f}x[/] on the best runs, "
        f"{runs[names[1]].median / runs[names[0]].median:.1f}x on the medians (target >= 20x; "
        f"ours {n / best_ours / 1e6:.1f}M ids/s, target >= 5M ids/s)"
    )


def _split(result: tuple[float, np.ndarray, int]) -> tuple[float, tuple[np.ndarray, int]]:
    seconds, is_human, slots = result
    return seconds, (is_human, slots)


if __name__ == "__main__":
    main()
