"""The loop's own overhead: tailguard's time per round on a trivially cheap model.

A file ledger holds 200 short human texts, frozen as the reservoir; the default
project (``tailguard init``: quality, exact and near-duplicate gate, anchored 20%,
the dial, the default monitor preset) runs rounds whose model memorises its
training texts and "generates" by recombining their words (numpy, microseconds).
Every stage is timed; the user's functions (train, generate, sample) are timed
inside it, so what remains is tailguard's own: ledger reads and writes, the gate,
the dial, the planner, the monitor. The target is under 20 ms per round plus what
the data size requires.

    python bench/loop.py              # 200 records, 20 rounds
    python bench/loop.py --quick      # 200 records, 6 rounds
    python bench/loop.py --records 5000 --rounds 10

The peer is the user's own functions, in the same rounds: the question is how
much tailguard adds to a round whose model costs nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from _rounds import StageClock, default_loop, load_average
from rich.console import Console
from rich.table import Table

from tailguard.ledger import Ledger
from tailguard.records import Origin, make_records

WORDS = np.array(
    "the of and to in is was for on that with as by at from his her an which are be this "
    "anchor model data human tail rare class round batch drift gate verify sample label "
    "cat dog ocean river music quiet bright cold warm fast slow old new".split()
)
TARGET_MS = 20.0


def texts(n: int, rng: np.random.Generator) -> pa.Array:
    """``n`` texts of five random words each (vectorised)."""
    parts = [pa.array(WORDS[rng.integers(0, len(WORDS), n)]) for _ in range(5)]
    return pc.binary_join_element_wise(*parts, " ")


def human_ledger(path: Path | str, n: int) -> Ledger:
    led = Ledger.open(path)
    rng = np.random.default_rng(0)
    labels = pa.array(np.char.add("c", rng.zipf(1.6, n).clip(max=20).astype(str)))
    led.add_records(make_records(texts(n, rng), origin=Origin.HUMAN, source="bench", label=labels))
    led.freeze_reservoir("main")
    led.release()
    return led


def trivial_model() -> dict:
    """train: keep the training texts; generate: recombine their words."""

    def train(manifest, records):  # noqa: ANN001, ANN202
        return records.column("content")

    def generate(model, n, round, seed):  # noqa: ANN001, ANN202, A002
        rng = np.random.default_rng(seed)
        out = texts(n, rng)
        labels = pa.array(np.char.add("c", rng.integers(1, 20, n).astype(str)))
        return out, labels

    return {"train": train, "generate": generate, "sample": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200, help="human records and candidates")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="6 rounds")
    args = parser.parse_args()
    rounds = 6 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        led = human_ledger(Path(tmp) / "ledger.duckdb", args.records)
        clock = StageClock()
        loop = default_loop(led, clock, **trivial_model(), n_generate=args.records)
        started = time.perf_counter()
        clock.start()
        loop.run(rounds, on_stage=clock.on_stage)
        wall = time.perf_counter() - started
        led.close()
    timed = list(range(2, rounds + 1))  # round 0 is the baseline; round 1 warms caches
    table = Table(
        title=f"tailguard's own time per round: {args.records} records, mean of rounds "
        f"2-{rounds} (load average {load_average()})"
    )
    for col in ("stage", "tailguard ms", "user's functions ms", "CPU ms (all threads)"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    own_total = user_total = cpu_total = 0.0
    for stage in clock.stages(timed):
        total = clock.mean(clock.total, stage, timed) * 1e3
        user = clock.mean(clock.user_time, stage, timed) * 1e3
        cpu = clock.mean(clock.cpu, stage, timed) * 1e3
        own_total, user_total, cpu_total = (
            own_total + total - user,
            user_total + user,
            cpu_total + cpu,
        )
        table.add_row(stage, f"{total - user:.1f}", f"{user:.1f}", f"{cpu:.1f}")
    table.add_row(
        "[b]round[/b]",
        f"[b]{own_total:.1f}[/b]",
        f"[b]{user_total:.1f}[/b]",
        f"[b]{cpu_total:.1f}[/b]",
    )
    console = Console()
    console.print(table)
    r0 = sum(v for (r, _), v in clock.total.items() if r == 0) * 1e3
    verdict = "met" if own_total < TARGET_MS else "NOT met"
    console.print(
        f"round 0 (baseline and noise floor): {r0:.0f} ms; {rounds + 1} rounds in {wall:.2f} s\n"
        f"tailguard's own time per round {own_total:.1f} ms = "
        f"{own_total / max(user_total, 1e-9):.1f}x the user's functions ({user_total:.1f} ms); "
        f"target < {TARGET_MS:.0f} ms: {verdict}"
    )


if __name__ == "__main__":
    main()
