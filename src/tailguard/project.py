"""A project's retraining loop described in ``tailguard.toml``, validated up front.

The file names the human data, the model (a lab model or the user's own
``module:function``), the gate, the policy, the dial and the metric preset.
Pydantic checks every key before anything runs; an error names the key and the
reason. :func:`build_loop` turns a valid config into a :class:`~tailguard.loop.Loop`.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tailguard.errors import ConfigError
from tailguard.ledger import Ledger
from tailguard.loop import Loop


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(_Strict):
    ledger: str = ".tailguard/ledger.duckdb"


class FileSource(_Strict):
    path: str
    text_field: str = "text"
    label_field: str | None = None


class DataSection(_Strict):
    builtin: Literal["fortunes", "wordnet"] | None = None
    files: list[FileSource] = Field(default_factory=list)
    holdout: float = Field(0.1, ge=0, lt=1)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if self.builtin is None and not self.files:
            raise ValueError('name the human data: `builtin = "fortunes"` or `files = [...]`')
        return self


class ModelSection(_Strict):
    kind: str | None = None
    entry: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_model(self) -> ModelSection:
        if (self.kind is None) == (self.entry is None):
            raise ValueError(
                "give exactly one of `kind` (a lab model) or `entry` (module:function)"
            )
        if self.entry is not None and ":" not in self.entry:
            raise ValueError(f"entry must look like module:function, got {self.entry!r}")
        return self


class PolicySection(_Strict):
    name: str = "anchored"
    real_fraction: float | None = Field(0.2, gt=0, le=1)
    synthetic: Literal["accumulate", "latest", "subsample"] | None = None
    new_human_per_round: int | None = Field(None, ge=1)


class DialSection(_Strict):
    enabled: bool = False
    start: float = Field(0.2, gt=0, le=1)
    floor: float = Field(0.15, gt=0, le=1)
    ceiling: float = Field(0.9, gt=0, le=1)
    step: float = Field(0.05, gt=0, le=1)
    patience: int = Field(2, ge=1)
    watch: list[str] | None = None


class MonitorSection(_Strict):
    preset: str = "default"


class LoopSection(_Strict):
    rounds: int = Field(5, ge=1)
    n_generate: int = Field(1000, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0)
    run: str = "main"


class AuditSection(_Strict):
    human_floor: float = Field(0.15, ge=0, le=1)


class ProjectConfig(_Strict):
    project: ProjectSection = Field(default_factory=ProjectSection)
    data: DataSection | None = None
    model: ModelSection | None = None
    gate: dict[str, Any] | None = None
    policy: PolicySection = Field(default_factory=PolicySection)
    dial: DialSection = Field(default_factory=DialSection)
    monitor: MonitorSection = Field(default_factory=MonitorSection)
    loop: LoopSection = Field(default_factory=LoopSection)
    audit: AuditSection = Field(default_factory=AuditSection)


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate ``tailguard.toml``; errors name the file, the key and the reason."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such config file (run `tailguard init`)")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{p}: key {key!r}: {first['msg']}") from None


def build_loop(config: ProjectConfig, ledger: Ledger, *, progress: bool = False) -> Loop:
    """The loop a config describes, over ``ledger`` (whose human data must be frozen)."""
    from tailguard.mix import policy_from_name
    from tailguard.monitor import Monitor

    if config.model is None:
        raise ConfigError("key 'model': the loop needs a model (`kind` or `entry`)")
    train, generate, sample = _model_functions(config.model)
    params = {
        k: v
        for k, v in {
            "real_fraction": config.policy.real_fraction
            if config.policy.name == "anchored"
            else None,
            "synthetic": config.policy.synthetic,
            "new_human_per_round": config.policy.new_human_per_round,
        }.items()
        if v is not None
    }
    try:
        policy = policy_from_name(config.policy.name, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"key 'policy': {exc}") from None
    gate = None
    if config.gate:
        from tailguard.gate import Gate

        gate = Gate.from_config(
            config.gate, reference=ledger.reservoir_records("all"), source="tailguard.toml [gate]"
        )
        gate.progress = progress
    dial = None
    if config.dial.enabled:
        from tailguard.mix import Dial

        d = config.dial
        kwargs = dict(
            start=d.start, floor=d.floor, ceiling=d.ceiling, step=d.step, patience=d.patience
        )
        if d.watch is not None:
            kwargs["watch"] = d.watch
        dial = Dial(**kwargs)
    loop_cfg = config.loop
    return Loop(
        ledger,
        train=train,
        generate=generate,
        sample=sample,
        policy=policy,
        gate=gate,
        dial=dial,
        monitor=Monitor(preset=config.monitor.preset, run=loop_cfg.run, seed=loop_cfg.seed),
        n_generate=loop_cfg.n_generate,
        batch_size=loop_cfg.batch_size,
        run=loop_cfg.run,
        seed=loop_cfg.seed,
        generator=config.model.kind or config.model.entry or "model",
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


def prepare_ledger(config: ProjectConfig, ledger: Ledger) -> None:
    """Ingest the configured human data and freeze the reservoir, if not done yet."""
    if ledger.has_reservoir():
        return
    if config.data is None:
        raise ConfigError("key 'data': the ledger has no frozen reservoir and no data is named")
    from tailguard.datasets import builtin

    if config.data.builtin:
        ledger.add_records(builtin(config.data.builtin))
    for f in config.data.files:
        ledger.ingest(f.path, origin="human", text_field=f.text_field, label_field=f.label_field)
    ledger.freeze_reservoir("main", holdout=config.data.holdout, seed=config.data.seed)
