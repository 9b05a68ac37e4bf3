"""A verifier of set quality: its knob holds empirically, and the 2-D frontier reads it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import run_cli

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
    assert task.correct(human).all()  # every human quotation is correct by the definition
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
    settings = {
        "strategies": ["verified-share"], "real_fraction": 0.5, "generations": 3,
        "recovery_rounds": 0, "out": None, "verifier_quality": 1.0,
        **NGRAM, "volume": 400, "eval_size": None, "model_params": {"n_texts": 1500},
    }  # fmt: skip
    fair = lab.run(verifier_bias=0.0, **settings)
    biased = lab.run(verifier_bias=6.0, **settings)

    def tail_alerts(result: lab.LabResult) -> int:
        a = result.alerts.to_pandas()
        return int((a["metrics"].str.contains("tail_recall") & (a["round"] >= 1)).sum())

    assert tail_alerts(biased) > tail_alerts(fair)  # the monitor sees the rare categories go

    def last(result: lab.LabResult) -> float:
        m = result.metrics.to_pandas()
        return float(m[(m["metric"] == "tail_recall") & (m["round"] == 3)]["value"].median())

    assert last(biased) < last(fair)


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
