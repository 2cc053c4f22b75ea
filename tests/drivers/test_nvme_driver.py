"""The userspace NVMe driver against the NVMe model in its device engine (real cluster)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir
from smartio.drivers.nvme import Controller, Namespace, NvmeError, NvmeTimeout, QueuePair
from smartio.errors import IllegalOperation
from smartio.lending import DeviceTree


@pytest.fixture(scope="module")
def b2b(module_cluster: Callable[[str], RunDir]) -> RunDir:
    return module_cluster("back-to-back")


@pytest.fixture
def ctrl(b2b: RunDir) -> Iterator[Controller]:
    tree = DeviceTree("lender", b2b.cluster, "driver-test")
    c = Controller(tree.open("nvme0"), io_queues=8)
    yield c
    c.close(shutdown=False)
    tree.close()


def test_bring_up_identifies_controller_and_namespace(ctrl: Controller) -> None:
    """Bring-up reads Identify Controller and the active namespace with its geometry."""
    assert ctrl.info.vid == 0x8086
    assert ctrl.info.sqes == 0x66 and ctrl.info.cqes == 0x44
    assert ctrl.info.nn >= 1 and 1 in ctrl.namespaces
    ns = Namespace(ctrl, 1)
    assert ns.size == 1 << 30 and ns.lba_size in (512, 4096)
    assert ctrl.io_queues == 8


def test_write_read_back_patterns_with_prp_lists(ctrl: Controller) -> None:
    """Random data written with PRP1, PRP2 and PRP-list transfers reads back identically."""
    ns = Namespace(ctrl, 1)
    rng = np.random.default_rng(1)
    with QueuePair(ctrl, 16) as qp:
        for nbytes in (ns.lba_size, 8192, 64 * 1024, ctrl.max_transfer):
            count = nbytes // ns.lba_size
            src = ctrl.device.dma_alloc(nbytes)
            dst = ctrl.device.dma_alloc(nbytes)
            src.array[:nbytes] = rng.integers(0, 256, nbytes, dtype=np.uint8)
            lba = int(rng.integers(0, ns.blocks - count))
            ns.write(qp, src, lba, count)
            ns.read(qp, dst, lba, count)
            assert bytes(dst.view[:nbytes]) == bytes(src.view[:nbytes])
            src.free()
            dst.free()


def test_flush_write_zeroes_and_deallocate(ctrl: Controller) -> None:
    """Write Zeroes and Deallocate make blocks read as zeros; Flush succeeds."""
    ns = Namespace(ctrl, 1)
    with QueuePair(ctrl, 8) as qp:
        buf = ctrl.device.dma_alloc(8 * ns.lba_size)
        buf.view[:] = b"\xab" * len(buf.view)
        ns.write(qp, buf, 100, 8)
        ns.flush(qp)
        ns.write_zeroes(qp, 100, 4)
        ns.deallocate(qp, [(104, 4)])
        ns.read(qp, buf, 100, 8)
        assert bytes(buf.view) == bytes(8 * ns.lba_size)
        buf.free()


def test_lba_out_of_range_is_reported_by_status_name(ctrl: Controller) -> None:
    """A read past the namespace fails with NVME_SC_LBA_RANGE."""
    ns = Namespace(ctrl, 1)
    with QueuePair(ctrl, 8) as qp:
        buf = ctrl.device.dma_alloc(ns.lba_size)
        with pytest.raises(NvmeError) as e:
            ns.read(qp, buf, ns.blocks, 1)
        assert e.value.code == "NVME_SC_LBA_RANGE"
        buf.free()


def test_queue_pairs_created_and_deleted_at_run_time(ctrl: Controller) -> None:
    """All granted queue pairs can exist at once; one more is refused; deleting frees them."""
    qps = [QueuePair(ctrl, 4) for _ in range(ctrl.io_queues)]
    with pytest.raises(IllegalOperation):
        QueuePair(ctrl, 4)
    for qp in qps:
        qp.close()
    with QueuePair(ctrl, 4) as qp:
        assert qp.qid >= 1


def test_dma_to_unmapped_address_is_a_data_transfer_error(ctrl: Controller) -> None:
    """A read whose buffer address leads nowhere completes with Data Transfer Error."""
    ns = Namespace(ctrl, 1)
    with QueuePair(ctrl, 8) as qp:
        # PRP1 points at a hole of the lender's address space: nothing decodes there.
        cid = qp.submit(0x02, "read to a hole", nsid=1, prp1=0xFEDC_0000, cdw12=0)
        with pytest.raises(NvmeError) as e:
            qp.wait(cid)

        assert e.value.code == "NVME_SC_DATA_TRANSFER_ERROR"
        assert ns.blocks > 0


def test_stalled_engine_times_out_naming_the_command(b2b: RunDir, ctrl: Controller) -> None:
    """When the device engine stops, a command times out and the error names it."""
    ns = Namespace(ctrl, 1)
    pid = int(b2b.engine_pid_file("lender", "nvme0").read_text())
    with QueuePair(ctrl, 8) as qp:
        buf = ctrl.device.dma_alloc(ns.lba_size)
        os.kill(pid, signal.SIGSTOP)
        try:
            cid = ns.submit_read(qp, buf, 7, 1)
            with pytest.raises(NvmeTimeout, match="Read ns 1 lba 7"):
                qp.wait(cid, timeout=0.3)
        finally:
            os.kill(pid, signal.SIGCONT)
        qp.wait(cid)  # it completes once the engine runs again
        buf.free()


CHILD = textwrap.dedent("""
    import sys, hashlib, numpy as np
    from smartio.lending import DeviceTree
    from smartio.drivers.nvme import Controller, Namespace, QueuePair
    cluster, seed = sys.argv[1], int(sys.argv[2])
    with DeviceTree("lender", cluster, f"writer-{seed}") as tree:
        ctrl = Controller(tree.open("nvme0"), attach=True)  # the test process owns it
        ns = Namespace(ctrl, 1)
        rng = np.random.default_rng(seed)
        with QueuePair(ctrl, 32) as qp:
            buf = ctrl.device.dma_alloc(64 * 4096)
            digest = hashlib.sha256()
            base = 10000 + seed * 4096
            for i in range(16):
                data = rng.integers(0, 256, 16 * 4096, dtype=np.uint8).tobytes()
                buf.view[: len(data)] = data
                ns.write(qp, buf, base + i * 16 * 4096 // ns.lba_size, 16 * 4096 // ns.lba_size)
                digest.update(data)
            buf.free()
        ctrl.close()
    print(digest.hexdigest(), flush=True)
""")


def test_concurrent_writers_in_several_processes_keep_data_intact(
        b2b: RunDir, ctrl: Controller) -> None:
    """Three processes attached to the controller this process brought up, each with its
    own queue pair, write distinct ranges; every range reads back with the writer's
    checksum, and this process's controller still works afterwards."""
    import hashlib

    procs = [subprocess.Popen([sys.executable, "-c", CHILD, b2b.cluster, str(s)],
                              stdout=subprocess.PIPE, text=True) for s in (1, 2, 3)]
    digests = {}
    for s, p in zip((1, 2, 3), procs, strict=True):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        digests[s] = out.strip()
    ns = Namespace(ctrl, 1)
    with QueuePair(ctrl, 32) as qp:
        buf = ctrl.device.dma_alloc(16 * 4096)
        for s, want in digests.items():
            h = hashlib.sha256()
            base = 10000 + s * 4096
            for i in range(16):
                ns.read(qp, buf, base + i * 16 * 4096 // ns.lba_size, 16 * 4096 // ns.lba_size)
                h.update(bytes(buf.view))
            assert h.hexdigest() == want, f"writer {s}"
        buf.free()


def test_file_backed_namespace_survives_cluster_restart(
        make_cluster: Callable[..., RunDir], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Data written to a file-backed namespace is there after cluster down and up."""
    from smartio.cluster.launcher import cluster_down

    monkeypatch.setenv("SMARTIO_DATA_DIR", str(tmp_path / "data"))
    topo = tmp_path / "file.toml"
    topo.write_text(textwrap.dedent("""
        name = "file-nvme"
        [[hosts]]
        name = "h"
        ram = "256MiB"
        [[endpoints]]
        name = "nvme0"
        model = "nvme"
        at = "h/0"
        params = { capacity = "64MiB", backing = "file" }
    """))
    rd = make_cluster(str(topo), "persist")
    with DeviceTree("h", rd.cluster) as tree:
        c = Controller(tree.open("nvme0"), io_queues=1)
        ns = Namespace(c, 1)
        with QueuePair(c, 4) as qp:
            buf = c.device.dma_alloc(4096)
            buf.view[:11] = b"persistent!"
            ns.write(qp, buf, 5, 4096 // ns.lba_size)
            buf.free()
        c.close()
    cluster_down(rd.cluster)
    rd = make_cluster(str(topo), "persist")
    with DeviceTree("h", rd.cluster) as tree:
        c = Controller(tree.open("nvme0"), io_queues=1)
        ns = Namespace(c, 1)
        with QueuePair(c, 4) as qp:
            buf = c.device.dma_alloc(4096)
            ns.read(qp, buf, 5, 4096 // ns.lba_size)
            assert bytes(buf.view[:11]) == b"persistent!"
            buf.free()
        c.close()
    assert (tmp_path / "data" / "persist").exists()


def test_program_exit_returns_its_dma_memory(b2b: RunDir) -> None:
    """DMA buffers of a program are released when it closes its device tree."""
    before = {h["host"]: h["pool_used"] for h in cluster_status(b2b.cluster)["hosts"]}
    with DeviceTree("lender", b2b.cluster) as tree:
        c = Controller(tree.open("nvme0"), io_queues=1)
        c.close(shutdown=False)
    after = {h["host"]: h["pool_used"] for h in cluster_status(b2b.cluster)["hosts"]}
    assert after == before


def test_failed_bring_up_reports_its_own_error(b2b: RunDir) -> None:
    """A controller that cannot come up (here: the GPU is no NVMe) raises its real error,
    and closing the device tree afterwards does not replace it with Busy."""
    from smartio.errors import Busy, SmartIOError

    tree = DeviceTree("lender", b2b.cluster, "wrong-device")
    dev = tree.open("gpu0")
    with pytest.raises(SmartIOError) as e:
        Controller(dev, io_queues=1)
    assert not isinstance(e.value, Busy)
    tree.close()  # releases everything: no Busy from leftover views
