"""The gate at scale: in-process against Ray Data over Parquet shards, same verdicts.

N synthetic candidates are gated against an M-record reservoir and M/2 accepted
records of an earlier generation by Quality, ExactDuplicate and NearDuplicate
(128 permutations, J >= 0.8). Documents are recombined WordNet glosses; 2% of the
candidates are near copies of reservoir records (a word added), 1% exact copies in
upper case, 1% copies of an earlier candidate, 1% exact and 1% near copies of the
earlier generation's records. Each arm runs in its own process, so "peak driver
memory" is that process's peak resident set (Ray's workers are separate processes
and not counted: the point is what the driver must hold).

- in-process: the candidate shards read 100,000 rows at a time and gated as they
  come (``Gate.run_slices``, as ``Gate.run_round`` reads a round from the ledger; no
  pickling, no shuffles), the reservoir and earlier generation in memory.
- Ray: ``gate_parquet`` on a local Ray (``--cpus``, default 2), reading and
  writing shards; plus embedding and per-record metrics on the candidate shards.

Verdicts of the two arms are compared record for record (DuckDB, out of core).
A second table times the gate's *default* configuration against in-process and
the old default (a process pool from 4,096 rows in batches of 2,048) on the
row-independent verifiers.

    .venv/bin/python bench/scale.py                         # 10M candidates vs 1M
    .venv/bin/python bench/scale.py --candidates 1000000 --reservoir 100000
    .venv/bin/python bench/scale.py --quick                 # 20,000 vs 5,000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

WORDNET = [Path(f"/usr/share/wordnet/data.{p}") for p in ("noun", "verb", "adj", "adv")]
ROWS_PER_SHARD = 250_000
console = Console()


def glosses() -> pa.Array:
    out = []
    for path in WORDNET:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("  ") and "|" in line:
                out.append(line.split("|", 1)[1].strip())
    return pa.array(out)


def documents(pool: pa.Array, n: int, rng: np.random.Generator) -> pa.Array:
    """``n`` documents of four random glosses each (vectorised; 64-bit offsets, so 10M
    documents may pass 2 GB)."""
    pool = pool.cast(pa.large_string())
    parts = [pool.take(pa.array(rng.integers(0, len(pool), n))) for _ in range(4)]
    return join(*parts, "; ")


def join(*parts: pa.Array | str) -> pa.Array:
    """``binary_join_element_wise`` over 64-bit-offset strings (the last part is the
    separator)."""
    big = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*[p.cast(pa.large_string()) for p in big])


def write_shards(directory: Path, content: pa.Array, prefix: str, generation: int = 0) -> None:
    """Shards as ``Ledger.export_round`` writes them; an earlier generation's rows carry
    their ``generation`` and ``set``."""
    directory.mkdir(parents=True)
    n = len(content)
    for lo in range(0, n, ROWS_PER_SHARD):
        hi = min(lo + ROWS_PER_SHARD, n)
        pos = pa.array(np.arange(lo, hi, dtype=np.int64))
        ids = pc.binary_join_element_wise(prefix, pc.cast(pos, pa.string()), "")
        content_part = (
            content.slice(lo, hi - lo).take(pa.array(np.arange(hi - lo))).cast(pa.string())
        )
        table = pa.table({"pos": pos, "id": ids, "content": content_part})
        if generation:
            table = table.append_column("generation", pa.repeat(pa.scalar(generation), hi - lo))
            tag = pa.scalar(f"generation {generation} synthetic")
            table = table.append_column("set", pa.repeat(tag, hi - lo))
        pq.write_table(table, directory / f"part-{lo // ROWS_PER_SHARD:05d}.parquet")


def build(work: Path, n_cand: int, n_ref: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pool = glosses()
    ref = documents(pool, n_ref, rng)
    older = documents(pool, max(1, n_ref // 2), rng)
    cand = documents(pool, n_cand, rng).to_numpy(zero_copy_only=False).astype(object)
    k = max(1, n_cand // 100)
    slots = rng.permutation(n_cand)
    near, exact, again = slots[: 2 * k], slots[2 * k : 3 * k], slots[3 * k : 4 * k]
    src = ref.take(pa.array(rng.integers(0, n_ref, 3 * k)))
    near_txt = join(src.slice(0, 2 * k), "indeed", " ")
    cand[near] = near_txt.to_numpy(zero_copy_only=False)
    cand[exact] = pc.utf8_upper(src.slice(2 * k)).to_numpy(zero_copy_only=False)
    old_exact, old_near = slots[4 * k : 5 * k], slots[5 * k : 6 * k]
    old = older.take(pa.array(rng.integers(0, len(older), 2 * k)))
    cand[old_exact] = pc.utf8_upper(old.slice(0, k)).to_numpy(zero_copy_only=False)
    old_near_txt = join(old.slice(k), "indeed", " ")
    cand[old_near] = old_near_txt.to_numpy(zero_copy_only=False)
    again = again[again > 0]
    cand[again] = cand[again - 1]
    write_shards(work / "candidates", pa.array(cand, pa.large_string()), "c")
    write_shards(work / "reservoir", ref, "r")
    write_shards(work / "earlier", older, "e", generation=1)


def verifiers(reference: pa.Table | None) -> list:
    from tailguard.gate import ExactDuplicate, NearDuplicate, Quality

    return [Quality(), ExactDuplicate(reference=reference), NearDuplicate(reference=reference)]


def _peak_mb() -> float:
    """This process's own peak resident set (``VmHWM``: ``ru_maxrss`` would carry the
    parent's peak across the spawn)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def arm_build(work: str, n_cand: int, n_ref: int, queue: mp.Queue) -> None:
    """The data, written in a process of its own: the arms never inherit its peak."""
    build(Path(work), n_cand, n_ref)
    queue.put(None)


def candidate_slices(work: Path, rows: int = 100_000) -> Iterator[pa.Table]:
    """The candidate shards ``rows`` at a time, in their order: what the in-process
    arm holds of the candidates at once."""
    for shard in sorted((work / "candidates").glob("*.parquet")):
        for batch in pq.ParquetFile(shard).iter_batches(rows, columns=["id", "content"]):
            yield pa.Table.from_batches([batch])


def arm_in_process(work: str, queue: mp.Queue) -> None:
    """The gate streaming the candidate shards (``Gate.run_slices``, as ``run_round``
    reads a round from the ledger); each verifier timed on its own, its verdicts
    written before the next runs."""
    from tailguard.gate import Gate
    from tailguard.metrics.distributed import record_metrics
    from tailguard.metrics.embedders import HashingEmbedder

    w = Path(work)
    t0 = time.perf_counter()
    ref = pq.read_table(w / "reservoir", columns=["id", "content"])
    earlier = pq.read_table(w / "earlier", columns=["id", "content", "generation"])
    times = {"read": time.perf_counter() - t0}
    (w / "verdicts_in_process").mkdir()
    for v in verifiers(ref):
        t = time.perf_counter()
        result = Gate([v], progress=False).run_slices(candidate_slices(w), earlier=earlier)
        times[v.name] = time.perf_counter() - t
        pq.write_table(result.verdicts, w / "verdicts_in_process" / f"{v.name}.parquet")
        del result
    del earlier
    t = time.perf_counter()
    embedder = HashingEmbedder(dim=64).fit(ref["content"].slice(0, 100_000))
    del ref
    for part in candidate_slices(w, 65_536):  # a full matrix would not fit at 10M
        embedder.embed(part["content"])
    times["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    for part in candidate_slices(w):
        record_metrics(part)
    times["record metrics"] = time.perf_counter() - t
    queue.put({"times": times, "peak_mb": _peak_mb()})


def arm_ray(work: str, cpus: int, address: str | None, queue: mp.Queue) -> None:
    """Shards in, shards out; the driver holds no data."""
    from tailguard.engines import RayEngine
    from tailguard.gate import Gate
    from tailguard.gate.distributed import gate_parquet
    from tailguard.metrics.distributed import embed_parquet, record_metrics_parquet
    from tailguard.metrics.embedders import HashingEmbedder

    w = Path(work)
    engine = RayEngine(num_cpus=cpus, address=address)
    t = time.perf_counter()
    engine.ray()
    times = {"start": time.perf_counter() - t}
    for v in verifiers(None):
        t = time.perf_counter()
        gate_parquet(
            Gate([v], progress=False, batch_size=16_384),
            w / "candidates",
            w / "verdicts_ray" / v.name,
            engine=engine,
            reservoir=w / "reservoir",
            earlier=w / "earlier",
            work_dir=w / "ray_work",
        )
        times[v.name] = time.perf_counter() - t
    t = time.perf_counter()
    ref = pq.read_table(next((w / "reservoir").glob("*.parquet")), columns=["content"])
    embedder = HashingEmbedder(dim=64).fit(ref["content"].slice(0, 100_000))
    del ref
    embed_parquet(embedder, w / "candidates", w / "embeddings", engine=engine, batch_size=16_384)
    times["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    record_metrics_parquet(w / "candidates", w / "record_metrics", engine=engine)
    times["record metrics"] = time.perf_counter() - t
    engine.shutdown()
    queue.put({"times": times, "peak_mb": _peak_mb()})


def arm_defaults(work: str, n: int, queue: mp.Queue) -> None:
    """Row-independent verifiers: the default gate, in-process, the old pool default."""
    from tailguard.engines import InProcess, ProcessPool
    from tailguard.gate import Gate, Quality, Rules

    cand = pq.read_table(Path(work) / "candidates").slice(0, n)
    rules = Rules(rules=[{"name": "no_urls", "reason": "a link", "forbid": r"https?://"}])
    arms = {
        "default (Gate())": {},
        "in-process": {"engine": InProcess()},
        "old default (pool >= 4,096 rows, batches of 2,048)": {
            "engine": ProcessPool(),
            "batch_size": 2048,
        },
    }
    out = {}
    for name, kw in arms.items():
        gate = Gate([Quality(), rules], progress=False, **kw)
        t = time.perf_counter()
        gate.run(cand)
        out[name] = time.perf_counter() - t
    queue.put(out)


def run_arm(target, *args):  # noqa: ANN001, ANN201
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def compare(work: Path) -> tuple[int, int, dict[str, int]]:
    """Verdict rows, rows that differ between the arms (DuckDB, out of core), and the
    in-process duplicate rejections by what they matched."""
    import duckdb

    cols = "passed, code, detail, score, matched_id"
    a = f"read_parquet('{work / 'verdicts_in_process'}/*.parquet')"
    b = f"read_parquet('{work / 'verdicts_ray'}/**/*.parquet')"
    con = duckdb.connect()
    total = con.execute(f"SELECT count(*) FROM {a}").fetchone()[0]
    differ = con.execute(
        f"""SELECT count(*) FROM (SELECT id, verifier, {cols} FROM {a}) x
            FULL OUTER JOIN (SELECT id, verifier, {cols} FROM {b}) y USING (id, verifier)
            WHERE x.passed IS DISTINCT FROM y.passed OR x.code IS DISTINCT FROM y.code
               OR x.detail IS DISTINCT FROM y.detail
               OR x.score IS DISTINCT FROM y.score OR x.matched_id IS DISTINCT FROM y.matched_id
               OR x.passed IS NULL OR y.passed IS NULL"""
    ).fetchone()[0]
    matched = {
        what: con.execute(
            f"SELECT count(*) FROM {a} WHERE NOT passed AND detail LIKE ?", [f"% {what} %"]
        ).fetchone()[0]
        for what in ("reservoir record", "generation 1 synthetic record", "candidate")
    }
    return total, differ, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 candidates vs 5,000")
    parser.add_argument("--candidates", type=int, default=10_000_000)
    parser.add_argument("--reservoir", type=int, default=1_000_000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--address", default=None, help="a Ray cluster (ray://head:10001)")
    parser.add_argument("--defaults-rows", type=int, default=300_000)
    parser.add_argument("--work", type=Path, default=None, help="where the shards go")
    parser.add_argument(
        "--in-process-only", action="store_true", help="the in-process arm alone (its peak)"
    )
    args = parser.parse_args()
    n_cand, n_ref = (20_000, 5_000) if args.quick else (args.candidates, args.reservoir)
    n_default = min(n_cand, 20_000 if args.quick else args.defaults_rows)
    work = args.work or Path(tempfile.mkdtemp(prefix="tailguard-scale-"))
    if work.exists():
        shutil.rmtree(work)
    with console.status(f"writing {n_cand:,} candidates and {n_ref:,} reservoir records"):
        run_arm(arm_build, str(work), n_cand, n_ref)
    console.print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with console.status("in-process"):
        local = run_arm(arm_in_process, str(work))
    if args.in_process_only:
        times = ", ".join(f"{k} {v:.1f} s" for k, v in local["times"].items())
        console.print(f"in-process: {times}; peak {local['peak_mb']:,.0f} MB")
        console.print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    with console.status(f"Ray Data ({args.address or f'local, {args.cpus} CPUs'})"):
        ray = run_arm(arm_ray, str(work), args.cpus, args.address)
    with console.status("comparing verdicts"):
        total, differ, matched = compare(work)
    per_m = 1e6 / n_cand
    table = Table(title=f"{n_cand:,} candidates vs a {n_ref:,}-record reservoir")
    for col in ("stage", "in-process s", "Ray s", "in-process s/M", "Ray s/M", "Ray / in-process"):
        table.add_column(col, justify="right")
    stages = ["quality", "exact_duplicate", "near_duplicate", "embed", "record metrics"]
    for s in stages:
        a, b = local["times"][s], ray["times"][s]
        table.add_row(
            s, f"{a:.1f}", f"{b:.1f}", f"{a * per_m:.1f}", f"{b * per_m:.1f}", f"{b / a:.2f}x"
        )
    gate_a = sum(local["times"][s] for s in stages[:3])
    gate_b = sum(ray["times"][s] for s in stages[:3])
    table.add_row(
        "gate (3 verifiers)",
        f"{gate_a:.1f}",
        f"{gate_b:.1f}",
        f"{gate_a * per_m:.1f}",
        f"{gate_b * per_m:.1f}",
        f"{gate_b / gate_a:.2f}x",
        style="bold",
    )
    console.print(table)
    console.print(
        f"peak driver memory: in-process {local['peak_mb']:,.0f} MB, "
        f"Ray {ray['peak_mb']:,.0f} MB (Ray start-up {ray['times']['start']:.1f} s, "
        f"in-process read {local['times']['read']:.1f} s)"
    )
    same = "[green]identical[/]" if differ == 0 else f"[red]{differ:,} rows differ[/]"
    console.print(f"verdicts: {total:,} rows, in-process vs Ray: {same}")
    console.print(
        "duplicate rejections by match: " + ", ".join(f"{k} {v:,}" for k, v in matched.items())
    )
    with console.status(f"default engine on {n_default:,} records"):
        defaults = run_arm(arm_defaults, str(work), n_default)
    t2 = Table(title=f"row-independent verifiers (quality, rules), {n_default:,} records")
    t2.add_column("configuration")
    t2.add_column("seconds", justify="right")
    t2.add_column("vs in-process", justify="right")
    base = defaults["in-process"]
    for name, t in defaults.items():
        t2.add_row(name, f"{t:.2f}", f"{t / base:.2f}x")
    console.print(t2)
    shutil.rmtree(work, ignore_errors=True)
    if differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
