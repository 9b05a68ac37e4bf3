"""Near-duplicate search: tailguard's NearDuplicate against datasketch, same run.

Synthetic documents are checked against a reservoir of human documents with
MinHash (128 permutations, 3-word shingles, Jaccard threshold 0.8). Documents
are recombined WordNet glosses; 2% of the synthetic documents are planted
near-copies of reservoir documents with a few words changed. datasketch gets
its fastest documented path: ``MinHash.bulk`` into ``LeanMinHash``,
``MinHashLSH.insertion_session``, then candidates confirmed by ``jaccard``.

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


def tokens(text: str) -> list[str]:
    """The same words tailguard uses: lower-case, letters and digits only."""
    return [t for t in (re.sub(r"[^\w]|_", "", w) for w in text.lower().split()) if t]


def shingle_set(text: str) -> list[bytes]:
    w = tokens(text)
    if len(w) < SHINGLE:
        return [" ".join(w).encode()] if w else []
    return list({" ".join(w[i : i + SHINGLE]).encode() for i in range(len(w) - SHINGLE + 1)})


def jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_set(a)), set(shingle_set(b))
    return len(sa & sb) / max(len(sa | sb), 1)


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


def run_datasketch(ref: list[str], syn: list[str]) -> tuple[float, np.ndarray]:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    t0 = time.perf_counter()
    ref_sh = [shingle_set(t) for t in ref]
    ref_mh = MinHash.bulk(ref_sh, num_perm=NUM_PERM, seed=SEED)
    ref_lean = [LeanMinHash(m) for m in ref_mh]
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for i, m in enumerate(ref_lean):
            if ref_sh[i]:
                session.insert(i, m, check_duplication=False)
    syn_mh = MinHash.bulk([shingle_set(t) for t in syn], num_perm=NUM_PERM, seed=SEED)
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
    parser.add_argument("--verifiers", action="store_true", help="also time each verifier")
    args = parser.parse_args()
    n = args.n or (10_000 if args.quick else 100_000)
    with console.status(f"building {n:,} + {n:,} documents"):
        ref, syn, slots, sources = corpus(n, n, share=0.02)
        true_j = np.array([jaccard(ref[s], syn[t]) for s, t in zip(sources, slots, strict=True)])
    above = true_j >= THRESHOLD
    console.print(
        f"{n:,} synthetic vs {n:,} reservoir documents, {len(slots)} planted "
        f"near-copies (true Jaccard {np.percentile(true_j, 5):.2f}-"
        f"{np.percentile(true_j, 95):.2f} for 90%; {above.sum()} at >= {THRESHOLD})"
    )
    rows = []
    with console.status("tailguard NearDuplicate"):
        t_ours, m_ours = run_tailguard(ref, syn)
    with console.status("datasketch MinHash.bulk + MinHashLSH"):
        t_ds, m_ds = run_datasketch(ref, syn)
    planted = np.zeros(len(syn), bool)
    planted[slots] = True
    for name, t, m in (("tailguard", t_ours, m_ours), ("datasketch", t_ds, m_ds)):
        found = m[slots] == sources
        rows.append((name, t, found[above].mean(), found.mean(), int(((m >= 0) & ~planted).sum())))
    table = Table(title="near-duplicate search, 128 permutations, 3-word shingles, J >= 0.8")
    for col in ("engine", "seconds", "recall (true J>=0.8)", "recall (all planted)", "other flags"):
        table.add_column(col, justify="right")
    for name, t, r_above, r_all, other in rows:
        table.add_row(name, f"{t:.2f}", f"{r_above:.3f}", f"{r_all:.3f}", str(other))
    console.print(table)
    ratio = t_ds / t_ours
    console.print(
        f"tailguard is [bold]{ratio:.1f}x[/] {'faster' if ratio >= 1 else 'slower'} than "
        f"datasketch; recall (true J>=0.8): tailguard {rows[0][2]:.3f}, "
        f"datasketch {rows[1][2]:.3f}"
    )
    if args.verifiers:
        console.print(time_verifiers(ref, syn))


if __name__ == "__main__":
    main()
