"""The monitor: baselines, trends, alerts, evidence, history round trips, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats
from conftest import make_corpus
from typer.testing import CliRunner

from tailguard.errors import InputError
from tailguard.monitor import (
    HISTORY_SCHEMA,
    NOISE_FLOOR_SAMPLE,
    Evidence,
    Monitor,
    draw_name,
    is_draw,
)


@pytest.fixture(scope="module")
def human():
    return make_corpus(3000, seed=100)


def _monitor(human, **kw) -> Monitor:
    texts, labels = human
    mon = Monitor(**kw).set_reference(texts[:1500], labels[:1500])
    mon.record_noise_floor(texts[1500:], labels[1500:], size=1500)
    return mon


@pytest.mark.parametrize("metric", ["vocab_coverage", "rare_vocab_coverage", "distinct_2"])
def test_the_human_baseline_is_measured_at_the_rounds_sample_size(metric):
    """Coverage and distinct-n move with the number of texts: a baseline measured on
    more (or fewer) human texts than a round's sample would call a human sample degraded
    (or hide a real loss). At the rounds' size, fresh human samples sit on the baseline."""
    texts, labels = make_corpus(7000, seed=11)
    ref, train = (texts[:1000], labels[:1000]), (texts[1000:], labels[1000:])
    at_size = {}
    for size in (300, 3000):
        mon = Monitor().set_reference(*ref)
        mon.record_noise_floor(*train, size=size)
        at_size[size] = mon
    small, large = (
        dict(zip(*[m.history.filter(pa.compute.equal(m.history["metric"], metric))[c].to_pylist()
                   for c in ("sample", "value")], strict=True))[NOISE_FLOOR_SAMPLE]
        for m in (at_size[300], at_size[3000])
    )  # fmt: skip
    assert abs(large - small) > 0.12 * abs(small), (small, large)  # it depends on size
    for r in range(3):  # human rounds of 300 texts, from the same distribution
        at_size[300].record(r, *make_corpus(300, seed=500 + r))
        at_size[3000].record(r, *make_corpus(300, seed=500 + r))
    value = at_size[300].change(metric).value
    assert value == pytest.approx(small, rel=0.1)  # at the rounds' size: on the baseline
    # the mismatched baseline misreads the same human data by more than a threshold:
    # it would report a capacity gap (coverage) or hide one of that size (distinct-n)
    assert abs(value - large) > 0.12 * abs(large)


def test_the_baseline_averages_disjoint_draws_of_the_rounds_size():
    texts, labels = make_corpus(2000, seed=12)
    mon = Monitor().set_reference(texts[:500], labels[:500])
    rows = mon.record_noise_floor(texts[500:], labels[500:], size=500)
    train = np.array(texts[500:], dtype=object)
    order = np.random.default_rng(mon.seed).permutation(1500).reshape(3, 500)
    from tailguard.metrics import evaluate

    expected = np.mean(
        [evaluate(list(train[np.sort(i)]), None, mon.reference)["distinct_2"] for i in order]
    )
    rows = rows.filter(pa.compute.equal(rows["sample"], NOISE_FLOOR_SAMPLE))
    got = dict(zip(rows["metric"].to_pylist(), rows["value"].to_pylist(), strict=True))
    assert got["distinct_2"] == pytest.approx(expected)
    with pytest.raises(InputError, match="sample size"):
        mon.record_noise_floor(texts[500:], size=0)


def test_samples_from_the_reference_stay_within_the_noise_floor(human):
    mon = _monitor(human)
    for r in range(4):
        mon.record(r, *make_corpus(1500, seed=200 + r))
    status = mon.status()
    assert status.round == 3 and not status.alerts and not status.degraded
    floor = {e.metric: e.noise_floor for e in status.evidence}
    for e in status.evidence:
        assert e.value == pytest.approx(floor[e.metric], rel=0.15, abs=0.03), e.metric


def test_collapse_raises_threshold_alerts_and_worsening_trends(human):
    mon = _monitor(human)
    for r, temp in enumerate([1.0, 0.85, 0.7, 0.55, 0.4]):
        mon.record(r, *make_corpus(1500, seed=300 + r, temperature=temp))
    status = mon.status()
    degraded = {e.metric for e in status.evidence if e.degraded}
    assert {"tail_recall", "distinct_2", "rare_vocab_coverage"} <= degraded
    assert {a.rule for a in status.alerts} >= {"threshold"}
    assert mon.trend("distinct_2").worsening and mon.trend("tail_mass_ratio").worsening
    assert not mon.trend("label_js").higher_is_better


def _values(tail: float, js: float) -> dict[str, float]:
    return {"tail_recall": tail, "distinct_2": 0.7, "label_js": js, "length_shift": 0.05}


def test_early_warning_fires_only_while_the_mean_metrics_hold():
    mon = Monitor()
    mon.record_values(0, _values(1.0, 0.01))
    mon.record_values(1, _values(0.8, 0.012))
    alerts = mon.alerts()
    assert [a.rule for a in alerts] == ["threshold", "early_warning"]
    assert alerts[1].metrics == ("tail_recall",)
    mon.record_values(1, _values(0.8, 0.2))  # replaces round 1: now the mean moved too
    rules = sorted(a.rule for a in mon.alerts())
    assert rules == ["threshold", "threshold"]
    assert mon.history.num_rows == 8


def test_the_gap_to_human_data_is_a_capacity_gap_not_collapse():
    """A model behind people from round 0 on is not collapsing: no alert, no degradation;
    the gap is reported with what closes it. Drift from round 0 is what alerts."""
    mon = Monitor()
    mon.record_values(0, {"tail_recall": 0.9}, sample=NOISE_FLOOR_SAMPLE)
    mon.record_values(0, {"tail_recall": 0.7})  # the clean model: 22 % behind people
    mon.record_values(1, {"tail_recall": 0.69})
    (e,) = mon.evidence()
    assert (e.baseline, e.baseline_round, e.noise_floor) == (0.7, 0, 0.9)
    assert not e.degraded and e.verdict == "held" and mon.alerts() == []
    assert e.capacity_gap == pytest.approx(0.2 / 0.9)
    (gap,) = mon.capacity_gaps()
    assert gap.metric == "tail_recall" and "higher human share does not" in gap.describe()
    mon.record_values(1, {"tail_recall": 0.62})  # -11 %: past the 10 % band around round 0
    (e,) = mon.evidence()
    assert e.degraded and e.drift > 1 and [a.rule for a in mon.alerts()][0] == "threshold"


def test_the_clean_models_draws_set_the_band():
    mon = Monitor()
    for i, v in enumerate([0.70, 0.60, 0.80, 0.65, 0.75]):
        mon.record_values(
            0, {"tail_recall": v}, sample="model" if i == 0 else draw_name("model", i)
        )
    assert mon.samples() == ["model"]
    b = mon.bands()["tail_recall"]
    assert b.center == pytest.approx(0.70) and b.half_width == pytest.approx(
        3 * np.std([0.70, 0.60, 0.80, 0.65, 0.75], ddof=1)
    )
    mon.record_values(1, {"tail_recall": 0.55})  # -21 %: inside this noisy model's band
    assert not mon.evidence()[0].degraded and mon.alerts() == []
    mon.record_values(1, {"tail_recall": b.low - 0.01})
    assert mon.evidence()[0].degraded


def test_without_a_noise_floor_the_baseline_is_the_first_round():
    mon = Monitor()
    mon.record_values(2, {"tail_recall": 1.0})
    mon.record_values(3, {"tail_recall": 0.85})
    (e,) = mon.evidence()
    assert (e.baseline, e.baseline_round, e.noise_floor) == (1.0, 2, None) and e.degraded


def test_alert_history_keeps_every_round_not_only_the_latest():
    mon = Monitor()
    mon.record_values(0, {"tail_recall": 1.0}, sample=NOISE_FLOOR_SAMPLE)
    for r, v in enumerate([0.95, 0.8, 0.7, 0.97]):
        mon.record_values(r, {"tail_recall": v})
    assert mon.alerts() == []  # recovered at the latest round
    hist = mon.alert_history()
    assert hist.column_names == ["run", "round", "sample", "rule", "metrics", "message"]
    rows = [(r["round"], r["rule"]) for r in hist.to_pylist()]
    assert rows == [(1, "threshold"), (1, "early_warning"), (2, "threshold"), (2, "early_warning")]
    assert [a.round for a in mon.alerts(round=2)] == [2, 2]


def test_density_above_bound_alerts_only_while_recall_falls():
    mon = Monitor(preset="rich")
    mon.record_values(0, {"prdc_density": 1.0, "prdc_recall": 0.6})
    mon.record_values(1, {"prdc_density": 1.8, "prdc_recall": 0.7})
    assert not any(a.rule == "variance_shrinkage" for a in mon.alerts())
    mon.record_values(2, {"prdc_density": 1.8, "prdc_recall": 0.5})
    rules = [a.rule for a in mon.alerts()]
    assert "variance_shrinkage" in rules and "threshold" in rules  # recall fell 17 %


def test_evidence_dataclass_fields():
    mon = Monitor(run="r1")
    mon.record_values(0, {"distinct_2": 0.8}, sample="gen")
    mon.record_values(3, {"distinct_2": 0.6}, sample="gen")
    (e,) = mon.evidence("r1")
    assert isinstance(e, Evidence)
    assert (e.run, e.sample, e.metric, e.kind, e.round, e.baseline_round) == (
        "r1", "gen", "distinct_2", "diversity", 3, 0,
    )  # fmt: skip
    assert e.relative_change == pytest.approx(-0.25) and e.degraded
    assert (e.threshold, e.threshold_kind, e.noise_floor) == (0.10, "relative", None)
    assert json.loads(json.dumps(mon.status("r1").to_dict()))["degraded"] is True


def test_trend_matches_linregress_with_a_confidence_interval():
    mon = Monitor()
    vals = [0.9, 0.85, 0.83, 0.76, 0.74]
    for r, v in enumerate(vals):
        mon.record_values(r, {"distinct_2": v})
    fit = scipy.stats.linregress(np.arange(5), vals)
    t = mon.trend("distinct_2")
    assert t.slope == pytest.approx(fit.slope) and t.stderr == pytest.approx(fit.stderr)
    half = scipy.stats.t.ppf(0.975, 3) * fit.stderr
    assert (t.ci_low, t.ci_high) == pytest.approx((fit.slope - half, fit.slope + half))
    assert t.worsening and t.arrow == "↓"
    one = Monitor()
    one.record_values(0, {"distinct_2": 0.5})
    assert one.trend("distinct_2") is None


def test_history_round_trips_through_the_ledger(human):
    from tailguard.ledger import Ledger

    mon = _monitor(human)
    mon.record(0, *make_corpus(600, seed=1))
    mon.record(1, *make_corpus(600, seed=2, temperature=0.5))
    assert mon.history.schema == HISTORY_SCHEMA
    with Ledger.open(":memory:") as led:
        led.write_metrics(mon.history)
        back = Monitor.from_history(led.metrics())
    assert back.history.equals(mon.history)
    assert Monitor().load(led_rows := mon.history).history.equals(led_rows)
    assert all(e.change == e.relative_change for e in back.evidence())
    assert back.status().to_dict() == mon.status().to_dict()


def test_bad_records_are_refused():
    mon = Monitor()
    with pytest.raises(InputError, match="non-finite"):
        mon.record_values(0, {"distinct_2": float("nan")})
    with pytest.raises(InputError, match="not registered"):
        mon.record_values(0, {"my_metric": 1.0})
    mon.record_values(0, {"my_metric": 1.0}, higher_is_better={"my_metric": False})
    with pytest.raises(InputError, match="round must be"):
        mon.record_values(-1, {"distinct_2": 0.5})
    with pytest.raises(InputError, match="no reference"):
        mon.record(0, ["a b"])
    with pytest.raises(InputError, match="lacks columns"):
        Monitor.from_history(pa.table({"run": ["main"]}))


def _frozen_corpus(path):
    """A ledger file holding 2,000 corpus texts, frozen with a quarter held out."""
    from tailguard.ledger import Ledger

    texts, labels = make_corpus(2000, seed=7)
    with Ledger.open(path) as led:
        led.ingest(pa.table({"text": texts, "label": labels}), origin="human",
                   source_name="corpus", label_field="label")  # fmt: skip
        led.freeze_reservoir(holdout=0.25, seed=0)
    return path


def test_cli_eval_and_monitor(tmp_path, monkeypatch):
    from tailguard.cli import app
    from tailguard.ledger import Ledger

    path = _frozen_corpus(tmp_path / "ledger.duckdb")
    runner = CliRunner()
    for r, temp in enumerate([1.0, 0.9, 0.5]):
        t, lab = make_corpus(500, seed=50 + r, temperature=temp)
        f = tmp_path / f"round{r}.jsonl"
        f.write_text("\n".join(json.dumps({"out": x, "y": y}) for x, y in zip(t, lab, strict=True)))
        res = runner.invoke(app, ["eval", "--round", str(r), "--samples", str(f), "--text-field",
                                  "out", "--label-field", "y", "--ledger", str(path)])  # fmt: skip
        assert res.exit_code == 0, res.output
    with Ledger.open(path, read_only=True) as led:
        hist = led.metrics()
    assert {s for s in hist["sample"].to_pylist() if not is_draw(s)} == {
        "model",
        NOISE_FLOOR_SAMPLE,
    }
    res = runner.invoke(app, ["monitor", "--json", "--ledger", str(path)])
    assert res.exit_code == 1, res.output  # collapse at round 2 is an active alert
    report = json.loads(res.stdout)
    assert report["runs"][0]["round"] == 2 and report["runs"][0]["alerts"]
    table = runner.invoke(app, ["monitor", "--ledger", str(path)])
    assert table.exit_code == 1 and "tail_recall" in table.output
    bad = runner.invoke(app, ["eval", "--round", "3", "--samples", str(f), "--ledger", str(path)])
    assert bad.exit_code == 2 and "field 'text'" in bad.output


def test_an_all_null_label_column_is_read_as_unlabelled_data():
    import pyarrow as pa

    from tailguard.monitor import Monitor

    texts = [f"the quick brown fox number {i} jumps" for i in range(40)]
    nulls = pa.nulls(40, pa.string())
    mon = Monitor().set_reference(texts, nulls)
    rows = mon.record(1, texts, nulls)
    names = set(rows["metric"].to_pylist())
    assert "distinct_2" in names and "tail_recall" not in names


@pytest.mark.parametrize(
    ("latest", "degraded"), [(1.0, False), (1.05, False), (1.3, True), (0.7, True)]
)
def test_two_sided_metric_degrades_by_distance_from_its_ideal(latest, degraded):
    # vector_variance_ratio declares higher_is_better=None and ideal 1: a ratio that
    # grows is as much a change as one that shrinks.
    mon = Monitor(preset="lab-vectors", run="r")
    mon.record_values(0, {"vector_variance_ratio": 1.0})
    mon.record_values(1, {"vector_variance_ratio": latest})
    (ev,) = [e for e in mon.evidence() if e.metric == "vector_variance_ratio"]
    assert ev.higher_is_better is None
    assert ev.degraded is degraded
    assert mon.history["higher_is_better"].null_count == 2


def test_two_sided_trend_is_the_distance_from_the_ideal():
    mon = Monitor(preset="lab-vectors", run="r")
    for r, v in enumerate([1.0, 0.8, 1.3, 0.6, 1.5]):  # swinging ever farther from 1
        mon.record_values(r, {"vector_variance_ratio": v})
    t = mon.trend("vector_variance_ratio")
    assert t.higher_is_better is None and t.slope > 0 and t.worsening
    steady = Monitor(preset="lab-vectors", run="r")
    for r, v in enumerate([1.0, 0.99, 1.01, 1.0, 0.99]):
        steady.record_values(r, {"vector_variance_ratio": v})
    assert not steady.trend("vector_variance_ratio").worsening


def test_the_arrow_shows_a_fall_whenever_the_change_is_a_degradation():
    mon = Monitor()
    mon.record_values(0, {"distinct_1": 0.15, "tail_recall": 0.9}, sample=NOISE_FLOOR_SAMPLE)
    mon.record_values(0, {"distinct_1": 0.2, "tail_recall": 1.0})
    for r, (d, t) in enumerate([(0.15, 0.8), (0.12, 0.9), (0.16, 0.7), (0.14, 0.85)], start=1):
        mon.record_values(r, {"distinct_1": d, "tail_recall": t})
    c = mon.change("distinct_1")  # unwatched: worse than round 0 by more than 10 %
    assert (c.arrow, c.degraded, c.baseline, c.human_baseline) == ("↓", True, 0.2, True)
    assert c.relative_change == pytest.approx(-0.3)
    t = mon.change("tail_recall")
    assert (t.arrow, t.degraded) == ("↓", True)
    mon.record_values(5, {"distinct_1": 0.199, "tail_recall": 0.99})
    assert not mon.change("tail_recall").degraded and mon.change("distinct_1").arrow != "↓"


def test_every_monitor_column_has_a_header(tmp_path):
    from tailguard.cli import app
    from tailguard.ledger import Ledger

    mon = Monitor()
    mon.record_values(0, {"tail_recall": 1.0}, sample=NOISE_FLOOR_SAMPLE)
    mon.record_values(0, {"tail_recall": 1.0})
    mon.record_values(1, {"tail_recall": 0.8})
    with Ledger.open(tmp_path / "l.duckdb") as led:
        led.write_metrics(mon.history)
    out = CliRunner().invoke(
        app, ["monitor", "--ledger", str(tmp_path / "l.duckdb")], env={"COLUMNS": "200"}
    )
    assert out.exit_code == 1  # an alert is active
    header = next(line for line in out.output.splitlines() if "sample" in line and "metric" in line)
    cells = [c.strip() for c in header.strip("┃│ ").split("┃")]
    assert cells == [
        "sample", "metric", "kind", "clean", "latest", "change", "band", "human", "trend",
        "history", "status",
    ]  # fmt: skip
    row = next(line for line in out.output.splitlines() if "tail_recall" in line)
    assert "↓" in row and "-20.0%" in row and "degraded" in row


def test_the_hashing_embedder_raises_no_alert_on_prdc():
    from tailguard.metrics.embedders import HASHING_MEANINGLESS

    values0 = {"prdc_recall": 0.5, "prdc_coverage": 0.9, "tail_recall": 1.0}
    values1 = {"prdc_recall": 0.0, "prdc_coverage": 0.3, "tail_recall": 1.0}
    for name, expect in (("hashing", set()), ("minilm", {"prdc_recall", "prdc_coverage"})):
        mon = Monitor(preset="rich", embedder=name)
        mon.record_values(0, values0)
        mon.record_values(1, values1)
        assert {e.metric for e in mon.evidence() if e.degraded} == expect
        if name == "hashing":
            assert not {e.metric for e in mon.evidence()} & set(HASHING_MEANINGLESS)


def test_the_embedder_is_a_setting(tmp_path):
    from tailguard.config import load_config
    from tailguard.errors import ConfigError
    from tailguard.metrics.embedders import CachedEmbedder, MiniLMEmbedder, make_embedder
    from tailguard.project import project_monitor

    cfg = tmp_path / "tailguard.toml"
    cfg.write_text('[monitor]\npreset = "rich"\nembedder = "hashing"\n')
    assert project_monitor(load_config(cfg)).embedder_name == "hashing"
    cfg.write_text('[monitor]\npreset = "rich"\nembedder = "nope"\n')
    with pytest.raises(ConfigError, match="monitor.embedder"):
        load_config(cfg)
    cfg.write_text('[monitor]\npreset = "rich"\n')
    mon = project_monitor(load_config(cfg))
    if MiniLMEmbedder.available():  # the sentence model by default when installed
        assert mon.embedder_name == "minilm" and isinstance(mon.embedder, CachedEmbedder)
        assert mon.embedder.root == tmp_path / ".tailguard" / "embeddings"
    assert Monitor().embedder is None  # the default preset has no embedding metric
    emb = make_embedder("tailguard.metrics.embedders:HashingEmbedder", dim=16)
    assert emb.name == "hashing" and emb.dim == 16
    with pytest.raises(ConfigError, match="cannot be loaded"):
        make_embedder("no_such_module:f")


def test_a_reservoirs_reference_and_noise_floor_are_prepared_once_per_process(frozen):
    """Two runs on one reservoir: the second reuses the first's prepared reference and
    floor (the same values, not recomputed), and another reservoir digest does not."""
    from tailguard import monitor as monitor_module
    from tailguard.loop import human_baseline

    digest = frozen.reservoir().digest
    first = Monitor(seed=3)
    rows = human_baseline(frozen, first, run="a", write=False)
    assert first.cached_noise_floor("another digest", True, size=64) is None
    second = Monitor(seed=3)
    calls = []
    original = monitor_module.evaluate
    monitor_module.evaluate = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = human_baseline(frozen, second, run="b", write=False)
    finally:
        monitor_module.evaluate = original
    assert calls == []
    assert again["value"].to_pylist() == rows["value"].to_pylist()
    assert set(again["run"].to_pylist()) == {"b"}
    holdout = frozen.reservoir_records("holdout")
    first.set_reference(holdout["content"], holdout["label"], digest=digest)
    assert second.use_reference(digest) and second.reference is first.reference
    assert not Monitor(seed=3).use_reference("another digest")


def test_cli_eval_takes_several_samples_of_the_clean_model(tmp_path):
    """`eval --round 0 --samples a --samples b --samples c`: the first is the clean model's
    sample, the others its draws; their spread is the band's noise."""
    from tailguard.cli import app
    from tailguard.ledger import Ledger

    path = _frozen_corpus(tmp_path / "ledger.duckdb")
    files = []
    for i in range(3):
        t, lab = make_corpus(400, seed=90 + i)
        f = tmp_path / f"clean{i}.jsonl"
        f.write_text(
            "\n".join(json.dumps({"text": x, "y": y}) for x, y in zip(t, lab, strict=True))
        )
        files += ["--samples", str(f)]
    out = CliRunner().invoke(
        app, ["eval", "--round", "0", *files, "--label-field", "y", "--ledger", str(path)]
    )
    assert out.exit_code == 0, out.output
    assert "with 2 more sample(s) of it" in out.output
    with Ledger.open(path, read_only=True) as led:
        history = led.metrics()
    samples = set(history["sample"].to_pylist())
    assert {"model", draw_name("model", 1), draw_name("model", 2)} <= samples
    mon = Monitor.from_history(history)
    values = [
        v for s, m, v in zip(history["sample"].to_pylist(), history["metric"].to_pylist(),
                             history["value"].to_pylist(), strict=True)
        if m == "distinct_2" and (s == "model" or s.startswith("model#"))
    ]  # fmt: skip
    band = mon.bands()["distinct_2"]
    assert band.center == pytest.approx(np.mean(values))
    assert band.noise == pytest.approx(np.std(values, ddof=1))
