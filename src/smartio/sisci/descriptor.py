"""The SISCI virtual device descriptor (SCIOpen / SCIClose) and the objects made from it.

A :class:`Descriptor` attaches this program to a host of a running cluster (by name: the
``host`` argument or ``SMARTIO_HOST``; the cluster by ``cluster`` or ``SMARTIO_CLUSTER``),
creates and connects segments, interrupts and DMA queues, and routes the daemon's events to
them. Closing it (or leaving its ``with`` block) releases everything it created; if the
program dies instead, the host daemon releases the same things and tells the peers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from smartio.cluster import messages as m
from smartio.cluster.client import DaemonClient
from smartio.cluster.handlers import BROADCAST_NODE_ID
from smartio.errors import IllegalOperation, SmartIOError
from smartio.hw.fabric import Fabric
from smartio.sisci.dma import DmaQueue
from smartio.sisci.interrupt import LocalInterrupt, RemoteInterrupt
from smartio.sisci.segment import LocalSegment, RemoteSegment, SegmentEvent


class Descriptor:
    """An open SISCI descriptor on one host."""

    def __init__(self, host: str | None = None, cluster: str | None = None,
                 name: str = "") -> None:
        self.client = DaemonClient(host, cluster, name)
        self.host = self.client.host
        self.cluster = self.client.cluster
        self.node_ids: list[int] = list(self.client.hello["node_ids"])
        self._fabric: Fabric | None = None
        self._objects: dict[tuple[str, int], Any] = {}
        self.closed = False
        self.client.add_listener(self._on_event)

    @property
    def fabric(self) -> Fabric:
        if self._fabric is None:
            self._fabric = Fabric.attach(self.client.topology, self.cluster)
        return self._fabric

    # -- queries ------------------------------------------------------------------------------

    def local_node_id(self, adapter: int = 0) -> int:
        """This host's node id on an adapter (SCIGetLocalNodeId)."""
        try:
            return self.node_ids[adapter]
        except IndexError:
            from smartio.errors import NoSuchAdapter

            raise NoSuchAdapter(f"host {self.host} has no adapter {adapter}") from None

    def probe_node(self, node_id: int, adapter: int = 0) -> bool:
        """Whether ``node_id`` is reachable through ``adapter`` with every link up."""
        from smartio.node.driver import node_ids

        target = node_ids(self.fabric).get(node_id)
        if target is None:
            return False
        local = self.client.hello["adapters"][adapter]
        route = self.fabric.nt.route(local, target)
        host = target.split(":", 1)[0]
        return (route is not None and self.fabric.links_up(route.links)
                and self.client.rundir.alive(host))

    # -- segments -------------------------------------------------------------------------

    def create_segment(self, size: int, segment_id: int | None = None, *,
                       private: bool = False, broadcast: bool = False,
                       callback: Callable[[SegmentEvent], object] | None = None) -> LocalSegment:
        """Create a local segment (SCICreateSegment; ``segment_id=None`` = SCI_FLAG_AUTO_ID,
        ``broadcast`` = a multicast receive segment)."""
        self._check_open()
        data = self.client.call(m.CreateSegment(client=self.client.id, segment=segment_id,
                                                size=size, private=private, group=broadcast))
        seg = LocalSegment(self, data["segment"], data["size"], data["phys"], callback)
        self._objects[("seg", seg.id)] = seg
        return seg

    def connect_segment(self, node_id: int, segment_id: int, adapter: int = 0, *,
                        timeout: float = 5.0, broadcast: bool = False,
                        callback: Callable[[SegmentEvent], object] | None = None
                        ) -> RemoteSegment:
        """Connect to a segment of node ``node_id`` (SCIConnectSegment). With
        ``broadcast`` (or ``node_id=BROADCAST_NODE_ID``) connect to every multicast receive
        segment with that id. Waits up to ``timeout`` s for the segment to become available.
        """
        self._check_open()
        data = self.client.call(m.ConnectSegment(
            client=self.client.id, node_id=node_id, segment=segment_id, adapter=adapter,
            timeout=timeout, group=broadcast), timeout=timeout + 10)
        multicast = broadcast or node_id == BROADCAST_NODE_ID
        rs = RemoteSegment(self, data["conn"], node_id, segment_id, adapter, data["size"],
                           data.get("host", ""), multicast, callback)
        self._objects[("conn", rs.conn)] = rs
        return rs

    # -- interrupts -----------------------------------------------------------------------

    def create_interrupt(self, adapter: int = 0, intno: int | None = None, *,
                         data: bool = False,
                         callback: Callable[[bytes], object] | None = None) -> LocalInterrupt:
        """Create a plain (or, with ``data``, a data) interrupt others can trigger."""
        self._check_open()
        rep = self.client.call(m.CreateInterrupt(client=self.client.id, adapter=adapter,
                                                 intno=intno, data=data))
        irq = LocalInterrupt(self, rep["intno"], data, callback)
        self._objects[("int", irq.intno)] = irq
        return irq

    def create_data_interrupt(self, adapter: int = 0, intno: int | None = None, *,
                              callback: Callable[[bytes], object] | None = None
                              ) -> LocalInterrupt:
        return self.create_interrupt(adapter, intno, data=True, callback=callback)

    def connect_interrupt(self, node_id: int, intno: int, adapter: int = 0, *,
                          data: bool = False, timeout: float = 5.0) -> RemoteInterrupt:
        self._check_open()
        rep = self.client.call(m.ConnectInterrupt(client=self.client.id, node_id=node_id,
                                                  intno=intno, adapter=adapter, data=data,
                                                  timeout=timeout))
        ri = RemoteInterrupt(self, rep["conn"], node_id, intno, data)
        self._objects[("rint", ri.conn)] = ri
        return ri

    def connect_data_interrupt(self, node_id: int, intno: int, adapter: int = 0, *,
                               timeout: float = 5.0) -> RemoteInterrupt:
        return self.connect_interrupt(node_id, intno, adapter, data=True, timeout=timeout)

    # -- DMA and links ----------------------------------------------------------------------

    def create_dma_queue(self, adapter: int = 0, max_entries: int = 16) -> DmaQueue:
        self._check_open()
        rep = self.client.call(m.CreateDmaQueue(client=self.client.id, adapter=adapter,
                                                max_entries=max_entries))
        q = DmaQueue(self, rep["queue"], adapter, max_entries)
        self._objects[("dma", q.id)] = q
        return q

    def link_set(self, target: str, up: bool) -> None:
        """Fault injection: take an adapter's links down or up (``HOST:ADAPTER``)."""
        self.client.call(m.LinkSet(target=target, up=up))

    # -- events and life cycle ---------------------------------------------------------------

    def _on_event(self, ev: m.Msg) -> None:
        if isinstance(ev, m.SegmentEvent):
            key = ("seg", ev.id) if ev.local else ("conn", ev.id)
            obj = self._objects.get(key)
            se = SegmentEvent(ev.reason, ev.node_id, ev.adapter)
            if isinstance(obj, RemoteSegment):
                obj._on_event(se)
            elif isinstance(obj, LocalSegment):
                obj.events.put(se)
        elif isinstance(ev, m.InterruptEvent):
            irq = self._objects.get(("int", ev.intno))
            if isinstance(irq, LocalInterrupt):
                irq.events.put(ev.payload)
        elif isinstance(ev, m.DmaEvent):
            q = self._objects.get(("dma", ev.queue))
            if isinstance(q, DmaQueue):
                q._complete(ev)

    def _forget(self, obj: object) -> None:
        for k, v in list(self._objects.items()):
            if v is obj:
                del self._objects[k]

    def _check_open(self) -> None:
        if self.closed:
            raise IllegalOperation("the descriptor is closed")

    def close(self) -> None:
        """Release every object made through this descriptor, then detach (SCIClose)."""
        if self.closed:
            return
        for obj in reversed(list(self._objects.values())):
            with contextlib.suppress(SmartIOError):
                if isinstance(obj, RemoteSegment) and obj.connected:
                    obj.disconnect()
                elif isinstance(obj, LocalSegment) and not obj.removed:
                    obj.remove(force=True)
                elif isinstance(obj, (LocalInterrupt, DmaQueue)) and not obj.removed:
                    obj.remove()
                elif isinstance(obj, RemoteInterrupt) and obj.connected:
                    obj.disconnect()
        self.closed = True
        if self._fabric is not None:
            self._fabric.close()
        self.client.close()

    def __enter__(self) -> Descriptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(host: str | None = None, cluster: str | None = None, name: str = "") -> Descriptor:
    """Open a descriptor on ``host`` (SCIOpen)."""
    return Descriptor(host, cluster, name)


__all__ = ["BROADCAST_NODE_ID", "Descriptor", "open"]
