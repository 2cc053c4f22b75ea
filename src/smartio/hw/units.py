"""Sizes written the way people write them: ``"1GiB"``, ``"256M"``, ``4096``.

Binary multiples throughout (PCIe BARs and windows are powers of two); ``K``/``KiB``,
``M``/``MiB``, ``G``/``GiB``, ``T``/``TiB`` are accepted, with or without ``B``.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
PAGE_SIZE = 4 * KiB
HUGE_PAGE_SIZE = 2 * MiB


def parse_size(value: int | str) -> int:
    """Return a size in bytes from an int or a string such as ``"2GiB"``.

    Raises:
        ValueError: the value is not a non-negative size.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative size: {value}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r}")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def format_size(n: int) -> str:
    """Format bytes with the largest exact binary unit (``1GiB``, ``48KiB``, ``100B``)."""
    for suffix, mult in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{suffix}"
    return f"{n}B"


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def align_up(n: int, align: int) -> int:
    return (n + align - 1) & ~(align - 1)


def align_down(n: int, align: int) -> int:
    return n & ~(align - 1)


__all__ = [
    "HUGE_PAGE_SIZE",
    "PAGE_SIZE",
    "GiB",
    "KiB",
    "MiB",
    "align_down",
    "align_up",
    "format_size",
    "is_power_of_two",
    "parse_size",
]
