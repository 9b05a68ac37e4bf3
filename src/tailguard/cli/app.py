"""The Typer application every command group registers on, and shared CLI helpers."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from tailguard import __version__
from tailguard.cli import interrupt
from tailguard.cli.output import console, err_console, say, styled, warn
from tailguard.errors import TailguardError

#: yes/no options are ``--name/--no-name`` flags; ``--name yes|no`` is their older spelling.
YES_NO_FLAGS = ("--verifiable",)


def yes_no_flags(args: list[str]) -> list[str]:
    """``args`` with ``--verifiable yes`` (or ``=yes``) read as ``--verifiable`` and
    ``no`` as ``--no-verifiable``, so the older spelling keeps working."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        if name in YES_NO_FLAGS and not eq and i + 1 < len(args):
            value = args[i + 1]
        if name in YES_NO_FLAGS and value.lower() in ("yes", "no"):
            out.append(name if value.lower() == "yes" else "--no-" + name[2:])
            i += 1 if eq else 2
            continue
        out.append(arg)
        i += 1
    return out


class _Root(TyperGroup):
    """The ``tailguard`` group: reads the older ``--flag yes|no`` spelling."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, yes_no_flags(args))


def command_group(**settings: Any) -> typer.Typer:
    """A Typer app with the settings every tailguard command group shares.

    Help is plain text (``rich_markup_mode=None``): rich markup would swallow the
    ``[section]`` names of tailguard.toml that the options' help refers to.
    """
    return typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        **settings,
    )


app = command_group(
    cls=_Root,
    name="tailguard",
    help="Keep models from collapsing when they are retrained on synthetic data.",
)

CONFIG_FILE = Path("tailguard.toml")  # tailguard.config.CONFIG_FILE, without importing pydantic
LEDGER_FILE = Path(".tailguard") / "ledger.duckdb"

LedgerOption = typer.Option(
    None, "--ledger", help="Ledger file (default: .tailguard/ledger.duckdb here)."
)

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["app", "command_group", "console", "err_console", "say", "styled", "warn"]


def ledger_path(path: Path | None, config: Any = None) -> Path:
    """The ledger to use: ``--ledger`` if given, else the project's, which must exist.

    The project's is ``config``'s (a loaded tailguard.toml) or ./tailguard.toml's.
    """
    if path is not None:
        if not path.exists():
            # Only `tailguard init` creates a ledger: a mistyped --ledger is not a new one.
            raise TailguardError(
                f"no ledger at {path}: check the path, or create one with "
                f"`tailguard init --ledger {path}`"
            )
        return path
    project = _configured_ledger() if config is None else config.ledger_path
    if not project.exists():
        raise TailguardError(
            f"no ledger at {project}: run `tailguard init` here or pass --ledger PATH"
        )
    return project


def project_config(path: Path | None = None):  # noqa: ANN201
    """The validated tailguard.toml every command reads (``path``, else ./tailguard.toml).

    ``None`` when no path is given and there is no ./tailguard.toml.
    """
    from tailguard.config import load_config

    if path is None:
        if not CONFIG_FILE.exists():
            return None
        path = CONFIG_FILE
    return load_config(path)


def ledger_pricing(config: Any) -> dict[str, Any]:
    """What the advisor prices a project's rounds with: ``[costs]`` of ``config`` (a
    loaded tailguard.toml, or ``None`` for the defaults), its ``[loop] n_generate`` and
    whether it gates (for a project with no round yet)."""
    from tailguard.costs import CostModel

    if config is None:
        return {"costs": CostModel(), "n_generate": None, "gated": False}
    return {
        "costs": CostModel(**config.costs.model_dump()),
        "n_generate": config.loop.n_generate,
        "gated": config.gate is not None,
    }


def _configured_ledger() -> Path:
    """``[project] ledger`` of ./tailguard.toml (relative to its folder), else the default."""
    config = project_config()
    return LEDGER_FILE if config is None else config.ledger_path


def open_ledger(path: Path | None, *, read_only: bool = False, config: Any = None):  # noqa: ANN201
    """Open the command's ledger (imported lazily so `--help` stays fast)."""
    from tailguard.ledger import Ledger

    return Ledger.open(ledger_path(path, config), read_only=read_only)


def handles_errors(fn: F) -> F:
    """Turn a :class:`TailguardError` into a red message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return _unless_interrupted(fn, *args, **kwargs)
        except TailguardError as exc:
            fail(str(exc))
        except OSError as exc:
            # A file the command writes or reads: a directory, a missing parent,
            # a read-only or full file system.
            where = exc.filename if exc.filename is not None else "file"
            fail(f"{where}: {exc.strerror or exc}")
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in {"duckdb", "_duckdb"}:
                raise
            # DuckDB's own errors (a damaged ledger, a full disk while writing).
            fail(f"ledger error: {str(exc).strip().splitlines()[0][:300]}")

    return wrapper  # type: ignore[return-value]


def _unless_interrupted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``; any error after Ctrl-C is the interruption (DuckDB reports it as
    its own error), ended with the one line of :mod:`tailguard.cli.interrupt`."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        if interrupt.interrupted():
            interrupt.exit_interrupted()
        raise


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` as an error and exit with ``code`` (no traceback)."""
    warn("[bold red]error:[/] {}", message)
    sys.exit(code)


def writable_output(path: Path) -> Path:
    """Refuse, before any work, an output path that cannot be a new or replaced file."""
    from tailguard.errors import InputError

    if path.is_dir():
        raise InputError("is a directory; give a file name", file=str(path))
    if not path.parent.is_dir():
        raise InputError(f"folder {path.parent} does not exist", file=str(path))
    return path


def writable_folder(path: Path) -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be made."""
    from tailguard.errors import InputError

    if path.exists() and not path.is_dir():
        raise InputError("is a file; --out names a folder", file=str(path))
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{parent} is a file, not a folder", file=str(path))
    return path


def check_expected_digest(led: Any, config: Any, expect: str | None = None) -> None:
    """Check the reservoir against a digest pinned outside the ledger, if one is given:
    ``--expect`` or ``[reservoir] digest`` of tailguard.toml."""
    pinned = expect or (
        config.reservoir.digest if config is not None and config.reservoir is not None else None
    )
    if pinned and led.has_reservoir():
        led.reservoir(expect=pinned)


def _version(value: bool) -> None:
    if value:
        say("tailguard {}", __version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Keep models from collapsing when they are retrained on synthetic data."""
