"""The catalogue of hardware models a topology may name.

One table per kind: NTB adapters, switches (chips and the products that carry them) and
endpoint device models (with their BAR layouts and parameters). Loading a topology looks
models up here, so an unknown model is an error that lists what exists. Hop latencies are
the paper's figures (§7.1.3: PEX8733 132 ns worst case, PEX8796 150 ns, PM8536 ~170 ns);
the timing model refines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from smartio.hw.units import GiB, KiB, MiB


class SwitchMode(Enum):
    """Where a switch sits in the fabric."""

    TRANSPARENT = "transparent"  # part of one host's PCIe tree (expansion chassis, host adapter)
    CLUSTER = "cluster"  # NTB-capable cluster switch between hosts (MXS824)


@dataclass(frozen=True)
class ChipModel:
    name: str
    vendor: str
    hop_ns: float  # cut-through latency through the chip (paper §7.1.3)


CHIPS: dict[str, ChipModel] = {
    "PEX8733": ChipModel("PEX8733", "Broadcom/PLX", 132.0),
    "PEX8796": ChipModel("PEX8796", "Broadcom/PLX", 150.0),
    "PM8536": ChipModel("PM8536", "Microsemi Switchtec PFX", 170.0),
}


@dataclass(frozen=True)
class AdapterModel:
    """An NTB adapter card: a switch chip whose external port(s) are non-transparent."""

    name: str
    chip: str
    ports: int
    max_gen: int
    max_width: int
    default_window: int
    default_lut_entries: int
    default_rid_entries: int


ADAPTERS: dict[str, AdapterModel] = {
    "PXH830": AdapterModel("PXH830", "PEX8733", 1, 3, 16, 1 * GiB, 32, 32),
    "PXH810": AdapterModel("PXH810", "PEX8733", 1, 3, 8, 1 * GiB, 32, 32),
    "PXH832": AdapterModel("PXH832", "PEX8733", 4, 3, 16, 1 * GiB, 32, 32),
}


@dataclass(frozen=True)
class SwitchModel:
    """A switch product: its chip, port count, and whether it is transparent or a cluster switch."""

    name: str
    chip: str
    ports: int
    mode: SwitchMode
    max_gen: int = 3
    max_width: int = 16
    card: bool = False  # an adapter card that sits in a slot (host adapters)


SWITCHES: dict[str, SwitchModel] = {
    # Bare chips, for hand-built set-ups.
    "PEX8733": SwitchModel("PEX8733", "PEX8733", 5, SwitchMode.TRANSPARENT),
    "PEX8796": SwitchModel("PEX8796", "PEX8796", 24, SwitchMode.TRANSPARENT),
    "PM8536": SwitchModel("PM8536", "PM8536", 24, SwitchMode.CLUSTER),
    # Products.
    "MXS824": SwitchModel("MXS824", "PM8536", 24, SwitchMode.CLUSTER),
    "MXH832": SwitchModel("MXH832", "PEX8733", 4, SwitchMode.TRANSPARENT, card=True),
    "MXH833": SwitchModel("MXH833", "PEX8733", 4, SwitchMode.TRANSPARENT, card=True),
    "HIB68": SwitchModel("HIB68", "PEX8733", 2, SwitchMode.TRANSPARENT, card=True),
}


class ParamKind(Enum):
    INT = "integer"
    SIZE = "size (bytes or a string such as '16GiB')"
    STR = "string"
    BOOL = "boolean"


@dataclass(frozen=True)
class BarSpec:
    """One BAR of a device model. ``size_param`` names a parameter that sets the size."""

    index: int
    size: int
    is64: bool = True
    prefetchable: bool = False
    size_param: str | None = None


@dataclass(frozen=True)
class EndpointModel:
    """A PCIe device model: vendor/device/class ids, BARs and accepted parameters."""

    name: str
    vendor_id: int
    device_id: int
    class_code: int
    bars: tuple[BarSpec, ...]
    params: dict[str, tuple[ParamKind, object]] = field(default_factory=dict)
    max_gen: int = 3
    max_width: int = 16


ENDPOINTS: dict[str, EndpointModel] = {
    # An NVMe controller (Intel Optane P4800X-like); BAR0 holds registers, doorbells, MSI-X.
    "nvme": EndpointModel(
        "nvme", 0x8086, 0x2701, 0x010802,
        (BarSpec(0, 16 * KiB, is64=True, prefetchable=False),),
        {
            "namespaces": (ParamKind.INT, 1),
            "capacity": (ParamKind.SIZE, 1 * GiB),
            "io_queues": (ParamKind.INT, 31),
            "mqes": (ParamKind.INT, 1023),
            "mdts": (ParamKind.INT, 5),
            "lba_size": (ParamKind.INT, 512),
            "media": (ParamKind.STR, "ram"),
            "backing": (ParamKind.STR, "ram"),
            "serial": (ParamKind.STR, ""),
            "model": (ParamKind.STR, "smartio NVMe"),
            "cmb": (ParamKind.SIZE, 0),
        },
        max_width=4,
    ),
    # A GPU (Quadro P4000-like): registers, a large prefetchable BAR of device memory, and a
    # DMA mask that cannot reach high addresses (paper §4.3).
    "gpu": EndpointModel(
        "gpu", 0x10DE, 0x1BB1, 0x030000,
        (
            BarSpec(0, 16 * MiB, is64=False, prefetchable=False),
            BarSpec(1, 256 * MiB, is64=True, prefetchable=True, size_param="memory"),
            BarSpec(3, 32 * MiB, is64=True, prefetchable=True),
        ),
        {"memory": (ParamKind.SIZE, 256 * MiB), "dma_bits": (ParamKind.INT, 40)},
    ),
    # An SR-IOV capable network adapter (paper §7.1.6).
    "nic": EndpointModel(
        "nic", 0x8086, 0x1572, 0x020000,
        (BarSpec(0, 1 * MiB, is64=True, prefetchable=True), BarSpec(3, 32 * KiB, is64=True,
                                                                    prefetchable=True)),
        {"vfs": (ParamKind.INT, 0)},
        max_width=8,
    ),
    # A plain function with one memory BAR, for experiments.
    "generic": EndpointModel(
        "generic", 0x1AF4, 0x1110, 0x050000,
        (BarSpec(0, 1 * MiB, is64=True, prefetchable=True, size_param="bar_size"),),
        {"bar_size": (ParamKind.SIZE, 1 * MiB)},
    ),
}

#: The NTB adapter's own function: BAR0 holds its registers (scratchpads, doorbells, LUT
#: programming); BAR2 is the window into other hosts, sized by the topology.
NTB_VENDOR_ID = 0x10B5  # PLX
NTB_DEVICE_ID = 0x87B0
NTB_CLASS_CODE = 0x068000  # bridge, other
NTB_REGS_SIZE = 256 * KiB


__all__ = [
    "ADAPTERS",
    "CHIPS",
    "ENDPOINTS",
    "NTB_CLASS_CODE",
    "NTB_DEVICE_ID",
    "NTB_REGS_SIZE",
    "NTB_VENDOR_ID",
    "SWITCHES",
    "AdapterModel",
    "BarSpec",
    "ChipModel",
    "EndpointModel",
    "ParamKind",
    "SwitchMode",
    "SwitchModel",
]
