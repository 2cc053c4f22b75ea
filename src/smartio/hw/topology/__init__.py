"""Topology: the TOML format, its validation and the presets (paper §3, DESIGN §3.1)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from smartio.errors import NotFound
from smartio.hw.topology.loader import load_topology, loads_topology
from smartio.hw.topology.schema import (
    AdapterSpec,
    EndpointSpec,
    HostSpec,
    LinkSpec,
    PortRef,
    SwitchSpec,
    TopologySpec,
)

#: The preset `make demo` and commands without a topology use.
DEFAULT_PRESET = "cluster-switch"


def preset_names() -> list[str]:
    """Names of the built-in presets, sorted."""
    files = resources.files("smartio.hw.topology").joinpath("presets")
    return sorted(f.name[: -len(".toml")] for f in files.iterdir() if f.name.endswith(".toml"))


def load_preset(name: str) -> TopologySpec:
    """Load a built-in preset by name."""
    files = resources.files("smartio.hw.topology").joinpath("presets")
    f = files.joinpath(f"{name}.toml")
    if not f.is_file():
        raise NotFound(f"no topology preset named {name!r}; presets: {', '.join(preset_names())}")
    return loads_topology(f.read_text(), source=f"preset:{name}")


def topology_text(spec: str | Path | None) -> tuple[str, str]:
    """(TOML text, source name) of a topology file or preset, for saving alongside a run."""
    if spec is None:
        spec = DEFAULT_PRESET
    p = Path(spec)
    if p.suffix == ".toml" or p.exists():
        return p.read_text(), str(p)
    files = resources.files("smartio.hw.topology").joinpath("presets")
    f = files.joinpath(f"{spec}.toml")
    if not f.is_file():
        raise NotFound(f"no topology preset named {spec!r}; presets: {', '.join(preset_names())}")
    return f.read_text(), f"preset:{spec}"


def resolve_topology(spec: str | Path | None) -> TopologySpec:
    """Load a topology from a file path or a preset name (the default preset when None)."""
    if spec is None:
        return load_preset(DEFAULT_PRESET)
    p = Path(spec)
    if p.suffix == ".toml" or p.exists():
        return load_topology(p)
    return load_preset(str(spec))


__all__ = [
    "DEFAULT_PRESET",
    "AdapterSpec",
    "EndpointSpec",
    "HostSpec",
    "LinkSpec",
    "PortRef",
    "SwitchSpec",
    "TopologySpec",
    "load_preset",
    "load_topology",
    "loads_topology",
    "preset_names",
    "resolve_topology",
    "topology_text",
]
