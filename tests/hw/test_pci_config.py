"""PCI configuration space as silicon (DESIGN §3.5): the type 0 header per model, the
hardware write masks (RO, RW, W1C), BAR sizing, the capability list and its MSI-X layout,
config access rules, and one set of masks for every handle on the same function."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smartio.errors import IllegalParameter, OutOfRange
from smartio.hw.enumeration import Function
from smartio.hw.fabric import Fabric
from smartio.hw.models import ENDPOINTS, NTB_CLASS_CODE, NTB_DEVICE_ID, NTB_VENDOR_ID
from smartio.hw.pci.caps import (
    CAP_MSI,
    CAP_MSIX,
    CAP_PCIE,
    CAP_PM,
    DEVCAP_FLR,
    MSIX_ENABLE,
    MSIX_FUNCTION_MASK,
)
from smartio.hw.pci.config import (
    CMD_BUS_MASTER,
    CMD_INTX_DISABLE,
    CMD_IO,
    CMD_MEMORY,
    CMD_SERR,
    CONFIG_SIZE,
    STATUS_CAP_LIST,
    STATUS_INTERRUPT,
    STATUS_W1C,
    ConfigSpace,
)
from smartio.hw.topology import TopologySpec, load_preset, loads_topology
from smartio.hw.units import GiB

MakeFabric = Callable[[TopologySpec], Fabric]

# One host with a function of every endpoint model; the GPU's prefetchable BAR1 is larger
# than 4 GiB so that sizing needs the upper dword too.
MODELS = """
name = "models"

[[hosts]]
name = "h"
ram = "1GiB"
slots = 6

[[endpoints]]
name = "nvme0"
model = "nvme"
at = "h/0"
params = { io_queues = 7 }

[[endpoints]]
name = "gpu0"
model = "gpu"
at = "h/1"
params = { memory = "8GiB" }

[[endpoints]]
name = "nic0"
model = "nic"
at = "h/2"

[[endpoints]]
name = "gen0"
model = "generic"
at = "h/3"
params = { bar_size = "64KiB" }
"""

ENDPOINT_NAMES = {"nvme0": "nvme", "gpu0": "gpu", "nic0": "nic", "gen0": "generic"}
# Size of each capability structure as laid out (PM 8, MSI 64-bit 16, PCIe 0x3C, MSI-X 12).
CAP_SIZES = {CAP_PM: 8, CAP_MSI: 16, CAP_PCIE: 0x3C, CAP_MSIX: 12}

# Bytes of the type 0 header that no write may change (PCI 3.0 §6.2).
READ_ONLY = [(0x00, 2), (0x02, 2), (0x08, 1), (0x09, 1), (0x0A, 2), (0x0E, 1), (0x0F, 1),
             (0x2C, 2), (0x2E, 2), (0x30, 4), (0x34, 1), (0x3D, 1), (0x3E, 2)]


@pytest.fixture
def models(make_fabric: MakeFabric) -> Fabric:
    """A fabric whose one host has an NVMe, a GPU, a NIC and a generic function."""
    return make_fabric(loads_topology(MODELS, source="inline"))


@pytest.fixture
def b2b(make_fabric: MakeFabric) -> Fabric:
    """The back-to-back preset (NVMe, GPU and two NTB adapters)."""
    return make_fabric(load_preset("back-to-back"))


def _all_functions(fab: Fabric) -> list[str]:
    return [name for hm in fab.maps.values() for name in hm.functions]


def _fn(fab: Fabric, name: str) -> Function:
    return next(hm.functions[name] for hm in fab.maps.values() if name in hm.functions)


# -- header --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENDPOINT_NAMES))
def test_header_ids_and_class_follow_the_model(models: Fabric, name: str) -> None:
    """Vendor, device, subsystem ids and class code of an endpoint are its model's."""
    cfg = models.config(name)
    model = ENDPOINTS[ENDPOINT_NAMES[name]]
    assert cfg.read(0x00, 2) == model.vendor_id
    assert cfg.read(0x02, 2) == model.device_id
    assert cfg.read(0x08, 4) >> 8 == model.class_code
    assert cfg.read(0x2C, 2) == model.vendor_id
    assert cfg.read(0x2E, 2) == model.device_id
    assert cfg.read(0x0E, 1) == 0x00  # type 0 header, single function
    assert cfg.read(0x3D, 1) == 1  # INTA#
    assert cfg.read(0x06, 2) & STATUS_CAP_LIST
    assert cfg.command == 0  # power-on: no decoding, no bus mastering


def test_header_of_ntb_adapters_and_preset_devices(b2b: Fabric) -> None:
    """NTB adapters carry the PLX bridge ids; the preset's NVMe and GPU their models' ids."""
    for name in ("lender:ntb0", "borrower:ntb0"):
        cfg = b2b.config(name)
        assert (cfg.read(0, 2), cfg.read(2, 2), cfg.read(8, 4) >> 8) == (
            NTB_VENDOR_ID, NTB_DEVICE_ID, NTB_CLASS_CODE)
    assert b2b.config("nvme0").read(0, 4) == 0x2701_8086
    assert b2b.config("nvme0").read(8, 4) >> 8 == 0x010802
    assert b2b.config("gpu0").read(0, 4) == 0x1BB1_10DE
    assert b2b.config("gpu0").read(8, 4) >> 8 == 0x030000


@pytest.mark.parametrize("name", ["nvme0", "gpu0", "nic0", "gen0"])
def test_read_only_header_fields_ignore_writes(models: Fabric, name: str) -> None:
    """Writes of any width to ids, class, header type, ROM, cap pointer and pin change nothing."""
    cfg = models.config(name)
    before = bytes(cfg.view[:0x40])
    for off, width in READ_ONLY:
        for size in (1, 2, 4):
            if size <= width and off % size == 0:
                for o in range(off, off + width, size):
                    cfg.write(o, size, (1 << (8 * size)) - 1)
                    cfg.write(o, size, 0)
    assert bytes(cfg.view[:0x40]) == before


def test_command_register_writable_bits(models: Fabric) -> None:
    """Only I/O, memory, bus master, SERR and INTx disable are writable in the command register."""
    cfg = models.config("nvme0")
    cfg.write(0x04, 2, 0xFFFF)
    rw = CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | CMD_SERR | CMD_INTX_DISABLE
    assert cfg.read(0x04, 2) == rw
    assert cfg.bus_master and cfg.memory_enabled
    cfg.write(0x04, 1, 0)  # the low byte only
    assert cfg.read(0x04, 2) == CMD_SERR | CMD_INTX_DISABLE
    assert not cfg.bus_master and not cfg.memory_enabled
    cfg.write(0x04, 2, CMD_BUS_MASTER)
    assert cfg.command == CMD_BUS_MASTER


def test_status_bits_are_write_one_to_clear(models: Fabric) -> None:
    """Status error bits clear on writing 1; cap-list and interrupt bits are read-only."""
    cfg = models.config("gpu0")
    cfg.set_raw(0x06, 2, STATUS_W1C | STATUS_CAP_LIST | STATUS_INTERRUPT)  # as hardware sets them
    cfg.write(0x06, 2, 0)
    assert cfg.read(0x06, 2) == STATUS_W1C | STATUS_CAP_LIST | STATUS_INTERRUPT
    cfg.write(0x06, 2, 0x8000 | 0x0100)  # detected parity error, master data parity error
    assert cfg.read(0x06, 2) == (STATUS_W1C & ~0x8100) | STATUS_CAP_LIST | STATUS_INTERRUPT
    cfg.write(0x06, 2, 0xFFFF)
    assert cfg.read(0x06, 2) == STATUS_CAP_LIST | STATUS_INTERRUPT


def test_dword_write_of_command_and_status(models: Fabric) -> None:
    """A 4-byte write at 0x04 sets command bits and clears the status bits written as 1."""
    cfg = models.config("nic0")
    cfg.set_raw(0x06, 2, STATUS_CAP_LIST | 0x2000)  # received master abort
    cfg.write(0x04, 4, (0x2000 << 16) | CMD_MEMORY)
    assert cfg.read(0x04, 2) == CMD_MEMORY
    assert cfg.read(0x06, 2) == STATUS_CAP_LIST


def test_writable_scratch_header_bytes(models: Fabric) -> None:
    """Cache line size and interrupt line are plain read-write bytes."""
    cfg = models.config("gen0")
    cfg.write(0x0C, 1, 0x10)
    cfg.write(0x3C, 1, 0x2B)
    assert (cfg.read(0x0C, 1), cfg.read(0x3C, 1)) == (0x10, 0x2B)


# -- BARs ----------------------------------------------------------------------------------


def _size_bar(cfg: ConfigSpace, index: int, is64: bool) -> tuple[int, int]:
    """(flags, size) by the all-ones sizing dance; restores the BAR afterwards."""
    off = 0x10 + 4 * index
    saved = [cfg.read(off, 4)] + ([cfg.read(off + 4, 4)] if is64 else [])
    cfg.write(off, 4, 0xFFFFFFFF)
    lo = cfg.read(off, 4)
    mask = lo & ~0xF
    if is64:
        cfg.write(off + 4, 4, 0xFFFFFFFF)
        mask |= cfg.read(off + 4, 4) << 32
        size = (~mask + 1) & ((1 << 64) - 1)
    else:
        size = (~mask + 1) & 0xFFFFFFFF
    cfg.write(off, 4, saved[0])
    if is64:
        cfg.write(off + 4, 4, saved[1])
    return lo & 0xF, size


@pytest.mark.parametrize("fixture", ["models", "b2b"])
def test_bar_sizing_reads_back_size_type_and_prefetch(fixture: str,
                                                      request: pytest.FixtureRequest) -> None:
    """All-ones BAR writes read back size, type and prefetch bits; restoring keeps the address."""
    fab: Fabric = request.getfixturevalue(fixture)
    checked = 0
    for hmap in fab.maps.values():
        for fn in hmap.functions.values():
            cfg = fab.config(fn.name)
            for b in fn.bars:
                flags, size = _size_bar(cfg, b.index, b.is64)
                assert size == b.size, (fn.name, b.index)
                assert flags & 1 == 0  # memory space
                assert (flags >> 1) & 3 == (2 if b.is64 else 0), (fn.name, b.index)
                assert bool(flags & 8) == b.prefetchable, (fn.name, b.index)
                off = 0x10 + 4 * b.index
                addr = cfg.read(off, 4) & ~0xF
                if b.is64:
                    addr |= cfg.read(off + 4, 4) << 32
                assert addr == b.base
                checked += 1
    assert checked >= 5


def test_bar_above_4gib_needs_the_upper_dword(models: Fabric) -> None:
    """An 8 GiB BAR sizes with zero writable low address bits and a masked upper dword."""
    cfg = models.config("gpu0")
    cfg.write(0x14, 4, 0xFFFFFFFF)
    cfg.write(0x18, 4, 0xFFFFFFFF)
    assert cfg.read(0x14, 4) == 0b1100  # 64-bit, prefetchable, no writable address bits
    assert cfg.read(0x18, 4) == 0xFFFFFFFE  # 8 GiB: bit 33 and up
    _, size = _size_bar(cfg, 1, True)
    assert size == 8 * GiB


def test_bar_writes_keep_alignment_and_type_bits(models: Fabric) -> None:
    """A BAR takes only address bits above its size; the type bits never change."""
    cfg = models.config("nvme0")  # BAR0: 16 KiB, 64-bit, non-prefetchable
    cfg.write(0x10, 4, 0x1234_5678)
    assert cfg.read(0x10, 4) == (0x1234_5678 & ~0x3FFF) | 0b100
    cfg.write(0x10, 4, 0)
    assert cfg.read(0x10, 4) == 0b100


def test_unimplemented_bars_read_zero_after_all_ones(models: Fabric) -> None:
    """BAR registers a function does not implement stay zero when written with all ones."""
    cases = {"nvme0": [2, 3, 4, 5], "gpu0": [5], "gen0": [2, 3, 4, 5], "nic0": [2, 5]}
    for name, indices in cases.items():
        cfg = models.config(name)
        for i in indices:
            cfg.write(0x10 + 4 * i, 4, 0xFFFFFFFF)
            assert cfg.read(0x10 + 4 * i, 4) == 0, (name, i)


# -- capabilities --------------------------------------------------------------------------


def _walk(cfg: ConfigSpace) -> list[tuple[int, int, int]]:
    """(id, offset, next) of each capability, walked from the raw bytes."""
    out: list[tuple[int, int, int]] = []
    ptr = cfg.read(0x34, 1)
    while ptr:
        assert len(out) < 48, "capability list does not terminate"
        out.append((cfg.read(ptr, 1), ptr, cfg.read(ptr + 1, 1)))
        ptr = cfg.read(ptr + 1, 1)
    return out


@pytest.mark.parametrize("fixture", ["models", "b2b"])
def test_capability_chain(fixture: str, request: pytest.FixtureRequest) -> None:
    """PM, MSI, PCIe (+MSI-X) chain from 0x40, aligned, disjoint, ending in a zero pointer."""
    fab: Fabric = request.getfixturevalue(fixture)
    for name in _all_functions(fab):
        cfg = fab.config(name)
        chain = _walk(cfg)
        fn = _fn(fab, name)
        expected = [CAP_PM, CAP_MSI, CAP_PCIE]
        if fn.kind == "endpoint" and fn.model in ("nvme", "gpu", "nic"):
            expected.append(CAP_MSIX)
        assert [c[0] for c in chain] == expected, name
        assert chain[0][1] == 0x40
        assert chain[-1][2] == 0
        for (cid, off, nxt), following in zip(chain, [*chain[1:], (0, 0x100, 0)], strict=True):
            assert off % 4 == 0 and 0x40 <= off < 0x100, (name, hex(off))
            assert off + CAP_SIZES[cid] <= following[1], (name, hex(off))
            if nxt:
                assert nxt == following[1]
        assert cfg.capabilities() == [(c[0], c[1]) for c in chain]
        assert cfg.find_capability(CAP_PCIE) == chain[2][1]


def test_capability_list_is_read_only(models: Fabric) -> None:
    """Capability ids, next pointers and the capability pointer ignore writes."""
    cfg = models.config("nvme0")
    chain = _walk(cfg)
    for _, off, _ in chain:
        cfg.write(off, 2, 0xFFFF)
    cfg.write(0x34, 1, 0x80)
    assert _walk(cfg) == chain


def test_pcie_capability_advertises_flr_and_link(b2b: Fabric) -> None:
    """The PCIe capability says FLR capable; link capability and status carry gen and width."""
    cfg = b2b.config("nvme0")
    off = cfg.find_capability(CAP_PCIE)
    assert off is not None
    assert cfg.read(off + 4, 4) & DEVCAP_FLR
    ep = next(e for e in b2b.topo.endpoints if e.name == "nvme0")
    lnkcap, lnksta = cfg.read(off + 12, 4), cfg.read(off + 18, 2)
    assert (lnkcap & 0xF, (lnkcap >> 4) & 0x3F) == (ep.gen, ep.width)
    assert (lnksta & 0xF, (lnksta >> 4) & 0x3F) == (ep.gen, ep.width)
    cfg.write(off + 4, 4, 0)  # device capabilities are read-only
    assert cfg.read(off + 4, 4) & DEVCAP_FLR


def test_msi_capability_fields(models: Fabric) -> None:
    """MSI is 64-bit with one vector; enable, address (dword aligned) and data are writable."""
    cfg = models.config("gen0")
    off = cfg.find_capability(CAP_MSI)
    assert off is not None
    ctrl = cfg.read(off + 2, 2)
    assert ctrl & (1 << 7) and (ctrl >> 1) & 7 == 0  # 64-bit capable; one vector requested
    cfg.write(off + 2, 2, 0xFFFF)
    assert cfg.read(off + 2, 2) == (1 << 7) | 0x70 | 1
    cfg.write(off + 4, 4, 0xFEE0_1237)
    assert cfg.read(off + 4, 4) == 0xFEE0_1234
    cfg.write(off + 8, 4, 0x1)
    cfg.write(off + 12, 2, 0xBEEF)
    assert (cfg.read(off + 8, 4), cfg.read(off + 12, 2)) == (1, 0xBEEF)


@pytest.mark.parametrize(("fixture", "name", "vectors", "bir", "table", "pba"), [
    ("models", "nvme0", 8, 0, 0x2000, 0x3000),
    ("b2b", "nvme0", 32, 0, 0x2000, 0x3000),
    ("b2b", "gpu0", 4, 0, 0xFE0000, 0xFF0000),
    ("models", "nic0", 8, 3, 0x0000, 0x4000),
])
def test_msix_table_size_bir_and_offsets(fixture: str, name: str, vectors: int, bir: int,
                                         table: int, pba: int,
                                         request: pytest.FixtureRequest) -> None:
    """MSI-X table size (io_queues+1 for NVMe), BIR and offsets; table and PBA fit the BAR."""
    fab: Fabric = request.getfixturevalue(fixture)
    cfg = fab.config(name)
    off = cfg.find_capability(CAP_MSIX)
    assert off is not None
    assert (cfg.read(off + 2, 2) & 0x7FF) + 1 == vectors
    t, p = cfg.read(off + 4, 4), cfg.read(off + 8, 4)
    assert (t & 7, t & ~7, p & 7, p & ~7) == (bir, table, bir, pba)
    size = _fn(fab, name).bar(bir).size
    assert table + 16 * vectors <= size and pba + (vectors + 63) // 64 * 8 <= size
    assert table + 16 * vectors <= pba or pba + (vectors + 63) // 64 * 8 <= table


def test_msix_control_writable_bits(models: Fabric) -> None:
    """Only MSI-X Enable and Function Mask are writable; table size and BIR are read-only."""
    cfg = models.config("nvme0")
    off = cfg.find_capability(CAP_MSIX)
    assert off is not None
    before = (cfg.read(off + 4, 4), cfg.read(off + 8, 4))
    cfg.write(off + 2, 2, 0xFFFF)
    assert cfg.read(off + 2, 2) == MSIX_ENABLE | MSIX_FUNCTION_MASK | 7
    cfg.write(off + 2, 2, 0)
    assert cfg.read(off + 2, 2) == 7
    cfg.write(off + 4, 4, 0xFFFFFFFF)
    cfg.write(off + 8, 4, 0)
    assert (cfg.read(off + 4, 4), cfg.read(off + 8, 4)) == before


def test_extended_space_is_empty(models: Fabric) -> None:
    """Nothing is implemented above 0x100: reads are zero and writes are ignored."""
    cfg = models.config("nvme0")
    cfg.write(0x100, 4, 0xFFFFFFFF)
    cfg.write(CONFIG_SIZE - 4, 4, 0xFFFFFFFF)
    assert bytes(cfg.view[0x100:CONFIG_SIZE]) == bytes(CONFIG_SIZE - 0x100)


# -- access rules --------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "size"), [(0x01, 2), (0x02, 4), (0x03, 4), (0x05, 2)])
def test_unaligned_access_is_out_of_range(models: Fabric, offset: int, size: int) -> None:
    """Reads and writes must be naturally aligned, like a config TLP."""
    cfg = models.config("nvme0")
    with pytest.raises(OutOfRange):
        cfg.read(offset, size)
    with pytest.raises(OutOfRange):
        cfg.write(offset, size, 0)


@pytest.mark.parametrize(("offset", "size"), [(-1, 1), (-4, 4), (CONFIG_SIZE, 1),
                                              (CONFIG_SIZE - 2, 4), (CONFIG_SIZE, 4)])
def test_access_outside_4k_is_out_of_range(models: Fabric, offset: int, size: int) -> None:
    """Accesses before 0 or past 4 KiB are refused."""
    cfg = models.config("gen0")
    with pytest.raises(OutOfRange):
        cfg.read(offset, size)
    with pytest.raises(OutOfRange):
        cfg.write(offset, size, 0)


@pytest.mark.parametrize("size", [0, 3, 8, -1])
def test_access_size_must_be_1_2_or_4(models: Fabric, size: int) -> None:
    """Only 1, 2 and 4 byte accesses exist."""
    cfg = models.config("gen0")
    with pytest.raises(IllegalParameter):
        cfg.read(0, size)
    with pytest.raises(IllegalParameter):
        cfg.write(0, size, 0)


def test_last_dword_is_accessible(models: Fabric) -> None:
    """The last aligned bytes of the 4 KiB space can be read (they are zero)."""
    cfg = models.config("gen0")
    assert cfg.read(CONFIG_SIZE - 4, 4) == 0
    assert cfg.read(CONFIG_SIZE - 1, 1) == 0


def test_config_space_needs_4k(models: Fabric) -> None:
    """A ConfigSpace over fewer than 4096 bytes is refused."""
    with pytest.raises(IllegalParameter):
        ConfigSpace(memoryview(bytearray(256)), models.config("gen0").masks)


# -- sharing -------------------------------------------------------------------------------


def test_two_handles_share_bytes_and_masks(b2b: Fabric) -> None:
    """Two Fabric handles on one function compute the same masks and see each other's writes."""
    other = Fabric.attach(b2b.topo, b2b.cluster)
    try:
        for name in _all_functions(b2b):
            a, b = b2b.config(name), other.config(name)
            assert a.masks.write == b.masks.write, name
            assert a.masks.w1c == b.masks.w1c, name
            assert any(a.masks.write) and any(a.masks.w1c), name
            assert bytes(a.view[:CONFIG_SIZE]) == bytes(b.view[:CONFIG_SIZE]), name
        a, b = b2b.config("nvme0"), other.config("nvme0")
        a.write(0x04, 2, CMD_MEMORY | CMD_BUS_MASTER)
        assert b.bus_master and b.read(0x04, 2) == CMD_MEMORY | CMD_BUS_MASTER
        b.write(0x3C, 1, 0x55)
        assert a.read(0x3C, 1) == 0x55
        b.write(0x00, 2, 0)  # read-only through either handle
        assert a.read(0x00, 2) == 0x8086
    finally:
        other.close()


def test_config_handle_is_cached_per_fabric(b2b: Fabric) -> None:
    """Fabric.config returns the same accessor for the same function."""
    assert b2b.config("gpu0") is b2b.config("gpu0")
    assert b2b.config("gpu0") is not b2b.config("nvme0")
