"""Daemon handlers for SISCI interrupts and DMA queues.

Interrupt triggers travel to the owner host's daemon, which wakes the owning program (the
driver entry point of SCITriggerInterrupt; payloads of data interrupts ride along). DMA
transfers are executed by the queue's adapter DMA engine (:class:`smartio.hw.dma.DmaEngine`)
on a worker thread of the daemon, through the fabric translation, and complete with an
event to the program.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smartio.cluster import messages as m
from smartio.errors import (
    IllegalOperation,
    MaxEntries,
    NoSuchNodeId,
    NotConnected,
    NotPrepared,
    OutOfRange,
)
from smartio.hw.dma import DmaEngine

if TYPE_CHECKING:
    from smartio.cluster.daemon import PeerLink
    from smartio.hw.fabric import Fabric
    from smartio.node.driver import LutRange, NodeDriver
    from smartio.node.segments import HostSisci

log = logging.getLogger(__name__)


@dataclass
class DmaQueueState:
    id: int
    client: str
    adapter: int
    max_entries: int
    outstanding: int = 0


class IoHandlers:
    """Mixin of the daemon: interrupts and DMA queues."""

    if TYPE_CHECKING:
        host: str
        fabric: Fabric
        driver: NodeDriver
        sisci: HostSisci
        queues: dict[int, DmaQueueState]
        dma_luts: dict[int, LutRange]
        groups: dict[int, int]
        _qids: itertools.count[int]
        _tids: itertools.count[int]
        _dma: ThreadPoolExecutor

        async def emit(self, client_id: str, event: m.Msg) -> None: ...
        def peer(self, host: str) -> PeerLink: ...
        async def on_peer_connect_interrupt(self, msg: m.PeerConnectInterrupt
                                            ) -> dict[str, Any]: ...
        async def on_peer_trigger(self, msg: m.PeerTrigger) -> dict[str, Any]: ...

    # -- interrupts --------------------------------------------------------------------------

    async def on_create_interrupt(self, msg: m.CreateInterrupt) -> dict[str, Any]:
        irq = self.sisci.create_interrupt(msg.client, msg.adapter, msg.intno, msg.data)
        return {"intno": irq.intno}

    async def on_remove_interrupt(self, msg: m.RemoveInterrupt) -> dict[str, Any]:
        self.sisci.remove_interrupt(msg.client, msg.intno)
        return {}

    async def on_connect_interrupt(self, msg: m.ConnectInterrupt) -> dict[str, Any]:
        from smartio.node.segments import InterruptConnection

        ntb = self.driver.adapter(msg.adapter)
        peer_adapter = self.driver.resolve_node(msg.node_id)
        if self.fabric.nt.route(ntb.id, peer_adapter) is None:
            raise NoSuchNodeId(f"node {msg.node_id} is not reachable from adapter {msg.adapter}")
        peer_host = peer_adapter.split(":", 1)[0]
        req = m.PeerConnectInterrupt(intno=msg.intno, data=msg.data)
        if peer_host == self.host:
            await self.on_peer_connect_interrupt(req)
        else:
            await self.peer(peer_host).call(req, max(msg.timeout, 0.5))
        conn = InterruptConnection(next(self.sisci._ids), msg.client, msg.node_id, msg.intno,
                                   peer_host, msg.data)
        self.sisci.int_connections[conn.id] = conn
        return {"conn": conn.id}

    async def on_disconnect_interrupt(self, msg: m.DisconnectInterrupt) -> dict[str, Any]:
        conn = self.sisci.int_connections.get(msg.conn)
        if conn is None or conn.owner != msg.client:
            raise NotConnected(f"no interrupt connection {msg.conn}")
        del self.sisci.int_connections[msg.conn]
        return {}

    async def on_trigger_interrupt(self, msg: m.TriggerInterrupt) -> dict[str, Any]:
        conn = self.sisci.int_connections.get(msg.conn)
        if conn is None or conn.owner != msg.client:
            raise NotConnected(f"no interrupt connection {msg.conn}")
        if msg.payload and not conn.data:
            raise IllegalOperation("a plain interrupt carries no data")
        req = m.PeerTrigger(intno=conn.intno, data=conn.data, payload=msg.payload,
                            node_id=conn.node_id)
        if conn.peer_host == self.host:
            await self.on_peer_trigger(req)
        else:
            await self.peer(conn.peer_host).call(req)
        return {}

    # -- DMA ------------------------------------------------------------------------------------

    async def on_create_dma_queue(self, msg: m.CreateDmaQueue) -> dict[str, Any]:
        self.driver.adapter(msg.adapter)
        if not 1 <= msg.max_entries <= 1024:
            raise OutOfRange(f"DMA queue of {msg.max_entries} entries; expected 1..1024")
        q = DmaQueueState(next(self._qids), msg.client, msg.adapter, msg.max_entries)
        self.queues[q.id] = q
        return {"queue": q.id}

    async def on_remove_dma_queue(self, msg: m.RemoveDmaQueue) -> dict[str, Any]:
        q = self.queues.get(msg.queue)
        if q is None or q.client != msg.client:
            raise IllegalOperation(f"no DMA queue {msg.queue}")
        del self.queues[msg.queue]
        return {}

    async def on_start_dma(self, msg: m.StartDma) -> dict[str, Any]:
        q = self.queues.get(msg.queue)
        if q is None or q.client != msg.client:
            raise IllegalOperation(f"no DMA queue {msg.queue}")
        if q.outstanding + 1 > q.max_entries:
            raise MaxEntries(f"DMA queue {q.id} is full ({q.max_entries} entries)")
        ntb = self.driver.adapter(q.adapter)
        plan: list[tuple[int, int, int]] = []  # (src, dst, size) in this host's domain
        for v in msg.vecs:
            seg = self.sisci.segment(msg.client, v.segment)
            if q.adapter not in seg.prepared:
                raise NotPrepared(f"segment {v.segment} is not prepared on adapter {q.adapter}")
            conn = self.sisci.connection(msg.client, v.conn)
            if conn.adapter_no != q.adapter or conn.lost or v.conn in self.groups:
                raise NotConnected(f"connection {v.conn} is not connected through adapter "
                                   f"{q.adapter}")
            if (v.size <= 0 or v.local_offset < 0 or v.local_offset + v.size > seg.size
                    or v.remote_offset < 0 or v.remote_offset + v.size > conn.size):
                raise OutOfRange(f"DMA of {v.size} bytes at local {v.local_offset} / remote "
                                 f"{v.remote_offset} exceeds a segment")
            rng = self.dma_luts.get(v.conn)
            if rng is None:
                rng = self.driver.lut_map(q.adapter, conn.peer_adapter, conn.phys, conn.size)
                self.dma_luts[v.conn] = rng
            local, remote = seg.phys + v.local_offset, rng.addr + v.remote_offset
            plan.append((remote, local, v.size) if v.read else (local, remote, v.size))
        tid = next(self._tids)
        q.outstanding += 1
        engine = DmaEngine(self.fabric.port(self.fabric.function(ntb.id)))

        def work() -> tuple[bool, str, int]:
            ok, status, total = True, "ok", 0
            for src, dst, size in plan:
                res = engine.copy(src, dst, size)
                total += res.bytes
                if not res.ok and ok:
                    ok, status = False, res.status
            return ok, status, total

        async def run() -> None:
            ok, status, total = await asyncio.get_running_loop().run_in_executor(self._dma, work)
            q.outstanding -= 1
            await self.emit(msg.client, m.DmaEvent(queue=q.id, transfer=tid, ok=ok,
                                                   status=status, bytes=total))

        asyncio.get_running_loop().create_task(run())
        return {"transfer": tid}


__all__ = ["DmaQueueState", "IoHandlers"]
