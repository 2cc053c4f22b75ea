"""Local and remote segments (SCICreateSegment … SCIRemoveSegment, SCIConnectSegment …).

A local segment is memory in the host's RAM (from the driver's segment pool) that other
hosts may connect to once it is prepared and set available on an adapter; a remote segment
is a connection to another host's segment, mapped through a local adapter's NTB window.
Segment events arrive as :class:`SegmentEvent` (reasons as SISCI's ``SCI_CB_*``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smartio.cluster import messages as m
from smartio.errors import IllegalOperation, NotConnected, OutOfRange
from smartio.sisci.events import EventSink
from smartio.sisci.map import Map, MulticastMap

if TYPE_CHECKING:
    from smartio.sisci.descriptor import Descriptor

CONNECT, DISCONNECT, LOST = "connect", "disconnect", "lost"
OPERATIONAL, NOT_OPERATIONAL = "operational", "not-operational"


@dataclass(frozen=True)
class SegmentEvent:
    """A segment event: ``reason`` is connect, disconnect, lost, operational or
    not-operational; ``node_id`` the other side's node id."""

    reason: str
    node_id: int
    adapter: int


class LocalSegment:
    """A segment of this host's memory."""

    def __init__(self, sd: Descriptor, seg_id: int, size: int, phys: int,
                 callback: Callable[[SegmentEvent], object] | None) -> None:
        self.sd = sd
        self.id = seg_id
        self.size = size
        self.phys = phys
        self.events: EventSink[SegmentEvent] = EventSink(callback)
        self.maps: list[Map] = []
        self.removed = False

    def _call(self, msg: m.Msg) -> dict[str, object]:
        if self.removed:
            raise IllegalOperation(f"segment {self.id} was removed")
        return self.sd.client.call(msg)

    def prepare(self, adapter: int = 0) -> LocalSegment:
        """Make the segment usable through an adapter (SCIPrepareSegment)."""
        self._call(m.PrepareSegment(client=self.sd.client.id, segment=self.id, adapter=adapter))
        return self

    def set_available(self, adapter: int = 0) -> LocalSegment:
        """Let remote hosts connect through an adapter (SCISetSegmentAvailable)."""
        self._call(m.SetAvailable(client=self.sd.client.id, segment=self.id, adapter=adapter))
        return self

    def set_unavailable(self, adapter: int = 0, *, force_disconnect: bool = False) -> int:
        """Refuse new connections; with ``force_disconnect`` drop existing ones. Returns how
        many were dropped."""
        data = self._call(m.SetUnavailable(client=self.sd.client.id, segment=self.id,
                                           adapter=adapter, force=force_disconnect))
        return int(data["dropped"])  # type: ignore[call-overload]

    def map(self, offset: int = 0, size: int | None = None, *, readonly: bool = False) -> Map:
        """Map (part of) the segment for this program's CPU (SCIMapLocalSegment)."""
        if self.removed:
            raise IllegalOperation(f"segment {self.id} was removed")
        size = self.size - offset if size is None else size
        if offset < 0 or size <= 0 or offset + size > self.size:
            raise OutOfRange(f"map of {size} bytes at offset {offset} exceeds segment {self.id} "
                             f"of {self.size} bytes")
        mp = Map(self.sd, self.phys + offset, size, readonly=readonly, owner=self)
        self.maps.append(mp)
        return mp

    def wait_for_event(self, timeout: float | None = None) -> SegmentEvent:
        """Next segment event (SCIWaitForLocalSegmentEvent)."""
        return self.events.wait(timeout, f"event on segment {self.id}")

    def remove(self, *, force: bool = False) -> None:
        """Remove the segment (SCIRemoveSegment); Busy while connected unless forced."""
        if self.removed:
            raise IllegalOperation(f"segment {self.id} was already removed")
        for mp in list(self.maps):  # first: Busy here must leave the segment intact
            mp.unmap()
        self.sd.client.call(m.RemoveSegment(client=self.sd.client.id, segment=self.id,
                                            force=force))
        self.removed = True
        self.events.close()
        self.sd._forget(self)

    def __enter__(self) -> LocalSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.removed:
            self.remove(force=True)

    def __repr__(self) -> str:
        return f"LocalSegment(id={self.id}, size={self.size})"


class RemoteSegment:
    """A connection to another host's segment (or to a multicast group)."""

    def __init__(self, sd: Descriptor, conn: int, node_id: int, seg_id: int, adapter: int,
                 size: int, host: str, multicast: bool,
                 callback: Callable[[SegmentEvent], object] | None) -> None:
        self.sd = sd
        self.conn = conn
        self.node_id = node_id
        self.id = seg_id
        self.adapter = adapter
        self.size = size
        self.host = host
        self.multicast = multicast
        self.events: EventSink[SegmentEvent] = EventSink(callback)
        self.maps: list[Map | MulticastMap] = []
        self.connected = True
        self.lost = False

    def _on_event(self, ev: SegmentEvent) -> None:
        if ev.reason in (LOST, DISCONNECT):
            self.lost = True
        self.events.put(ev)

    def map(self, offset: int = 0, size: int | None = None, *, readonly: bool = False) -> Map:
        """Map (part of) the remote segment through the local adapter (SCIMapRemoteSegment).

        Each map programs LUT entries on the local adapter; unmap returns them. For a
        multicast connection use :meth:`map_multicast`.
        """
        if self.multicast:
            raise IllegalOperation("a multicast connection is write-only: use map_multicast()")
        data = self._map(offset, size)
        mp = Map(self.sd, data["addr"], data["size"], readonly=readonly, owner=self,
                 map_id=data["map"])
        self.maps.append(mp)
        return mp

    def map_multicast(self, offset: int = 0, size: int | None = None) -> MulticastMap:
        """Map a multicast group (SCIMapRemoteSegment with SCI_FLAG_BROADCAST): each write
        through the map lands in every member's segment."""
        if not self.multicast:
            raise IllegalOperation("not a multicast connection: use map()")
        data = self._map(offset, size)
        mp = MulticastMap(self.sd, data["addr"], data["size"], self, data["map"])
        self.maps.append(mp)
        return mp

    def _map(self, offset: int, size: int | None) -> dict[str, Any]:
        if not self.connected:
            raise NotConnected(f"segment {self.id} on node {self.node_id} is not connected")
        size = self.size - offset if size is None else size
        return self.sd.client.call(m.MapRemote(client=self.sd.client.id, conn=self.conn,
                                               offset=offset, size=size))

    def wait_for_event(self, timeout: float | None = None) -> SegmentEvent:
        """Next event of this connection (SCIWaitForRemoteSegmentEvent)."""
        return self.events.wait(timeout, f"event on remote segment {self.id}")

    def disconnect(self) -> None:
        """Unmap everything and disconnect (SCIDisconnectSegment)."""
        if not self.connected:
            raise NotConnected(f"segment {self.id} on node {self.node_id} is not connected")
        for mp in list(self.maps):
            mp.unmap()
        self.sd.client.call(m.DisconnectSegment(client=self.sd.client.id, conn=self.conn))
        self.connected = False
        self.events.close()
        self.sd._forget(self)

    def __enter__(self) -> RemoteSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connected:
            self.disconnect()

    def __repr__(self) -> str:
        return f"RemoteSegment(node={self.node_id}, id={self.id}, size={self.size})"


__all__ = ["LocalSegment", "RemoteSegment", "SegmentEvent"]
