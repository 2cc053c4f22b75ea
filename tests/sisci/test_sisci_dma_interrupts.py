"""SISCI DMA queues and (data) interrupts on a real back-to-back cluster.

DMA transfers run on the emulated engine of the queue's adapter, in the host daemon, between
a local segment prepared on that adapter and a connected remote segment (reference §2.2,
SCIStartDmaTransfer[Vec] / SCIWaitForDMAQueue); data are checked byte for byte with random
patterns, including from the borrower whose IOMMU is on. Interrupts are triggered from the
other host and from the same host, with payloads up to ``MAX_PAYLOAD``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from smartio import sisci
from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir
from smartio.errors import IllegalParameter

PRESET = "back-to-back"
MiB = 1 << 20
TIMEOUT = 10.0


@pytest.fixture
def cluster(module_cluster: Callable[[str], RunDir]) -> RunDir:
    return module_cluster(PRESET)


@pytest.fixture
def sds(cluster: RunDir) -> Iterator[dict[str, sisci.Descriptor]]:
    """A descriptor on each host, by host name."""
    out = {h: sisci.open(h, cluster.cluster, f"test-{h}") for h in ("lender", "borrower")}
    yield out
    for sd in out.values():
        sd.close()


def _rand(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@dataclass
class Pair:
    """A queue on ``near`` with a local segment, and a connected segment of ``far``."""

    local: sisci.LocalSegment
    remote_owner: sisci.LocalSegment
    remote: sisci.RemoteSegment
    queue: sisci.DmaQueue
    lmap: sisci.Map
    rmap: sisci.Map  # the owner's local map of the remote segment


def _pair(near: sisci.Descriptor, far: sisci.Descriptor, seg_id: int, size: int = 4 * MiB,
          remote_size: int | None = None, max_entries: int = 16) -> Pair:
    local = near.create_segment(size).prepare(0)
    owner = far.create_segment(remote_size or size, seg_id).prepare(0).set_available(0)
    remote = near.connect_segment(far.local_node_id(0), seg_id, 0, timeout=2.0)
    q = near.create_dma_queue(0, max_entries)
    return Pair(local, owner, remote, q, local.map(), owner.map())


def _lut_used(cluster: RunDir, host: str) -> int:
    st = cluster_status(cluster.cluster)
    return int(next(h for h in st["hosts"] if h["host"] == host)["adapters"][0]["lut_used"])


# -- DMA --------------------------------------------------------------------------------------


@pytest.mark.parametrize("near,far", [("borrower", "lender"), ("lender", "borrower")])
def test_dma_write_local_to_remote(sds: dict[str, sisci.Descriptor], near: str,
                                   far: str) -> None:
    """A DMA write copies exactly the asked bytes of the local segment into the remote one."""
    p = _pair(sds[near], sds[far], 0x200)
    data = _rand(3 * MiB + 5, 1)
    p.lmap.view[7: 7 + len(data)] = data
    tid = p.queue.start_transfer(p.local, 7, p.remote, 4099, len(data))
    done = p.queue.wait(TIMEOUT)
    assert done == [sisci.DmaCompletion(tid, True, "ok", len(data))]
    assert bytes(p.rmap.view[4099: 4099 + len(data)]) == data
    assert bytes(p.rmap.view[:4099]) == bytes(4099)  # nothing outside the range was touched
    assert not any(p.rmap.view[4099 + len(data):])


@pytest.mark.parametrize("near,far", [("borrower", "lender"), ("lender", "borrower")])
def test_dma_read_remote_to_local(sds: dict[str, sisci.Descriptor], near: str,
                                  far: str) -> None:
    """A DMA read (read=True) copies the remote range into the local segment."""
    p = _pair(sds[near], sds[far], 0x201)
    data = _rand(2 * MiB + 3, 2)
    p.rmap.view[1: 1 + len(data)] = data
    tid = p.queue.start_transfer(p.local, MiB + 11, p.remote, 1, len(data), read=True)
    assert p.queue.wait(TIMEOUT) == [sisci.DmaCompletion(tid, True, "ok", len(data))]
    assert bytes(p.lmap.view[MiB + 11: MiB + 11 + len(data)]) == data
    assert not any(p.lmap.view[: MiB + 11])
    assert p.rmap.view[0] == 0 and bytes(p.rmap.view[1: 1 + len(data)]) == data


def test_dma_vectored(sds: dict[str, sisci.Descriptor]) -> None:
    """A vectored transfer to two remote segments completes once with the summed bytes."""
    near, far = sds["borrower"], sds["lender"]
    p = _pair(near, far, 0x202)
    other_owner = far.create_segment(MiB, 0x203).prepare(0).set_available(0)
    other = near.connect_segment(far.local_node_id(0), 0x203)
    data = _rand(4 * MiB, 3)
    p.lmap.view[:] = data
    vecs = [(p.local, 0, p.remote, 0, 4096), (p.local, 4096, p.remote, 2 * MiB, MiB),
            (p.local, 3 * MiB, other, 100, MiB - 100)]
    p.queue.start_vec(vecs)
    (done,) = p.queue.wait(TIMEOUT)
    assert done.ok and done.bytes == 4096 + MiB + MiB - 100
    assert bytes(p.rmap.view[:4096]) == data[:4096]
    assert bytes(p.rmap.view[2 * MiB: 3 * MiB]) == data[4096: 4096 + MiB]
    assert not any(p.rmap.view[4096: 2 * MiB])
    assert bytes(other_owner.map().view[100:]) == data[3 * MiB: 4 * MiB - 100]


def test_dma_vectored_read(sds: dict[str, sisci.Descriptor]) -> None:
    """A vectored read gathers remote ranges into local ranges."""
    p = _pair(sds["lender"], sds["borrower"], 0x204)
    data = _rand(4 * MiB, 4)
    p.rmap.view[:] = data
    p.queue.start_vec([(p.local, 0, p.remote, 3 * MiB, MiB),
                       (p.local, MiB, p.remote, 0, 8192)], read=True)
    (done,) = p.queue.wait(TIMEOUT)
    assert done.ok and done.bytes == MiB + 8192
    assert bytes(p.lmap.view[:MiB]) == data[3 * MiB:]
    assert bytes(p.lmap.view[MiB: MiB + 8192]) == data[:8192]


def test_dma_callbacks(sds: dict[str, sisci.Descriptor]) -> None:
    """Each transfer's callback gets its own completion; wait still reports all of them."""
    p = _pair(sds["borrower"], sds["lender"], 0x205)
    got: queue.Queue[sisci.DmaCompletion] = queue.Queue()
    tids = [p.queue.start_transfer(p.local, i * MiB, p.remote, i * MiB, MiB, callback=got.put)
            for i in range(3)]
    seen = {got.get(timeout=TIMEOUT).transfer for _ in tids}
    assert seen == set(tids)
    done = p.queue.wait(TIMEOUT)
    assert sorted(d.transfer for d in done) == sorted(tids)
    assert all(d.ok and d.bytes == MiB for d in done)


def test_dma_wait_returns_completions(sds: dict[str, sisci.Descriptor]) -> None:
    """wait returns every completion since the last wait, then nothing."""
    p = _pair(sds["borrower"], sds["lender"], 0x206)
    data = _rand(4 * MiB, 6)
    p.lmap.view[:] = data
    tids = [p.queue.start_transfer(p.local, i * MiB, p.remote, (3 - i) * MiB, MiB)
            for i in range(4)]
    done = p.queue.wait(TIMEOUT)
    assert sorted(d.transfer for d in done) == sorted(tids)
    assert p.queue.outstanding == 0
    assert p.queue.wait(0.1) == []
    for i in range(4):
        assert bytes(p.rmap.view[(3 - i) * MiB: (4 - i) * MiB]) == data[i * MiB: (i + 1) * MiB]


def test_dma_max_entries(sds: dict[str, sisci.Descriptor]) -> None:
    """More outstanding transfers than max_entries raise MaxEntries; the queue recovers."""
    size = 32 * MiB
    p = _pair(sds["borrower"], sds["lender"], 0x207, size=size, max_entries=2)
    submitted = 0
    with pytest.raises(sisci.MaxEntries):
        for _ in range(200):
            p.queue.start_transfer(p.local, 0, p.remote, 0, size)
            submitted += 1
    assert submitted >= 2
    done = p.queue.wait(TIMEOUT)
    assert len(done) == submitted and all(d.ok for d in done)
    p.queue.start_transfer(p.local, 0, p.remote, 0, 4096)
    assert len(p.queue.wait(TIMEOUT)) == 1


def test_dma_queue_size_limits(sds: dict[str, sisci.Descriptor]) -> None:
    """A queue needs 1..1024 entries and an existing adapter."""
    sd = sds["borrower"]
    for n in (0, 1025):
        with pytest.raises(sisci.OutOfRange):
            sd.create_dma_queue(0, n)
    with pytest.raises(sisci.NoSuchAdapter):
        sd.create_dma_queue(1)


def test_dma_unprepared_local_segment(sds: dict[str, sisci.Descriptor]) -> None:
    """A local segment not prepared on the queue's adapter raises NotPrepared."""
    p = _pair(sds["borrower"], sds["lender"], 0x208)
    raw = sds["borrower"].create_segment(MiB)
    with pytest.raises(sisci.NotPrepared):
        p.queue.start_transfer(raw, 0, p.remote, 0, 4096)
    raw.prepare(0)
    p.queue.start_transfer(raw, 0, p.remote, 0, 4096)
    assert p.queue.wait(TIMEOUT)[0].ok


def test_dma_out_of_range(sds: dict[str, sisci.Descriptor]) -> None:
    """Ranges beyond either segment (or empty ones) raise OutOfRange and move nothing."""
    p = _pair(sds["borrower"], sds["lender"], 0x209, size=MiB, remote_size=2 * MiB)
    p.lmap.view[:] = b"\x01" * MiB
    for lo, ro, n in ((MiB - 10, 0, 11), (0, 2 * MiB - 10, 11), (0, 0, 0), (-1, 0, 10),
                      (0, -1, 10), (0, 0, MiB + 1)):
        for read in (False, True):
            with pytest.raises(sisci.OutOfRange):
                p.queue.start_transfer(p.local, lo, p.remote, ro, n, read=read)
    assert p.queue.outstanding == 0
    assert not any(p.rmap.view)
    p.queue.start_transfer(p.local, 0, p.remote, MiB, MiB)  # exactly up to the ends is fine
    assert p.queue.wait(TIMEOUT)[0].bytes == MiB


def test_dma_after_disconnect_or_remove(sds: dict[str, sisci.Descriptor]) -> None:
    """A disconnected or lost remote segment raises NotConnected; a removed queue is
    IllegalOperation."""
    p = _pair(sds["borrower"], sds["lender"], 0x20A)
    p.remote_owner.remove(force=True)
    assert p.remote.wait_for_event(TIMEOUT).reason == "lost"
    with pytest.raises(sisci.NotConnected):
        p.queue.start_transfer(p.local, 0, p.remote, 0, 4096)
    p.remote.disconnect()
    with pytest.raises(sisci.NotConnected):
        p.queue.start_transfer(p.local, 0, p.remote, 0, 4096)
    p.queue.remove()
    with pytest.raises(sisci.IllegalOperation):
        p.queue.start_transfer(p.local, 0, p.remote, 0, 4096)
    with pytest.raises(sisci.IllegalOperation):
        p.queue.remove()


def test_dma_returns_lut_entries(cluster: RunDir, sds: dict[str, sisci.Descriptor]) -> None:
    """The LUT entries a DMA needs are given back on disconnect."""
    before = _lut_used(cluster, "borrower")
    p = _pair(sds["borrower"], sds["lender"], 0x20B)
    p.queue.start_transfer(p.local, 0, p.remote, 0, 4096)
    p.queue.wait(TIMEOUT)
    assert _lut_used(cluster, "borrower") > before
    p.remote.disconnect()
    assert _lut_used(cluster, "borrower") == before


# -- interrupts -------------------------------------------------------------------------------


@pytest.mark.parametrize("same_host", [False, True], ids=["other-host", "same-host"])
def test_plain_interrupt(sds: dict[str, sisci.Descriptor], same_host: bool) -> None:
    """A plain interrupt triggered once is received once, with no payload."""
    owner = sds["lender"]
    trig = owner if same_host else sds["borrower"]
    irq = owner.create_interrupt(0)
    ri = trig.connect_interrupt(owner.local_node_id(0), irq.intno)
    assert (ri.node_id, ri.intno, ri.data) == (owner.local_node_id(0), irq.intno, False)
    ri.trigger()
    ri.trigger()
    assert irq.wait(TIMEOUT) == b""
    assert irq.wait(TIMEOUT) == b""
    with pytest.raises(sisci.Timeout):
        irq.wait(0.1)


@pytest.mark.parametrize("size", [0, 1, 64 << 10, sisci.MAX_PAYLOAD],
                         ids=["0B", "1B", "64KiB", "1MiB"])
@pytest.mark.parametrize("same_host", [False, True], ids=["other-host", "same-host"])
def test_data_interrupt_payloads(sds: dict[str, sisci.Descriptor], size: int,
                                 same_host: bool) -> None:
    """A data interrupt delivers its payload byte for byte."""
    owner = sds["borrower"]
    trig = owner if same_host else sds["lender"]
    irq = owner.create_data_interrupt(0)
    assert irq.data
    ri = trig.connect_data_interrupt(owner.local_node_id(0), irq.intno)
    payload = _rand(size, size)
    ri.trigger(payload)
    assert irq.wait(TIMEOUT) == payload


def test_data_interrupt_payload_limit(sds: dict[str, sisci.Descriptor]) -> None:
    """A payload above MAX_PAYLOAD raises IllegalParameter; a plain interrupt takes none."""
    owner, trig = sds["lender"], sds["borrower"]
    di = owner.create_data_interrupt()
    rdi = trig.connect_data_interrupt(owner.local_node_id(0), di.intno)
    with pytest.raises(IllegalParameter):
        rdi.trigger(bytes(sisci.MAX_PAYLOAD + 1))
    irq = owner.create_interrupt()
    ri = trig.connect_interrupt(owner.local_node_id(0), irq.intno)
    with pytest.raises(sisci.IllegalOperation):
        ri.trigger(b"x")
    with pytest.raises(sisci.Timeout):
        irq.wait(0.1)
    with pytest.raises(sisci.Timeout):
        di.wait(0.05)


def test_interrupt_order(sds: dict[str, sisci.Descriptor]) -> None:
    """Data interrupts from one program arrive in the order they were triggered."""
    owner = sds["lender"]
    irq = owner.create_data_interrupt()
    ri = sds["borrower"].connect_data_interrupt(owner.local_node_id(0), irq.intno)
    for i in range(20):
        ri.trigger(i.to_bytes(2, "little"))
    assert [int.from_bytes(irq.wait(TIMEOUT), "little") for _ in range(20)] == list(range(20))


def test_interrupt_callbacks(sds: dict[str, sisci.Descriptor]) -> None:
    """Interrupt callbacks get every payload and leave nothing to wait for."""
    owner = sds["lender"]
    got: queue.Queue[bytes] = queue.Queue()
    irq = owner.create_data_interrupt(callback=got.put)
    plain_hit = threading.Event()
    plain = owner.create_interrupt(callback=lambda _payload: plain_hit.set())
    trig = sds["borrower"]
    trig.connect_data_interrupt(owner.local_node_id(0), irq.intno).trigger(b"abc")
    trig.connect_interrupt(owner.local_node_id(0), plain.intno).trigger()
    assert got.get(timeout=TIMEOUT) == b"abc"
    assert plain_hit.wait(TIMEOUT)
    assert irq.events.pending() == 0 and plain.events.pending() == 0


def test_interrupt_numbers(sds: dict[str, sisci.Descriptor]) -> None:
    """A fixed intno is kept; a used one raises IntNoUsed; automatic ones are distinct."""
    sd = sds["lender"]
    fixed = sd.create_interrupt(0, 0x31)
    assert fixed.intno == 0x31
    with pytest.raises(sisci.IntNoUsed):
        sd.create_interrupt(0, 0x31)
    with pytest.raises(sisci.IntNoUsed):
        sd.create_data_interrupt(0, 0x31)
    autos = {sd.create_interrupt().intno for _ in range(3)}
    assert len(autos) == 3 and 0x31 not in autos
    assert sds["borrower"].create_interrupt(0, 0x31).intno == 0x31  # per host
    fixed.remove()
    assert sd.create_interrupt(0, 0x31).intno == 0x31


def test_connect_missing_interrupt(sds: dict[str, sisci.Descriptor]) -> None:
    """Connecting to a missing intno, or to one of the other kind, raises NoSuchIntNo."""
    owner, trig = sds["lender"], sds["borrower"]
    node = owner.local_node_id(0)
    with pytest.raises(sisci.NoSuchIntNo):
        trig.connect_interrupt(node, 0x7777, timeout=0.2)
    plain = owner.create_interrupt()
    data = owner.create_data_interrupt()
    with pytest.raises(sisci.NoSuchIntNo):
        trig.connect_data_interrupt(node, plain.intno, timeout=0.2)
    with pytest.raises(sisci.NoSuchIntNo):
        trig.connect_interrupt(node, data.intno, timeout=0.2)
    with pytest.raises(sisci.NoSuchNodeId):
        trig.connect_interrupt(100, plain.intno, timeout=0.2)


def test_trigger_removed_interrupt(sds: dict[str, sisci.Descriptor]) -> None:
    """Triggering a removed interrupt raises NoSuchIntNo; a blocked wait is Cancelled."""
    owner = sds["lender"]
    irq = owner.create_interrupt()
    ri = sds["borrower"].connect_interrupt(owner.local_node_id(0), irq.intno)
    out: list[BaseException] = []

    def waiter() -> None:
        try:
            irq.wait(TIMEOUT)
        except BaseException as e:  # checked below
            out.append(e)

    th = threading.Thread(target=waiter)
    th.start()
    irq.remove()
    th.join(TIMEOUT)
    assert len(out) == 1 and isinstance(out[0], sisci.Cancelled)
    with pytest.raises(sisci.NoSuchIntNo):
        ri.trigger()
    with pytest.raises(sisci.IllegalOperation):
        irq.remove()
    ri.disconnect()
    with pytest.raises(sisci.IllegalOperation):
        ri.trigger()
