"""Benchmark tailguard.metrics against the reference packages, in the same run.

    .venv/bin/python bench/metrics.py [--quick] [--only prdc,vendi,distinct] [--repeat 2]

Each measurement runs in its own subprocess so its peak memory (RSS high-water
mark above the process's footprint once the inputs exist) is its own. In that
process each side, ours and the peer's alike, is warmed up on a small slice of
the same inputs before it is timed. Each side runs ``--repeat`` times (default
3), ours and the peer's in turn, and its best and median are printed (the
machine may be shared), with the load average. Both sides get the same BLAS
threads (``--threads``, default 2). Vendi is compared with both of the
package's routes: ``score_X`` (the n x n kernel) and ``score_dual`` (the d x d
covariance, its fastest). Printed: time, peak memory, the ratio, and whether
the values agree.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _timing import Run, Runs, alternate, load_average

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 384), dtype=np.float32)


def _sentences(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(20000)])
    p = 1.0 / np.arange(1, vocab.size + 1) ** 1.1
    lengths = rng.integers(4, 13, n)
    words = vocab[rng.choice(vocab.size, lengths.sum(), p=p / p.sum())]
    return [" ".join(ws) for ws in np.split(words, np.cumsum(lengths)[:-1])]


def _counter_distinct(texts: list[str]) -> dict[int, float]:
    """The plain-Python way: tokenise, then a Counter of n-gram tuples per n."""
    out = {}
    toks = [re.findall(r"[^\W_]+", t.lower()) for t in texts]
    for n in (1, 2, 3, 4):
        c: Counter = Counter()
        for t in toks:
            c.update(zip(*[t[i:] for i in range(n)], strict=False))
        out[n] = len(c) / sum(c.values())
    return out


def run_case(case: str, n: int, threads: int) -> dict:
    """Runs inside the child: build inputs, warm up, time one call, report."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    from tailguard import metrics as M

    if case.startswith("prdc"):
        real, fake = _points(n, 1), _points(n, 2) * np.float32(0.9)
        if case == "prdc_ours":
            on = lambda r, f: M.prdc(f, r, k=5, threads=threads)  # noqa: E731
        else:
            import prdc

            def on(r, f):  # noqa: ANN001, ANN202
                with contextlib.redirect_stdout(io.StringIO()):
                    return {k: float(v) for k, v in prdc.compute_prdc(r, f, 5).items()}

        on(real[:500], fake[:500])  # warm-up, on both sides
        fn = lambda: on(real, fake)  # noqa: E731
    elif case.startswith("vendi"):
        X = _points(n, 3)
        if case == "vendi_ours":
            on = M.vendi
        else:
            from vendi_score import vendi

            route = {"vendi_pkg_x": vendi.score_X, "vendi_pkg_dual": vendi.score_dual}[case]
            on = lambda x: float(route(x))  # noqa: E731
        on(X[:500])
        fn = lambda: on(X)  # noqa: E731
    else:
        texts = _sentences(n)
        on = M.distinct_ns if case == "distinct_ours" else _counter_distinct
        on(texts[:1000])
        fn = lambda: on(texts)  # noqa: E731
    base = _rss_mib()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    if seconds < 5:  # short runs: best of three, as timeit does, so a busy machine skews less
        for _ in range(2):
            start = time.perf_counter()
            fn()
            seconds = min(seconds, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"seconds": seconds, "peak_mib": max(peak, 0.0), "value": value}


def measure(case: str, n: int, threads: int, timeout: float = 3600) -> dict | None:
    cmd = [sys.executable, __file__, "--case", case, "--n", str(n), "--threads", str(threads)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def side(case: str, n: int, threads: int) -> Run:
    """One timed run in its own process: the child's own seconds (inputs and warm-up left
    out) and its report; a run that failed or timed out counts as infinitely slow."""

    def run() -> tuple[float, dict | None]:
        out = measure(case, n, threads)
        return (math.inf, None) if out is None else (out["seconds"], out)

    return run


def summary(runs: Runs) -> dict | None:
    """The fastest run's value, the lowest peak memory of all runs, best and median."""
    done = [v for v in runs.values if v is not None]
    if not done:
        return None
    return {
        "value": runs.best_value["value"],
        "peak_mib": min(v["peak_mib"] for v in done),
        "best": runs.best,
        "median": runs.median,
    }


def _diff(a, b) -> float:  # noqa: ANN001
    """Largest absolute difference (relative for values above 1) between our and the peer's."""
    if isinstance(a, dict):
        return max(abs(float(a[k]) - float(b[k])) for k in a)
    return abs(a - b) / max(1.0, abs(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a quick look")
    ap.add_argument("--only", default="", help="comma-separated: prdc, prdc-large, vendi, "
                    "vendi-large, distinct (default: all)")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3, help="runs per side, alternated")
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads (and prdc workers)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.n, args.threads)))
        return

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    q = args.quick
    plan = [
        ("prdc", "prdc x384", 3000 if q else 10000, "prdc_ours", "prdc_pkg"),
        ("prdc-large", "prdc x384 (package cannot)", 20000 if q else 100000, "prdc_ours", None),
        ("vendi", "vendi x384 vs score_X", 3000 if q else 10000, "vendi_ours", "vendi_pkg_x"),
        ("vendi", "vendi x384 vs score_dual", 3000 if q else 10000, "vendi_ours", "vendi_pkg_dual"),
        ("vendi-large", "vendi x384", 200000 if q else 1000000, "vendi_ours", None),
        ("distinct", "distinct-1..4 sentences", 100000 if q else 1000000, "distinct_ours",
         "distinct_counter"),
    ]  # fmt: skip
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    plan = [row[1:] for row in plan if not only or row[0] in only]
    title = (
        f"tailguard.metrics vs peers, BLAS threads {args.threads}, best / median of "
        f"{args.repeat} alternated runs (load average {load_average()})"
    )
    table = Table(title=title + (" (--quick)" if q else ""))
    for col in ("metric", "n", "ours s", "ours MiB", "peer s", "peer MiB", "speed-up", "mem",
                "max diff"):  # fmt: skip
        table.add_column(col, justify="right")
    with Progress() as progress:
        runs = args.repeat * sum(1 + (p is not None) for *_, p in plan)
        task = progress.add_task("benchmarks", total=runs)
        for label, n, ours_case, peer_case in plan:
            sides = {"ours": side(ours_case, n, args.threads)}
            if peer_case:
                sides["peer"] = side(peer_case, n, args.threads)
            timed = alternate(sides, args.repeat, on_run=lambda _: progress.advance(task))
            ours = summary(timed["ours"])
            peer = summary(timed["peer"]) if peer_case else None
            row = [label, f"{n:,}"]
            row += [_span(ours), f"{ours['peak_mib']:.0f}"] if ours else ["fail", ""]
            if peer and ours:
                row += [
                    _span(peer),
                    f"{peer['peak_mib']:.0f}",
                    f"{peer['best'] / ours['best']:.1f}x",
                    f"{ours['peak_mib'] / max(peer['peak_mib'], 1e-9):.2f}",
                    f"{_diff(ours['value'], peer['value']):.1e}",
                ]
            else:
                row += ["-", "-", "-", "-", "-"]
            table.add_row(*row)
    Console(width=160).print(table)
    print("s = best / median seconds; speed-up = peer's best / our best; mem = our peak / peer")
    print("peak (RSS above the inputs, lowest of the runs); max diff = largest difference")
    print("between the two results (relative above 1); both sides warmed up in their process")


def _span(side: dict) -> str:
    return f"{side['best']:.2f} / {side['median']:.2f}"


if __name__ == "__main__":
    main()
