"""Daemon handlers for the host's own device tree: DMA memory, IOMMU domains, MSI slots.

The host daemon is the owner of its IOMMU and its interrupt controller (DESIGN §2: one
source of truth per table). A program that drives a function through
:mod:`smartio.lending` asks it for DMA-able host RAM (from the driver's pool; with the
IOMMU on, mapped into a domain of that function only, so a stray DMA faults), for
peer-to-peer reach of another function's BAR, and for message slots of its MSI/MSI-X
vectors. Everything is owned by the asking program and released when it goes away.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartio.cluster import messages as m
from smartio.errors import IllegalParameter, NoSpace, NotFound
from smartio.hw.enumeration import MSI_BASE, MSI_SIZE
from smartio.hw.translate import MSI_SLOT
from smartio.hw.units import PAGE_SIZE, align_down, align_up

if TYPE_CHECKING:
    from smartio.cluster.lending import Borrowed
    from smartio.hw.fabric import Fabric
    from smartio.node.driver import NodeDriver

log = logging.getLogger(__name__)

MSI_SLOTS = MSI_SIZE // MSI_SLOT


@dataclass
class DmaBuffer:
    id: int
    client: str
    device: str
    phys: int
    size: int
    iova: int


@dataclass
class DeviceDomain:
    """The IOMMU domain of one function (when the host's IOMMU is on)."""

    domain: int
    rid: int
    peer_maps: list[tuple[str, int, int]] = field(default_factory=list)  # (client, base, size)


class DeviceHandlers:
    """Mixin of the daemon: handlers for the local device tree."""

    if TYPE_CHECKING:
        host: str
        fabric: Fabric
        driver: NodeDriver

        def borrowed_device(self, client: str, device: str) -> Borrowed | None: ...

    def __init__(self) -> None:
        self.dma_buffers: dict[int, DmaBuffer] = {}
        self.domains: dict[str, DeviceDomain] = {}
        self.msi_slots: dict[tuple[str, str], list[int]] = {}  # (client, device) -> slots
        self._free_slots = list(range(MSI_SLOTS - 1, 0, -1))  # slot 0 stays unused
        self._buf_ids = itertools.count(1)

    def _local_function(self, name: str) -> Any:
        fn = self.fabric.maps[self.host].functions.get(name)
        if fn is None or fn.kind != "endpoint":
            raise NotFound(f"host {self.host} has no device function {name!r}")
        return fn

    def _domain(self, device: str) -> DeviceDomain | None:
        iommu = self.fabric.iommus[self.host]
        if not iommu.enabled:
            return None
        dom = self.domains.get(device)
        if dom is None:
            fn = self._local_function(device)
            d = iommu.domain_alloc()  # (message writes bypass it: see hw.translate)
            iommu.attach(fn.bdf.rid, d)
            dom = DeviceDomain(d, fn.bdf.rid)
            self.domains[device] = dom
        return dom

    async def on_dma_alloc(self, msg: m.DmaAlloc) -> dict[str, Any]:
        borrowed = self.borrowed_device(msg.client, msg.device)
        if borrowed is not None:
            return self._dma_alloc_borrowed(msg, borrowed)
        self._local_function(msg.device)
        if not 0 < msg.size <= self.driver.pool.size:
            raise IllegalParameter(f"DMA buffer of {msg.size} bytes; expected 1.."
                                   f"{self.driver.pool.size}")
        size = align_up(msg.size, PAGE_SIZE)
        phys = self.driver.pool.alloc(size)
        ram = self.fabric.ram(self.host)
        ram.view[phys: phys + size] = bytes(size)
        iova = phys  # an identity IOVA: the IOMMU still confines the device to its buffers
        dom = self._domain(msg.device)
        if dom is not None:
            self.fabric.iommus[self.host].map(dom.domain, iova, phys, size)
        buf = DmaBuffer(next(self._buf_ids), msg.client, msg.device, phys, size, iova)
        self.dma_buffers[buf.id] = buf
        return {"buffer": buf.id, "phys": phys, "iova": iova, "size": size}

    def _dma_alloc_borrowed(self, msg: m.DmaAlloc, b: Borrowed) -> dict[str, Any]:
        """Host RAM for a borrowed function: inside the DMA window its lender prepared, so
        the device-side address is computed here, with no message to the lender (§4.3)."""
        size = align_up(msg.size, PAGE_SIZE)
        phys = self.driver.pool.alloc(size)
        if phys + size > b.dma_base + b.dma_size:
            self.driver.pool.free(phys, size)
            raise NoSpace(f"no room for {size} bytes inside the {b.dma_size >> 20} MiB DMA "
                          f"window of {b.device}")
        self.fabric.ram(self.host).view[phys: phys + size] = bytes(size)
        iova = b.dma_window + (phys - b.dma_base)
        buf = DmaBuffer(next(self._buf_ids), msg.client, msg.device, phys, size, iova)
        self.dma_buffers[buf.id] = buf
        return {"buffer": buf.id, "phys": phys, "iova": iova, "size": size}

    async def on_dma_free(self, msg: m.DmaFree) -> dict[str, Any]:
        buf = self.dma_buffers.get(msg.buffer)
        if buf is None or buf.client != msg.client:
            raise NotFound(f"no DMA buffer {msg.buffer} of this program")
        self._free_buffer(buf)
        return {}

    def _free_buffer(self, buf: DmaBuffer) -> None:
        dom = self.domains.get(buf.device)
        if dom is not None:
            self.fabric.iommus[self.host].unmap(dom.domain, buf.iova, buf.size)
        self.driver.pool.free(buf.phys, buf.size)
        del self.dma_buffers[buf.id]

    async def on_dma_attach(self, msg: m.DmaAttach) -> dict[str, Any]:
        """Find the buffer of ``device`` containing ``ioaddr`` (for a secondary process)."""
        if self.borrowed_device(msg.client, msg.device) is None:
            self._local_function(msg.device)
        for buf in self.dma_buffers.values():
            if buf.device == msg.device and buf.iova <= msg.ioaddr < buf.iova + buf.size:
                return {"buffer": buf.id, "phys": buf.phys, "iova": buf.iova, "size": buf.size}
        raise NotFound(f"no DMA buffer of {msg.device} contains I/O address {msg.ioaddr:#x}")

    async def on_dma_map_peer(self, msg: m.DmaMapPeer) -> dict[str, Any]:
        self._local_function(msg.device)
        region = self.fabric.maps[self.host].decode(msg.addr)
        if region is None or region.kind != "bar" or msg.addr + msg.size > region.end:
            raise IllegalParameter(f"{msg.addr:#x}+{msg.size:#x} is not inside a BAR of "
                                   f"host {self.host}")
        dom = self._domain(msg.device)
        if dom is not None:  # peer-to-peer goes up to the root and through the IOMMU
            base = align_down(msg.addr, PAGE_SIZE)
            size = align_up(msg.addr + msg.size, PAGE_SIZE) - base
            self.fabric.iommus[self.host].map(dom.domain, base, base, size)
            dom.peer_maps.append((msg.client, base, size))
        return {"ioaddr": msg.addr}

    async def on_msi_alloc(self, msg: m.MsiAlloc) -> dict[str, Any]:
        borrowed = self.borrowed_device(msg.client, msg.device)
        base = MSI_BASE if borrowed is None else borrowed.msi_window  # MSI window (§4.2)
        if borrowed is None:
            self._local_function(msg.device)
        key = (msg.client, msg.device)
        if key in self.msi_slots:
            raise IllegalParameter(f"{msg.device} already has vectors; free them first")
        if not 1 <= msg.count <= 2048 or msg.count > len(self._free_slots):
            raise NoSpace(f"{msg.count} interrupt vectors requested; "
                          f"{len(self._free_slots)} message slots free")
        slots = [self._free_slots.pop() for _ in range(msg.count)]
        self.msi_slots[key] = slots
        return {"vectors": [{"addr": base + MSI_SLOT * s, "data": s, "slot": s}
                            for s in slots]}

    async def on_msi_free(self, msg: m.MsiFree) -> dict[str, Any]:
        slots = self.msi_slots.pop((msg.client, msg.device), None)
        if slots is None:
            raise NotFound(f"{msg.device} has no vectors of this program")
        self._free_slots.extend(slots)
        return {}

    def release_devices(self, client: str) -> None:
        """Free the DMA buffers, vectors and peer mappings a program held (its domains stay
        for reuse)."""
        for buf in [b for b in self.dma_buffers.values() if b.client == client]:
            self._free_buffer(buf)
        for key in [k for k in self.msi_slots if k[0] == client]:
            self._free_slots.extend(self.msi_slots.pop(key))
        iommu = self.fabric.iommus[self.host]
        for dom in self.domains.values():
            mine = [p for p in dom.peer_maps if p[0] == client]
            if mine:  # unmap, then restore what other programs still hold of those ranges
                dom.peer_maps = [p for p in dom.peer_maps if p[0] != client]
                for _, base, size in mine:
                    iommu.unmap(dom.domain, base, size)
                for _, base, size in dom.peer_maps:
                    iommu.map(dom.domain, base, base, size)

    def unload_devices(self) -> None:
        iommu = self.fabric.iommus[self.host]
        for dom in self.domains.values():
            iommu.domain_free(dom.domain)
        self.domains.clear()


__all__ = ["DeviceHandlers", "DmaBuffer"]
