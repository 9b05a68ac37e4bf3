"""Lab speed: the n-gram model against NLTK, generations per second per model, the demo run.

    .venv/bin/python bench/lab.py [--quick]

1. The class-conditional n-gram model (interpolated Kneser-Ney, trigram) against
   NLTK's ``KneserNeyInterpolated`` (order 3), both fit on the same
   pre-tokenised fortunes and sampling texts. NLTK gets its fastest documented
   path: pre-tokenised input through ``padded_everygram_pipeline``, then
   ``generate``; it is not class-conditional, so its task is simpler. Both
   are warmed up on 200 texts; the fits run in turn, best and median printed. NLTK
   scores candidates word by word in Python, so it gets a time budget for the
   same texts: if it finishes, the ratio of the two measured times is printed;
   if not, the texts and words it did finish are printed, with both measured
   rates, and no ratio (nothing is extrapolated).
2. Generations per second through the loop (one strategy, one seed, every model,
   the transformer included when torch is installed; its size is printed).
3. The closed-form fast path: Gaussian generations per second over many seeds.
4. The demo's work (``tailguard demo``: human-only, replace and anchored-gated at
   2,000 examples per round x 10 generations x 3 seeds, then the frontier's other
   fractions, 2 workers): it must finish in under 3 minutes. The load average is
   printed with it, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _timing import alternate, load_average, timed


def bench_ngram(n_fit: int, n_sample: int, nltk_budget: float, repeat: int = 3) -> None:
    from tailguard.datasets import fortunes
    from tailguard.lab.models import NGram
    from tailguard.lab.models.ngram import tokenize

    records = fortunes()
    order = np.random.default_rng(0).permutation(records.num_rows)[:n_fit]
    train = records.take(order)
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    tokens, lengths = tokenize(train.column("content"))
    flat = tokens.to_pylist()
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    sents = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def nltk_fit(texts: list[list[str]]) -> KneserNeyInterpolated:
        grams, vocab = padded_everygram_pipeline(3, texts)
        lm = KneserNeyInterpolated(3)
        lm.fit(grams, vocab)
        return lm

    few = min(n_fit, 200)
    fits = alternate(
        {"ours": timed(lambda: NGram(order=3).fit(train)), "nltk": timed(lambda: nltk_fit(sents))},
        repeat,
        warm_up={
            "ours": lambda: NGram(order=3).fit(train.slice(0, few)).sample(5, seed=0),
            "nltk": lambda: nltk_fit(sents[:few]).generate(5, text_seed=["<s>", "<s>"]),
        },
    )
    model, lm = fits["ours"].best_value, fits["nltk"].best_value
    ours_fit, nltk_fit_s = fits["ours"].best, fits["nltk"].best
    start = time.perf_counter()
    sample = model.sample(n_sample, seed=1)
    ours_sample = time.perf_counter() - start
    sampled_words = int(tokenize(sample.column("content"))[1].sum()) + n_sample  # + end marks
    # NLTK samples the same number of texts (up to </s> or the same length cap), word by word.
    start = time.perf_counter()
    texts_done = words_done = 0
    while texts_done < n_sample and time.perf_counter() - start < nltk_budget:
        words = lm.generate(model.max_tokens, text_seed=["<s>", "<s>"], random_seed=texts_done)
        n_words = words.index("</s>") + 1 if "</s>" in words else len(words)
        texts_done += 1
        words_done += n_words
    nltk_sample = time.perf_counter() - start

    print(
        f"n-gram: fit on {n_fit:,} texts (best / median of {repeat} alternated fits, both "
        f"warmed up), sample {n_sample:,} texts ({sampled_words:,} words); load average "
        f"{load_average()}"
    )
    print(f"  tailguard NGram   fit {fits['ours'].span()} s   sample {ours_sample:10.3f} s")
    print(f"  NLTK KN           fit {fits['nltk'].span()} s   sample {nltk_sample:10.3f} s", end="")
    print(f" ({texts_done:,} texts, {words_done:,} words)")
    print(f"  fit ratio: tailguard x{nltk_fit_s / ours_fit:,.1f} faster (best runs, both measured)")
    if texts_done == n_sample:
        print(f"  sample ratio: tailguard x{nltk_sample / ours_sample:,.1f} faster (both measured)")
    else:
        print(
            f"  sample: NLTK did not finish {n_sample:,} texts within its {nltk_budget:.0f} s "
            f"budget ({texts_done:,} done); measured rates: tailguard "
            f"{sampled_words / ours_sample:,.0f} words/s, NLTK {words_done / nltk_sample:,.1f} "
            "words/s; no time ratio printed for unfinished work"
        )


def bench_models(generations: int, transformer: dict) -> None:
    import importlib.util

    from tailguard import lab

    print(f"\ngenerations per second through the loop (replace, 1 seed, {generations} generations)")
    for name in lab.MODEL_DATA:
        params, extra = {}, {}
        if name == "transformer":
            if importlib.util.find_spec("torch") is None:
                print("  transformer  skipped: torch is not installed (the [torch] extra)")
                continue
            params, extra = transformer, {"n_generate": transformer["n_generate_"]}
            params = {k: v for k, v in params.items() if not k.endswith("_")}
        start = time.perf_counter()
        lab.run(
            model=name,
            strategies=["replace"],
            generations=generations,
            seeds=1,
            recovery_rounds=0,
            workers=1,
            out=None,
            progress=False,
            model_params=params,
            **extra,
        )
        elapsed = time.perf_counter() - start
        rounds = generations + 1
        print(
            f"  {name:<12} {rounds / elapsed:7.2f} generations/s  ({elapsed:6.2f} s for "
            f"{rounds} rounds incl. round 0)" + (f" {params}" if params else "")
        )


def bench_fast_path(seeds: int, generations: int) -> None:
    from tailguard.lab.fastpath import gaussian_variance_path, regression_error_path

    start = time.perf_counter()
    gaussian_variance_path(generations=generations, samples=100, seeds=seeds)
    g = time.perf_counter() - start
    start = time.perf_counter()
    regression_error_path(
        "accumulate", generations=generations, n_features=10, n_samples=100, seeds=seeds
    )
    r = time.perf_counter() - start
    print(f"\nfast path ({seeds:,} seeds x {generations} generations)")
    print(f"  gaussian     {generations * seeds / g:12,.0f} model-generations/s")
    print(f"  regression   {generations * seeds / r:12,.0f} model-generations/s")


def bench_demo(generations: int, seeds: int) -> None:
    """The demo's work without its printing: the equal-volume comparison, then the frontier."""
    import os

    from tailguard import lab
    from tailguard.cli.demo_cmds import FRACTIONS, STRATEGIES

    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = lab.run(
        model="ngram", strategies=STRATEGIES, generations=generations, seeds=seeds,
        volume=2000, workers=2, out=None, progress=False,
    )  # fmt: skip
    compared = time.perf_counter() - start
    front = lab.frontier(
        model="ngram", fractions=FRACTIONS, generations=generations, seeds=seeds, volume=2000,
        workers=2, known=result, progress=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    print(
        f"\ndemo: ngram on fortunes at volume 2,000/round, 3 strategies x {generations} "
        f"generations x {seeds} seeds ({compared:.1f} s), then the frontier's "
        f"{len(FRACTIONS) - 2} other fractions: {elapsed:.1f} s on 2 workers (limit 180 s; "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)"
    )
    print(
        result.axes.select(["strategy", "fidelity_loss", "coverage", "cost"])
        .to_pandas()
        .to_string(index=False)
    )
    print(f"lowest real fraction whose tails held: {front.lowest_safe}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    tiny = {"steps": 20, "d_model": 32, "n_layer": 1, "max_len": 32, "n_generate_": 100}
    full = {"steps": 150, "n_generate_": 300}  # the documented run's size (docs/lab.md)
    if args.quick:
        bench_ngram(n_fit=1000, n_sample=200, nltk_budget=5.0)
        bench_models(generations=2, transformer=tiny)
        bench_fast_path(seeds=500, generations=20)
        bench_demo(generations=3, seeds=2)
    else:
        bench_ngram(n_fit=14_000, n_sample=2000, nltk_budget=120.0)
        bench_models(generations=5, transformer=full)
        bench_fast_path(seeds=4000, generations=100)
        bench_demo(generations=10, seeds=3)


if __name__ == "__main__":
    main()
