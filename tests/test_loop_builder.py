"""One way to build a loop: the parts' contracts, the one builder, the volume's human slots."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tailguard.errors import ConfigError
from tailguard.loop import Loop, LoopModel, LoopSettings, build_loop
from tailguard.mix import Anchored, Dial, FillGaps, HumanOnly, human_slots, volume_slots
from tailguard.stages import RoundDial, RoundGate, RoundMonitor, missing

SRC = Path(__file__).resolve().parents[1] / "src" / "tailguard"


def _model() -> LoopModel:
    return LoopModel(train=lambda m, r: None, generate=lambda m, n, r, s: [], name="mine")


def test_tailguards_own_parts_keep_their_contracts() -> None:
    from tailguard.gate import Gate, Quality
    from tailguard.gate.ray_gate import RayGate
    from tailguard.monitor import Monitor

    gate, dial, monitor = Gate([Quality()], progress=False), Dial(), Monitor()
    assert isinstance(gate, RoundGate) and isinstance(dial, RoundDial)
    assert isinstance(monitor, RoundMonitor)
    assert missing("gate", gate) == missing("dial", dial) == missing("monitor", monitor) == []
    assert missing("gate", RayGate) == []  # the Ray gate runs the same stage


def test_a_part_without_its_contract_is_refused_by_name_before_anything_runs(frozen) -> None:
    class HalfMonitor:
        reference = None

        def record(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            return None

    with pytest.raises(ConfigError, match=r"loop's gate \(object\) lacks run_round"):
        build_loop(frozen, _model(), HumanOnly(), gate=object())
    with pytest.raises(ConfigError, match=r"monitor \(HalfMonitor\) lacks cached_noise_floor, ev"):
        build_loop(frozen, _model(), HumanOnly(), monitor=HalfMonitor())
    with pytest.raises(ConfigError, match=r"dial \(str\) lacks decide, params, resume"):
        build_loop(frozen, _model(), Anchored(), dial="up")
    assert frozen.last_stage("main") is None  # nothing ran


def test_the_builder_hands_every_setting_to_the_loop(frozen) -> None:
    from tailguard.monitor import Monitor

    model = _model()
    dial, monitor = Dial(), Monitor()
    settings = LoopSettings(n_generate=7, n_sample=5, batch_size=3, run="r", seed=11)
    loop = build_loop(frozen, model, Anchored(), dial=dial, monitor=monitor, settings=settings)
    assert (loop.train_fn, loop.generate_fn, loop.sample_fn) == (model.train, model.generate, None)
    assert (loop.dial, loop.monitor, loop.gate) == (dial, monitor, None)
    assert (loop.n_generate, loop.n_sample, loop.batch_size) == (7, 5, 3)
    assert (loop.run_name, loop.seed, loop.generator) == ("r", 11, "mine")
    plain = build_loop(frozen, model, HumanOnly())
    assert (plain.n_generate, plain.batch_size, plain.run_name, plain.seed) == (
        Loop.N_GENERATE,
        Loop.BATCH_SIZE,
        Loop.RUN,
        Loop.SEED,
    )
    with pytest.raises(ConfigError, match="a dial needs a monitor"):  # the loop's own checks
        build_loop(frozen, model, Anchored(), dial=dial)


def _loops_built() -> list[str]:
    """Every ``Loop(...)`` call in the package, as ``module:line``."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
                if name == "Loop":
                    out.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return out


def test_one_builder_assembles_every_loop_the_project_the_cli_and_the_lab_run() -> None:
    built = _loops_built()
    assert len(built) == 1 and built[0].startswith("loop.py:"), built


def test_the_project_and_the_lab_build_their_loops_through_it(frozen, monkeypatch) -> None:
    import tailguard.lab.job as job_module
    import tailguard.project as project
    from tailguard.config import ProjectConfig
    from tailguard.lab.config import LabConfig

    calls = []

    def spy(ledger, model, policy, **parts):  # noqa: ANN001, ANN003, ANN202
        calls.append((model.name, type(policy).__name__, parts["settings"].run))
        return build_loop(ledger, model, policy, **parts)

    monkeypatch.setattr(project, "assemble", spy)
    monkeypatch.setattr(job_module, "build_loop", spy)
    raw = {"model": {"kind": "ngram"}, "policy": {"name": "anchored"}, "loop": {"run": "p"}}
    project.build_loop(ProjectConfig.model_validate(raw), frozen)
    cfg = LabConfig(
        model="gaussian", strategies=("replace",), generations=1, seeds=1, recovery_rounds=0,
        volume=60, eval_size=20,
    )  # fmt: skip
    job = job_module._Job(cfg, "replace", 0, lambda n: None)
    try:
        job.loop(job.parts.policy)
    finally:
        job.ledger.close()
    assert calls == [("ngram", "Anchored", "p"), ("gaussian", "Replace", "replace/seed0")]


@given(
    f=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3, 1 / 3, 0.5, 0.8, 1.0]),
    volume=st.integers(1, 5000),
    n_reservoir=st.integers(0, 3000),
)
def test_a_volumes_human_slots_never_fall_below_the_share(f, volume, n_reservoir) -> None:
    human = human_slots(f, volume)
    assert human / volume >= f - 1e-12 and human - 1 < f * volume  # the ceiling of f x V
    if f > 0:
        share = Anchored(real_fraction=f, reservoir="share")
        assert volume_slots(share, volume, n_reservoir) == (human, volume - human)
        whole = Anchored(real_fraction=f, reservoir="whole")
        h, s = volume_slots(whole, volume, n_reservoir)
        assert h == max(human, n_reservoir) and s == max(0, volume - h)


def test_fill_gaps_keeps_every_human_row_of_the_volume() -> None:
    assert volume_slots(FillGaps(), 200, 90) == (90, 110)  # its natural share: the reservoir
    assert volume_slots(FillGaps(real_fraction=0.5), 200, 90) == (100, 100)
    assert volume_slots(FillGaps(real_fraction=0.1), 200, 90) == (90, 110)


def test_the_fill_gaps_strategy_runs_at_equal_volume() -> None:
    """It re-injects every human row: the volume's other slots are what it generates."""
    from tailguard.lab.config import LabConfig
    from tailguard.lab.job import _Job

    cfg = LabConfig(
        model="gaussian", strategies=("fill-gaps",), generations=1, seeds=1, recovery_rounds=0,
        volume=200, eval_size=50,
    )  # fmt: skip
    job = _Job(cfg, "fill-gaps", 0, lambda n: None)
    try:
        assert job.n_generate == 200 - job.n_reservoir_train
        job.run_loop()
        assert job.ledger.round_summary(job.run_name)["generated"].to_pylist()[-1] == job.n_generate
    finally:
        job.ledger.close()
