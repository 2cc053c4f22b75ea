"""A function's DMA and interrupts through FabricContext (DESIGN §3.5): Bus Master Enable,
the DMA mask, whole-transfer refusal on a failing path, the host IOMMU, MSI-X (table, masks,
pending bits), MSI, legacy INTx, and a message routed through an NTB window."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from smartio.hw.devices.context import FabricContext
from smartio.hw.enumeration import MSI_BASE
from smartio.hw.fabric import Fabric
from smartio.hw.pci.caps import (
    CAP_MSI,
    CAP_MSIX,
    CAP_PCIE,
    DEVCTL_INITIATE_FLR,
    MSI_ENABLE,
    MSIX_ENABLE,
    MSIX_FUNCTION_MASK,
)
from smartio.hw.pci.config import (
    CMD_BUS_MASTER,
    CMD_INTX_DISABLE,
    CMD_MEMORY,
    STATUS_INTERRUPT,
    ConfigSpace,
)
from smartio.hw.topology import TopologySpec, load_preset, loads_topology
from smartio.hw.translate import MSI_SLOT
from smartio.hw.units import GiB, MiB

MakeFabric = Callable[[TopologySpec], Fabric]

# A host with more than 4 GiB of RAM (the upper part at 4 GiB) and no IOMMU.
HIGH_RAM = """
name = "high-ram"

[[hosts]]
name = "h"
ram = "6GiB"

[[endpoints]]
name = "gpu0"
model = "gpu"
at = "h/0"
params = { memory = "64MiB", dma_bits = 32 }
"""

# A host with its IOMMU on and two devices.
IOMMU_HOST = """
name = "iommu-host"

[[hosts]]
name = "h"
ram = "1GiB"
iommu = true

[[endpoints]]
name = "nvme0"
model = "nvme"
at = "h/0"

[[endpoints]]
name = "gen0"
model = "generic"
at = "h/1"
"""

CANARY = 0xA5
BUF = 0x10_0000  # a RAM address used as a DMA target


@pytest.fixture
def b2b(make_fabric: MakeFabric) -> Fabric:
    """Back to back: the lender (IOMMU off) has nvme0 and gpu0; the borrower has its IOMMU on."""
    return make_fabric(load_preset("back-to-back"))


@pytest.fixture
def nvme(b2b: Fabric) -> FabricContext:
    """The lender's NVMe with memory decoding and bus mastering enabled."""
    ctx = FabricContext(b2b, "nvme0")
    ctx.config.write(0x04, 2, CMD_MEMORY | CMD_BUS_MASTER)
    return ctx


def _canary(fab: Fabric, host: str, addr: int, size: int) -> None:
    fab.ram(host).view[addr: addr + size] = bytes([CANARY]) * size


def _intact(fab: Fabric, host: str, addr: int, size: int) -> bool:
    return bytes(fab.ram(host).view[addr: addr + size]) == bytes([CANARY]) * size


def _slot(fab: Fabric, host: str, slot: int) -> tuple[int, int]:
    """(latched data, delivery count) of an interrupt-controller message slot."""
    data, count = struct.unpack_from("<II", fab.msi(host).view, MSI_SLOT * slot)
    return data, count


# -- DMA -----------------------------------------------------------------------------------


def test_dma_with_bus_master_clear_is_refused_and_touches_nothing(b2b: Fabric) -> None:
    """With Bus Master Enable clear, DMA is refused and counted and no byte changes."""
    ctx = FabricContext(b2b, "nvme0")
    ctx.config.write(0x04, 2, CMD_MEMORY)
    _canary(b2b, "lender", BUF, 4096)
    assert not ctx.bus_master()
    assert ctx.dma_write(BUF, b"\x11" * 512) is False
    assert ctx.dma_read(BUF, 64) is None
    dest = bytearray(b"\x22" * 64)
    assert ctx.dma_read_into(BUF, memoryview(dest)) is False
    assert dest == b"\x22" * 64
    assert ctx.refused == 3
    assert _intact(b2b, "lender", BUF, 4096)
    ctx.config.write(0x04, 2, CMD_MEMORY | CMD_BUS_MASTER)  # the same write now lands
    assert ctx.dma_write(BUF, b"\x11" * 512) is True
    assert bytes(b2b.ram("lender").view[BUF: BUF + 512]) == b"\x11" * 512
    assert ctx.dma_read(BUF + 510, 4) == b"\x11\x11" + bytes([CANARY]) * 2
    assert ctx.refused == 3


def test_bus_master_cleared_by_another_handle_stops_dma(b2b: Fabric, nvme: FabricContext) -> None:
    """Clearing Bus Master Enable through another process's handle stops the next DMA."""
    other = Fabric.attach(b2b.topo, b2b.cluster)
    try:
        assert nvme.dma_write(BUF, b"ok")
        other.config("nvme0").write(0x04, 2, CMD_MEMORY)
        _canary(b2b, "lender", BUF, 16)
        assert not nvme.dma_write(BUF, b"no")
        assert _intact(b2b, "lender", BUF, 16)
    finally:
        other.close()


def test_dma_beyond_the_dma_mask_is_refused(make_fabric: MakeFabric) -> None:
    """A 32-bit device's DMA above 4 GiB is refused (RAM untouched); a 64-bit one lands."""
    fab = make_fabric(loads_topology(HIGH_RAM, source="inline"))
    narrow = FabricContext(fab, "gpu0", dma_bits=32)
    narrow.config.write(0x04, 2, CMD_MEMORY | CMD_BUS_MASTER)
    high = 4 * GiB
    ram_off = fab.maps["h"].decode(high).offset  # where 4 GiB lives in the RAM object
    fab.ram("h").view[ram_off: ram_off + 4096] = bytes([CANARY]) * 4096
    assert narrow.dma_write(high, b"\x33" * 64) is False
    assert narrow.dma_read(high, 8) is None
    assert narrow.dma_write(high - 4096, b"\x33" * 8192) is False  # straddles the limit
    assert narrow.refused == 3
    assert bytes(fab.ram("h").view[ram_off: ram_off + 4096]) == bytes([CANARY]) * 4096
    assert narrow.dma_write(BUF, b"\x44" * 8) is True  # below the mask
    wide = FabricContext(fab, "gpu0")  # same function, 64-bit mask
    assert wide.dma_write(high, b"\x55" * 64) is True
    assert bytes(fab.ram("h").view[ram_off: ram_off + 64]) == b"\x55" * 64


def test_dma_mask_boundary(b2b: Fabric) -> None:
    """The last byte below 2^dma_bits is reachable; one byte past it is not."""
    ctx = FabricContext(b2b, "gpu0", dma_bits=31)  # lender RAM is exactly 2 GiB
    ctx.config.write(0x04, 2, CMD_BUS_MASTER)
    limit = 1 << 31
    assert ctx.dma_write(limit - 16, b"\x66" * 16) is True
    assert ctx.dma_write(limit - 16, b"\x66" * 17) is False
    assert ctx.dma_read(limit - 1, 1) == b"\x66"
    assert ctx.refused == 1


def test_dma_into_an_unmapped_range_is_refused_as_a_whole(b2b: Fabric,
                                                          nvme: FabricContext) -> None:
    """A transfer running off RAM into an unmapped window lands no byte at all."""
    ram_end = 2 * GiB
    _canary(b2b, "lender", ram_end - 4096, 4096)
    assert nvme.dma_write(ram_end - 4096, b"\x77" * 8192) is False
    assert _intact(b2b, "lender", ram_end - 4096, 4096)
    assert nvme.dma_read(ram_end - 16, 32) is None
    dest = bytearray(32)
    assert nvme.dma_read_into(ram_end - 16, memoryview(dest)) is False
    assert dest == bytes(32)
    assert nvme.dma_write(0xF000_0000, b"hole") is False  # nothing decodes there
    assert nvme.dma_read(0xF000_0000, 4) is None
    assert nvme.refused == 5


def test_dma_split_over_ram_and_a_bar(b2b: Fabric, nvme: FabricContext) -> None:
    """A peer-to-peer read spanning two BARs of the GPU comes back whole."""
    gpu = b2b.maps["lender"].functions["gpu0"]
    bar3, bar0 = gpu.bar(3), gpu.bar(0)
    assert bar3.end == bar0.base  # adjacent in the lender's map
    b2b.bar("gpu0", 3).view[bar3.size - 4: bar3.size] = b"ABCD"
    b2b.bar("gpu0", 0).view[0:4] = b"EFGH"
    assert nvme.dma_read(bar3.end - 4, 8) == b"ABCDEFGH"
    dest = bytearray(8)
    assert nvme.dma_read_into(bar3.end - 4, memoryview(dest)) and dest == b"ABCDEFGH"
    assert nvme.dma_write(bar3.end - 2, b"wxyz")
    assert bytes(b2b.bar("gpu0", 0).view[0:2]) == b"yz"


def test_iommu_confines_device_dma(make_fabric: MakeFabric) -> None:
    """Behind the IOMMU, DMA outside the device's mappings faults (recorded), inside it lands."""
    fab = make_fabric(loads_topology(IOMMU_HOST, source="inline"))
    iommu = fab.iommus["h"]
    assert iommu.enabled
    ctx = FabricContext(fab, "nvme0")
    ctx.config.write(0x04, 2, CMD_BUS_MASTER)
    rid = fab.function("nvme0").bdf.rid
    iova, phys, ro_phys = 0x4000_0000, 0x20_0000, 0x30_0000
    _canary(fab, "h", phys, 4096)
    assert ctx.dma_write(iova, b"\x88" * 64) is False  # no domain yet
    faults = iommu.faults()
    assert faults[-1].rid == rid and faults[-1].addr == iova and faults[-1].write
    assert faults[-1].kind == "no-domain"
    d = iommu.domain_alloc()
    iommu.attach(rid, d)
    iommu.map(d, iova, phys, 4096)
    iommu.map(d, iova + 4096, ro_phys, 4096, write=False)
    n = iommu.fault_count
    assert ctx.dma_write(phys, b"\x88" * 64) is False  # the physical address is not an IOVA
    assert iommu.fault_count == n + 1 and iommu.faults()[-1].kind == "not-present"
    assert _intact(fab, "h", phys, 4096)
    assert ctx.dma_write(iova + 4096 - 8, b"\x99" * 16) is False  # tail is read-only
    assert iommu.faults()[-1].kind == "write-to-read-only"
    assert _intact(fab, "h", phys, 4096)
    assert ctx.dma_write(iova + 16, b"\x99" * 16) is True
    assert bytes(fab.ram("h").view[phys + 16: phys + 32]) == b"\x99" * 16
    fab.ram("h").view[ro_phys: ro_phys + 4] = b"ro!!"
    assert ctx.dma_read(iova + 4096, 4) == b"ro!!"
    assert ctx.refused == 3
    other = FabricContext(fab, "gen0")  # another function is not in that domain
    other.config.write(0x04, 2, CMD_BUS_MASTER)
    assert other.dma_write(iova + 16, b"x") is False
    assert iommu.faults()[-1].rid == fab.function("gen0").bdf.rid


# -- MSI-X ---------------------------------------------------------------------------------


def _msix_program(ctx: FabricContext, vector: int, addr: int, data: int,
                  masked: bool = False) -> None:
    assert ctx.msix is not None
    bar = ctx.bar(ctx.msix.bir)
    struct.pack_into("<IIII", bar, ctx.msix.table_offset + 16 * vector, addr & 0xFFFFFFFF,
                     addr >> 32, data, int(masked))


def _msix_control(cfg: ConfigSpace, set_bits: int, clear_bits: int = 0) -> None:
    off = cfg.find_capability(CAP_MSIX)
    assert off is not None
    cfg.write(off + 2, 2, (cfg.read(off + 2, 2) | set_bits) & ~clear_bits)


def _pba(ctx: FabricContext, vector: int) -> bool:
    assert ctx.msix is not None
    byte = ctx.bar(ctx.msix.bir)[ctx.msix.pba_offset + vector // 8]
    return bool(byte >> (vector % 8) & 1)


def test_msix_delivers_to_the_programmed_slot(b2b: Fabric, nvme: FabricContext) -> None:
    """An enabled, unmasked vector latches its data in its slot and counts each delivery."""
    _msix_program(nvme, 3, MSI_BASE + MSI_SLOT * 40, 0xCAFE)
    _msix_program(nvme, 4, MSI_BASE + MSI_SLOT * 41, 0xBEEF)
    _msix_control(nvme.config, MSIX_ENABLE)
    nvme.interrupt(3)
    assert _slot(b2b, "lender", 40) == (0xCAFE, 1)
    nvme.interrupt(3)
    nvme.interrupt(4)
    assert _slot(b2b, "lender", 40) == (0xCAFE, 2)
    assert _slot(b2b, "lender", 41) == (0xBEEF, 1)
    assert _slot(b2b, "lender", 39) == (0, 0)
    assert not _pba(nvme, 3) and not _pba(nvme, 4)
    assert not b2b.config("nvme0").read(0x06, 2) & STATUS_INTERRUPT  # no INTx as well
    assert _slot(b2b, "borrower", 40) == (0, 0)


def test_plain_dma_write_to_the_message_window_is_an_interrupt(b2b: Fabric,
                                                               nvme: FabricContext) -> None:
    """A device's ordinary 4-byte DMA write to a message slot is delivered like a message."""
    assert nvme.dma_write(MSI_BASE + MSI_SLOT * 45, (0x1234).to_bytes(4, "little"))
    assert _slot(b2b, "lender", 45) == (0x1234, 1)


def test_msix_masked_vector_sets_pending_bit(b2b: Fabric, nvme: FabricContext) -> None:
    """A masked vector delivers nothing and sets its bit in the pending-bit array."""
    _msix_program(nvme, 9, MSI_BASE + MSI_SLOT * 50, 7, masked=True)
    _msix_program(nvme, 10, MSI_BASE + MSI_SLOT * 51, 8)
    _msix_control(nvme.config, MSIX_ENABLE)
    nvme.interrupt(9)
    assert _slot(b2b, "lender", 50) == (0, 0)
    assert _pba(nvme, 9) and not _pba(nvme, 10) and not _pba(nvme, 8)
    nvme.interrupt(10)
    assert _slot(b2b, "lender", 51) == (8, 1)


def test_msix_function_mask_holds_every_vector(b2b: Fabric, nvme: FabricContext) -> None:
    """With the function mask set, unmasked vectors become pending and deliver nothing."""
    _msix_program(nvme, 0, MSI_BASE + MSI_SLOT * 60, 1)
    _msix_program(nvme, 31, MSI_BASE + MSI_SLOT * 61, 2)
    _msix_control(nvme.config, MSIX_ENABLE | MSIX_FUNCTION_MASK)
    nvme.interrupt(0)
    nvme.interrupt(31)
    assert _slot(b2b, "lender", 60) == (0, 0) and _slot(b2b, "lender", 61) == (0, 0)
    assert _pba(nvme, 0) and _pba(nvme, 31)
    _msix_control(nvme.config, 0, MSIX_FUNCTION_MASK)
    nvme.interrupt(31)
    assert _slot(b2b, "lender", 61) == (2, 1)


def test_msix_vector_beyond_table_is_dropped(b2b: Fabric, nvme: FabricContext) -> None:
    """Signalling a vector past the table size posts nothing and falls back to nothing."""
    assert nvme.msix is not None and nvme.msix.vectors == 32
    _msix_control(nvme.config, MSIX_ENABLE)
    before = bytes(b2b.msi("lender").view[:4096])
    nvme.interrupt(32)
    assert bytes(b2b.msi("lender").view[:4096]) == before
    assert not nvme.config.read(0x06, 2) & STATUS_INTERRUPT


def test_msix_needs_bus_master(b2b: Fabric, nvme: FabricContext) -> None:
    """A message is a memory write: with Bus Master Enable clear nothing is delivered."""
    _msix_program(nvme, 1, MSI_BASE + MSI_SLOT * 70, 5)
    _msix_control(nvme.config, MSIX_ENABLE)
    nvme.config.write(0x04, 2, CMD_MEMORY)
    nvme.interrupt(1)
    assert _slot(b2b, "lender", 70) == (0, 0)
    nvme.config.write(0x04, 2, CMD_MEMORY | CMD_BUS_MASTER)
    nvme.interrupt(1)
    assert _slot(b2b, "lender", 70) == (5, 1)


def test_msi_used_when_msix_disabled(b2b: Fabric, nvme: FabricContext) -> None:
    """With MSI-X off and MSI on, the interrupt is the MSI address/data message."""
    cfg = nvme.config
    _msix_program(nvme, 0, MSI_BASE + MSI_SLOT * 80, 0x111)  # table programmed, MSI-X off
    off = cfg.find_capability(CAP_MSI)
    assert off is not None
    cfg.write(off + 4, 4, MSI_BASE + MSI_SLOT * 81)
    cfg.write(off + 8, 4, 0)
    cfg.write(off + 12, 2, 0x4240)
    cfg.write(off + 2, 2, MSI_ENABLE)
    nvme.interrupt(0)
    assert _slot(b2b, "lender", 81) == (0x4240, 1)
    assert _slot(b2b, "lender", 80) == (0, 0)
    assert not cfg.read(0x06, 2) & STATUS_INTERRUPT
    _msix_control(cfg, MSIX_ENABLE)  # MSI-X takes precedence once enabled
    nvme.interrupt(0)
    assert _slot(b2b, "lender", 80) == (0x111, 1)
    assert _slot(b2b, "lender", 81) == (0x4240, 1)


def test_msi_on_a_function_without_msix(make_fabric: MakeFabric) -> None:
    """A generic function (no MSI-X) signals through MSI when enabled."""
    fab = make_fabric(loads_topology(IOMMU_HOST.replace("iommu = true", "iommu = false"),
                                     source="inline"))
    ctx = FabricContext(fab, "gen0")
    assert ctx.msix is None and ctx.config.find_capability(CAP_MSIX) is None
    ctx.config.write(0x04, 2, CMD_BUS_MASTER)
    off = ctx.config.find_capability(CAP_MSI)
    assert off is not None
    ctx.config.write(off + 4, 4, MSI_BASE + MSI_SLOT * 5)
    ctx.config.write(off + 12, 2, 0x77)
    ctx.config.write(off + 2, 2, MSI_ENABLE)
    ctx.interrupt(0)
    assert _slot(fab, "h", 5) == (0x77, 1)


@pytest.mark.parametrize(("mme", "vector", "data"), [(0, 0, 0x4240), (0, 5, 0x4240),
                                                     (2, 3, 0x4243), (2, 5, 0x4241)])
def test_msi_data_low_bits_follow_multiple_message_enable(b2b: Fabric, nvme: FabricContext,
                                                          mme: int, vector: int,
                                                          data: int) -> None:
    """MSI carries the vector only in the low log2(MME) data bits."""
    cfg = nvme.config
    off = cfg.find_capability(CAP_MSI)
    assert off is not None
    cfg.write(off + 4, 4, MSI_BASE + MSI_SLOT * 90)
    cfg.write(off + 12, 2, 0x4240)
    cfg.write(off + 2, 2, MSI_ENABLE | (mme << 4))
    nvme.interrupt(vector)
    assert _slot(b2b, "lender", 90) == (data, 1)

def test_intx_when_no_message_interrupts(b2b: Fabric, nvme: FabricContext) -> None:
    """Without MSI/MSI-X the function asserts INTx unless INTx Disable is set."""
    cfg = nvme.config
    cfg.write(0x04, 2, CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE)
    nvme.interrupt(0)
    assert not cfg.read(0x06, 2) & STATUS_INTERRUPT
    cfg.write(0x04, 2, CMD_MEMORY | CMD_BUS_MASTER)
    before = bytes(b2b.msi("lender").view[:4096])
    nvme.interrupt(0)
    assert cfg.read(0x06, 2) & STATUS_INTERRUPT
    assert bytes(b2b.msi("lender").view[:4096]) == before
    cfg.write(0x06, 2, STATUS_INTERRUPT)
    assert cfg.read(0x06, 2) & STATUS_INTERRUPT  # read-only: cleared by the device


def test_msix_through_an_ntb_window_reaches_the_borrower(b2b: Fabric,
                                                         nvme: FabricContext) -> None:
    """A vector addressed into the lender NTB window reaches the borrower's controller."""
    ntb = b2b.adapters["lender:ntb0"]
    slot = 123
    target = MSI_BASE + MSI_SLOT * slot
    base = target - target % ntb.slice_size
    index = 5
    ntb.peer_mw_set_trans(index, "borrower:ntb0", base)
    ntb.rid_add(b2b.function("nvme0").bdf.rid)
    # The borrower's IOMMU checks traffic entering through its NTB: its driver maps the
    # message window for the adapter, as it maps the adapter's DMA windows.
    iommu = b2b.iommus["borrower"]
    d = iommu.domain_alloc()
    iommu.map(d, MSI_BASE, MSI_BASE, 1 * MiB)
    iommu.attach(b2b.function("borrower:ntb0").bdf.rid, d)
    window_addr = ntb.slice_addr(index) + (target - base)
    _msix_program(nvme, 2, window_addr, 0xD00D)
    _msix_control(nvme.config, MSIX_ENABLE)
    nvme.interrupt(2)
    nvme.interrupt(2)
    assert _slot(b2b, "borrower", slot) == (0xD00D, 2)
    assert _slot(b2b, "lender", slot) == (0, 0)
    ntb.peer_mw_clear_trans(index)  # the window closes: the next message is lost
    nvme.interrupt(2)
    assert _slot(b2b, "borrower", slot) == (0xD00D, 2)


def test_msix_through_ntb_needs_requester_entry(b2b: Fabric, nvme: FabricContext) -> None:
    """Without the device in the NTB's requester-ID LUT the message does not cross."""
    ntb = b2b.adapters["lender:ntb0"]
    target = MSI_BASE + MSI_SLOT * 7
    base = target - target % ntb.slice_size
    ntb.peer_mw_set_trans(0, "borrower:ntb0", base)
    iommu = b2b.iommus["borrower"]
    d = iommu.domain_alloc()
    iommu.map(d, MSI_BASE, MSI_BASE, 1 * MiB)
    iommu.attach(b2b.function("borrower:ntb0").bdf.rid, d)
    _msix_program(nvme, 0, ntb.slice_addr(0) + (target - base), 1)
    _msix_control(nvme.config, MSIX_ENABLE)
    nvme.interrupt(0)
    assert _slot(b2b, "borrower", 7) == (0, 0)


# -- function level reset ------------------------------------------------------------------


def test_flr_restores_power_on_config(b2b: Fabric, nvme: FabricContext) -> None:
    """FLR is visible to the model, and completing it restores power-on config space."""
    cfg = nvme.config
    _msix_control(cfg, MSIX_ENABLE)
    cfg.write(0x3C, 1, 0x42)
    pcie = cfg.find_capability(CAP_PCIE)
    assert pcie is not None
    assert not nvme.flr_requested()
    cfg.write(pcie + 8, 2, cfg.read(pcie + 8, 2) | DEVCTL_INITIATE_FLR)
    assert nvme.flr_requested()
    bar0 = cfg.read(0x10, 4)
    nvme.flr_complete()
    assert not nvme.flr_requested()
    assert cfg.command == 0 and cfg.read(0x3C, 1) == 0
    off = cfg.find_capability(CAP_MSIX)
    assert off is not None and not cfg.read(off + 2, 2) & MSIX_ENABLE
    assert cfg.read(0x10, 4) == bar0
    assert not nvme.dma_write(BUF, b"x")  # bus mastering is off again
