"""Near-duplicate search: tailguard's NearDuplicate against datasketch, same run.

Synthetic documents are checked against a reservoir of human documents with
MinHash (128 permutations, 3-word shingles, Jaccard threshold 0.8). Documents
are recombined WordNet glosses; 2% of the synthetic documents are planted
near-copies of reservoir documents with a few words changed. datasketch gets
its fastest documented path and tailguard's parameters: ``MinHash.bulk`` into
``LeanMinHash``, ``MinHashLSH`` with the same bands and rows as tailguard
(``params=``), filled in one ``insertion_session``, candidates confirmed by
``jaccard``, and a C hash (``hashfunc=xxhash.xxh32_intdigest``, the
documented way to replace its default SHA-1; about 1.5x faster here) when
xxhash is installed; each text is tokenised in one regex pass into the same
words tailguard uses. Both sides are warmed up, then run in turn (``--repeat`` times
each); best and median are printed with the load average.

With ``--verifiers`` it also times the default gate's verifiers on the same
documents (quality, exact and near duplicates against the reservoir), and the
duplicate verifiers again when the reservoir's fingerprints are read from a
ledger, as every round after the first does.

    .venv/bin/python bench/dedup.py            # 100,000 vs 100,000
    .venv/bin/python bench/dedup.py --quick    # 10,000 vs 10,000
    .venv/bin/python bench/dedup.py --n 1000000 --verifiers
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from _timing import alternate, load_average
from rich.console import Console
from rich.table import Table

from tailguard.gate import ExactDuplicate, NearDuplicate, Quality
from tailguard.ledger import Ledger
from tailguard.records import make_records

WORDNET = [Path(f"/usr/share/wordnet/data.{p}") for p in ("noun", "verb", "adj", "adv")]
THRESHOLD, NUM_PERM, SHINGLE, SEED = 0.8, 128, 3, 1
console = Console()


def glosses() -> list[str]:
    out = []
    for path in WORDNET:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("  ") and "|" in line:
                out.append(line.split("|", 1)[1].strip())
    return out


def corpus(n_ref: int, n_syn: int, share: float, seed: int = 0):
    """Reservoir and synthetic documents; planted near-copies with their source index."""
    rng = np.random.default_rng(seed)
    pool = glosses()
    vocab = sorted({w for g in pool[:20000] for w in g.split()})

    def docs(n: int) -> list[str]:
        k = rng.integers(4, 8, size=n)
        picks = rng.integers(0, len(pool), size=int(k.sum()))
        bounds = np.concatenate([[0], np.cumsum(k)])
        spans = zip(bounds[:-1], bounds[1:], strict=True)
        return ["; ".join(pool[j] for j in picks[a:b]) for a, b in spans]

    ref = docs(n_ref)
    syn = docs(n_syn)
    n_plant = int(share * n_syn)
    slots = rng.choice(n_syn, n_plant, replace=False)
    sources = rng.choice(n_ref, n_plant, replace=False)
    for slot, src in zip(slots, sources, strict=True):
        words = ref[src].split()
        for _ in range(1 if len(words) < 90 else 2):  # a few words changed: J ~0.85-0.95
            words[rng.integers(len(words))] = vocab[rng.integers(len(vocab))]
        syn[slot] = " ".join(words)
    return ref, syn, slots, sources


WORD = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """The same words tailguard uses (``tailguard.words``: lower-cased runs of letters
    and digits), in one regex pass over the text."""
    return WORD.findall(text.lower())


def shingle_set(text: str) -> list[bytes]:
    w = tokens(text)
    if len(w) < SHINGLE:
        return [" ".join(w).encode()] if w else []
    return list({" ".join(w[i : i + SHINGLE]).encode() for i in range(len(w) - SHINGLE + 1)})


def jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_set(a)), set(shingle_set(b))
    return len(sa & sb) / max(len(sa | sb), 1)


def lsh_params() -> tuple[int, int]:
    """The bands and rows tailguard's NearDuplicate picks for these settings."""
    probe = NearDuplicate(
        reference=pa.table({"id": ["0"], "content": ["a b c"]}),
        threshold=THRESHOLD,
        num_perm=NUM_PERM,
        shingle=SHINGLE,
    )
    return probe.bands, probe.rows


def run_tailguard(ref: list[str], syn: list[str]) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    ref_table = pa.table({"id": [str(i) for i in range(len(ref))], "content": ref})
    nd = NearDuplicate(
        reference=ref_table,
        threshold=THRESHOLD,
        num_perm=NUM_PERM,
        shingle=SHINGLE,
        seed=SEED,
        within_pool=False,
    )
    out = nd.verify(pa.table({"id": [f"s{i}" for i in range(len(syn))], "content": syn}))
    elapsed = time.perf_counter() - t0
    matched = np.array([-1 if m is None else int(m) for m in out["matched_id"].to_pylist()])
    return elapsed, matched


def peer_hash() -> dict:
    """datasketch's documented speed-up: a C hash function in place of SHA-1, if present."""
    try:
        import xxhash
    except ImportError:
        return {}
    return {"hashfunc": xxhash.xxh32_intdigest}


def run_datasketch(
    ref: list[str], syn: list[str], params: tuple[int, int]
) -> tuple[float, np.ndarray]:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    hashing = peer_hash()
    t0 = time.perf_counter()
    ref_sh = [shingle_set(t) for t in ref]
    ref_mh = MinHash.bulk(ref_sh, num_perm=NUM_PERM, seed=SEED, **hashing)
    ref_lean = [LeanMinHash(m) for m in ref_mh]
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=params)
    with lsh.insertion_session() as session:
        for i, m in enumerate(ref_lean):
            if ref_sh[i]:
                session.insert(i, m, check_duplication=False)
    syn_mh = MinHash.bulk([shingle_set(t) for t in syn], num_perm=NUM_PERM, seed=SEED, **hashing)
    matched = np.full(len(syn), -1)
    for i, m in enumerate(syn_mh):
        best, best_sim = -1, -1.0
        for j in lsh.query(m):
            s = m.jaccard(ref_lean[j])
            if s >= THRESHOLD and (s > best_sim or (s == best_sim and j < best)):
                best, best_sim = j, s
        matched[i] = best
    return time.perf_counter() - t0, matched


def time_verifiers(ref: list[str], syn: list[str]) -> Table:
    """Seconds per default-gate verifier (building the reference side included)."""
    batch = pa.table({"id": [f"s{i}" for i in range(len(syn))], "content": syn})
    rows = []
    with Ledger.open(":memory:") as led:
        led.add_records(make_records(ref, origin="human", source="bench", round=0))
        led.freeze_reservoir(holdout=0)
        reference = led.reservoir_records("all")
        for label, make in (
            ("quality", Quality),
            ("exact_duplicate", lambda: ExactDuplicate(reference=reference)),
            ("near_duplicate", lambda: NearDuplicate(reference=reference)),
            (
                "exact_duplicate, keys stored",
                lambda: ExactDuplicate(reference=reference).keep_fingerprints_in(led),
            ),
            (
                "near_duplicate, signatures stored",
                lambda: NearDuplicate(reference=reference).keep_fingerprints_in(led),
            ),
        ):
            if "stored" in label:  # the first round computes and stores them
                make().verify(batch.slice(0, 1))
            with console.status(label):
                t0 = time.perf_counter()
                out = make().verify(batch)
                rows.append((label, time.perf_counter() - t0, out.num_rows))
    table = Table(title=f"default gate verifiers, {len(syn):,} candidates vs {len(ref):,}")
    for col in ("verifier", "seconds", "records/s"):
        table.add_column(col, justify="right")
    for label, t, n in rows:
        table.add_row(label, f"{t:.2f}", f"{n / t:,.0f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 vs 10,000 documents")
    parser.add_argument("--n", type=int, default=None, help="documents on each side")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side, alternated")
    parser.add_argument("--verifiers", action="store_true", help="also time each verifier")
    args = parser.parse_args()
    n = args.n or (10_000 if args.quick else 100_000)
    with console.status(f"building {n:,} + {n:,} documents"):
        ref, syn, slots, sources = corpus(n, n, share=0.02)
        true_j = np.array([jaccard(ref[s], syn[t]) for s, t in zip(sources, slots, strict=True)])
    above = true_j >= THRESHOLD
    params = lsh_params()
    console.print(
        f"{n:,} synthetic vs {n:,} reservoir documents, {len(slots)} planted "
        f"near-copies (true Jaccard {np.percentile(true_j, 5):.2f}-"
        f"{np.percentile(true_j, 95):.2f} for 90%; {above.sum()} at >= {THRESHOLD}); "
        f"LSH {params[0]} bands x {params[1]} rows on both sides; datasketch hashes with "
        f"{'xxh32' if peer_hash() else 'SHA-1 (xxhash not installed)'}"
    )
    sides = {
        "tailguard": lambda: run_tailguard(ref, syn),
        "datasketch": lambda: run_datasketch(ref, syn, params),
    }
    few = min(n, 1000)
    warm = {
        "tailguard": lambda: run_tailguard(ref[:few], syn[:few]),
        "datasketch": lambda: run_datasketch(ref[:few], syn[:few], params),
    }
    with console.status(f"warm-up, then {args.repeat} alternated runs per side"):
        runs = alternate(sides, args.repeat, warm_up=warm)
    planted = np.zeros(len(syn), bool)
    planted[slots] = True
    rows = []
    for r in runs.values():
        m = r.best_value
        found = m[slots] == sources
        rows.append((r, found[above].mean(), found.mean(), int(((m >= 0) & ~planted).sum())))
    table = Table(
        title=f"near-duplicate search, {NUM_PERM} permutations, {SHINGLE}-word shingles, "
        f"J >= {THRESHOLD}, {args.repeat} alternated runs each (load average {load_average()})"
    )
    for col in (
        "engine", "best s", "median s", "recall (true J>=0.8)", "recall (all planted)",
        "other flags",
    ):  # fmt: skip
        table.add_column(col, justify="right")
    for r, r_above, r_all, other in rows:
        table.add_row(
            r.name, f"{r.best:.2f}", f"{r.median:.2f}", f"{r_above:.3f}", f"{r_all:.3f}",
            str(other),
        )  # fmt: skip
    console.print(table)
    ours, peer = runs["tailguard"], runs["datasketch"]
    ratio = peer.best / ours.best
    console.print(
        f"tailguard is [bold]{ratio:.1f}x[/] {'faster' if ratio >= 1 else 'slower'} than "
        f"datasketch on the best runs ({peer.median / ours.median:.1f}x on the medians); "
        f"recall (true J>=0.8): tailguard {rows[0][1]:.3f}, datasketch {rows[1][1]:.3f}"
    )
    if args.verifiers:
        console.print(time_verifiers(ref, syn))


if __name__ == "__main__":
    main()
