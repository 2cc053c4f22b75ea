"""The ``smartio`` command: argument parsing only; the work is done by the library."""

from __future__ import annotations

from typing import Any

import click
import msgspec
from rich.console import Console


def console() -> Console:
    """A console that stays readable when output goes to a pipe or a CI log (120 columns)."""
    c = Console()
    return c if c.is_terminal else Console(width=120)


def echo_json(doc: Any) -> None:
    """Print a result as indented JSON (every command's ``--json``)."""
    click.echo(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode())
