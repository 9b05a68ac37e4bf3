"""A verifier of set quality: its knob holds empirically, and the 2-D frontier reads it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard import evidence, lab
from tailguard.errors import ConfigError
from tailguard.gate import Gate
from tailguard.lab.data import DATASETS
from tailguard.lab.models import MODELS
from tailguard.lab.models.base import vector_records
from tailguard.lab.models.regression import LinearRegression
from tailguard.lab.verified import KnobVerifier, task_for
from tailguard.metrics import get_preset

#: Tiny fortunes n-gram runs: a few seconds each on two shared cores.
NGRAM = {
    "model": "ngram", "volume": 300, "eval_size": 300, "model_params": {"n_texts": 1200},
    "seeds": 2, "workers": 1, "progress": False,
}  # fmt: skip


def regression_records(n: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """``n`` records of the regression task, half with a label far from the true function."""
    model = LinearRegression()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, model.n_features))
    wrong = rng.random(n) < 0.5
    y = x @ model.true_coef() + np.where(wrong, 5.0, 0.5) * model.noise
    return vector_records(np.column_stack([x, y]), generator="t", generation=1, round=1), ~wrong


def within_binomial(k: int, n: int, p: float) -> bool:
    """Whether ``k`` of ``n`` is within 4.5 standard deviations of ``n p``."""
    return abs(k - n * p) <= 4.5 * np.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize(("recall", "specificity"), [(0.8, 0.7), (0.95, 0.5), (0.5, 0.95)])
def test_the_knobs_recall_and_specificity_hold_on_many_samples(recall, specificity):
    batch, correct = regression_records(20_000, seed=1)
    task = task_for("regression", {}, pa.table({}))
    assert (task.correct(batch) == correct).all()  # the truth is known exactly here
    knob = KnobVerifier(task=task, recall=recall, specificity=specificity, seed=5)
    # through the project's Gate, as the loop runs it
    out = Gate([knob], progress=False, parallel_min=1 << 30).run(batch)
    ruled = dict(zip(out.ids.to_pylist(), out.accepted.tolist(), strict=True))
    passed = np.array([ruled[i] for i in batch.column("id").to_pylist()])
    assert within_binomial(int(passed[correct].sum()), int(correct.sum()), recall)
    assert within_binomial(int(passed[~correct].sum()), int((~correct).sum()), 1 - specificity)
    codes = set(out.verdicts.column("code").to_pylist())
    assert codes <= {"ok", "rejected_correct", "rejected_wrong"}


def test_the_text_knob_holds_and_rules_the_same_way_on_any_split():
    human = DATASETS["fortunes"].load({"n_texts": 1500})
    task = task_for("ngram", {}, human)
    assert task.correct(human).mean() > 0.97  # a human quotation is read as its category
    texts = MODELS["ngram"]().fit(human.slice(0, 600)).sample(6000, 3)
    correct = task.correct(texts)
    assert 0.05 < correct.mean() < 0.95  # the sample holds both kinds
    knob = KnobVerifier(task=task, recall=0.9, specificity=0.6, seed=2)
    passed = knob.verify(texts).column("passed").to_numpy(zero_copy_only=False)
    assert within_binomial(int(passed[correct].sum()), int(correct.sum()), 0.9)
    assert within_binomial(int(passed[~correct].sum()), int((~correct).sum()), 0.4)
    halves = [knob.verify(texts.slice(0, 2500)), knob.verify(texts.slice(2500))]
    again = np.concatenate([h.column("passed").to_numpy(zero_copy_only=False) for h in halves])
    assert (again == passed).all()  # a resumed or split gate rules the same way


def test_a_text_is_correct_when_its_label_is_its_true_category_and_rare_ones_pass_too():
    from collections import Counter

    from tailguard.records import make_records

    human = DATASETS["fortunes"].load({"n_texts": 1500})
    task = task_for("ngram", {}, human)
    labels = np.array(human.column("label").to_pylist())
    swapped = np.random.default_rng(0).permutation(labels)
    moved = swapped != labels
    relabelled = make_records(
        human.column("content"), origin="synthetic", source="t", generation=1,
        label=pa.array(swapped),
    )  # fmt: skip
    assert task.correct(relabelled)[moved].mean() < 0.02  # a wrong label is wrong
    # a perfect verifier does not cut the tails: the texts of the rarer half of the
    # categories pass about as often as the commoner half's
    texts = MODELS["ngram"]().fit(human.slice(0, 600)).sample(4000, 3)
    ok = task.correct(texts)
    size = Counter(labels.tolist())
    claimed = texts.column("label").to_pylist()
    middle = np.median(list(size.values()))
    rare = np.array([size[c] < middle for c in claimed])
    assert rare.sum() > 300 and (~rare).sum() > 300
    assert ok[rare].mean() > 0.85 * ok[~rare].mean()


def test_a_verifier_needs_a_task_with_a_ground_truth():
    with pytest.raises(ConfigError, match="ground truth"):
        lab.frontier(model="categorical", verifier_quality=(0.9,), progress=False)
    with pytest.raises(ConfigError, match="recall"):
        KnobVerifier(task=task_for("regression", {}, pa.table({})), recall=1.5)


def independent_held(result: lab.LabResult, strategy: str, generations: int) -> bool:
    """``held_across`` of both text tail metrics, rebuilt from the stored draws."""
    history = result.ledger_metrics.to_pandas()
    preset = get_preset("default")
    drifts: dict[str, list[float]] = {"tail_recall": [], "rare_vocab_coverage": []}
    for seed in range(2):
        run = history[history["run"] == f"{strategy}/seed{seed}"]
        for metric, out in drifts.items():
            rows = run[run["metric"] == metric]
            clean = rows[(rows["round"] == 0) & rows["sample"].str.match(r"^model(#\d+)?$")]
            b = evidence.band(
                clean["value"].to_numpy(), higher_is_better=True,
                threshold=preset.thresholds.get(metric),
            )  # fmt: skip
            last = rows[(rows["round"] == generations) & (rows["sample"] == "model")]
            out.append(evidence.drift(last["value"].item(), b))
    return all(evidence.held_across(d) for d in drifts.values())


def lowest(held: dict[float, bool]) -> float | None:
    """The lowest held fraction above every collapsed one (written out here, plainly)."""
    order = sorted(held)
    if all(held.values()) or not any(held.values()) or not held[order[-1]]:
        return None
    last_lost = max(f for f in order if not held[f])
    return min(f for f in order if f > last_lost)


def test_the_2d_frontier_names_each_qualitys_lowest_safe_fraction(tmp_path):
    g = 2
    fr = lab.frontier(
        fractions=(0.0, 0.5, 1.0), generations=g, verifier_quality=(0.5, 1.0),
        out=tmp_path, **NGRAM,
    )  # fmt: skip
    df = pd.read_parquet(tmp_path / "frontier.parquet")
    assert {"real_fraction", "verifier_quality", "held", "cost_per_round"} <= set(df.columns)
    ungated = df[df["verifier_quality"].isna()]
    assert sorted(ungated["real_fraction"]) == [0.0, 0.5, 1.0]
    assert set(ungated["strategy"]) == {"replace", "anchored-share", "human-only"}
    assert sorted(df["verifier_quality"].dropna().unique()) == [0.5, 1.0]
    assert (tmp_path / "frontier.png").exists()
    # a gated row's verdict is held_across, rebuilt from a plain run of it (one per quality)
    for q, f, name in ((0.5, 0.5, "verified-share"), (1.0, 0.0, "verified-replace")):
        again = lab.run(
            strategies=[name], real_fraction=f or 0.5, generations=g, recovery_rounds=0,
            out=None, verifier_quality=q, **NGRAM,
        )  # fmt: skip
        assert fr.row(f, quality=q)["held"] == independent_held(again, name, g)
    # each quality's lowest safe fraction follows from those verdicts (human-only closes it)
    top = bool(ungated[ungated["real_fraction"] == 1.0]["held"].item())
    for q, named in fr.lowest_safe_by_quality().items():
        gated = df[df["verifier_quality"] == q]
        held = {**dict(zip(gated["real_fraction"], gated["held"], strict=True)), 1.0: top}
        assert named == lowest(held)
    by = fr.by_quality().set_index("verifier_quality")
    for q, f in fr.lowest_safe_by_quality().items():
        if f is not None:  # the cost at that point is the row's, verification priced
            assert by.loc[q, "cost_per_round"] == fr.row(f, quality=q)["cost_per_round"]
    # verification is priced: a gated row costs more than the ungated one at f = 0
    assert fr.row(0.0, quality=1.0)["cost_per_round"] > fr.row(0.0)["cost_per_round"] * 0.5
    # the one-dimensional reading is unchanged by the gated rows
    assert fr.lowest_safe == lowest(
        dict(zip(ungated["real_fraction"], ungated["held"], strict=True))
    )


def test_a_verifier_that_prefers_the_mode_narrows_the_tails():
    """At equal volume and perfect quality, a verifier that prefers the most common
    category makes the monitor flag the tails and the evidence read them as degraded."""
    from tailguard.lab.evaluation import seed_drifts

    g = 3
    settings = {
        "strategies": ["verified-share"], "real_fraction": 0.2, "generations": g,
        "recovery_rounds": 0, "out": None, "verifier_quality": 1.0,
        **NGRAM, "volume": 400, "eval_size": None, "model_params": {"n_texts": 1500},
    }  # fmt: skip
    fair = lab.run(verifier_bias=0.0, **settings)
    biased = lab.run(verifier_bias=6.0, **settings)

    def alerts(result: lab.LabResult, metric: str) -> int:
        a = result.alerts.to_pandas()
        return int((a["metrics"].str.contains(metric) & (a["round"] >= 1)).sum())

    # the monitor sees the categories narrow (the fair run's label mix stays closer)
    assert alerts(biased, "label_js") > alerts(fair, "label_js")
    # the evidence (tailguard.evidence, against each seed's clean model): degraded
    fair_drift = seed_drifts(fair.ledger_metrics, "verified-share", "text", g)
    biased_drift = seed_drifts(biased.ledger_metrics, "verified-share", "text", g)
    assert (biased_drift["rare_vocab_coverage"] > 1).all()
    assert biased_drift["rare_vocab_coverage"].median() > fair_drift["rare_vocab_coverage"].median()

    def last(result: lab.LabResult, metric: str) -> float:
        m = result.metrics.to_pandas()
        return float(m[(m["metric"] == metric) & (m["round"] == g)]["value"].median())

    assert last(biased, "label_entropy") < 0.75 * last(fair, "label_entropy")


def test_the_frontier_command_sweeps_verifier_quality(tmp_path):
    out = run_cli(
        "lab", "frontier", "--model", "ngram", "--param", "n_texts=1200", "--volume", "300",
        "--generations", "1", "--seeds", "1", "--fractions", "0,1", "--verifier-quality",
        "0.9", "--workers", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "lowest safe real fraction by verifier quality" in out.output
    df = pd.read_parquet(tmp_path / "frontier.parquet")
    assert df["verifier_quality"].isna().sum() == 2 and (df["verifier_quality"] == 0.9).sum() == 1
    bad = run_cli("lab", "frontier", "--verifier-quality", "0.9,x")
    assert bad.exit_code == 2 and "--verifier-quality" in bad.output


# -- equal volume: a gated round generates until its quota passed --------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 150),
    quality=st.floats(0.3, 1.0),
    bias=st.sampled_from([0.0, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_until_admitted_stops_just_after_the_quota_passed(n, quality, bias, seed):
    from tailguard.lab.callables import loop_callables
    from tailguard.lab.quota import until_admitted

    human = LinearRegression().human_records()
    train, generate, _ = loop_callables("regression")
    model = train(None, human)
    knob = KnobVerifier(
        task=task_for("regression", {}, human), recall=quality, specificity=quality,
        bias=bias, seed=seed,
    )  # fmt: skip
    gate = Gate([knob], progress=False, parallel_min=1 << 30)
    drawn = until_admitted(generate, gate)(model, n, 1, seed)
    ruled = gate.run(drawn)
    assert drawn.column("id").to_pylist() == ruled.ids.to_pylist()  # each content once
    assert int(ruled.accepted.sum()) == n  # exactly the quota passed ...
    assert bool(ruled.accepted[-1])  # ... and generation stopped at the n-th that did


def test_gated_rows_train_on_the_ungated_volume_and_pay_for_what_was_rejected():
    common = {
        "model": "regression", "generations": 2, "seeds": 2, "workers": 1, "progress": False,
        "recovery_rounds": 0, "out": None,
    }  # fmt: skip

    def rounds(name: str, f: float, q: float | None) -> pd.DataFrame:
        r = lab.run(strategies=[name], real_fraction=f, verifier_quality=q, **common)
        df = r.rounds.to_pandas()
        return df[df["round"] >= 1]

    for ungated, gated, f in (("anchored-share", "verified-share", 0.3),
                              ("replace", "verified-replace", 0.5)):  # fmt: skip
        base = rounds(ungated, f, None)
        costs, candidates = [], []
        for q in (1.0, 0.8, 0.6):
            df = rounds(gated, f, q)
            # the same volume, human and synthetic, as the ungated rows, at every quality
            assert (df["total"].to_numpy() == base["total"].to_numpy()).all()
            assert (df["synthetic"].to_numpy() == base["synthetic"].to_numpy()).all()
            assert (df["verified"] == df["generated"]).all()  # every candidate ruled on
            assert (df["generated"] > df["synthetic"]).all()  # even q = 1 rejects wrong labels
            candidates.append(df["generated"].sum())
            costs.append(df["cost"].sum())
        # a worse verifier rejects more, so the same volume takes more candidates and costs more
        assert candidates[0] < candidates[1] < candidates[2]
        assert costs[0] < costs[1] < costs[2]
        assert costs[0] > base["cost"].sum()  # verification is priced


@pytest.mark.parametrize(
    ("gated_held", "expected"),
    [((False, False), 1.0), ((False, True), 0.5), ((True, False), 1.0)],
)
def test_the_advisor_reads_a_lab_frontier_as_the_lab_does(tmp_path, gated_held, expected):
    """Human-only runs once, ungated, and closes every quality's column for both readers."""
    import pyarrow.parquet as pq

    from tailguard.advise import TaskProfile, advise, read_quality_frontier, with_verifier_audits

    rows = [
        {"real_fraction": f, "verifier_quality": None, "held": h, "cost_per_round": 1 + 80 * f}
        for f, h in ((0.0, False), (0.5, True), (1.0, True))
    ] + [
        {"real_fraction": f, "verifier_quality": 0.9, "held": h, "cost_per_round": 9 + 40 * f}
        for f, h in zip((0.0, 0.5), gated_held, strict=True)
    ]
    table = pa.Table.from_pylist(rows)
    lab_reading = lab.Frontier(table, "regression", 100, 3).lowest_safe_by_quality()
    assert lab_reading == {0.9: expected}
    pq.write_table(table, tmp_path / "frontier.parquet")
    frontier = read_quality_frontier(tmp_path / "frontier.parquet")
    audit = {
        "verifier": "checker", "version": "1", "sample": "s.jsonl", "n_good": 90, "n_bad": 90,
        "confidence": 0.95, **{f"{k}{s}": 0.93 for k in ("precision", "recall", "specificity")
                               for s in ("", "_low", "_high")},
    }  # fmt: skip
    base = advise(TaskProfile(task="narrow", verifiable=True))
    line = with_verifier_audits(base, [audit], frontier).evidence[-1]
    assert "at quality 0.9 (the nearest swept at or below its measured 0.93)" in line
    assert f"the lowest safe real fraction is {expected:.0%}" in line
    assert ("will not save a synthetic-heavy mix" in line) == (not gated_held[0])


def test_advice_from_a_two_dimensional_frontier_quotes_the_ungated_sweep():
    from tailguard.advise import TaskProfile, advise, advise_from_frontier

    rows = [
        {"real_fraction": f, "strategy": s, "held": h, "cost_per_round": c,
         "verifier_quality": q, "tail_ratio": 1.0, "coverage_ratio": 1.0, "band": 0.15,
         "coverage_band": 0.15, "human_per_round": int(100 * f)}
        for f, s, h, c, q in (
            (0.0, "replace", False, 1.5, None), (0.5, "anchored-share", True, 0.75, None),
            (1.0, "human-only", True, 88.0, None), (0.0, "verified-replace", False, 19.0, 0.5),
            (0.5, "verified-share", True, 9.5, 0.5),
        )
    ]  # fmt: skip
    fr = lab.Frontier(pa.Table.from_pylist(rows), "ngram", 100, 5)
    evidence = advise_from_frontier(advise(TaskProfile()), fr).evidence
    quoted = next(e for e in evidence if e.startswith("frontier anchored-share"))
    assert "$0.75 per synthetic round" in quoted
    listing = next(e for e in evidence if e.startswith("frontier (ngram"))
    assert listing.count("tails x") == 3  # 0, 0.5 and 1, each once
    assert not any("verified" in e for e in evidence)  # gated rows are not the 1-D sweep
