"""A project's retraining loop described in ``tailguard.toml``: config in, :class:`Loop` out.

The file names the human data, the model (a lab model or the user's own
``module:function``), the gate, the policy, the dial and the metric preset;
:mod:`tailguard.config` validates it (:func:`load_config`), and
:func:`build_loop` turns a valid config into a :class:`~tailguard.loop.Loop`.
"""

from __future__ import annotations

import importlib
from typing import Any

from tailguard.config import ModelSection, ProjectConfig, load_config
from tailguard.errors import ConfigError
from tailguard.ledger import Ledger
from tailguard.loop import Loop, LoopModel, LoopSettings
from tailguard.loop import build_loop as assemble


def build_loop(
    config: ProjectConfig, ledger: Ledger, *, progress: bool = False, embedder: str | None = None
) -> Loop:
    """The loop a config describes, over ``ledger`` (whose human data must be frozen);
    ``embedder`` overrides ``[monitor] embedder``."""
    if config.model is None:
        raise ConfigError("key 'model': the loop needs a model (`kind` or `entry`)")
    train, generate, sample = _model_functions(config.model)
    try:
        policy = config.policy.policy()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"key 'policy': {exc}") from None

    gate = project_gate(config, ledger, progress=progress)
    dial = None
    if config.dial.enabled:
        from tailguard.mix import Dial

        d = config.dial
        kwargs = dict(
            start=d.start, minimum=d.minimum, maximum=d.maximum, step=d.step, patience=d.patience
        )
        if d.watch is not None:
            kwargs["watch"] = d.watch
        dial = Dial(**kwargs)
    preset = config.monitor.preset
    if config.model.kind is not None and "preset" not in config.monitor.model_fields_set:
        from tailguard.lab.evaluation import preset_for_model

        preset = preset_for_model(config.model.kind)  # vectors or text, as the model's data
    loop_cfg = config.loop
    return assemble(
        ledger,
        LoopModel(train, generate, sample, name=config.model.kind or config.model.entry or "model"),
        policy,
        gate=gate,
        dial=dial,
        monitor=project_monitor(config, preset=preset, embedder=embedder),
        settings=LoopSettings(
            n_generate=loop_cfg.n_generate,
            n_sample=loop_cfg.n_sample,
            batch_size=loop_cfg.batch_size,
            run=loop_cfg.run,
            seed=loop_cfg.seed,
        ),
    )


def project_gate(config: ProjectConfig, ledger: Ledger, *, progress: bool = True) -> Any:
    """The project's ``[gate]`` over the ledger's reservoir, its reference fingerprints
    kept in the ledger (None without a gate)."""
    if not config.gate:
        return None
    from tailguard.gate import Gate

    ray = config.engine.kind == "ray"  # Ray reads the reservoir from shards, not memory
    gate = Gate.from_config(
        config.gate,
        reference=None if ray else ledger.reservoir_records("all"),
        fingerprints=None if ray else ledger,
        source="tailguard.toml [gate]",
        base_dir=config.base_dir,
        progress=progress,
    )
    return on_engine(config, gate)


def on_engine(config: ProjectConfig, gate: Any) -> Any:
    """``gate`` where ``[engine]`` says: itself (``local``), or a
    :class:`~tailguard.gate.ray_gate.RayGate` with the same ``run_round`` (``ray``)."""
    if config.engine.kind != "ray" or config.gate is None:
        return gate
    from tailguard.gate.ray_gate import RayGate, ray_engine

    refs = {getattr(v, "reference", None) for v in config.gate.verifiers} - {None}
    if len(refs) > 1:
        raise ConfigError(
            "key 'engine.kind': on Ray every duplicate verifier compares with the reservoir "
            'or none does; give them all the same `reference` ("reservoir" or "none")'
        )
    engine = ray_engine(config.engine.address, config.engine.num_cpus)
    work_dir = config.engine.work_dir
    return RayGate(
        gate,
        engine,
        reservoir=config.gate.needs_reference,
        work_dir=None if work_dir is None else config.resolve(work_dir),
    )


def with_engine(config: ProjectConfig, kind: str | None, address: str | None) -> ProjectConfig:
    """``config`` with ``--engine``/``--address`` from the command line over ``[engine]``."""
    from pydantic import ValidationError

    from tailguard.config import EngineSection, config_error

    if kind is None and address is None:
        return config
    raw = config.engine.model_dump(exclude_unset=True)
    if kind is not None and kind != raw.get("kind"):
        raw = {"kind": kind}  # another engine: the file's address is not for it
    if address is not None:
        raw["address"] = address
    try:
        engine = EngineSection.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, "--engine/--address", prefix=("engine",)) from None
    return config.model_copy(update={"engine": engine})


def project_monitor(
    config: ProjectConfig | None,
    *,
    preset: str | None = None,
    embedder: str | None = None,
    run: str | None = None,
    cache_dir: Any = None,
    engine: Any = None,
) -> Any:
    """The project's :class:`~tailguard.monitor.Monitor`: ``[monitor]`` preset and embedder
    (each overridable), embeddings cached next to the ledger so each text is embedded
    once per project; per-record work (words, embeddings) where ``engine`` (an
    ``EngineSection``; default ``[engine]``) says."""
    from tailguard.monitor import Monitor

    if config is not None:
        preset = preset or config.monitor.preset
        embedder = embedder or config.monitor.embedder
        run = run or config.loop.run
        cache_dir = cache_dir or config.ledger_path.parent / "embeddings"
        engine = engine or config.engine
    return Monitor(
        preset=preset or Monitor.PRESET,
        run=run or "main",
        seed=config.loop.seed if config is not None else 0,
        embedder=embedder,
        cache_dir=cache_dir,
        per_record=per_record(engine, config.base_dir if config is not None else None),
    )


def per_record(engine: Any, base_dir: Any = None) -> Any:
    """Where an evaluation's per-record work runs for an ``[engine]`` section: None (in
    this process) for ``local``, :class:`~tailguard.metrics.distributed.RayRecords` for
    ``ray`` (``work_dir`` relative to ``base_dir``)."""
    if engine is None or engine.kind != "ray":
        return None
    from pathlib import Path

    from tailguard.engines import RayEngine
    from tailguard.metrics.distributed import RayRecords

    work_dir = engine.work_dir
    if work_dir is not None and base_dir is not None:
        work_dir = Path(base_dir) / work_dir
    return RayRecords(
        RayEngine(address=engine.address, num_cpus=engine.num_cpus), work_dir=work_dir
    )


def _model_functions(model: ModelSection) -> tuple[Any, Any, Any]:
    """``(train, generate, sample)`` for a lab model kind or a user's entry point.

    A user's ``module:function`` is called with the ``params`` table and returns an
    object (or dict) with ``train(manifest, records)``, ``generate(model, n, round,
    seed)`` and optionally ``sample(model, round, seed)``.
    """
    if model.kind is not None:
        from tailguard.lab.callables import loop_callables

        try:
            return loop_callables(model.kind, model.params)
        except ConfigError as exc:
            raise ConfigError(f"key 'model.kind': {exc}") from None
    module_name, _, func_name = (model.entry or "").partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"key 'model.entry': cannot load {model.entry!r}: {exc}") from None
    built = factory(**model.params)
    get = built.get if isinstance(built, dict) else lambda k: getattr(built, k, None)
    if get("train") is None or get("generate") is None:
        raise ConfigError(f"key 'model.entry': {model.entry} must return train and generate")
    return get("train"), get("generate"), get("sample")


def check_data_files(config: ProjectConfig) -> None:
    """Refuse, before anything is written, a ``[data] files`` entry that names no file."""
    for i, f in enumerate(config.data.files if config.data is not None else []):
        path = config.resolve(f.path)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ConfigError(f"key 'data.files.{i}.path': {path} {what}")


def prepare_ledger(config: ProjectConfig, ledger: Ledger) -> None:
    """Ingest the configured human data and freeze the reservoir, if not done yet:
    all of it in one transaction, so a bad file leaves the ledger as it was."""
    if ledger.has_reservoir():
        return
    if config.data is None:
        raise ConfigError("key 'data': the ledger has no frozen reservoir and no data is named")
    check_data_files(config)
    from tailguard.datasets import builtin

    with ledger.atomic():
        if config.data.builtin:
            ledger.add_records(builtin(config.data.builtin))
        for f in config.data.files:
            ledger.ingest(
                config.resolve(f.path),
                origin="human",
                text_field=f.text_field,
                label_field=f.label_field,
            )
        ledger.freeze_reservoir("main", holdout=config.data.holdout, seed=config.data.seed)


__all__ = [
    "ProjectConfig",
    "build_loop",
    "check_data_files",
    "load_config",
    "on_engine",
    "per_record",
    "prepare_ledger",
    "project_monitor",
    "with_engine",
]
