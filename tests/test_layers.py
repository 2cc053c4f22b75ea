"""The import graph keeps the layers of DESIGN.md §2: silicon imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "smartio"
ABOVE_HW = ("smartio.node", "smartio.cluster", "smartio.sisci", "smartio.lending",
            "smartio.mdev", "smartio.drivers", "smartio.bench", "smartio.cli")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_hw_imports_nothing_above_it() -> None:
    """No module of smartio.hw imports a layer above the silicon."""
    bad = []
    for path in (SRC / "hw").rglob("*.py"):
        for mod in _imports(path):
            if mod.startswith(ABOVE_HW):
                bad.append(f"{path.relative_to(SRC)} imports {mod}")
    assert not bad, bad


def test_drivers_do_not_import_hw_or_node() -> None:
    """Drivers talk only to the user APIs (vacuous until smartio.drivers exists)."""
    drivers = SRC / "drivers"
    bad = []
    for path in drivers.rglob("*.py") if drivers.exists() else []:
        for mod in _imports(path):
            if mod.startswith(("smartio.hw", "smartio.node")):
                bad.append(f"{path.relative_to(SRC)} imports {mod}")
    assert not bad, bad


def test_layer_check_sees_hw_modules() -> None:
    """The import scan finds the hw modules, so the layer test cannot pass vacuously."""
    names = {p.stem for p in (SRC / "hw").rglob("*.py")}
    assert {"translate", "fabric", "ntb", "iommu", "mapping"} <= names
    assert "smartio.hw.state" in _imports(SRC / "hw" / "translate.py")
