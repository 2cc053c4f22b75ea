"""smartio.lending on real clusters (DESIGN §4.3): the per-host device tree, opening
functions, BAR mappings, DMA buffers (with per-device IOMMU domains where the IOMMU is on),
peer-to-peer mapping, MSI-X vectors, function level reset and release of what a program
held."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smartio.cluster import messages as m
from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir
from smartio.errors import (
    IllegalOperation,
    IllegalParameter,
    NoSpace,
    NotFound,
    SmartIOError,
    Timeout,
)
from smartio.hw.devices.context import FabricContext
from smartio.hw.enumeration import MSI_BASE
from smartio.hw.pci.caps import (
    CAP_MSI,
    CAP_MSIX,
    CAP_PCIE,
    CAP_PM,
    DEVCTL_INITIATE_FLR,
    MSIX_ENABLE,
    MSIX_FUNCTION_MASK,
)
from smartio.hw.pci.config import CMD_BUS_MASTER, CMD_MEMORY
from smartio.hw.translate import MSI_SLOT
from smartio.hw.units import PAGE_SIZE
from smartio.lending import DeviceTree

ModuleCluster = Callable[[str], RunDir]

# One host with its IOMMU on and two devices: an NVMe (with an engine, MSI-X) and a plain
# function with one BAR (a peer-to-peer target).
IOMMU_HOST = """
name = "iommu-host"

[[hosts]]
name = "h"
ram = "1GiB"
iommu = true
cpus = 1

[[endpoints]]
name = "nvme0"
model = "nvme"
at = "h/0"
params = { capacity = "64MiB" }

[[endpoints]]
name = "gen0"
model = "generic"
at = "h/1"
params = { bar_size = "1MiB" }
"""

CHILD = """
import sys, time
from smartio.lending import DeviceTree
tree = DeviceTree("lender", sys.argv[1], name="lending-child")
dev = tree.open("nvme0")
bufs = [dev.dma_alloc(256 * 1024) for _ in range(2)]
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture(scope="module")
def b2b(module_cluster: ModuleCluster) -> str:
    """The back-to-back cluster (lender: IOMMU off, nvme0, gpu0; borrower: IOMMU on)."""
    return module_cluster("back-to-back").cluster


@pytest.fixture(scope="module")
def iommu_cluster(module_cluster: ModuleCluster,
                  tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-host cluster whose host has its IOMMU on, with nvme0 and gen0."""
    path = tmp_path_factory.mktemp("lending") / "iommu-host.toml"
    path.write_text(IOMMU_HOST)
    return module_cluster(str(path)).cluster


@pytest.fixture
def lender(b2b: str) -> Iterator[DeviceTree]:
    """The lender's device tree for this test."""
    with DeviceTree("lender", b2b, name="lending-test") as tree:
        yield tree


@pytest.fixture
def iohost(iommu_cluster: str) -> Iterator[DeviceTree]:
    """The IOMMU host's device tree for this test."""
    with DeviceTree("h", iommu_cluster, name="lending-iommu-test") as tree:
        yield tree


def _pool_used(cluster: str, host: str) -> int:
    st = cluster_status(cluster)
    return next(h["pool_used"] for h in st["hosts"] if h["host"] == host)


@contextlib.contextmanager
def _remote_not_found() -> Iterator[None]:
    """A daemon's NotFound, which reaches the client by its SISCI code."""
    with pytest.raises(SmartIOError) as ei:
        yield
    assert ei.value.code == NotFound.code


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# -- listing and opening ---------------------------------------------------------------------


def test_functions_lists_lender_devices(lender: DeviceTree) -> None:
    """functions() lists the lender's NTB, nvme0 and gpu0 with ids, BARs and capabilities."""
    fns = {f.name: f for f in lender.functions()}
    assert set(fns) == {"lender:ntb0", "nvme0", "gpu0"}
    assert [f.bdf for f in lender.functions()] == sorted(f.bdf for f in fns.values())
    nvme, gpu, ntb = fns["nvme0"], fns["gpu0"], fns["lender:ntb0"]
    assert (nvme.bdf, nvme.kind, nvme.model) == ("02:00.0", "endpoint", "nvme")
    assert (nvme.vendor_id, nvme.device_id, nvme.class_code) == (0x8086, 0x2701, 0x010802)
    assert (gpu.vendor_id, gpu.device_id, gpu.class_code) == (0x10DE, 0x1BB1, 0x030000)
    assert (ntb.kind, ntb.vendor_id, ntb.class_code) == ("ntb", 0x10B5, 0x068000)
    assert all(f.local for f in fns.values())
    assert [(b.index, b.size, b.is64, b.prefetchable) for b in nvme.bars] == [
        (0, 16 * 1024, True, False)]
    assert [(b.index, b.prefetchable) for b in gpu.bars] == [(0, False), (1, True), (3, True)]
    for f in fns.values():
        fn = lender.fabric.maps["lender"].functions[f.name]
        assert [b.addr for b in f.bars] == [b.base for b in fn.bars]
    assert [c for c, _ in nvme.capabilities] == [CAP_PM, CAP_MSI, CAP_PCIE, CAP_MSIX]
    assert [c for c, _ in ntb.capabilities] == [CAP_PM, CAP_MSI, CAP_PCIE]
    assert nvme.capabilities[0][1] == 0x40


def test_borrower_tree_has_no_endpoints(b2b: str) -> None:
    """The borrower lists only its NTB adapter; opening a device names none available."""
    with DeviceTree("borrower", b2b) as tree:
        assert [(f.name, f.kind) for f in tree.functions()] == [("borrower:ntb0", "ntb")]
        with pytest.raises(NotFound, match="none"):
            tree.open("nvme0")


def test_open_by_name_and_by_bdf(lender: DeviceTree) -> None:
    """A function opens by name or by BDF, and both give the same function."""
    by_name = lender.open("nvme0")
    by_bdf = lender.open("02:00.0")
    assert (by_name.name, by_name.bdf) == ("nvme0", "02:00.0")
    assert (by_bdf.name, by_bdf.bdf) == ("nvme0", "02:00.0")
    assert (by_bdf.vendor_id, by_bdf.device_id, by_bdf.class_code) == (0x8086, 0x2701, 0x010802)
    assert lender.open("03:00.0").name == "gpu0"
    by_name.config_write(0x3C, 1, 0x5A)
    assert by_bdf.config_read(0x3C, 1) == 0x5A


@pytest.mark.parametrize("ref", ["nvme9", "09:00.0", "lender:ntb0", "01:00.0", "junk!"])
def test_open_unknown_lists_the_devices(lender: DeviceTree, ref: str) -> None:
    """Opening what is not a device of this host raises NotFound listing the devices."""
    with pytest.raises(NotFound) as ei:
        lender.open(ref)
    assert "02:00.0 nvme0" in str(ei.value) and "gpu0" in str(ei.value)


# -- BARs ------------------------------------------------------------------------------------


def test_map_bar_is_the_bars_shared_memory(lender: DeviceTree, b2b: str) -> None:
    """A write through one tree's BAR mapping is read through another tree's mapping."""
    gpu = lender.open("gpu0")
    view = gpu.map_bar(1)
    assert len(view) == 256 * 1024 * 1024
    assert gpu.map_bar(1) is view  # mapped once per device
    view[0x10_0000: 0x10_0010] = b"lending-bar-test"
    with DeviceTree("lender", b2b, name="second") as other:
        v2 = other.open("gpu0").map_bar(1)
        assert bytes(v2[0x10_0000: 0x10_0010]) == b"lending-bar-test"
        v2[0x10_0010: 0x10_0014] = b"back"
        del v2
    assert bytes(view[0x10_0010: 0x10_0014]) == b"back"
    assert bytes(lender.fabric.bar("gpu0", 1).view[0x10_0000: 0x10_0010]) == b"lending-bar-test"
    del view
    with pytest.raises(IllegalParameter):
        gpu.map_bar(2)


def test_enable_sets_memory_and_bus_master(lender: DeviceTree) -> None:
    """enable() sets and clears Memory Space and Bus Master Enable in the command register."""
    dev = lender.open("gpu0")
    dev.enable()
    assert dev.config_read(4, 2) & (CMD_MEMORY | CMD_BUS_MASTER) == CMD_MEMORY | CMD_BUS_MASTER
    dev.enable(bus_master=False)
    assert dev.config_read(4, 2) & (CMD_MEMORY | CMD_BUS_MASTER) == CMD_MEMORY
    dev.enable(memory=False, bus_master=False)
    assert dev.config_read(4, 2) & (CMD_MEMORY | CMD_BUS_MASTER) == 0


# -- DMA -------------------------------------------------------------------------------------


def test_dma_buffer_receives_device_dma(lender: DeviceTree) -> None:
    """Device DMA to a buffer's ioaddr shows in its CPU view (not before bus mastering)."""
    dev = lender.open("nvme0")
    buf = dev.dma_alloc(6000)
    assert buf.size == 2 * PAGE_SIZE and buf.ioaddr == buf.phys  # no IOMMU on the lender
    assert bytes(buf.view) == bytes(buf.size)
    ctx = FabricContext(lender.fabric, "nvme0")
    dev.enable(bus_master=False)
    assert not ctx.dma_write(buf.ioaddr, b"early")
    assert bytes(buf.view[:5]) == bytes(5)
    dev.enable()
    assert ctx.dma_write(buf.ioaddr + PAGE_SIZE - 3, b"across-pages")
    assert bytes(buf.view[PAGE_SIZE - 3: PAGE_SIZE + 9]) == b"across-pages"
    buf.view[100:104] = b"cpu!"
    assert ctx.dma_read(buf.ioaddr + 100, 4) == b"cpu!"
    assert buf.array[100] == ord("c")
    small = dev.dma_alloc(1)
    assert small.size == PAGE_SIZE
    assert small.ioaddr + small.size <= buf.ioaddr or buf.ioaddr + buf.size <= small.ioaddr


def test_dma_free_returns_pool_memory(lender: DeviceTree, b2b: str) -> None:
    """DmaFree returns a buffer's pages to the host's pool; a second free is refused."""
    base = _pool_used(b2b, "lender")
    dev = lender.open("nvme0")
    a, b = dev.dma_alloc(64 * 1024), dev.dma_alloc(PAGE_SIZE)
    assert _pool_used(b2b, "lender") == base + 64 * 1024 + PAGE_SIZE
    a.free()
    assert _pool_used(b2b, "lender") == base + PAGE_SIZE
    with pytest.raises(IllegalOperation):
        a.free()
    b.free()
    assert _pool_used(b2b, "lender") == base


def test_dma_alloc_for_an_unknown_or_oversized_device_buffer(lender: DeviceTree) -> None:
    """The daemon refuses a buffer larger than its pool."""
    dev = lender.open("gpu0")
    with pytest.raises(IllegalParameter):
        dev.dma_alloc(1 << 40)


def test_program_exit_releases_its_buffers(b2b: str) -> None:
    """When a program dies without closing, its host daemon frees its DMA buffers."""
    base = _pool_used(b2b, "lender")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, b2b], stdout=subprocess.PIPE,
                            text=True, env={**os.environ})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert _pool_used(b2b, "lender") == base + 512 * 1024
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _wait_for(lambda: _pool_used(b2b, "lender") == base)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_peer_map_without_iommu_is_the_bar_address(lender: DeviceTree) -> None:
    """Without IOMMU a peer mapping is the BAR address and device DMA lands there."""
    nvme, gpu = lender.open("nvme0"), lender.open("gpu0")
    ioaddr = nvme.peer_map(gpu, 1)
    assert ioaddr == gpu.bars()[1].addr
    nvme.enable()
    ctx = FabricContext(lender.fabric, "nvme0")
    assert ctx.dma_write(ioaddr + 0x20_0000, b"peer")
    assert bytes(lender.fabric.bar("gpu0", 1).view[0x20_0000: 0x20_0004]) == b"peer"
    with pytest.raises(IllegalParameter):
        nvme.peer_map(gpu, 2)


# -- interrupts ------------------------------------------------------------------------------


def test_msix_vectors_wait_for_interrupts(lender: DeviceTree) -> None:
    """msix_enable programs the table; each Vector.wait counts its own vector or times out."""
    dev = lender.open("nvme0")
    dev.enable()
    vecs = dev.msix_enable(3)
    assert [v.index for v in vecs] == [0, 1, 2]
    assert len({v.slot for v in vecs}) == 3
    cap = dev.config.find_capability(CAP_MSIX)
    assert cap is not None
    ctrl = dev.config_read(cap + 2, 2)
    assert ctrl & MSIX_ENABLE and not ctrl & MSIX_FUNCTION_MASK
    bar = lender.fabric.bar("nvme0", 0).view
    for v in vecs:
        lo, hi, data, vctl = (int.from_bytes(bar[0x2000 + 16 * v.index + 4 * i:
                                                 0x2000 + 16 * v.index + 4 * i + 4], "little")
                              for i in range(4))
        assert ((hi << 32) | lo, data, vctl) == (MSI_BASE + MSI_SLOT * v.slot, v.slot, 0)
    ctx = FabricContext(lender.fabric, "nvme0")
    ctx.interrupt(1)
    assert vecs[1].wait(5) == 1
    with pytest.raises(Timeout):
        vecs[1].wait(0.05)
    with pytest.raises(Timeout):
        vecs[0].wait(0.05)
    ctx.interrupt(2)
    ctx.interrupt(2)
    assert _wait_for(lambda: vecs[2].pending() == 2)
    assert vecs[2].wait(1) == 2
    assert vecs[0].pending() == 0


def test_msix_enable_checks_the_count(lender: DeviceTree) -> None:
    """Zero vectors or more than the table holds are refused; so is enabling twice."""
    dev = lender.open("gpu0")  # 4 MSI-X vectors
    with pytest.raises(IllegalParameter):
        dev.msix_enable(0)
    with pytest.raises(IllegalParameter):
        dev.msix_enable(5)
    assert len(dev.msix_enable(4)) == 4
    with pytest.raises(IllegalParameter):
        dev.msix_enable(1)
    dev.msix_disable()
    cap = dev.config.find_capability(CAP_MSIX)
    assert cap is not None and not dev.config_read(cap + 2, 2) & MSIX_ENABLE
    assert len(dev.msix_enable(2)) == 2


def test_close_frees_buffers_and_vectors(lender: DeviceTree, b2b: str) -> None:
    """close() frees the device's buffers and vectors and disables MSI-X."""
    base = _pool_used(b2b, "lender")
    dev = lender.open("gpu0")
    dev.msix_enable(2)
    dev.dma_alloc(3 * PAGE_SIZE)
    dev.dma_alloc(PAGE_SIZE)
    assert _pool_used(b2b, "lender") == base + 4 * PAGE_SIZE
    dev.close()
    dev.close()  # idempotent
    assert _pool_used(b2b, "lender") == base
    cap = dev.config.find_capability(CAP_MSIX)
    assert cap is not None and not dev.config_read(cap + 2, 2) & MSIX_ENABLE
    again = lender.open("gpu0")
    assert len(again.msix_enable(2)) == 2  # the daemon no longer holds the old vectors


def test_reset_performs_flr(lender: DeviceTree) -> None:
    """reset() runs an FLR that the device engine completes, restoring config space."""
    dev = lender.open("nvme0")
    dev.enable()
    dev.config_write(0x3C, 1, 0x33)
    dev.reset(timeout=10)
    assert dev.config_read(4, 2) & (CMD_MEMORY | CMD_BUS_MASTER) == 0
    assert dev.config_read(0x3C, 1) == 0
    cap = dev.config.find_capability(CAP_PCIE)
    assert cap is not None and not dev.config_read(cap + 8, 2) & DEVCTL_INITIATE_FLR
    assert dev.config_read(0x10, 4) & ~0xF == dev.bars()[0].addr & 0xFFFFFFFF


# -- a host with its IOMMU on -----------------------------------------------------------------


def test_iommu_host_dma_only_to_the_devices_buffers(iohost: DeviceTree,
                                                    iommu_cluster: str) -> None:
    """With the IOMMU on, DMA lands only in the device's buffers; elsewhere it faults."""
    dev = iohost.open("nvme0")
    dev.enable()
    buf = dev.dma_alloc(PAGE_SIZE)
    fab = iohost.fabric
    ctx = FabricContext(fab, "nvme0")
    iommu = fab.iommus["h"]
    assert iommu.enabled
    assert ctx.dma_write(buf.ioaddr + 8, b"in-domain")
    assert bytes(buf.view[8:17]) == b"in-domain"
    stray = 0x10_0000
    fab.ram("h").view[stray: stray + 16] = b"\xa5" * 16
    n = iommu.fault_count
    assert not ctx.dma_write(stray, b"stray write")
    assert iommu.fault_count == n + 1
    fault = iommu.faults()[-1]
    assert (fault.rid, fault.addr, fault.write) == (fab.function("nvme0").bdf.rid, stray, True)
    assert bytes(fab.ram("h").view[stray: stray + 16]) == b"\xa5" * 16
    ioaddr = buf.ioaddr
    buf.free()
    assert not ctx.dma_write(ioaddr, b"after free")
    assert iommu.fault_count == n + 2


def test_iommu_domains_are_per_device(iohost: DeviceTree) -> None:
    """Another function cannot reach a device's buffer: each function has its own domain."""
    nvme, gen = iohost.open("nvme0"), iohost.open("gen0")
    gen.enable()
    buf = nvme.dma_alloc(PAGE_SIZE)
    ctx = FabricContext(iohost.fabric, "gen0")
    assert not ctx.dma_write(buf.ioaddr, b"not mine")
    assert bytes(buf.view[:8]) == bytes(8)
    own = gen.dma_alloc(PAGE_SIZE)
    assert ctx.dma_write(own.ioaddr, b"mine")
    assert bytes(own.view[:4]) == b"mine"


def test_iommu_host_peer_map_opens_the_other_bar(iohost: DeviceTree) -> None:
    """Behind the IOMMU, DMA to another function's BAR faults until peer_map, then lands."""
    nvme, gen = iohost.open("nvme0"), iohost.open("gen0")
    nvme.enable()
    nvme.dma_alloc(PAGE_SIZE)  # the device has a domain
    ctx = FabricContext(iohost.fabric, "nvme0")
    target = gen.bars()[0].addr + 0x1000
    iommu = iohost.fabric.iommus["h"]
    n = iommu.fault_count
    assert not ctx.dma_write(target, b"p2p")
    assert iommu.fault_count == n + 1
    ioaddr = nvme.peer_map(gen, 0)
    assert ioaddr == gen.bars()[0].addr
    assert ctx.dma_write(ioaddr + 0x1000, b"p2p")
    assert bytes(gen.map_bar(0)[0x1000:0x1003]) == b"p2p"
    assert ctx.dma_read(ioaddr + 0x1000, 3) == b"p2p"


def test_iommu_host_msix_interrupt_arrives(iohost: DeviceTree) -> None:
    """On a host with the IOMMU on, a device's MSI-X message reaches its vector."""
    dev = iohost.open("nvme0")
    dev.enable()
    (vec,) = dev.msix_enable(1)
    ctx = FabricContext(iohost.fabric, "nvme0")
    faults = iohost.fabric.iommus["h"].fault_count
    ctx.interrupt(0)
    assert vec.wait(2) == 1
    assert iohost.fabric.iommus["h"].fault_count == faults
    with pytest.raises(Timeout):
        vec.wait(0.05)


def test_msix_enable_needs_the_capability(iohost: DeviceTree) -> None:
    """A function without MSI-X refuses msix_enable."""
    with pytest.raises(IllegalOperation):
        iohost.open("gen0").msix_enable(1)


def test_close_tree_releases_iommu_host_buffers(iommu_cluster: str) -> None:
    """Closing the tree frees every buffer its devices held on the IOMMU host."""
    base = _pool_used(iommu_cluster, "h")
    tree = DeviceTree("h", iommu_cluster)
    tree.open("nvme0").dma_alloc(8 * PAGE_SIZE)
    tree.open("gen0").dma_alloc(PAGE_SIZE)
    assert _pool_used(iommu_cluster, "h") == base + 9 * PAGE_SIZE
    tree.close()
    assert _pool_used(iommu_cluster, "h") == base


def test_topology_file_is_used(iommu_cluster: str) -> None:
    """The IOMMU cluster runs the inline topology (sanity check for the tests above)."""
    st = cluster_status(iommu_cluster)
    assert st["topology"] == "iommu-host"
    assert [h["host"] for h in st["hosts"]] == ["h"]
    assert Path(st["run_dir"]).exists()


def test_peer_map_is_released_with_its_program(iohost: DeviceTree, iommu_cluster: str) -> None:
    """A peer mapping lasts as long as some program holding it is open."""
    iohost.open("nvme0").enable()
    ctx = FabricContext(iohost.fabric, "nvme0")
    target = iohost.fabric.maps["h"].functions["gen0"].bar(0).base + 0x2000
    with DeviceTree("h", iommu_cluster, name="p2p-owner") as tree:
        nvme, gen = tree.open("nvme0"), tree.open("gen0")
        nvme.peer_map(gen, 0)
        assert ctx.dma_write(target, b"while held")
    assert not ctx.dma_write(target, b"after close")
    with DeviceTree("h", iommu_cluster, name="p2p-a") as a:
        a.open("nvme0").peer_map(a.open("gen0"), 0)
        with DeviceTree("h", iommu_cluster, name="p2p-b") as b:
            b.open("nvme0").peer_map(b.open("gen0"), 0)
        assert ctx.dma_write(target, b"a still holds it")
    assert not ctx.dma_write(target, b"nobody holds it")


def test_reset_without_an_engine_times_out(iohost: DeviceTree) -> None:
    """A function with no device engine never completes FLR: reset() raises Timeout."""
    with iohost.open("gen0") as gen:
        with pytest.raises(Timeout, match="engine"):
            gen.reset(timeout=0.1)
        assert repr(gen) == f"LocalDevice({gen.bdf} gen0)"
    assert gen.closed


def test_daemon_refuses_device_misuse(lender: DeviceTree, b2b: str) -> None:
    """The daemon refuses other programs' buffers, non-devices and peer maps outside BARs."""
    buf = lender.open("nvme0").dma_alloc(PAGE_SIZE)
    me = lender.client.id
    with DeviceTree("lender", b2b, name="intruder") as other:
        with _remote_not_found():
            other.client.call(m.DmaFree(client=other.client.id, buffer=buf.handle))
        with _remote_not_found():
            other.client.call(m.MsiFree(client=other.client.id, device="nvme0"))
    assert not buf.freed
    with _remote_not_found():
        lender.client.call(m.DmaAlloc(client=me, device="lender:ntb0", size=PAGE_SIZE))
    with _remote_not_found():
        lender.client.call(m.MsiAlloc(client=me, device="lender:ntb0", count=1))
    with pytest.raises(NoSpace):
        lender.client.call(m.MsiAlloc(client=me, device="nvme0", count=0))
    with pytest.raises(IllegalParameter):
        lender.client.call(m.DmaMapPeer(client=me, device="nvme0", addr=buf.phys,
                                        size=PAGE_SIZE))
    bar = lender.open("nvme0").bars()[0]
    with pytest.raises(IllegalParameter):  # runs past the end of the BAR
        lender.client.call(m.DmaMapPeer(client=me, device="nvme0", addr=bar.addr,
                                        size=bar.size + 1))
    buf.free()
