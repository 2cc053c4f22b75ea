"""CPU mappings across real processes: link faults, crashed mappers, leftovers, cleanup.

DESIGN §3.4 and paper §6.3: a CPU mapping through an NTB window reads all 0xFF and drops
writes while its path is down, and comes back with the remote memory intact when the link
returns; ``Fabric.link_set`` returns only after every live process's mappings follow. The
children here are short-lived ``sys.executable -c`` processes driven over stdin/stdout.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from uuid import uuid4

import numpy as np
import pytest

from smartio.errors import Busy, NotFound
from smartio.hw.fabric import Fabric
from smartio.hw.mapping import map_cpu
from smartio.hw.memory import SHM_DIR, cleanup_cluster, list_cluster_objects
from smartio.hw.state import MAPPER_BASE, MAPPER_SLOTS
from smartio.hw.topology import TopologySpec, load_preset

PRESET = "back-to-back"
ADAPTER = "borrower:ntb0"
LINK = "borrower:ntb0"
SIZE = 1 << 20
PATTERN = bytes(range(1, 65))
REPLY_TIMEOUT = 15.0

# The child: attach (or create) the cluster, map the borrower's window slice, then answer
# one command per stdin line with one stdout line.
CHILD = f"""
import sys
from smartio.hw.fabric import Fabric
from smartio.hw.mapping import map_cpu
from smartio.hw.topology import TopologySpec, load_preset

mode, cluster, addr, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
topo = load_preset({PRESET!r})
if mode == "create":
    fab = Fabric.create(topo, cluster)
    b = fab.adapters[{ADAPTER!r}]
    b.peer_mw_set_trans(0, "lender:ntb0", 0)
    fab.reserve_cpu_requesters({ADAPTER!r})
    addr = b.slice_addr(0)
else:
    fab = Fabric.attach(topo, cluster)
m = map_cpu(fab, "borrower", addr, size)
n = len({PATTERN!r})
m.view[:n] = {PATTERN!r}
print("mapped", bytes(m.view[:n]).hex(), flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "read":
        print("read", bytes(m.view[:n]).hex(), m.dead_bytes, flush=True)
    elif cmd[0] == "write":
        m.view[:n] = bytes.fromhex(cmd[1])
        print("wrote", flush=True)
    elif cmd[0] == "quit":
        break
m.unmap()
fab.close()
print("bye", flush=True)
"""


class Child:
    """A child process running CHILD, with a line-based request/reply channel."""

    def __init__(self, mode: str, cluster: str, addr: int = 0, size: int = SIZE) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, cluster, str(addr), str(size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put("")  # EOF

    def reply(self) -> list[str]:
        try:
            line = self._lines.get(timeout=REPLY_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"child {self.proc.pid} did not answer in {REPLY_TIMEOUT}s")
        if not line:
            self.proc.wait(timeout=REPLY_TIMEOUT)
            err = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"child exited with {self.proc.returncode}: {err}")
        return line.split()

    def ask(self, cmd: str) -> list[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.reply()

    def read(self) -> tuple[bytes, int]:
        word, data, dead = self.ask("read")
        assert word == "read"
        return bytes.fromhex(data), int(dead)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=REPLY_TIMEOUT)
        self._reader.join(timeout=REPLY_TIMEOUT)  # it ends at EOF; then close its pipe
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def quit(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.ask("quit") == ["bye"]
                self.proc.wait(timeout=REPLY_TIMEOUT)
        finally:
            self.kill()


def _name() -> str:
    return f"t-{uuid4().hex[:8]}"


def _program_window(fab: Fabric, lender_addr: int = 0) -> int:
    """Point slice 0 of the borrower's window at ``lender_addr``; returns the slice address."""
    b = fab.adapters[ADAPTER]
    b.peer_mw_set_trans(0, "lender:ntb0", lender_addr)
    fab.reserve_cpu_requesters(ADAPTER)
    return b.slice_addr(0)


def _mapper_pids(fab: Fabric) -> set[int]:
    q = fab.state.q
    return {q[MAPPER_BASE + 2 * s] for s in range(MAPPER_SLOTS)} - {0}


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.002)
    return cond()


@pytest.fixture
def cluster() -> Iterator[str]:
    """A fresh cluster name with no fabric yet; whatever it ends up holding is removed."""
    name = _name()
    try:
        yield name
    finally:
        cleanup_cluster(name)


@pytest.fixture
def fab(make_fabric: Callable[[TopologySpec], Fabric]) -> Fabric:
    """A back-to-back fabric, destroyed (and checked for leftovers) by conftest."""
    return make_fabric(load_preset(PRESET))


# -- link faults -------------------------------------------------------------------------


def test_link_down_in_another_process(fab: Fabric) -> None:
    """Link down turns another process's mapping to 0xFF and drops its writes; link up
    restores the mapping with the data written before the fault."""
    lender_off = fab.adapters[ADAPTER].slice_size  # slice 1 of lender RAM, not address 0
    addr = _program_window(fab, lender_off)
    ram = fab.ram("lender").view
    child = Child("attach", fab.cluster, addr)
    try:
        word, data = child.reply()
        assert word == "mapped" and bytes.fromhex(data) == PATTERN
        assert bytes(ram[lender_off:lender_off + len(PATTERN)]) == PATTERN
        assert child.read() == (PATTERN, 0)

        assert fab.link_set(LINK, False) == []
        data, dead = child.read()
        assert data == b"\xff" * len(PATTERN)
        assert dead == SIZE
        other = bytes(reversed(PATTERN))
        assert child.ask(f"write {other.hex()}") == ["wrote"]
        time.sleep(0.02)
        assert bytes(ram[lender_off:lender_off + len(PATTERN)]) == PATTERN
        assert _wait_for(lambda: child.read()[0] == b"\xff" * len(PATTERN))

        assert fab.link_set(LINK, True) == []
        assert child.read() == (PATTERN, 0)
        assert bytes(ram[lender_off:lender_off + len(PATTERN)]) == PATTERN
        child.quit()
    finally:
        child.kill()
        ram.release()


def test_link_down_in_this_process(fab: Fabric) -> None:
    """In one process, a mapping (and its numpy view) reads 0xFF while the link is down and
    the lender's RAM keeps what was written before the fault."""
    addr = _program_window(fab)
    m = map_cpu(fab, "borrower", addr, SIZE)
    ram = fab.ram("lender").view
    try:
        a = m.array
        assert a.shape == (SIZE,) and a.dtype == np.uint8
        a[:4096] = np.arange(4096) % 251
        expect = (np.arange(4096) % 251).astype(np.uint8)
        assert np.array_equal(np.frombuffer(ram, np.uint8, 4096), expect)
        m.view[SIZE - 4:] = b"tail"
        assert bytes(ram[SIZE - 4:SIZE]) == b"tail"

        assert fab.link_set(LINK, False) == []
        assert m.dead_bytes == SIZE
        assert (m.array == 0xFF).all()
        m.view[:4] = b"lost"
        assert _wait_for(lambda: bytes(m.view[:4]) == b"\xff" * 4)
        assert np.array_equal(np.frombuffer(ram, np.uint8, 4096), expect)

        assert fab.link_set(LINK, True) == []
        assert m.dead_bytes == 0
        assert np.array_equal(m.array[:4096], expect)
        assert bytes(m.view[SIZE - 4:]) == b"tail"
        with pytest.raises(Busy, match="numpy arrays"):
            m.unmap()  # the array still points into the mapping
        assert bytes(m.view[SIZE - 4:]) == b"tail"  # and the mapping is still there
        del a
    finally:
        m.unmap()
        ram.release()


def test_read_only_mapping_rejects_writes(fab: Fabric) -> None:
    """A read-only mapping sees remote memory but refuses stores with TypeError."""
    addr = _program_window(fab)
    fab.ram("lender").view[:4] = b"rrrr"
    ro = map_cpu(fab, "borrower", addr, SIZE, writable=False)
    try:
        assert bytes(ro.view[:4]) == b"rrrr"
        assert ro.view.readonly
        with pytest.raises(TypeError):
            ro.view[0] = 1
        with pytest.raises(TypeError):
            ro.view[:4] = b"wwww"
        assert bytes(fab.ram("lender").view[:4]) == b"rrrr"
        assert not ro.array.flags.writeable
    finally:
        ro.unmap()


def test_unmapped_slice_reads_ones(fab: Fabric) -> None:
    """A window slice with no LUT entry reads 0xFF (master abort) and starts to work once
    the entry is programmed."""
    b = fab.adapters[ADAPTER]
    fab.reserve_cpu_requesters(ADAPTER)
    m = map_cpu(fab, "borrower", b.slice_addr(3), SIZE)
    try:
        assert m.dead_bytes == SIZE
        assert bytes(m.view[:8]) == b"\xff" * 8
        fab.ram("lender").view[:8] = b"lut-okay"
        b.peer_mw_set_trans(3, "lender:ntb0", 0)
        assert fab.link_set(LINK, True) == []  # waits until the watcher has followed
        assert bytes(m.view[:8]) == b"lut-okay"
    finally:
        m.unmap()


def test_closing_a_second_handle_keeps_link_set_waiting(fab: Fabric) -> None:
    """Two Fabric handles in one process hold separate mapper slots, so closing one does not
    let link_set return before the other's mappings have followed."""
    addr = _program_window(fab)
    m = map_cpu(fab, "borrower", addr, SIZE)
    other = Fabric.attach(load_preset(PRESET), fab.cluster)
    try:
        map_cpu(other, "borrower", addr, SIZE)
        assert len(_mapper_pids(fab)) == 1
        slots = [fab.state.q[MAPPER_BASE + 2 * s] for s in range(MAPPER_SLOTS)]
        assert slots.count(os.getpid()) == 2
        other.close()
        m.view[:4] = b"kept"
        for _ in range(20):
            assert fab.link_set(LINK, False) == []
            assert bytes(m.view[:4]) == b"\xff" * 4
            assert fab.link_set(LINK, True) == []
            assert bytes(m.view[:4]) == b"kept"
    finally:
        other.close()
        m.unmap()


# -- crashed and live processes --------------------------------------------------------


def test_killed_mapper_does_not_block_link_set(fab: Fabric) -> None:
    """A child SIGKILLed while holding mappings does not block link_set; its mapper slot is
    freed and destroy leaves nothing behind."""
    addr = _program_window(fab)
    child = Child("attach", fab.cluster, addr)
    try:
        assert child.reply()[0] == "mapped"
        pid = child.proc.pid
        assert pid in _mapper_pids(fab)
        os.kill(pid, signal.SIGKILL)  # not reaped yet: a zombie counts as dead
        # A slot still waited for would come back as [pid] after the timeout.
        assert fab.link_set(LINK, False, timeout=3.0) == []
        assert fab.link_set(LINK, True, timeout=3.0) == []
        assert pid not in _mapper_pids(fab)
    finally:
        child.kill()
    cluster = fab.cluster
    fab.destroy()
    assert list_cluster_objects(cluster) == []


def test_create_after_crash_removes_leftovers(cluster: str) -> None:
    """Fabric.create over a crashed (SIGKILLed) run's objects removes them and starts fresh."""
    child = Child("create", cluster)
    try:
        assert child.reply()[0] == "mapped"
        os.kill(child.proc.pid, signal.SIGKILL)
    finally:
        child.kill()
    assert list_cluster_objects(cluster)
    fab = Fabric.create(load_preset(PRESET), cluster)
    try:
        assert bytes(fab.ram("lender").view[:len(PATTERN)]) == bytes(len(PATTERN))
        assert fab.adapters[ADAPTER].lut_entries() == []
        assert _mapper_pids(fab) == set()
        addr = _program_window(fab)
        with map_cpu(fab, "borrower", addr, SIZE) as m:
            m.view[:4] = b"anew"
            assert bytes(fab.ram("lender").view[:4]) == b"anew"
    finally:
        fab.destroy()
    assert list_cluster_objects(cluster) == []


def test_create_while_cluster_in_use_is_busy(fab: Fabric) -> None:
    """Fabric.create of a cluster another live process holds mappings of raises Busy and
    leaves that cluster untouched."""
    addr = _program_window(fab)
    child = Child("attach", fab.cluster, addr)
    try:
        assert child.reply()[0] == "mapped"
        before = list_cluster_objects(fab.cluster)
        with pytest.raises(Busy, match=str(child.proc.pid)):
            Fabric.create(load_preset(PRESET), fab.cluster)
        assert list_cluster_objects(fab.cluster) == before
        assert bytes(fab.ram("lender").view[:len(PATTERN)]) == PATTERN
        assert child.read() == (PATTERN, 0)
        child.quit()
    finally:
        child.kill()


# -- names and cleanup -----------------------------------------------------------------


def test_destroy_removes_every_object(fab: Fabric) -> None:
    """destroy removes every /dev/shm/smartio.<cluster>.* object, the all-0xFF one too."""
    addr = _program_window(fab)
    m = map_cpu(fab, "borrower", addr, SIZE)
    m.view[:4] = b"data"
    fab.bar("nvme0", 0)
    names = fab.objects()
    assert f"smartio.{fab.cluster}.fabric" in names
    assert f"smartio.{fab.cluster}.ones" in names
    assert f"smartio.{fab.cluster}.lender.ram" in names
    cluster = fab.cluster
    fab.destroy()
    assert list_cluster_objects(cluster) == []
    assert [p for p in SHM_DIR.iterdir() if p.name.startswith(f"smartio.{cluster}.")] == []


def test_prefix_named_clusters_do_not_clobber_each_other() -> None:
    """Destroying cluster 'x' leaves cluster 'x-y' intact, and the other way round."""
    x = _name()
    xy = f"{x}-y"
    topo = load_preset(PRESET)
    fx = Fabric.create(topo, x)
    fxy = None
    try:
        fxy = Fabric.create(topo, xy)
        fxy.ram("lender").view[:2] = b"xy"
        fx.ram("lender").view[:2] = b"x!"
        keep = list_cluster_objects(xy)
        assert keep and not set(keep) & set(list_cluster_objects(x))
        fx.destroy()
        assert list_cluster_objects(x) == []
        assert list_cluster_objects(xy) == keep
        assert bytes(fxy.ram("lender").view[:2]) == b"xy"
        with Fabric.attach(topo, xy) as again:
            assert bytes(again.ram("lender").view[:2]) == b"xy"
        fx = Fabric.create(topo, x)
        fxy.destroy()
        assert list_cluster_objects(xy) == []
        assert list_cluster_objects(x)
    finally:
        fx.destroy()
        if fxy is not None:
            fxy.destroy()
        cleanup_cluster(x)
        cleanup_cluster(xy)


def test_attach_to_missing_cluster_says_how_to_create_it() -> None:
    """Fabric.attach to a cluster that does not exist raises NotFound naming how to create it."""
    name = _name()
    with pytest.raises(NotFound, match=name) as exc:
        Fabric.attach(load_preset(PRESET), name)
    assert "Fabric.create" in str(exc.value) or "cluster up" in str(exc.value)
    assert list_cluster_objects(name) == []
