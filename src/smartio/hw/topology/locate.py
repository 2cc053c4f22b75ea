"""Find the line of a TOML value from its path, for error messages.

``tomllib`` returns plain data without positions, so we scan the text once and record the
first line of every table, array-of-tables element and key, keyed by the same path the
data uses (``("hosts", 1, "adapters", 0, "window")``). A path that is not found resolves
to its longest recorded prefix, so an error always points at the nearest enclosing line.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def _split_dotted(name: str) -> list[str]:
    return [part.strip().strip('"') for part in name.split(".")]


class LineIndex:
    """Maps data paths of a TOML document to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        counts: dict[Path, int] = {}
        current: list[str | int] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            m = _HEADER.match(line)
            if m:
                is_array = m.group(1) == "[["
                segs = _split_dotted(m.group(2))
                resolved: list[str | int] = []
                for seg in segs[:-1]:
                    resolved.append(seg)
                    n = counts.get(tuple(resolved))
                    if n:
                        resolved.append(n - 1)
                resolved.append(segs[-1])
                if is_array:
                    key = tuple(resolved)
                    counts[key] = counts.get(key, 0) + 1
                    self._lines.setdefault(key, lineno)
                    resolved.append(counts[key] - 1)
                current = resolved
                self._lines.setdefault(tuple(current), lineno)
                continue
            k = _KEY.match(line)
            if k:
                path = (*current, k.group(1).strip('"'))
                self._lines.setdefault(path, lineno)

    def line_of(self, path: Path) -> int | None:
        """Return the line of ``path`` or of its longest recorded prefix."""
        p = tuple(path)
        while p:
            if p in self._lines:
                return self._lines[p]
            p = p[:-1]
        return None


_MSGSPEC_PATH = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\"?'?([^\]'\"]+)\"?'?\]")


def parse_msgspec_path(text: str) -> Path:
    """Turn msgspec's ``$.hosts[0].adapters[1].window`` into a path tuple."""
    out: list[str | int] = []
    body = text[1:] if text.startswith("$") else text
    for m in _MSGSPEC_PATH.finditer(body):
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        elif m.group(3) != "...":  # msgspec writes a dict value's key as [...]: unknown
            out.append(m.group(3))
    return tuple(out)


def format_path(path: Path) -> str:
    """Render a path as users write it in TOML terms: ``hosts[0].adapters[1].window``."""
    s = ""
    for seg in path:
        s += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if s else str(seg))
    return s


__all__ = ["LineIndex", "format_path", "parse_msgspec_path"]
