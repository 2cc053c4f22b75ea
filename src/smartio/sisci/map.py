"""Maps of segments for the CPU, and sequences for checking PIO (SCIMap…, SCI…Sequence).

A :class:`Map` is a real memory mapping: ``view`` (a memoryview) and ``array`` (numpy) are
loads and stores straight into the backing memory, with no software in between. A
:class:`Sequence` tells whether the PIO done between ``start`` and ``check`` could have
been lost to a link failure on the map's path (the SISCI sequence status).

A :class:`MulticastMap` is the one exception to plain stores: a multicast window fans one
posted write out to several hosts, which the emulated switch does in ``write`` (a single
mmap cannot be backed by several memories); no daemon or message is involved.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from smartio.cluster import messages as m
from smartio.errors import Busy, IllegalOperation, OutOfRange
from smartio.hw.units import PAGE_SIZE, align_down, align_up

if TYPE_CHECKING:
    from smartio.hw.mapping import CpuMapping
    from smartio.sisci.descriptor import Descriptor


class SeqStatus(Enum):
    """``sci_sequence_status_t``."""

    OK = "SCI_SEQ_OK"
    RETRIABLE = "SCI_SEQ_RETRIABLE"  # an error happened meanwhile; the path is back: retry
    NOT_RETRIABLE = "SCI_SEQ_NOT_RETRIABLE"  # the path is down (or the segment lost)
    PENDING = "SCI_SEQ_PENDING"


class Map:
    """A CPU mapping of a local or remote segment."""

    def __init__(self, sd: Descriptor, addr: int, size: int, *, readonly: bool, owner: Any,
                 map_id: int | None = None) -> None:
        from smartio.hw.mapping import map_cpu

        self.sd = sd
        self.addr = addr  # physical address in this host's domain
        self.size = size
        self.owner = owner
        self.map_id = map_id
        base = align_down(addr, PAGE_SIZE)
        self._mapping: CpuMapping = map_cpu(sd.fabric, sd.host, base,
                                            align_up(addr + size, PAGE_SIZE) - base,
                                            writable=not readonly)
        off = addr - base
        self.view: memoryview = self._mapping.view[off: off + size]
        self.mapped = True

    @property
    def array(self) -> np.ndarray:
        """A numpy uint8 view of the mapped memory."""
        return np.frombuffer(self.view, dtype=np.uint8)

    def create_sequence(self) -> Sequence:
        return Sequence(self)

    def links(self) -> tuple[int, ...]:
        """Indices of the topology links on the path of this map."""
        pieces = self.sd.fabric.cpu(self.sd.host).translate(self.addr, 1)
        return pieces[0].route.links

    def unmap(self) -> None:
        """Remove the mapping; for a remote segment the LUT entries are returned."""
        if not self.mapped:
            raise IllegalOperation("map is already unmapped")
        try:
            self.view.release()
        except BufferError:
            raise Busy("numpy arrays or views of this map are still alive; delete them "
                       "before unmapping") from None
        try:
            self._mapping.unmap()
        except Busy:
            off = self.addr - self._mapping.addr
            self.view = self._mapping.view[off: off + self.size]
            raise
        self.mapped = False
        if self.map_id is not None and getattr(self.owner, "connected", False):
            self.sd.client.call(m.Unmap(client=self.sd.client.id, conn=self.owner.conn,
                                        map_id=self.map_id))
        if self in self.owner.maps:
            self.owner.maps.remove(self)

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mapped:
            self.unmap()


class Sequence:
    """Error checking of PIO over a map (SCICreateMapSequence / Start / Check)."""

    def __init__(self, mp: Map) -> None:
        self.map = mp
        self._links = mp.links()
        self._downs: list[int] = []

    def _status(self) -> SeqStatus:
        fab = self.map.sd.fabric
        if getattr(self.map.owner, "lost", False):
            return SeqStatus.NOT_RETRIABLE
        if not all(fab.link_is_up(i) for i in self._links):
            return SeqStatus.NOT_RETRIABLE
        if [fab.link_down_count(i) for i in self._links] != self._downs:
            return SeqStatus.RETRIABLE
        return SeqStatus.OK

    def start(self) -> SeqStatus:
        """Begin a sequence of accesses; returns the status of the path now."""
        fab = self.map.sd.fabric
        self._downs = [fab.link_down_count(i) for i in self._links]
        return self._status()

    def check(self) -> SeqStatus:
        """Whether every access since ``start`` reached the segment."""
        return self._status()

    def store_barrier(self) -> None:
        """SCIStoreBarrier: on this emulated fabric stores to a mapping are plain stores to
        shared memory, ordered (x86 TSO) and never write-combined, so no flush is needed;
        what the barrier guarantees — earlier stores are visible — already holds."""


class MulticastMap:
    """A write-only map of a multicast group: each write lands in every member."""

    def __init__(self, sd: Descriptor, addr: int, size: int, owner: Any, map_id: int) -> None:
        self.sd = sd
        self.addr = addr
        self.size = size
        self.owner = owner
        self.map_id = map_id
        self.mapped = True
        self._port = sd.fabric.cpu(sd.host)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Post a write at ``offset``; returns the bytes delivered summed over members."""
        if not self.mapped:
            raise IllegalOperation("multicast map is unmapped")
        n = len(memoryview(data).cast("B"))
        if offset < 0 or offset + n > self.size:
            raise OutOfRange(f"write of {n} bytes at {offset} exceeds the {self.size}-byte map")
        return self._port.write(self.addr + offset, data)

    def unmap(self) -> None:
        if not self.mapped:
            raise IllegalOperation("map is already unmapped")
        self.mapped = False
        if getattr(self.owner, "connected", False):
            self.sd.client.call(m.Unmap(client=self.sd.client.id, conn=self.owner.conn,
                                        map_id=self.map_id))
        if self in self.owner.maps:
            self.owner.maps.remove(self)

    def __enter__(self) -> MulticastMap:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mapped:
            self.unmap()


__all__ = ["Map", "MulticastMap", "SeqStatus", "Sequence"]
