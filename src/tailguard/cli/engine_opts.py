"""``--engine`` and ``--address``: where `run`, `gate` and `eval` send their heavy stages."""

from __future__ import annotations

import typer

EngineOption = typer.Option(
    None,
    "--engine",
    help="local or ray: run the gate (and the embeddings) in this process or on Ray Data "
    "(default: [engine] kind).",
)
AddressOption = typer.Option(
    None,
    "--address",
    help="--engine ray: the Ray cluster (ray://head:10001 or auto); unset: a local Ray "
    "(default: [engine] address).",
)
