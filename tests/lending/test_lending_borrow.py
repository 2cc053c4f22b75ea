"""Borrowing a function of another host: the unchanged NVMe driver on a shadow device."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir
from smartio.drivers.nvme import Controller, Namespace, QueuePair
from smartio.errors import IllegalOperation, NotFound
from smartio.hw.fabric import Fabric
from smartio.lending import DeviceTree


@pytest.fixture(scope="module")
def b2b(module_cluster: Callable[[str], RunDir]) -> RunDir:
    return module_cluster("back-to-back")


def _usage(cluster: str) -> dict[str, tuple[list[int], list[int], int]]:
    st = cluster_status(cluster)
    return {h["host"]: ([a["lut_used"] for a in h["adapters"]],
                        [a["rid_used"] for a in h["adapters"]], h["requests"])
            for h in st["hosts"] if "adapters" in h}  # (a dead daemon reports nothing)


def test_driver_runs_unchanged_on_a_borrowed_nvme(b2b: RunDir) -> None:
    """The NVMe driver brings up the lender's NVMe from the borrower and does I/O whose data
    lands in the borrower's RAM, reached through the lender's DMA window."""
    with DeviceTree("borrower", b2b.cluster, "borrower-prog") as tree:
        dev = tree.borrow("lender", "nvme0")
        assert dev.vendor_id == 0x8086
        lender_bar = tree.fabric.maps["lender"].functions["nvme0"].bar(0).base
        assert dev.bars()[0].addr != lender_bar  # the BAR is seen through our NTB window
        ctrl = Controller(dev, io_queues=2)
        ns = Namespace(ctrl, 1)
        with QueuePair(ctrl, 8) as qp:
            buf = dev.dma_alloc(4096)
            buf.view[:16] = b"from a borrower!"
            ns.write(qp, buf, 77, 4096 // ns.lba_size)
            buf.view[:16] = bytes(16)
            ns.read(qp, buf, 77, 4096 // ns.lba_size)
            assert bytes(buf.view[:16]) == b"from a borrower!"
            ram = tree.fabric.ram("borrower").view
            assert bytes(ram[buf.phys: buf.phys + 16]) == b"from a borrower!"
            assert buf.ioaddr != buf.phys  # device-side address inside the DMA window
            buf.free()
        ctrl.close()


def test_io_on_a_borrowed_device_sends_no_control_messages(b2b: RunDir) -> None:
    """Once borrowed, 200 reads and writes cause no request to either daemon (§4.3)."""
    with DeviceTree("borrower", b2b.cluster, "quiet-prog") as tree:
        ctrl = Controller(tree.borrow("lender", "nvme0"), io_queues=1)
        ns = Namespace(ctrl, 1)
        with QueuePair(ctrl, 8) as qp:
            buf = ctrl.device.dma_alloc(4096)
            before = _usage(b2b.cluster)
            for i in range(100):
                ns.write(qp, buf, 1000 + 8 * i, 4096 // ns.lba_size)
                ns.read(qp, buf, 1000 + 8 * i, 4096 // ns.lba_size)
            after = _usage(b2b.cluster)
            buf.free()
        ctrl.close()
    # The only requests in between are the status call itself (one per daemon).
    assert {h: after[h][2] - before[h][2] for h in after} == {"lender": 1, "borrower": 1}


def test_return_releases_windows_on_both_hosts(b2b: RunDir) -> None:
    """Returning the device clears its BAR mappings, DMA/MSI windows and requester entry."""
    base = {h: v[:2] for h, v in _usage(b2b.cluster).items()}
    tree = DeviceTree("borrower", b2b.cluster, "returner")
    dev = tree.borrow("lender", "nvme0")
    during = _usage(b2b.cluster)
    assert during["borrower"][0][0] > base["borrower"][0][0]  # BAR mapped through our NTB
    assert during["lender"][0][0] > base["lender"][0][0]  # DMA and MSI windows
    assert during["lender"][1][0] == base["lender"][1][0] + 1  # the NVMe's requester ID
    dev.close()
    tree.close()
    assert {h: v[:2] for h, v in _usage(b2b.cluster).items()} == base


def test_a_killed_borrower_program_returns_the_device(b2b: RunDir) -> None:
    """When the borrowing program dies, its host returns the device within bounded time."""
    base = {h: v[:2] for h, v in _usage(b2b.cluster).items()}
    code = textwrap.dedent(f"""
        import sys, time
        from smartio.lending import DeviceTree
        tree = DeviceTree("borrower", {b2b.cluster!r}, "doomed")
        tree.borrow("lender", "nvme0")
        print("READY", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
        assert _usage(b2b.cluster)["lender"][1] != base["lender"][1]
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 5
    while {h: v[:2] for h, v in _usage(b2b.cluster).items()} != base:
        assert time.monotonic() < deadline, "the borrow was not released"
        time.sleep(0.1)


def test_bad_borrows_are_refused_clearly(b2b: RunDir) -> None:
    """Borrowing a local function or a missing one fails with a clear error."""
    with DeviceTree("lender", b2b.cluster) as tree:
        with pytest.raises(IllegalOperation, match="local"):
            tree.borrow("lender", "nvme0")
    with DeviceTree("borrower", b2b.cluster) as tree:
        with pytest.raises(NotFound, match="no device 'nope'"):
            tree.borrow("lender", "nope")


def test_fabric_tables_hold_the_windows(b2b: RunDir) -> None:
    """While borrowed, the lender's NTB LUT maps onto the borrower (the DMA window)."""
    fab = Fabric.attach(RunDir(b2b.cluster).topology(), b2b.cluster)
    try:
        with DeviceTree("borrower", b2b.cluster) as tree:
            tree.borrow("lender", "nvme0")
            peers = {e.peer for e in fab.adapters["lender:ntb0"].lut_entries()}
            assert peers == {"borrower:ntb0"}
    finally:
        fab.close()


def test_lender_takes_back_what_a_dead_borrower_host_held(
        make_cluster: Callable[..., RunDir]) -> None:
    """When the borrower's daemon dies, the lender clears the windows it had prepared."""
    import os
    import signal

    rd = make_cluster("back-to-back")
    base = _usage(rd.cluster)["lender"][:2]
    tree = DeviceTree("borrower", rd.cluster, "orphaned")
    tree.borrow("lender", "nvme0")
    assert _usage(rd.cluster)["lender"][:2] != base
    pid = rd.pid("borrower")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _usage(rd.cluster)["lender"][:2] != base:
        assert time.monotonic() < deadline, "the lender kept the windows of a dead borrower"
        time.sleep(0.1)
    tree.fabric.close()
    tree.client.close()


def test_msix_of_a_borrowed_nvme_reaches_the_borrower(b2b: RunDir) -> None:
    """A completion interrupt of the borrowed NVMe crosses the MSI window into the
    borrower's interrupt controller (the borrower's IOMMU is on in this preset)."""
    with DeviceTree("borrower", b2b.cluster, "irq-prog") as tree:
        dev = tree.borrow("lender", "nvme0")
        ctrl = Controller(dev, io_queues=1)
        vectors = dev.msix_enable(2)
        ns = Namespace(ctrl, 1)
        with QueuePair(ctrl, 8, vector=1) as qp:
            buf = dev.dma_alloc(4096)
            ns.read(qp, buf, 0, 4096 // ns.lba_size)
            assert vectors[1].wait(5) >= 1
            buf.free()
        ctrl.close()
