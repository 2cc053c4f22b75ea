"""The topology file format (TOML), as typed structures.

``Raw*`` structs mirror the file exactly (sizes may be strings such as ``"1GiB"``; unknown
fields are rejected); :mod:`smartio.hw.topology.loader` validates them and produces the
resolved ``*Spec`` structs (sizes in bytes, model defaults filled in) that the rest of the
fabric uses. The format is documented in docs/topology.md.
"""

from __future__ import annotations

import msgspec

Size = int | str
ParamValue = int | float | str | bool


class RawAdapter(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    model: str = "PXH830"
    slot: int | None = None
    at: str | None = None
    window: Size | None = None
    lut_entries: int | None = None
    rid_entries: int | None = None
    gen: int | None = None
    width: int | None = None


class RawHost(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    ram: Size = "1GiB"
    iommu: bool = False
    cpus: int = 1
    slots: int = 4
    adapters: list[RawAdapter] = msgspec.field(default_factory=list)


class RawSwitch(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    model: str
    ports: int | None = None
    host: str | None = None
    slot: int | None = None
    at: str | None = None
    gen: int | None = None
    width: int | None = None


class RawLink(msgspec.Struct, forbid_unknown_fields=True):
    a: str
    b: str
    gen: int = 3
    width: int | None = None
    length_m: float = 1.0


class RawEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    model: str
    at: str
    gen: int | None = None
    width: int | None = None
    params: dict[str, ParamValue] = msgspec.field(default_factory=dict)


class RawTopology(msgspec.Struct, forbid_unknown_fields=True):
    name: str = "unnamed"
    description: str = ""
    hosts: list[RawHost] = msgspec.field(default_factory=list)
    switches: list[RawSwitch] = msgspec.field(default_factory=list)
    links: list[RawLink] = msgspec.field(default_factory=list)
    endpoints: list[RawEndpoint] = msgspec.field(default_factory=list)


# ---------------------------------------------------------------------------------------
# Resolved, validated specs.


class PortRef(msgspec.Struct, frozen=True):
    """A port of an element: a host slot, a switch port or an NTB adapter's external port."""

    element: str  # host name, switch name, or "host:adapter"
    port: int

    def __str__(self) -> str:
        return f"{self.element}/{self.port}"


class AdapterSpec(msgspec.Struct, frozen=True):
    host: str
    name: str
    model: str
    chip: str
    ports: int
    upstream: PortRef  # the host slot or transparent switch port it sits in
    window: int
    lut_entries: int
    rid_entries: int
    gen: int
    width: int

    @property
    def id(self) -> str:
        return f"{self.host}:{self.name}"


class HostSpec(msgspec.Struct, frozen=True):
    name: str
    ram: int
    iommu: bool
    cpus: int
    slots: int
    adapters: tuple[AdapterSpec, ...]


class SwitchSpec(msgspec.Struct, frozen=True):
    name: str
    model: str
    chip: str
    ports: int
    mode: str  # "transparent" | "cluster"
    upstream: PortRef | None  # for cards placed in a slot or switch port
    gen: int
    width: int


class LinkSpec(msgspec.Struct, frozen=True):
    name: str  # "a<->b", canonical
    a: PortRef
    b: PortRef
    gen: int
    width: int
    length_m: float


class EndpointSpec(msgspec.Struct, frozen=True):
    name: str
    model: str
    upstream: PortRef
    gen: int
    width: int
    params: dict[str, ParamValue]


class TopologySpec(msgspec.Struct, frozen=True):
    name: str
    description: str
    source: str
    hosts: tuple[HostSpec, ...]
    switches: tuple[SwitchSpec, ...]
    links: tuple[LinkSpec, ...]
    endpoints: tuple[EndpointSpec, ...]

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def adapters(self) -> tuple[AdapterSpec, ...]:
        return tuple(a for h in self.hosts for a in h.adapters)


__all__ = [
    "AdapterSpec",
    "EndpointSpec",
    "HostSpec",
    "LinkSpec",
    "PortRef",
    "RawTopology",
    "SwitchSpec",
    "TopologySpec",
]
