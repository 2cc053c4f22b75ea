"""CPU mappings: a program's loads and stores reach remote memory with no software between.

A mapping of a physical range of a host's domain (its RAM, a BAR, or a slice of its NTB
window into another host) is a real ``mmap`` of the backing shared-memory object at the
offset that translation found, placed with ``MAP_FIXED`` inside one reserved virtual range.
Loads and stores are then ordinary memory accesses (DESIGN §3.4).

When the tables change (a link goes down, a LUT entry is cleared) a per-process watcher
thread — control path, never data path — re-translates every mapping and re-maps the
pieces whose target changed: a dead piece becomes a private mapping of an all-0xFF object,
so reads return 0xFF and writes never reach the remote memory (PCIe master-abort
semantics, §6.3); when the link returns the shared mapping is restored and the data
written before the fault is intact. The watcher acknowledges each generation in the
fabric state, so ``Fabric.link_set`` returns only after every process has followed.

Known deviation from silicon: a store into a dead piece lands in a private page that the
writer itself may read back until the watcher's next tick discards it (~1 ms); the remote
memory is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import mmap
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from smartio.errors import Busy, IllegalParameter, OutOfRange, SmartIOError
from smartio.hw.ids import Requester
from smartio.hw.memory import ONES_SIZE, MemoryObject
from smartio.hw.state import H_GEN
from smartio.hw.units import PAGE_SIZE

if TYPE_CHECKING:
    from smartio.hw.fabric import Fabric

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MAP_FAILED = ctypes.c_void_p(-1).value
MAP_FIXED = 0x10
PROT_NONE = 0
MADV_DONTNEED = 4
WATCH_INTERVAL = 0.001


def _mmap(addr: int | None, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    res = _libc.mmap(addr, length, prot, flags, fd, offset)
    if res is None or res == MAP_FAILED:
        err = ctypes.get_errno()
        raise SmartIOError(f"mmap of {length:#x} bytes failed: {os.strerror(err)}")
    return int(res)


@dataclass
class _Piece:
    start: int  # offset within the mapping
    length: int
    target: tuple[str, int] | None  # (object path, offset) or None for a dead piece


class CpuMapping:
    """A CPU mapping of ``[addr, addr+size)`` in ``host``'s physical address space.

    ``view`` is a memoryview (``'B'``) straight onto the mapped memory; ``array`` a numpy
    view. Both become invalid after ``unmap``.
    """

    def __init__(self, manager: MappingManager, requester: Requester, addr: int, size: int,
                 writable: bool) -> None:
        if addr % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
            raise IllegalParameter(f"mapping {addr:#x}+{size:#x}: address and size must be "
                                   "multiples of 4KiB and size > 0")
        self.manager = manager
        self.requester = requester
        self.addr = addr
        self.size = size
        self.writable = writable
        self._prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        self.base = _mmap(None, size, PROT_NONE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        self.pieces: list[_Piece] = []
        self._raw = (ctypes.c_char * size).from_address(self.base)
        self.view = memoryview(self._raw).cast("B")
        if not writable:
            self.view = self.view.toreadonly()
        self._closed = False
        self.view_released = False
        self.sync()

    @property
    def array(self) -> np.ndarray:
        return np.frombuffer(self.view, dtype=np.uint8)

    @property
    def dead_bytes(self) -> int:
        """How many bytes of the mapping currently end in a failed path."""
        return sum(p.length for p in self.pieces if p.target is None)

    def sync(self) -> bool:
        """Re-translate and re-map pieces whose target changed. Returns True if any did."""
        port = self.manager.fabric.port(self.requester)
        new: list[_Piece] = []
        for piece in port.translate(self.addr, self.size, write=self.writable):
            target = (str(piece.obj.path), piece.offset) if piece.obj is not None else None
            new.append(_Piece(piece.addr - self.addr, piece.length, target))
        if [(p.start, p.length, p.target) for p in new] == \
                [(p.start, p.length, p.target) for p in self.pieces]:
            return False
        old = {(p.start, p.length): p.target for p in self.pieces}
        for np_ in new:
            if old.get((np_.start, np_.length), False) == np_.target:
                continue
            self._map_piece(np_)
        self.pieces = new
        return True

    def _map_piece(self, p: _Piece) -> None:
        addr = self.base + p.start
        if p.target is None:
            ones = self.manager.ones
            off = 0
            while off < p.length:
                n = min(ONES_SIZE, p.length - off)
                _mmap(addr + off, n, self._prot, mmap.MAP_PRIVATE | MAP_FIXED, ones.fd, 0)
                off += n
            return
        path, offset = p.target
        fd = self.manager.fd_for(path)
        _mmap(addr, p.length, self._prot, mmap.MAP_SHARED | MAP_FIXED, fd, offset)

    def discard_dead_writes(self) -> None:
        """Drop private copies made by stores into dead pieces (they never reach memory)."""
        for p in self.pieces:
            if p.target is None:
                _libc.madvise(self.base + p.start, p.length, MADV_DONTNEED)

    def in_use(self) -> bool:
        """True while views or arrays other than ``view`` still reference the memory."""
        # Every memoryview (and numpy array made from one) keeps a reference to the
        # ctypes exporter; ours is the attribute plus getrefcount's argument.
        return sys.getrefcount(self._raw) > 2 + (0 if self.view_released else 1)

    def unmap(self) -> None:
        """Unmap; Busy while other views or numpy arrays of the memory are alive (unmapping
        under them would make their next access a segmentation fault)."""
        if self._closed:
            return
        readonly = self.view.readonly
        self.view.release()
        self.view_released = True
        if self.in_use():
            self.view = memoryview(self._raw).cast("B")
            if readonly:
                self.view = self.view.toreadonly()
            self.view_released = False
            raise Busy(f"mapping {self.addr:#x}+{self.size:#x}: views or numpy arrays of it are "
                       "still alive; release or delete them before unmapping")
        self._closed = True
        self.manager._forget(self)
        _libc.munmap(self.base, self.size)

    def __enter__(self) -> CpuMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmap()

    def __repr__(self) -> str:
        return (f"CpuMapping({self.requester}, {self.addr:#x}+{self.size:#x}, "
                f"dead={self.dead_bytes})")


class MappingManager:
    """The mappings of one process on one fabric, and the watcher that keeps them true."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.mappings: list[CpuMapping] = []
        self._fds: dict[str, int] = {}
        self.ones = MemoryObject(fabric.cluster, "ones", ONES_SIZE, create=True, fill=0xFF)
        self._lock = threading.RLock()
        self._slot = fabric.state.mapper_register()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.remaps = 0

    def fd_for(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDWR)
            self._fds[path] = fd
        return fd

    def map(self, requester: Requester, addr: int, size: int, *,
            writable: bool = True) -> CpuMapping:
        if not requester.cpu:
            raise IllegalParameter(f"{requester} is not a CPU; only CPUs map memory")
        hmap = self.fabric.maps[requester.host]
        if addr + size > 1 << 52:
            raise OutOfRange(f"mapping {addr:#x}+{size:#x} beyond the physical address space "
                             f"of {hmap.host}")
        with self._lock:
            m = CpuMapping(self, requester, addr, size, writable)
            self.mappings.append(m)
        self._ensure_thread()
        return m

    def _forget(self, m: CpuMapping) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self.mappings.remove(m)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="smartio-mapping-watch",
                                            daemon=True)
            self._thread.start()

    def sync_all(self) -> None:
        """Bring every mapping up to the current tables and acknowledge the generation."""
        gen = self.fabric.state.q[H_GEN]
        with self._lock:
            for m in list(self.mappings):
                if m.sync():
                    self.remaps += 1
                m.discard_dead_writes()
        self.fabric.state.mapper_ack(self._slot, gen)

    def _watch(self) -> None:
        q = self.fabric.state.q
        seen = -1
        while not self._stop.wait(WATCH_INTERVAL):
            try:
                gen = q[H_GEN]
                if gen != seen:
                    self.sync_all()
                    seen = gen
                else:
                    with self._lock:
                        for m in self.mappings:
                            if m.pieces and any(p.target is None for p in m.pieces):
                                m.discard_dead_writes()
            except Exception:  # the watcher must survive a bad tick; log and go on
                log.exception("err_mapping_watch")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for m in list(self.mappings):
            try:
                m.unmap()
            except Busy:  # leave it mapped rather than pull memory from under live views
                log.warning("err_unmap_busy: %r left mapped at close", m)
                self._forget(m)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self.fabric.state.mapper_release(self._slot)
        self.ones.close()
        _managers.pop(id(self.fabric), None)


_managers: dict[int, MappingManager] = {}
_owners: weakref.WeakValueDictionary[int, Fabric] = weakref.WeakValueDictionary()


def mappers_for(fabric: Fabric, create: bool = True) -> MappingManager | None:
    """This process's mapping manager for ``fabric`` (created on first use)."""
    mgr = _managers.get(id(fabric))
    if mgr is None and create:
        mgr = MappingManager(fabric)
        _managers[id(fabric)] = mgr
        _owners[id(fabric)] = fabric
    return mgr


def map_cpu(fabric: Fabric, host: str, addr: int, size: int, *, writable: bool = True,
            socket: int = 0) -> CpuMapping:
    """Map ``[addr, addr+size)`` of ``host``'s physical address space for its CPU."""
    mgr = mappers_for(fabric)
    assert mgr is not None
    return mgr.map(Requester.cpu_of(host, socket), addr, size, writable=writable)


__all__ = ["CpuMapping", "MappingManager", "map_cpu", "mappers_for"]
