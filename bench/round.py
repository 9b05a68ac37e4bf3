"""A whole round at scale: N candidates against an N-record reservoir, stage by stage.

The default project (``tailguard init``: quality, exact and near-duplicate gate,
anchored 20% with the dial, the default monitor preset) on a file ledger. Human
documents are recombined WordNet glosses with Zipf-distributed labels; the
"model" hands back precomputed candidates of the same kind (2% near copies of
reservoir documents, 1% exact copies), so every second timed is tailguard's:
the user's functions are timed apart and left out. Round 0 (freeze, the gate's
fingerprints, kept in the ledger as ``reservoir freeze`` does; baseline and noise
floor) is reported separately from round 1.

Each size runs in its own process, so its peak resident set is its own: the data is
made beforehand and read from Parquet files, as a user's would be (the candidates
when the "model" is asked for them, so the process never holds them all beside
the round). Each stage's own peak (sampled within it) is printed beside the
process's peak so far, with what Arrow's pool held then.

    python bench/round.py                    # 100,000 and 1,000,000
    python bench/round.py --sizes 100000     # one size
    python bench/round.py --quick            # 5,000 and 20,000 (make bench)
    python bench/round.py --sizes 100000 --profile   # cProfile's top functions too

Targets (issue: a round at a million): round 1 under 60 s and under 4 GB at 1M on
2 cores, round 0 under 30 s, time close to linear from 100k to 1M. The peer is
the same round at the smaller size: the ratio printed is the scaling.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing as mp
import pstats
import tempfile
import time
from pathlib import Path
from queue import Empty

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _rounds import StageClock, default_loop, load_average, peak_rss_mb
from rich.console import Console
from rich.table import Table
from scale import documents, glosses

TARGET_ROUND_S, TARGET_ROUND0_S, TARGET_MB = 60.0, 30.0, 4096.0
console = Console()


def labels(n: int, rng: np.random.Generator) -> pa.Array:
    return pa.array(np.char.add("c", rng.zipf(1.5, n).clip(max=500).astype(str)))


def candidates(human: pa.Array, pool: pa.Array, n: int, rng: np.random.Generator) -> pa.Array:
    """Fresh documents, with 2% near copies of human ones (a word added) and 1% exact."""
    docs = documents(pool, n, rng).cast(pa.string())
    near = rng.choice(n, n // 50, replace=False)
    exact = rng.choice(np.setdiff1d(np.arange(n), near), n // 100, replace=False)
    src = human.take(pa.array(rng.integers(0, len(human), len(near) + len(exact))))
    mask = np.zeros(n, bool)
    values = pa.concat_arrays(
        [pc.binary_join_element_wise(src[: len(near)], "again", " "), src[len(near) :]]
    )
    order = np.concatenate([near, exact])
    mask[order] = True
    return pc.replace_with_mask(docs, pa.array(mask), values.take(pa.array(np.argsort(order))))


def write_data(n: int, folder: Path) -> None:
    """The human data and the model's candidates as Parquet files, as a user has them:
    made here, so the measured process holds only what it reads."""
    rng = np.random.default_rng(0)
    pool = glosses()
    human = documents(pool, n, rng).cast(pa.string())
    cand = candidates(human, pool, n, rng)
    cand_labels = labels(n, rng)
    pq.write_table(pa.table({"content": cand, "label": cand_labels}), folder / "candidates.parquet")
    pq.write_table(pa.table({"content": human, "label": labels(n, rng)}), folder / "human.parquet")


def first_rows(path: Path, k: int) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """The model's output: the first ``k`` candidates and their labels, read when asked
    for (a model writes its candidates when called; it does not hold a round's worth)."""
    batches, got = [], 0
    for batch in pq.ParquetFile(path).iter_batches(min(k, 65_536)):
        batches.append(batch.slice(0, k - got))
        got += batches[-1].num_rows
        if got >= k:
            break
    table = pa.Table.from_batches(batches)
    return table["content"], table["label"]


def one_size(n: int, data: Path, profile: bool, queue: mp.Queue) -> None:
    """Build a ledger of ``n`` human records, run rounds 0 and 1, report to ``queue``."""
    from tailguard.ledger import Ledger
    from tailguard.records import Origin, make_records

    prof = cProfile.Profile() if profile else None
    setup: dict[str, float] = {}
    clock = StageClock()  # its sampler sees the set-up's peaks too
    setup_within = {"read": clock.sampler.take()}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        led = Ledger.open(Path(tmp) / "ledger.duckdb")
        human = pq.read_table(data / "human.parquet")
        led.add_records(
            make_records(
                human["content"], origin=Origin.HUMAN, source="wordnet", label=human["label"]
            )
        )
        del human
        setup["ingest"] = time.perf_counter() - t
        setup_within["ingest"] = clock.sampler.take()
        if prof:
            prof.enable()
        t = time.perf_counter()
        led.freeze_reservoir("main")
        setup["freeze"] = time.perf_counter() - t
        setup_peak = {"freeze": peak_rss_mb()}
        setup_within["freeze"] = clock.sampler.take()
        t = time.perf_counter()
        loop = default_loop(
            led,
            clock,
            train=lambda manifest, records: None,
            generate=lambda model, k, r, seed: first_rows(data / "candidates.parquet", k),
            sample=None,
            n_generate=n,
        )
        loop.gate.prepare()  # as `reservoir freeze` does: once per reservoir, kept in the ledger
        setup["gate reference"] = time.perf_counter() - t
        setup_peak["gate reference"] = peak_rss_mb()
        setup_within["gate reference"] = clock.sampler.take()
        rss_before = peak_rss_mb()
        clock.start()
        loop.run(1, on_stage=clock.on_stage)
        if prof:
            prof.disable()
        led.close()
    out = io.StringIO()
    if prof:
        prof.dump_stats(f"round-{n}.prof")
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
    own = {f"{r}:{s}": clock.total[r, s] - clock.user_time[r, s] for (r, s) in list(clock.total)}
    queue.put(
        {
            "n": n,
            "setup": setup,
            "setup_peak": setup_peak,
            "stages": own,
            "cpu": {f"{r}:{s}": v for (r, s), v in clock.cpu.items()},
            "peak": {f"{r}:{s}": v for (r, s), v in clock.peak.items()},
            "within": {f"{r}:{s}": v for (r, s), v in clock.within.items()},
            "setup_within": setup_within,
            "user": sum(clock.user_time.values()),
            "peak_mb": peak_rss_mb(),
            "peak_before_rounds_mb": rss_before,
            "profile": out.getvalue(),
        }
    )


def run_size(n: int, profile: bool) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as data:
        write_data(n, Path(data))
        proc = ctx.Process(target=one_size, args=(n, Path(data), profile, queue))
        proc.start()
        while True:
            try:
                result = queue.get(timeout=5)
                break
            except Empty:
                if not proc.is_alive():  # e.g. killed for memory: say so instead of waiting
                    return {"n": n, "failed": f"the {n:,} run died (exit code {proc.exitcode})"}
        proc.join()
    return result


def stage_table(res: dict) -> tuple[Table, float, float]:
    n = res["n"]
    r1 = {k.split(":")[1]: v for k, v in res["stages"].items() if k.startswith("1:")}
    r0 = {k.split(":")[1]: v for k, v in res["stages"].items() if k.startswith("0:")}
    round0 = res["setup"]["freeze"] + res["setup"]["gate reference"] + sum(r0.values())
    round1 = sum(r1.values())
    table = Table(title=f"{n:,} candidates against a {n:,}-record reservoir")
    for col in ("stage", "seconds", "share", "CPU s", "peak MB", "stage's own peak MB", "Arrow MB"):
        table.add_column(col, justify="left" if col == "stage" else "right")

    def row(name: str, secs: float, total: float, cpu: str, mb: float, own: list) -> None:
        table.add_row(
            name, f"{secs:.2f}", f"{secs / total:.0%}", cpu, f"{mb:,.0f}",
            f"{own[0]:,.0f}", f"{own[1]:,.0f}",
        )  # fmt: skip

    for stage, secs in r1.items():
        key = f"1:{stage}"
        cpu, mb, own = res["cpu"][key], res["peak"][key], res["within"][key]
        row(f"round 1: {stage}", secs, round1, f"{cpu:.2f}", mb, own)
    table.add_row("[b]round 1[/b]", f"[b]{round1:.2f}[/b]", "100%")
    for stage in ("freeze", "gate reference"):
        secs, mb, own = res["setup"][stage], res["setup_peak"][stage], res["setup_within"][stage]
        row(f"round 0: {stage}", secs, round0, "", mb, own)
    for stage, secs in r0.items():
        key = f"0:{stage}"
        cpu, mb, own = res["cpu"][key], res["peak"][key], res["within"][key]
        row(f"round 0: {stage}", secs, round0, f"{cpu:.2f}", mb, own)
    table.add_row("[b]round 0[/b]", f"[b]{round0:.2f}[/b]", "100%")
    own = res["setup_within"]
    table.add_row("set-up: read candidates", "", "", "", "", f"{own['read'][0]:,.0f}")
    table.add_row("set-up: ingest the human data", "", "", "", "", f"{own['ingest'][0]:,.0f}")
    table.add_row("peak memory (MB)", f"{res['peak_mb']:,.0f}", "")
    return table, round0, round1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="5,000 and 20,000")
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile's top functions, save round-N.prof"
    )
    args = parser.parse_args()
    sizes = [5_000, 20_000] if args.quick else sorted(args.sizes)
    console.print(f"load average before: {load_average()} (2 cores, shared)")
    rows = []
    for n in sizes:
        res = run_size(n, args.profile)
        if "failed" in res:
            console.print(f"[red]{res['failed']}[/red] (peak memory: see the kernel log)")
            continue
        table, round0, round1 = stage_table(res)
        console.print(table)
        if args.profile:
            print(res["profile"])  # noqa: T201 - cProfile's own layout; also in round-N.prof
        rows.append((n, round0, round1, res["peak_mb"]))
    console.print(f"load average after: {load_average()}")
    summary = Table(title="summary (targets at 1M: round < 60 s, round 0 < 30 s, < 4 GB)")
    for col in ("candidates", "round 0 s", "round 1 s", "peak MB", "round 1 vs smallest"):
        summary.add_column(col, justify="right")
    if not rows:
        raise SystemExit(1)
    base_n, _, base_r1, _ = rows[0]
    for n, r0, r1, mb in rows:
        scale = f"{r1 / base_r1:.1f}x for {n / base_n:.0f}x the data"
        summary.add_row(f"{n:,}", f"{r0:.1f}", f"{r1:.1f}", f"{mb:,.0f}", scale)
    console.print(summary)
    for n, r0, r1, mb in rows:
        if n >= 1_000_000:
            met = {
                "round < 60 s": r1 < TARGET_ROUND_S,
                "round 0 < 30 s": r0 < TARGET_ROUND0_S,
                "< 4 GB": mb < TARGET_MB,
            }
            console.print(
                f"{n:,}: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items())
            )
    keys = ("n", "round0", "round1", "peak_mb")
    console.print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows]))


if __name__ == "__main__":
    main()
