"""A host's SISCI objects: local segments, connections to remote segments, maps, interrupts.

This is the state the NTB driver keeps per host (paper §3.3; SISCI life cycle: create ->
prepare on an adapter -> set available -> remote connect -> map -> unmap, disconnect, set
unavailable, remove). Every object is owned by a client (a program attached to the host);
``release_client`` frees everything a client held. Methods are synchronous and raise the
SISCI-named errors; the daemon turns them into replies and tells peers what changed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from smartio.errors import (
    Busy,
    IllegalOperation,
    IntNoUsed,
    NoSuchIntNo,
    NoSuchSegment,
    NotConnected,
    NotPrepared,
    OutOfRange,
    SegmentIdUsed,
)
from smartio.node.driver import LutRange, NodeDriver

MAX_SEGMENT_ID = (1 << 32) - 1
AUTO_ID_BASE = 0x8000_0000


@dataclass(frozen=True)
class Connector:
    """Who is connected to a local segment: a connection on some host."""

    host: str
    conn_id: int
    node_id: int  # the connector's adapter node id
    via_adapter: int  # our adapter number it came in through


@dataclass
class LocalSegment:
    id: int
    size: int
    phys: int
    owner: str
    private: bool = False
    group: bool = False  # a multicast receive segment (SCI_FLAG_BROADCAST)
    prepared: set[int] = field(default_factory=set)
    available: set[int] = field(default_factory=set)
    connectors: dict[tuple[str, int], Connector] = field(default_factory=dict)


@dataclass
class Connection:
    """A client's connection to a remote segment (or a multicast group)."""

    id: int
    owner: str
    node_id: int
    segment_id: int
    adapter_no: int
    peer_host: str
    peer_adapter: str
    phys: int
    size: int
    members: tuple[tuple[str, str, int], ...] = ()  # multicast: (host, adapter, phys)
    maps: dict[int, LutRange] = field(default_factory=dict)
    lost: bool = False


@dataclass
class LocalInterrupt:
    intno: int
    adapter_no: int
    owner: str
    data: bool


@dataclass
class InterruptConnection:
    id: int
    owner: str
    node_id: int
    intno: int
    peer_host: str
    data: bool


class HostSisci:
    """The SISCI state of one host."""

    def __init__(self, driver: NodeDriver) -> None:
        self.driver = driver
        self.segments: dict[int, LocalSegment] = {}
        self.connections: dict[int, Connection] = {}
        self.interrupts: dict[int, LocalInterrupt] = {}
        self.int_connections: dict[int, InterruptConnection] = {}
        self._ids = itertools.count(1)
        self._auto_seg = itertools.count(AUTO_ID_BASE)
        self._auto_int = itertools.count(0x100)

    # -- local segments ------------------------------------------------------------------

    def create_segment(self, owner: str, seg_id: int | None, size: int, *,
                       private: bool = False, group: bool = False) -> LocalSegment:
        if size <= 0 or size > self.driver.pool.size:
            raise OutOfRange(f"segment size {size} out of range 1..{self.driver.pool.size}")
        if seg_id is None:
            seg_id = next(self._auto_seg)
            while seg_id in self.segments:
                seg_id = next(self._auto_seg)
        elif not 0 <= seg_id <= MAX_SEGMENT_ID:
            raise OutOfRange(f"segment id {seg_id} out of range 0..{MAX_SEGMENT_ID}")
        if seg_id in self.segments:
            raise SegmentIdUsed(f"segment id {seg_id} is already used on host "
                                f"{self.driver.host}")
        phys = self.driver.pool.alloc(size)
        ram = self.driver.fabric.ram(self.driver.host)
        ram.view[phys: phys + size] = bytes(size)  # fresh segments read as zeros
        seg = LocalSegment(seg_id, size, phys, owner, private, group)
        self.segments[seg_id] = seg
        return seg

    def segment(self, owner: str | None, seg_id: int) -> LocalSegment:
        seg = self.segments.get(seg_id)
        if seg is None or (owner is not None and seg.owner != owner):
            raise NoSuchSegment(f"no segment {seg_id} on host {self.driver.host}"
                                + (" owned by this program" if owner else ""))
        return seg

    def prepare(self, owner: str, seg_id: int, adapter_no: int) -> None:
        self.driver.adapter(adapter_no)
        self.segment(owner, seg_id).prepared.add(adapter_no)

    def set_available(self, owner: str, seg_id: int, adapter_no: int) -> None:
        seg = self.segment(owner, seg_id)
        if seg.private:
            raise IllegalOperation(f"segment {seg_id} is private and can never be available")
        if adapter_no not in seg.prepared:
            raise NotPrepared(f"segment {seg_id} is not prepared on adapter {adapter_no}")
        seg.available.add(adapter_no)

    def set_unavailable(self, owner: str, seg_id: int, adapter_no: int,
                        force: bool) -> list[Connector]:
        """Stop new connections; with ``force`` also drop existing ones (returned)."""
        seg = self.segment(owner, seg_id)
        seg.available.discard(adapter_no)
        if not force:
            return []
        dropped = [c for c in seg.connectors.values() if c.via_adapter == adapter_no]
        for c in dropped:
            del seg.connectors[(c.host, c.conn_id)]
        return dropped

    def remove_segment(self, owner: str | None, seg_id: int, force: bool) -> list[Connector]:
        """Remove a segment; Busy while connected unless forced. Returns dropped connectors."""
        seg = self.segment(owner, seg_id)
        if seg.connectors and not force:
            raise Busy(f"segment {seg_id} has {len(seg.connectors)} connection(s); "
                       "disconnect them or remove with force")
        dropped = list(seg.connectors.values())
        del self.segments[seg_id]
        self.driver.pool.free(seg.phys, seg.size)
        return dropped

    def accept_connect(self, seg_id: int, via_adapter: str, connector: Connector,
                       group: bool = False) -> LocalSegment:
        """A peer connects to one of our segments through our adapter ``via_adapter``."""
        seg = self.segments.get(seg_id)
        adapter_no = next((i for i, a in enumerate(self.driver.adapters) if a.id == via_adapter),
                          -1)
        if seg is None or adapter_no not in seg.available or seg.group != group:
            raise NoSuchSegment(f"no segment {seg_id} available on {via_adapter}")
        seg.connectors[(connector.host, connector.conn_id)] = connector
        return seg

    def drop_connector(self, seg_id: int, host: str, conn_id: int) -> Connector | None:
        seg = self.segments.get(seg_id)
        if seg is None:
            return None
        return seg.connectors.pop((host, conn_id), None)

    # -- remote connections and maps -------------------------------------------------------

    def add_connection(self, owner: str, node_id: int, seg_id: int, adapter_no: int,
                       peer_host: str, peer_adapter: str, phys: int, size: int,
                       members: tuple[tuple[str, str, int], ...] = ()) -> Connection:
        conn = Connection(next(self._ids), owner, node_id, seg_id, adapter_no, peer_host,
                          peer_adapter, phys, size, members)
        self.connections[conn.id] = conn
        return conn

    def connection(self, owner: str | None, conn_id: int) -> Connection:
        conn = self.connections.get(conn_id)
        if conn is None or (owner is not None and conn.owner != owner):
            raise NotConnected(f"no remote segment connection {conn_id}")
        return conn

    def map_remote(self, owner: str, conn_id: int, offset: int, size: int) -> tuple[int, LutRange]:
        conn = self.connection(owner, conn_id)
        if conn.lost:
            raise NotConnected(f"connection {conn_id} to segment {conn.segment_id} was lost")
        if offset < 0 or size <= 0 or offset + size > conn.size:
            raise OutOfRange(f"map of {size} bytes at offset {offset} exceeds segment "
                             f"{conn.segment_id} of {conn.size} bytes")
        if conn.peer_host == self.driver.host:
            # A connection to one of our own segments maps RAM directly (no NTB, no LUT).
            rng = LutRange(conn.peer_adapter, 0, 0, conn.phys + offset, size)
        else:
            rng = self.driver.lut_map(conn.adapter_no, conn.peer_adapter, conn.phys + offset,
                                      size)
        map_id = next(self._ids)
        conn.maps[map_id] = rng
        return map_id, rng

    def unmap(self, owner: str, conn_id: int, map_id: int) -> None:
        conn = self.connection(owner, conn_id)
        rng = conn.maps.pop(map_id, None)
        if rng is None and conn.lost:
            return  # the peer dropped the segment; its LUT entries were already cleared
        if rng is None:
            raise IllegalOperation(f"map {map_id} of connection {conn_id} is not mapped")
        self.driver.lut_unmap(rng)

    def disconnect(self, owner: str | None, conn_id: int) -> Connection:
        conn = self.connection(owner, conn_id)
        for rng in conn.maps.values():
            self.driver.lut_unmap(rng)
        conn.maps.clear()
        del self.connections[conn_id]
        return conn

    # -- interrupts ----------------------------------------------------------------------

    def create_interrupt(self, owner: str, adapter_no: int, intno: int | None,
                         data: bool) -> LocalInterrupt:
        self.driver.adapter(adapter_no)
        if intno is None:
            intno = next(self._auto_int)
            while intno in self.interrupts:
                intno = next(self._auto_int)
        if intno in self.interrupts:
            raise IntNoUsed(f"interrupt {intno} already exists on host {self.driver.host}")
        irq = LocalInterrupt(intno, adapter_no, owner, data)
        self.interrupts[intno] = irq
        return irq

    def remove_interrupt(self, owner: str, intno: int) -> None:
        irq = self.interrupts.get(intno)
        if irq is None or irq.owner != owner:
            raise NoSuchIntNo(f"no interrupt {intno} owned by this program")
        del self.interrupts[intno]

    def interrupt_target(self, intno: int, data: bool) -> LocalInterrupt:
        irq = self.interrupts.get(intno)
        if irq is None or irq.data != data:
            kind = "data interrupt" if data else "interrupt"
            raise NoSuchIntNo(f"no {kind} {intno} on host {self.driver.host}")
        return irq

    # -- clients ---------------------------------------------------------------------------

    def owned_by(self, owner: str) -> tuple[list[int], list[int], list[int]]:
        """(segment ids, connection ids, interrupt numbers) a client holds."""
        return ([s.id for s in self.segments.values() if s.owner == owner],
                [c.id for c in self.connections.values() if c.owner == owner],
                [i.intno for i in self.interrupts.values() if i.owner == owner])


__all__ = [
    "Connection",
    "Connector",
    "HostSisci",
    "InterruptConnection",
    "LocalInterrupt",
    "LocalSegment",
]
