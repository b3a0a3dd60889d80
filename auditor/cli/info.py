"""``medaudit plugins`` and ``medaudit modalities``: what is installed."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from auditor.cli.common import handle_errors
from auditor.registry import get_registry


@handle_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List every loaded plugin and what it registered.

    Third-party plugins come from the `medaudit` entry-point group; set MEDAUDIT_PLUGINS
    to a comma-separated list of their names to load only those."""
    registry = get_registry()
    described = registry.describe()
    if as_json:
        typer.echo(json.dumps(described, indent=1))
        return
    table = Table(title="medaudit plugins")
    for col in ("plugin", "origin", "registered"):
        table.add_column(col)
    for item in described:
        regs = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in item["registered"].items())
        table.add_row(item["name"], item["origin"], regs or "-")
    Console().print(table)


@handle_errors
def modalities(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List the modality presets: channels, default input size, eps grid, positive class."""
    registry = get_registry()
    items = [dataclasses.asdict(m) for m in registry.all("modalities")]
    if as_json:
        typer.echo(json.dumps(items, indent=1))
        return
    table = Table(title="medaudit modalities")
    for col in ("name", "title", "channels", "input size", "eps (/255)", "positive class"):
        table.add_column(col)
    for m in items:
        table.add_row(m["name"], m["title"], str(m["channels"]), "x".join(map(str, m["input_size"])),
                      ",".join(f"{e:g}" for e in m["eps_255"]), m["positive_class"] or "-")
    Console().print(table)
