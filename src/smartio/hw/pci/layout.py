"""The power-on configuration space of each function of a topology.

Deterministic from the topology: every process that opens a function's config space
computes the same masks; the creating process also writes the reset contents. Per model:
vendor/device/class ids, the BARs as enumerated, and the capability list (power
management, MSI, PCI Express with FLR, and MSI-X where the model has its table in a BAR).
"""

from __future__ import annotations

from dataclasses import dataclass

from smartio.hw.enumeration import Function
from smartio.hw.models import ENDPOINTS, NTB_CLASS_CODE, NTB_DEVICE_ID, NTB_VENDOR_ID
from smartio.hw.pci.caps import (
    Capability,
    Msi,
    MsiX,
    PciExpress,
    PowerManagement,
    build_capabilities,
)
from smartio.hw.pci.config import (
    CONFIG_SIZE,
    HEADER,
    STATUS_CAP_LIST,
    BarInfo,
    Masks,
    bar_words,
)
from smartio.hw.topology.schema import TopologySpec


@dataclass(frozen=True)
class MsixLayout:
    """Where a model keeps its MSI-X table and PBA."""

    bir: int
    table_offset: int
    pba_offset: int
    vectors: int


def msix_layout(model: str, params: dict[str, object]) -> MsixLayout | None:
    if model == "nvme":
        return MsixLayout(0, 0x2000, 0x3000, int(params.get("io_queues", 31)) + 1)  # type: ignore[call-overload]
    if model == "gpu":
        return MsixLayout(0, 0xFE0000, 0xFF0000, 4)
    if model == "nic":
        return MsixLayout(3, 0x0000, 0x4000, 8)
    return None


def function_layout(topo: TopologySpec, fn: Function) -> tuple[bytes, Masks, MsixLayout | None]:
    """(reset contents, write masks, MSI-X layout) of one function's config space."""
    view = memoryview(bytearray(CONFIG_SIZE))
    masks = Masks()
    params: dict[str, object] = {}
    gen, width = 3, 16
    if fn.kind == "ntb":
        vendor, device, klass = NTB_VENDOR_ID, NTB_DEVICE_ID, NTB_CLASS_CODE
        spec_a = next(a for a in topo.adapters if a.id == fn.name)
        gen, width = spec_a.gen, spec_a.width
    else:
        ep = next(e for e in topo.endpoints if e.name == fn.name)
        model = ENDPOINTS[ep.model]
        vendor, device, klass = model.vendor_id, model.device_id, model.class_code
        params = dict(ep.params)
        gen, width = ep.gen, ep.width
    values = {"vendor_id": vendor, "device_id": device, "class_code": klass,
              "status": STATUS_CAP_LIST, "subsystem_vendor_id": vendor,
              "subsystem_id": device, "interrupt_pin": 1}
    for reg in HEADER:
        masks.set(reg.offset, reg.width, reg.access, reg.mask)
        v = values.get(reg.name, reg.reset)
        view[reg.offset: reg.offset + reg.width] = v.to_bytes(reg.width, "little")
    bars = [BarInfo(b.index, b.base, b.size, b.is64, b.prefetchable) for b in fn.bars]
    from smartio.hw.pci.config import Access

    for off, (value, mask) in bar_words(bars).items():
        view[off: off + 4] = value.to_bytes(4, "little")
        masks.set(off, 4, Access.RW, mask)
    msix = msix_layout(fn.model, params) if fn.kind == "endpoint" else None
    caps: list[Capability] = [PowerManagement(), Msi(), PciExpress(gen, width)]
    if msix is not None:
        caps.append(MsiX(msix.vectors, msix.bir, msix.table_offset, msix.pba_offset))
    build_capabilities(view, masks, caps)
    return bytes(view), masks, msix


__all__ = ["MsixLayout", "function_layout", "msix_layout"]
