"""Message handlers of the host daemon, one per message type (``on_<message>``).

Local requests come from programs attached to this host; ``on_peer_*`` requests come from
other hosts' daemons. Each handler validates, changes this host's state through
:class:`~smartio.node.segments.HostSisci`, asks owner daemons when another host is
involved, emits events, and returns the reply data.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from smartio.cluster import messages as m
from smartio.cluster.io import DmaQueueState
from smartio.errors import (
    ConnectionRefused,
    IllegalParameter,
    NoLinkAccess,
    NoSuchNodeId,
    NoSuchSegment,
    OutOfRange,
    SmartIOError,
)
from smartio.hw.multicast import Member
from smartio.node.segments import Connector

if TYPE_CHECKING:
    from smartio.cluster.daemon import ClientInfo, PeerLink
    from smartio.hw.fabric import Fabric
    from smartio.node.driver import LutRange, NodeDriver
    from smartio.node.segments import HostSisci

log = logging.getLogger(__name__)

#: SISCI's node id for "every node of a broadcast group" (DIS_BROADCAST_NODEID_GROUP_ALL).
BROADCAST_NODE_ID = 252
MAX_TIMEOUT = 3600.0


class Handlers:
    """Mixin of the daemon's message handlers."""

    if TYPE_CHECKING:
        host: str
        fabric: Fabric
        driver: NodeDriver
        sisci: HostSisci
        clients: dict[str, ClientInfo]
        requests: int
        errors: int
        stop: asyncio.Event

        async def emit(self, client_id: str, event: m.Msg) -> None: ...
        def release_devices(self, client: str) -> None: ...
        async def release_borrows(self, client: str) -> None: ...
        def forget_borrower(self, host: str) -> None: ...
        def peer(self, host: str) -> PeerLink: ...

    def __init__(self) -> None:
        self.queues: dict[int, DmaQueueState] = {}  # DMA queues (smartio.cluster.io)
        self.dma_luts: dict[int, LutRange] = {}  # connection id -> DMA mapping of the segment
        self.groups: dict[int, int] = {}  # connection id -> multicast group
        self._qids = itertools.count(1)
        self._tids = itertools.count(1)
        self._dma = ThreadPoolExecutor(1, thread_name_prefix="dma-engine")
        self._link_state: dict[int, bool] = {}

    # -- programs --------------------------------------------------------------------------

    async def on_hello(self, msg: m.Hello) -> dict[str, Any]:
        from smartio.cluster.daemon import ClientInfo

        self.clients[msg.client] = ClientInfo(msg.client, msg.pid, msg.name)
        return {"host": self.host, "cluster": self.fabric.cluster,
                "node_ids": [self.driver.local_node_id(i)
                             for i in range(len(self.driver.adapters))],
                "adapters": [a.id for a in self.driver.adapters]}

    async def on_subscribe(self, msg: m.Subscribe) -> dict[str, Any]:
        return {}  # handled in the daemon loop, which knows the socket identity

    async def on_goodbye(self, msg: m.Goodbye) -> dict[str, Any]:
        await self.release_client(msg.client)
        return {}

    async def on_ping(self, msg: m.Ping) -> dict[str, Any]:
        return {"host": self.host}

    async def on_shutdown(self, msg: m.Shutdown) -> dict[str, Any]:
        asyncio.get_running_loop().call_later(0.05, self.stop.set)
        return {}

    async def on_status(self, msg: m.Status) -> dict[str, Any]:
        adapters = []
        for i, ntb in enumerate(self.driver.adapters):
            used, total = len(ntb.lut_entries()), ntb.layout.lut_entries
            adapters.append({"adapter": i, "id": ntb.id, "node_id": self.driver.local_node_id(i),
                             "link_up": ntb.link_is_up(), "lut_used": used, "lut_total": total,
                             "rid_used": len(ntb.rid_entries()),
                             "rid_total": ntb.layout.rid_entries})
        segs = [{"id": s.id, "size": s.size, "owner": self.clients[s.owner].name
                 if s.owner in self.clients else s.owner, "available": sorted(s.available),
                 "connections": len(s.connectors), "group": s.group}
                for s in self.sisci.segments.values()]
        conns = [{"id": c.id, "node_id": c.node_id, "segment": c.segment_id, "host": c.peer_host,
                  "maps": len(c.maps), "lost": c.lost} for c in self.sisci.connections.values()]
        clients = [{"id": c.id, "pid": c.pid, "name": c.name} for c in self.clients.values()]
        return {"host": self.host, "adapters": adapters, "segments": segs, "connections": conns,
                "clients": clients, "pool_used": self.driver.pool.used,
                "pool_size": self.driver.pool.size, "requests": self.requests,
                "errors": self.errors, "interrupts": len(self.sisci.interrupts)}

    async def on_link_set(self, msg: m.LinkSet) -> dict[str, Any]:
        behind = await asyncio.to_thread(self.fabric.link_set, msg.target, msg.up)
        await self.check_links()
        return {"behind": behind}

    # -- local segments ----------------------------------------------------------------------

    async def on_create_segment(self, msg: m.CreateSegment) -> dict[str, Any]:
        seg = self.sisci.create_segment(msg.client, msg.segment, msg.size, private=msg.private,
                                        group=msg.group)
        return {"segment": seg.id, "size": seg.size, "phys": seg.phys}

    async def on_prepare_segment(self, msg: m.PrepareSegment) -> dict[str, Any]:
        self.sisci.prepare(msg.client, msg.segment, msg.adapter)
        return {}

    async def on_set_available(self, msg: m.SetAvailable) -> dict[str, Any]:
        self.sisci.set_available(msg.client, msg.segment, msg.adapter)
        return {}

    async def on_set_unavailable(self, msg: m.SetUnavailable) -> dict[str, Any]:
        dropped = self.sisci.set_unavailable(msg.client, msg.segment, msg.adapter, msg.force)
        await self._tell_gone(msg.segment, dropped, "disconnect")
        return {"dropped": len(dropped)}

    async def on_remove_segment(self, msg: m.RemoveSegment) -> dict[str, Any]:
        dropped = self.sisci.remove_segment(msg.client, msg.segment, msg.force)
        await self._tell_gone(msg.segment, dropped, "lost")
        return {"dropped": len(dropped)}

    async def _tell_gone(self, segment: int, dropped: list[Connector], reason: str) -> None:
        by_host: dict[str, list[int]] = {}
        for c in dropped:
            by_host.setdefault(c.host, []).append(c.conn_id)
        for host, conns in by_host.items():
            msg = m.PeerSegmentGone(host=self.host, conns=conns, segment=segment, reason=reason)
            try:
                if host == self.host:
                    await self.on_peer_segment_gone(msg)
                else:
                    await self.peer(host).call(msg)
            except SmartIOError as e:
                log.warning("err_tell_gone: %s: %s", host, e)

    # -- remote segments ---------------------------------------------------------------------

    async def on_connect_segment(self, msg: m.ConnectSegment) -> dict[str, Any]:
        if not 0 <= msg.timeout <= MAX_TIMEOUT:  # also refuses NaN
            raise IllegalParameter(f"connect timeout {msg.timeout} s; expected 0..{MAX_TIMEOUT}")
        ntb = self.driver.adapter(msg.adapter)
        if msg.group or msg.node_id == BROADCAST_NODE_ID:
            return await self._connect_group(msg)
        peer_adapter = self.driver.resolve_node(msg.node_id)
        nt = self.fabric.nt.route(ntb.id, peer_adapter)
        if nt is None:
            raise NoSuchNodeId(f"node {msg.node_id} ({peer_adapter}) is not reachable from "
                               f"adapter {msg.adapter} ({ntb.id})")
        if not self.fabric.links_up(nt.links):
            raise NoLinkAccess(f"a link between {ntb.id} and {peer_adapter} is down")
        peer_host = peer_adapter.split(":", 1)[0]
        conn = self.sisci.add_connection(msg.client, msg.node_id, msg.segment, msg.adapter,
                                         peer_host, peer_adapter, 0, 0)
        req = m.PeerConnect(host=self.host, conn=conn.id, node_id=self.driver.local_node_id(
            msg.adapter), via=peer_adapter, segment=msg.segment)
        deadline = time.monotonic() + max(msg.timeout, 0.0)
        try:
            while True:
                try:
                    if peer_host == self.host:
                        data = await self.on_peer_connect(req)
                    else:
                        data = await self.peer(peer_host).call(req, max(msg.timeout, 0.5))
                    break
                except NoSuchSegment:
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(0.05)
        except BaseException:
            self.sisci.connections.pop(conn.id, None)
            raise
        conn.phys, conn.size = data["phys"], data["size"]
        return {"conn": conn.id, "size": conn.size, "host": peer_host}

    async def _connect_group(self, msg: m.ConnectSegment) -> dict[str, Any]:
        """Connect to every multicast receive segment with this id (SCI_FLAG_BROADCAST)."""
        ntb = self.driver.adapter(msg.adapter)
        conn = self.sisci.add_connection(msg.client, BROADCAST_NODE_ID, msg.segment,
                                         msg.adapter, "", "", 0, 0)
        members: list[tuple[str, str, int]] = []
        asked: list[str] = []
        size = 0
        for h in self.fabric.topo.hosts:
            req = m.PeerGroupMembers(segment=msg.segment, host=self.host, conn=conn.id,
                                     node_id=self.driver.local_node_id(msg.adapter))
            try:
                if h.name == self.host:
                    continue  # a sender does not multicast to itself through its own NTB
                data = await self.peer(h.name).call(req, 2.0)
            except SmartIOError:
                continue
            if data["members"]:
                asked.append(h.name)  # its segment now counts this connection
            for adapter, phys, seg_size in data["members"]:
                if self.fabric.nt.route(ntb.id, adapter) is not None:
                    members.append((h.name, adapter, phys))
                    size = seg_size if not size else min(size, seg_size)
                    break
        # Members the group will not reach must not stay connected (they would be Busy).
        joined = {h for h, _, _ in members}
        await self._release_members([h for h in asked if h not in joined], conn.id,
                                    msg.segment)
        if not members:
            self.sisci.connections.pop(conn.id, None)
            raise NoSuchSegment(f"no multicast receive segment {msg.segment} is available")
        slice_size = ntb.slice_size
        if size > slice_size:
            self.sisci.connections.pop(conn.id, None)
            await self._release_members(sorted(joined), conn.id, msg.segment)
            raise OutOfRange(f"multicast segments larger than one LUT slice ({slice_size}) "
                             "are not supported")
        group = self.fabric.multicast.group_alloc()
        self.fabric.multicast.set_members(group, [Member(a, p) for _, a, p in members])
        self.groups[conn.id] = group
        conn.size = size
        conn.members = tuple(members)
        return {"conn": conn.id, "size": size, "members": [h for h, _, _ in members],
                "group": group}

    async def _release_members(self, hosts: list[str], conn_id: int, segment: int) -> None:
        """Tell multicast receivers on ``hosts`` that connection ``conn_id`` is gone."""
        for host in hosts:
            req = m.PeerDisconnect(host=self.host, conn=conn_id, segment=segment)
            try:
                await self.peer(host).call(req, 2.0)
            except SmartIOError as e:
                log.warning("err_disconnect: %s: %s", host, e)

    async def on_disconnect_segment(self, msg: m.DisconnectSegment) -> dict[str, Any]:
        await self._disconnect(msg.client, msg.conn)
        return {}

    async def _disconnect(self, client: str | None, conn_id: int) -> None:
        rng = self.dma_luts.pop(conn_id, None)
        if rng is not None:
            self.driver.lut_unmap(rng)
        conn = self.sisci.disconnect(client, conn_id)
        group = self.groups.pop(conn_id, None)
        if group is not None:
            self.fabric.multicast.group_free(group)
        targets = [(h, conn.segment_id) for h, _, _ in conn.members] or [
            (conn.peer_host, conn.segment_id)]
        if conn.lost and not conn.members:
            return  # the owner dropped the segment; a group's other members still count it
        for host, seg in targets:
            req = m.PeerDisconnect(host=self.host, conn=conn_id, segment=seg)
            try:
                if host == self.host:
                    await self.on_peer_disconnect(req)
                else:
                    await self.peer(host).call(req, 2.0)
            except SmartIOError as e:
                log.warning("err_disconnect: %s: %s", host, e)

    async def on_map_remote(self, msg: m.MapRemote) -> dict[str, Any]:
        conn = self.sisci.connection(msg.client, msg.conn)
        group = self.groups.get(msg.conn)
        if group is not None:
            if msg.offset < 0 or msg.size <= 0 or msg.offset + msg.size > conn.size:
                raise OutOfRange(f"map of {msg.size} bytes at {msg.offset} exceeds the "
                                 f"multicast segment of {conn.size} bytes")
            ntb = self.driver.adapter(conn.adapter_no)
            index = ntb.lut_find_free(1)
            ntb.peer_mw_set_multicast(index, group)
            from smartio.node.driver import LutRange

            rng = LutRange(ntb.id, index, 1, ntb.slice_addr(index) + msg.offset, msg.size)
            map_id = max(conn.maps, default=0) + 1
            conn.maps[map_id] = rng
            return {"map": map_id, "addr": rng.addr, "size": msg.size, "lut": [index, 1],
                    "multicast": True}
        map_id, rng = self.sisci.map_remote(msg.client, msg.conn, msg.offset, msg.size)
        return {"map": map_id, "addr": rng.addr, "size": msg.size,
                "lut": [rng.first, rng.count], "multicast": False}

    async def on_unmap(self, msg: m.Unmap) -> dict[str, Any]:
        self.sisci.unmap(msg.client, msg.conn, msg.map_id)
        return {}

    # -- peers ------------------------------------------------------------------------------------

    async def on_peer_connect(self, msg: m.PeerConnect) -> dict[str, Any]:
        via_no = next((i for i, a in enumerate(self.driver.adapters) if a.id == msg.via), -1)
        if via_no < 0:
            raise ConnectionRefused(f"host {self.host} has no adapter {msg.via}")
        con = Connector(msg.host, msg.conn, msg.node_id, via_no)
        seg = self.sisci.accept_connect(msg.segment, msg.via, con)
        await self.emit(seg.owner, m.SegmentEvent(local=True, id=seg.id, reason="connect",
                                                  node_id=msg.node_id, adapter=via_no))
        return {"phys": seg.phys, "size": seg.size}

    async def on_peer_disconnect(self, msg: m.PeerDisconnect) -> dict[str, Any]:
        con = self.sisci.drop_connector(msg.segment, msg.host, msg.conn)
        seg = self.sisci.segments.get(msg.segment)
        if con is not None and seg is not None:
            await self.emit(seg.owner, m.SegmentEvent(local=True, id=seg.id,
                                                      reason="disconnect", node_id=con.node_id,
                                                      adapter=con.via_adapter))
        return {}

    async def on_peer_segment_gone(self, msg: m.PeerSegmentGone) -> dict[str, Any]:
        lost = []
        for conn_id in msg.conns:
            conn = self.sisci.connections.get(conn_id)
            if conn is None or (conn.peer_host != msg.host
                                and msg.host not in {h for h, _, _ in conn.members}):
                continue  # not a connection to the sender's segment
            for rng in conn.maps.values():
                self.driver.lut_unmap(rng)
            conn.maps.clear()
            dma = self.dma_luts.pop(conn_id, None)
            if dma is not None:
                self.driver.lut_unmap(dma)
            conn.lost = True
            lost.append(conn)
        if lost:
            await self._mappers_follow()
        for conn in lost:
            await self.emit(conn.owner, m.SegmentEvent(local=False, id=conn.id,
                                                       reason=msg.reason, node_id=conn.node_id,
                                                       adapter=conn.adapter_no))
        return {}

    async def _mappers_follow(self, timeout: float = 1.0) -> None:
        """Wait until every process's CPU mappings follow the LUT entries just cleared, so
        that a program told 'lost' can no longer reach the memory (as on silicon, where a
        cleared LUT entry takes effect at once)."""
        gen = self.fabric.state.generation
        deadline = time.monotonic() + timeout
        while self.fabric.state.mappers_behind(gen) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    async def on_peer_connect_interrupt(self, msg: m.PeerConnectInterrupt) -> dict[str, Any]:
        self.sisci.interrupt_target(msg.intno, msg.data)
        return {}

    async def on_peer_trigger(self, msg: m.PeerTrigger) -> dict[str, Any]:
        irq = self.sisci.interrupt_target(msg.intno, msg.data)
        await self.emit(irq.owner, m.InterruptEvent(intno=irq.intno, payload=msg.payload))
        return {}

    async def on_peer_group_members(self, msg: m.PeerGroupMembers) -> dict[str, Any]:
        members = []
        joined: list[tuple[str, int, int]] = []
        for seg in self.sisci.segments.values():
            if seg.id == msg.segment and seg.group and seg.available:
                for no in sorted(seg.available):
                    members.append((self.driver.adapters[no].id, seg.phys, seg.size))
                    seg.connectors[(msg.host, msg.conn)] = Connector(msg.host, msg.conn,
                                                                     msg.node_id, no)
                    joined.append((seg.owner, seg.id, no))
                    break
        for owner, seg_id, no in joined:
            await self.emit(owner, m.SegmentEvent(local=True, id=seg_id, reason="connect",
                                                  node_id=msg.node_id, adapter=no))
        return {"members": members}

    # -- watchers ----------------------------------------------------------------------------------

    async def release_client(self, client_id: str, notify: bool = True) -> None:
        """Free everything a program held; tell peers."""
        client = self.clients.get(client_id)
        segs, conns, ints = self.sisci.owned_by(client_id)
        for conn_id in conns:
            try:
                await self._disconnect(None, conn_id)
            except SmartIOError as e:
                log.warning("err_release: connection %d: %s", conn_id, e)
        for seg_id in segs:
            dropped = self.sisci.remove_segment(None, seg_id, True)
            if notify:
                await self._tell_gone(seg_id, dropped, "lost")
        for intno in ints:
            self.sisci.interrupts.pop(intno, None)
        for cid, ic in list(self.sisci.int_connections.items()):
            if ic.owner == client_id:
                del self.sisci.int_connections[cid]
        for qid, q in list(self.queues.items()):
            if q.client == client_id:
                del self.queues[qid]
        self.release_devices(client_id)
        await self.release_borrows(client_id)
        self.clients.pop(client_id, None)
        if client is not None:
            log.info("client_released: %s (%s): %d segments, %d connections, %d interrupts",
                     client_id, client.name, len(segs), len(conns), len(ints))

    async def peer_gone(self, host: str) -> None:
        """A peer daemon died: its segments are lost, its connections to us are dropped,
        and what we lent to it is taken back."""
        self.forget_borrower(host)
        for conn in list(self.sisci.connections.values()):
            if conn.peer_host == host and not conn.lost:
                await self.on_peer_segment_gone(m.PeerSegmentGone(
                    host=host, conns=[conn.id], segment=conn.segment_id, reason="lost"))
        for seg in self.sisci.segments.values():
            for key, con in list(seg.connectors.items()):
                if con.host == host:
                    del seg.connectors[key]
                    await self.emit(seg.owner, m.SegmentEvent(
                        local=True, id=seg.id, reason="disconnect", node_id=con.node_id,
                        adapter=con.via_adapter))

    async def check_links(self) -> None:
        """Emit operational / not-operational events when a connection's path changes."""
        for conn in list(self.sisci.connections.values()):
            if conn.lost or not conn.peer_adapter:
                continue
            ntb = self.driver.adapters[conn.adapter_no]
            nt = self.fabric.nt.route(ntb.id, conn.peer_adapter)
            up = nt is not None and self.fabric.links_up(nt.links)
            before = self._link_state.get(conn.id, True)
            if up != before:
                self._link_state[conn.id] = up
                await self.emit(conn.owner, m.SegmentEvent(
                    local=False, id=conn.id, reason="operational" if up else "not-operational",
                    node_id=conn.node_id, adapter=conn.adapter_no))


__all__ = ["BROADCAST_NODE_ID", "Handlers"]
