"""SISCI segments on a real back-to-back cluster: ids, life cycle, connect, map, LUT, events.

The lender owns the segments and the borrower connects to them, as in SISCI's create ->
prepare -> set available -> connect -> map -> unmap, disconnect, set unavailable, remove
(reference §2.1-2.2). Every remote map programs LUT entries of the borrower's PXH830 (32
slices of 32 MiB), which the daemons report through ``cluster_status``. One test drives a
second program, a ``sys.executable -c`` child attached to the borrower, over stdin/stdout.
"""

from __future__ import annotations

import hashlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from smartio import sisci
from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir
from smartio.hw.units import align_down, align_up
from smartio.node.segments import AUTO_ID_BASE

PRESET = "back-to-back"
LUT_ENTRIES = 32
SLICE = 32 << 20
SEG = 1 << 20
EVENT_TIMEOUT = 5.0
CHILD_TIMEOUT = 20.0


@pytest.fixture
def cluster(module_cluster: Callable[[str], RunDir]) -> RunDir:
    return module_cluster(PRESET)


@pytest.fixture
def lender(cluster: RunDir) -> Iterator[sisci.Descriptor]:
    sd = sisci.open("lender", cluster.cluster, "test-lender")
    yield sd
    sd.close()


@pytest.fixture
def borrower(cluster: RunDir) -> Iterator[sisci.Descriptor]:
    sd = sisci.open("borrower", cluster.cluster, "test-borrower")
    yield sd
    sd.close()


def _offer(sd: sisci.Descriptor, seg_id: int, size: int = SEG) -> sisci.LocalSegment:
    """Create, prepare and set available a segment on adapter 0."""
    return sd.create_segment(size, seg_id).prepare(0).set_available(0)


def _lut_used(cluster: RunDir, host: str) -> int:
    st = cluster_status(cluster.cluster)
    entry = next(h for h in st["hosts"] if h["host"] == host)
    return int(entry["adapters"][0]["lut_used"])


def _slices(phys: int, size: int) -> int:
    """LUT entries a map of ``[phys, phys+size)`` needs."""
    return (align_up(phys + size, SLICE) - align_down(phys, SLICE)) // SLICE


def _pattern(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


# -- creation and life cycle ------------------------------------------------------------------


def test_create_with_explicit_and_auto_id(lender: sisci.Descriptor) -> None:
    """A segment gets the id asked for; without one it gets distinct automatic ids."""
    seg = lender.create_segment(SEG, 0x101)
    assert (seg.id, seg.size) == (0x101, SEG)
    a, b = lender.create_segment(4096), lender.create_segment(4096)
    assert a.id != b.id
    assert a.id >= AUTO_ID_BASE and b.id >= AUTO_ID_BASE
    assert 0x101 not in (a.id, b.id)


def test_segment_id_collision(lender: sisci.Descriptor, borrower: sisci.Descriptor) -> None:
    """A used id on the same host is SegmentIdUsed; other hosts and removed ids are free."""
    seg = lender.create_segment(SEG, 0x102)
    with pytest.raises(sisci.SegmentIdUsed):
        lender.create_segment(SEG, 0x102)
    assert borrower.create_segment(SEG, 0x102).id == 0x102
    seg.remove()
    assert lender.create_segment(SEG, 0x102).id == 0x102


def test_fresh_segment_reads_zero(lender: sisci.Descriptor) -> None:
    """A new segment reads as zeros even where a removed one had data."""
    seg = lender.create_segment(SEG, 0x103)
    mp = seg.map()
    mp.view[:] = b"\xab" * SEG
    seg.remove()
    again = lender.create_segment(SEG, 0x103)
    assert bytes(again.map().view) == bytes(SEG)


def test_set_available_before_prepare_is_not_prepared(lender: sisci.Descriptor) -> None:
    """set_available before prepare raises NotPrepared; after prepare it works."""
    seg = lender.create_segment(SEG, 0x104)
    with pytest.raises(sisci.NotPrepared):
        seg.set_available(0)
    seg.prepare(0).set_available(0)


def test_private_segment_cannot_be_available(lender: sisci.Descriptor,
                                             borrower: sisci.Descriptor) -> None:
    """A private segment raises IllegalOperation on set_available and cannot be connected."""
    seg = lender.create_segment(SEG, 0x105, private=True).prepare(0)
    with pytest.raises(sisci.IllegalOperation):
        seg.set_available(0)
    with pytest.raises(sisci.NoSuchSegment):
        borrower.connect_segment(lender.local_node_id(0), 0x105, 0, timeout=0.1)


def test_prepare_on_missing_adapter(lender: sisci.Descriptor) -> None:
    """Preparing on an adapter the host lacks raises NoSuchAdapter."""
    seg = lender.create_segment(SEG, 0x106)
    with pytest.raises(sisci.NoSuchAdapter):
        seg.prepare(1)


def test_double_remove_is_illegal(lender: sisci.Descriptor) -> None:
    """Removing a removed segment raises IllegalOperation, as do prepare and map."""
    seg = lender.create_segment(SEG, 0x107)
    seg.remove()
    with pytest.raises(sisci.IllegalOperation):
        seg.remove()
    with pytest.raises(sisci.IllegalOperation):
        seg.prepare(0)
    with pytest.raises(sisci.IllegalOperation):
        seg.map()


def test_use_after_close_is_illegal(cluster: RunDir) -> None:
    """After close the descriptor and the segments it made raise IllegalOperation."""
    sd = sisci.open("lender", cluster.cluster, "closer")
    seg = sd.create_segment(SEG, 0x108).prepare(0)
    sd.close()
    assert seg.removed
    with pytest.raises(sisci.IllegalOperation):
        sd.create_segment(SEG, 0x109)
    with pytest.raises(sisci.IllegalOperation):
        sd.connect_segment(4, 0x108, timeout=0.1)
    with pytest.raises(sisci.IllegalOperation):
        sd.create_interrupt()
    with pytest.raises(sisci.IllegalOperation):
        seg.set_available(0)
    with pytest.raises(sisci.IllegalOperation):
        seg.map()
    sd.close()  # closing twice is harmless
    with sisci.open("lender", cluster.cluster, "after") as again:
        assert again.create_segment(SEG, 0x108).id == 0x108  # the id was released


# -- connect ------------------------------------------------------------------------------------


def test_connect_by_node_segment_and_adapter(lender: sisci.Descriptor,
                                             borrower: sisci.Descriptor) -> None:
    """connect_segment(node id, segment id, adapter) reaches the owner's segment."""
    _offer(lender, 0x110, 3 * SEG)
    node = lender.local_node_id(0)
    assert node != borrower.local_node_id(0)
    rs = borrower.connect_segment(node, 0x110, 0, timeout=1.0)
    assert (rs.node_id, rs.id, rs.adapter, rs.size, rs.host) == (node, 0x110, 0, 3 * SEG,
                                                                 "lender")
    assert not rs.multicast
    rs.disconnect()
    with pytest.raises(sisci.NotConnected):
        rs.disconnect()
    with pytest.raises(sisci.NotConnected):
        rs.map()


def test_connect_missing_segment(lender: sisci.Descriptor, borrower: sisci.Descriptor) -> None:
    """A missing or not-available segment raises NoSuchSegment after the timeout."""
    node = lender.local_node_id(0)
    t0 = time.monotonic()
    with pytest.raises(sisci.NoSuchSegment):
        borrower.connect_segment(node, 0x111, 0, timeout=0.2)
    assert time.monotonic() - t0 >= 0.15
    lender.create_segment(SEG, 0x111).prepare(0)  # prepared, never set available
    with pytest.raises(sisci.NoSuchSegment):
        borrower.connect_segment(node, 0x111, 0, timeout=0.1)


def test_connect_unknown_node_id(borrower: sisci.Descriptor) -> None:
    """A node id no adapter has raises NoSuchNodeId; a missing adapter NoSuchAdapter."""
    for node in (5, 100, 0):
        with pytest.raises(sisci.NoSuchNodeId):
            borrower.connect_segment(node, 0x112, 0, timeout=0.1)
    with pytest.raises(sisci.NoSuchAdapter):
        borrower.connect_segment(4, 0x112, 1, timeout=0.1)


def test_connect_waits_for_late_segment(lender: sisci.Descriptor,
                                        borrower: sisci.Descriptor) -> None:
    """connect waits up to its timeout for a segment that becomes available later."""
    errors: list[BaseException] = []

    def later() -> None:
        time.sleep(0.3)
        try:
            _offer(lender, 0x113)
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    th = threading.Thread(target=later)
    t0 = time.monotonic()
    th.start()
    try:
        rs = borrower.connect_segment(lender.local_node_id(0), 0x113, 0, timeout=3.0)
    finally:
        th.join(5)
    assert not errors
    assert time.monotonic() - t0 >= 0.25
    assert rs.size == SEG


# -- maps ---------------------------------------------------------------------------------------


def test_remote_map_data_both_ways(lender: sisci.Descriptor,
                                   borrower: sisci.Descriptor) -> None:
    """Writes through a remote map land in the owner's local map, and the other way round."""
    seg = _offer(lender, 0x120, 2 * SEG)
    local = seg.map()
    remote = borrower.connect_segment(lender.local_node_id(0), 0x120).map()
    assert remote.size == 2 * SEG
    there = _pattern(SEG, 1)
    remote.view[:SEG] = there.tobytes()
    assert bytes(local.view[:SEG]) == there.tobytes()
    back = _pattern(SEG, 2)
    local.view[SEG:] = back.tobytes()
    assert bytes(remote.view[SEG:]) == back.tobytes()
    arr = remote.array
    assert arr.shape == (2 * SEG,) and arr.dtype == np.uint8
    arr[7] = 0x5A
    assert local.view[7] == 0x5A
    del arr


def test_partial_remote_map(lender: sisci.Descriptor, borrower: sisci.Descriptor) -> None:
    """A map at an offset sees the segment from that offset."""
    seg = _offer(lender, 0x121, 2 * SEG)
    seg.map().view[SEG + 100: SEG + 104] = b"WXYZ"
    rs = borrower.connect_segment(lender.local_node_id(0), 0x121)
    mp = rs.map(SEG + 100, 4096)
    assert mp.size == 4096
    assert bytes(mp.view[:4]) == b"WXYZ"


def test_readonly_maps(lender: sisci.Descriptor, borrower: sisci.Descriptor) -> None:
    """Read-only maps read the data and reject writes with TypeError."""
    seg = _offer(lender, 0x122)
    seg.map().view[:5] = b"hello"
    ro = borrower.connect_segment(lender.local_node_id(0), 0x122).map(readonly=True)
    assert ro.view.readonly
    assert bytes(ro.view[:5]) == b"hello"
    with pytest.raises(TypeError):
        ro.view[0] = 1
    lro = seg.map(readonly=True)
    with pytest.raises(TypeError):
        lro.view[:5] = b"HELLO"
    assert bytes(lro.view[:5]) == b"hello"


def test_map_out_of_range(lender: sisci.Descriptor, borrower: sisci.Descriptor) -> None:
    """Remote and local maps beyond the segment raise OutOfRange."""
    seg = _offer(lender, 0x123)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x123)
    for offset, size in ((SEG - 4096, 8192), (SEG, 4096), (-4096, 4096), (0, SEG + 1),
                         (0, 0)):
        with pytest.raises(sisci.OutOfRange):
            rs.map(offset, size)
        with pytest.raises(sisci.OutOfRange):
            seg.map(offset, size)
    assert rs.map(SEG - 4096, 4096).size == 4096


def test_map_local_segment(cluster: RunDir, lender: sisci.Descriptor) -> None:
    """Two local maps share the segment's memory and use no LUT entries."""
    before = _lut_used(cluster, "lender")
    seg = lender.create_segment(2 * SEG, 0x124)  # local maps need no prepare
    a, b = seg.map(), seg.map(SEG, SEG)
    data = _pattern(SEG, 3).tobytes()
    a.view[SEG:] = data
    assert bytes(b.view) == data
    assert _lut_used(cluster, "lender") == before
    a.unmap()
    with pytest.raises(sisci.IllegalOperation):
        a.unmap()
    assert bytes(b.view) == data


def test_remote_maps_use_lut_entries(cluster: RunDir, lender: sisci.Descriptor,
                                     borrower: sisci.Descriptor) -> None:
    """Each remote map programs the LUT entries its range needs; unmap returns them."""
    seg = _offer(lender, 0x125, 2 * SLICE)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x125)
    before = _lut_used(cluster, "borrower")
    assert _lut_used(cluster, "lender") == 0
    small = rs.map(0, 4096)
    assert _lut_used(cluster, "borrower") == before + _slices(seg.phys, 4096)
    full = rs.map()
    used = before + _slices(seg.phys, 4096) + _slices(seg.phys, 2 * SLICE)
    assert _lut_used(cluster, "borrower") == used
    small2 = rs.map(0, 4096)  # a second map of the same range takes entries of its own
    assert _lut_used(cluster, "borrower") == used + _slices(seg.phys, 4096)
    small.unmap()
    small2.unmap()
    assert _lut_used(cluster, "borrower") == before + _slices(seg.phys, 2 * SLICE)
    full.unmap()
    assert _lut_used(cluster, "borrower") == before
    rs.map(0, 4096)
    rs.disconnect()  # disconnect unmaps what is left
    assert _lut_used(cluster, "borrower") == before


def test_lut_full_is_max_entries(cluster: RunDir, lender: sisci.Descriptor,
                                 borrower: sisci.Descriptor) -> None:
    """Once the 32 LUT entries are in use, another map raises MaxEntries until one is freed."""
    _offer(lender, 0x126, 4 * SLICE)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x126)
    before = _lut_used(cluster, "borrower")
    maps = [rs.map(i * 4096, 4096) for i in range(LUT_ENTRIES - before)]
    assert _lut_used(cluster, "borrower") == LUT_ENTRIES
    with pytest.raises(sisci.MaxEntries):
        rs.map(0, 4096)
    maps.pop().unmap()
    with pytest.raises(sisci.MaxEntries):
        rs.map(0, 2 * SLICE)  # needs at least two consecutive entries; one is free
    maps.append(rs.map(0, 4096))
    for mp in maps:
        mp.unmap()
    assert _lut_used(cluster, "borrower") == before
    big = rs.map()  # 4 slices (or 5 when unaligned) fit again
    big.view[-1] = 1
    assert big.view[-1] == 1


# -- events ---------------------------------------------------------------------------------------


def test_remove_busy_then_force_loses_remote(cluster: RunDir, lender: sisci.Descriptor,
                                             borrower: sisci.Descriptor) -> None:
    """remove is Busy while connected; a forced remove sends 'lost' and frees the LUT."""
    before = _lut_used(cluster, "borrower")
    seg = _offer(lender, 0x130)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x130)
    mp = rs.map()
    seq = mp.create_sequence()
    assert seq.start() is sisci.SeqStatus.OK
    mp.view[:4] = b"live"
    seq.store_barrier()
    assert seq.check() is sisci.SeqStatus.OK
    with pytest.raises(sisci.Busy):
        seg.remove()
    assert not seg.removed
    seg.remove(force=True)
    ev = rs.wait_for_event(EVENT_TIMEOUT)
    assert (ev.reason, ev.node_id, ev.adapter) == ("lost", lender.local_node_id(0), 0)
    assert rs.lost
    assert seq.check() is sisci.SeqStatus.NOT_RETRIABLE
    assert _lut_used(cluster, "borrower") == before
    with pytest.raises(sisci.NotConnected):
        rs.map()
    rs.disconnect()  # still allowed after the segment was lost
    assert not rs.connected


def test_remove_after_disconnect_is_not_busy(lender: sisci.Descriptor,
                                             borrower: sisci.Descriptor) -> None:
    """Once every connection is gone, a plain remove succeeds."""
    seg = _offer(lender, 0x131)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x131)
    rs.map()
    rs.disconnect()
    seg.remove()
    assert seg.removed


def test_set_unavailable_force_disconnect(lender: sisci.Descriptor,
                                          borrower: sisci.Descriptor) -> None:
    """set_unavailable(force_disconnect=True) drops the connection with 'disconnect'."""
    seg = _offer(lender, 0x132)
    got: list[sisci.SegmentEvent] = []
    done = threading.Event()

    def on_event(ev: sisci.SegmentEvent) -> None:
        got.append(ev)
        done.set()

    rs = borrower.connect_segment(lender.local_node_id(0), 0x132, callback=on_event)
    rs.map()
    assert seg.set_unavailable(0, force_disconnect=True) == 1
    assert done.wait(EVENT_TIMEOUT)
    assert [e.reason for e in got] == ["disconnect"]
    assert got[0].node_id == lender.local_node_id(0)
    with pytest.raises(sisci.NoSuchSegment):
        borrower.connect_segment(lender.local_node_id(0), 0x132, timeout=0.1)
    rs.disconnect()
    seg.remove()  # nobody is connected any more


def test_set_unavailable_keeps_connections(lender: sisci.Descriptor,
                                           borrower: sisci.Descriptor) -> None:
    """Without force, set_unavailable refuses new connections and keeps existing ones."""
    seg = _offer(lender, 0x133)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x133)
    mp = rs.map()
    assert seg.set_unavailable(0) == 0
    with pytest.raises(sisci.NoSuchSegment):
        borrower.connect_segment(lender.local_node_id(0), 0x133, timeout=0.1)
    mp.view[:3] = b"yes"
    assert bytes(seg.map().view[:3]) == b"yes"
    with pytest.raises(sisci.Timeout):
        rs.wait_for_event(0.1)
    with pytest.raises(sisci.Busy):
        seg.remove()
    seg.set_available(0)
    borrower.connect_segment(lender.local_node_id(0), 0x133, timeout=1.0).disconnect()


def test_owner_events_wait_style(lender: sisci.Descriptor, borrower: sisci.Descriptor) -> None:
    """The owner's wait_for_event sees 'connect' then 'disconnect' with the peer's node id."""
    seg = _offer(lender, 0x134)
    with pytest.raises(sisci.Timeout):
        seg.wait_for_event(0.05)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x134)
    ev = seg.wait_for_event(EVENT_TIMEOUT)
    assert (ev.reason, ev.node_id, ev.adapter) == ("connect", borrower.local_node_id(0), 0)
    rs.disconnect()
    ev = seg.wait_for_event(EVENT_TIMEOUT)
    assert (ev.reason, ev.node_id) == ("disconnect", borrower.local_node_id(0))


def test_owner_events_callback_style(lender: sisci.Descriptor,
                                     borrower: sisci.Descriptor) -> None:
    """A segment callback receives 'connect' and 'disconnect' events."""
    got: queue.Queue[sisci.SegmentEvent] = queue.Queue()
    seg = lender.create_segment(SEG, 0x135, callback=got.put).prepare(0).set_available(0)
    rs = borrower.connect_segment(lender.local_node_id(0), 0x135)
    assert got.get(timeout=EVENT_TIMEOUT).reason == "connect"
    rs.disconnect()
    ev = got.get(timeout=EVENT_TIMEOUT)
    assert (ev.reason, ev.node_id) == ("disconnect", borrower.local_node_id(0))
    assert seg.events.pending() == 0  # nothing was queued for wait_for_event


def test_wait_on_removed_segment_is_cancelled(lender: sisci.Descriptor) -> None:
    """A wait_for_event blocked when the segment is removed raises Cancelled."""
    seg = lender.create_segment(SEG, 0x136)
    out: list[BaseException] = []

    def waiter() -> None:
        try:
            seg.wait_for_event(EVENT_TIMEOUT)
        except BaseException as e:  # checked below
            out.append(e)

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.1)
    seg.remove()
    th.join(EVENT_TIMEOUT)
    assert not th.is_alive()
    assert len(out) == 1 and isinstance(out[0], sisci.Cancelled)


def test_owner_close_loses_remote(cluster: RunDir, borrower: sisci.Descriptor) -> None:
    """Closing the owner's descriptor tells connected programs their segment is lost."""
    owner = sisci.open("lender", cluster.cluster, "short-lived")
    try:
        _offer(owner, 0x137)
        rs = borrower.connect_segment(owner.local_node_id(0), 0x137)
    finally:
        owner.close()
    assert rs.wait_for_event(EVENT_TIMEOUT).reason == "lost"


# -- a second program -----------------------------------------------------------------------------

CHILD = """
import hashlib, sys
import numpy as np
from smartio import sisci

cluster, node, seg_id, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
half = int(sys.argv[5])
with sisci.open("borrower", cluster, "child") as sd:
    rs = sd.connect_segment(node, seg_id, 0, timeout=5.0)
    mp = rs.map()
    mine = np.random.default_rng(seed).integers(0, 256, half, dtype=np.uint8).tobytes()
    mp.view[:half] = mine
    print("wrote", flush=True)
    sys.stdin.readline()
    print("read", hashlib.sha256(mp.view[half:]).hexdigest(), flush=True)
    sys.stdin.readline()
    mp.unmap()
    rs.disconnect()
print("bye", flush=True)
"""


class Child:
    """The CHILD program with a line channel; ``kill`` always reaps it."""

    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, *map(str, args)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put("")

    def line(self) -> list[str]:
        try:
            line = self._lines.get(timeout=CHILD_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"child {self.proc.pid} said nothing in {CHILD_TIMEOUT:g} s")
        if not line:
            self.proc.wait(CHILD_TIMEOUT)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"child exited with {self.proc.returncode}: {err}")
        return line.split()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(CHILD_TIMEOUT)
        self._reader.join(CHILD_TIMEOUT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def test_data_across_processes(cluster: RunDir, lender: sisci.Descriptor,
                               borrower: sisci.Descriptor) -> None:
    """A second program's remote map and the owner's local map see each other's writes."""
    half = SEG
    seg = _offer(lender, 0x140, 2 * half)
    local = seg.map()
    child = Child(cluster.cluster, lender.local_node_id(0), 0x140, 77, half)
    try:
        assert child.line() == ["wrote"]
        assert bytes(local.view[:half]) == _pattern(half, 77).tobytes()
        ev = seg.wait_for_event(EVENT_TIMEOUT)
        assert (ev.reason, ev.node_id) == ("connect", borrower.local_node_id(0))
        mine = _pattern(half, 78).tobytes()
        local.view[half:] = mine
        child.send("read")
        assert child.line() == ["read", hashlib.sha256(mine).hexdigest()]
        child.send("quit")
        assert child.line() == ["bye"]
        assert child.proc.wait(CHILD_TIMEOUT) == 0
        assert seg.wait_for_event(EVENT_TIMEOUT).reason == "disconnect"
    finally:
        child.kill()
    seg.remove()  # the child's connection is gone, so the segment is not busy



def test_killed_program_releases_its_connection(cluster: RunDir, lender: sisci.Descriptor,
                                                borrower: sisci.Descriptor) -> None:
    """When a connected program dies, its host daemon disconnects it and frees its LUT."""
    before = _lut_used(cluster, "borrower")
    seg = _offer(lender, 0x141, 2 * SEG)
    child = Child(cluster.cluster, lender.local_node_id(0), 0x141, 79, SEG)
    try:
        assert child.line() == ["wrote"]
        assert seg.wait_for_event(EVENT_TIMEOUT).reason == "connect"
        assert _lut_used(cluster, "borrower") > before
        child.proc.kill()
        ev = seg.wait_for_event(EVENT_TIMEOUT)
        assert (ev.reason, ev.node_id) == ("disconnect", borrower.local_node_id(0))
    finally:
        child.kill()
    assert _lut_used(cluster, "borrower") == before
    assert bytes(seg.map().view[:SEG]) == _pattern(SEG, 79).tobytes()  # its writes stay
    seg.remove()
