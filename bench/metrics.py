"""Benchmark tailguard.metrics against the reference packages, in the same run.

    .venv/bin/python bench/metrics.py [--quick] [--only prdc,vendi,distinct] [--repeat 2]

Each measurement runs in its own subprocess so its peak memory (RSS high-water
mark above the process's footprint once the inputs exist) is its own; each side
runs ``--repeat`` times, ours and the peer's alternating, and the better run
counts (the machine may be shared). Both sides get the same BLAS threads
(``--threads``, default 2). Printed: time, peak memory, the ratio, and whether
the values agree.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

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
            M.prdc(fake[:500], real[:500], threads=threads)
            fn = lambda: M.prdc(fake, real, k=5, threads=threads)  # noqa: E731
        else:
            import prdc

            def fn():
                with contextlib.redirect_stdout(io.StringIO()):
                    return {k: float(v) for k, v in prdc.compute_prdc(real, fake, 5).items()}
    elif case.startswith("vendi"):
        X = _points(n, 3)
        if case == "vendi_ours":
            M.vendi(X[:500])
            fn = lambda: M.vendi(X)  # noqa: E731
        else:
            from vendi_score import vendi

            route = {"vendi_pkg_x": vendi.score_X, "vendi_pkg_dual": vendi.score_dual}[case]
            fn = lambda: float(route(X))  # noqa: E731
    else:
        texts = _sentences(n)
        if case == "distinct_ours":
            M.distinct_ns(texts[:1000])
            fn = lambda: M.distinct_ns(texts)  # noqa: E731
        else:
            fn = lambda: _counter_distinct(texts)  # noqa: E731
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


def _better(a: dict | None, b: dict | None) -> dict | None:
    """The faster of two runs (its own peak memory kept: the lower of the two)."""
    if a is None or b is None:
        return a or b
    best = dict(min(a, b, key=lambda r: r["seconds"]))
    best["peak_mib"] = min(a["peak_mib"], b["peak_mib"])
    return best


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
    ap.add_argument("--repeat", type=int, default=2, help="runs per side; the better counts")
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
    title = f"tailguard.metrics vs peers, BLAS threads {args.threads}, best of {args.repeat}"
    table = Table(title=title + (" (--quick)" if q else ""))
    for col in ("metric", "n", "ours s", "ours MiB", "peer s", "peer MiB", "speed-up", "mem",
                "max diff"):  # fmt: skip
        table.add_column(col, justify="right")
    with Progress() as progress:
        runs = args.repeat * sum(1 + (p is not None) for *_, p in plan)
        task = progress.add_task("benchmarks", total=runs)
        for label, n, ours_case, peer_case in plan:
            ours = peer = None
            for _ in range(args.repeat):  # alternate, so both sides see the same machine
                ours = _better(ours, measure(ours_case, n, args.threads))
                progress.advance(task)
                if peer_case:
                    peer = _better(peer, measure(peer_case, n, args.threads))
                    progress.advance(task)
            row = [label, f"{n:,}"]
            row += [f"{ours['seconds']:.2f}", f"{ours['peak_mib']:.0f}"] if ours else ["fail", ""]
            if peer and ours:
                row += [
                    f"{peer['seconds']:.2f}",
                    f"{peer['peak_mib']:.0f}",
                    f"{peer['seconds'] / ours['seconds']:.1f}x",
                    f"{ours['peak_mib'] / max(peer['peak_mib'], 1e-9):.2f}",
                    f"{_diff(ours['value'], peer['value']):.1e}",
                ]
            else:
                row += ["-", "-", "-", "-", "-"]
            table.add_row(*row)
    Console(width=150).print(table)
    print("mem = our peak / peer peak (RSS above the inputs); speed-up = peer time / our time;")
    print("max diff = largest difference between the two results (relative above 1)")


if __name__ == "__main__":
    main()
