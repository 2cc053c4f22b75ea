"""The ``smartio`` command: argument parsing only; the work is done by the library."""

from __future__ import annotations

from rich.console import Console


def console() -> Console:
    """A console that stays readable when output goes to a pipe or a CI log (120 columns)."""
    c = Console()
    return c if c.is_terminal else Console(width=120)
