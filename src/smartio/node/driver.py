"""The per-host NTB driver: node ids, NTB bring-up, LUT allocation (paper §2.2, §3.3).

What the low-level Dolphin driver does when it loads on a host, and what it does each time
a program maps something through an adapter:

* every adapter gets a cluster-wide SISCI *node id* (4, 8, 12, … in topology order);
* the requester-ID LUT of each adapter gets the CPU entries (two per CPU, §8.6) and the
  adapter's own DMA engine;
* when the host's IOMMU is on, an IOMMU domain that identity-maps the segment pool (and
  the NTB windows, for the adapters' DMA engines) is attached to every adapter, so traffic
  entering through the NTB and the adapter's DMA engine reach segment memory and nothing
  else in RAM;
* mapping a remote range programs consecutive address-LUT entries of the local adapter
  whose slices cover it; unmapping clears them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from smartio.errors import NoSuchAdapter, NoSuchNodeId
from smartio.hw.fabric import Fabric
from smartio.hw.ntb import NtbAdapter
from smartio.hw.units import HUGE_PAGE_SIZE, align_down, align_up
from smartio.node.pool import SegmentPool, pool_range

log = logging.getLogger(__name__)

NODE_ID_STEP = 4


def node_ids(fabric: Fabric) -> dict[int, str]:
    """Cluster-wide map of SISCI node id -> adapter id ("host:adapter")."""
    return {NODE_ID_STEP * (i + 1): a.id for i, a in enumerate(fabric.topo.adapters)}


@dataclass(frozen=True)
class LutRange:
    """Consecutive LUT entries of one adapter mapping a remote range."""

    adapter: str
    first: int
    count: int
    addr: int  # local physical address of the mapped range (inside the NTB window)
    size: int


class NodeDriver:
    """The SmartIO NTB driver of one host."""

    def __init__(self, fabric: Fabric, host: str) -> None:
        self.fabric = fabric
        self.host = host
        self.spec = fabric.topo.host(host)
        self.adapters: list[NtbAdapter] = [fabric.adapters[a.id] for a in self.spec.adapters]
        self.node_ids = node_ids(fabric)
        self.adapter_of_node = self.node_ids
        self.node_of_adapter = {a: n for n, a in self.node_ids.items()}
        base, size = pool_range(self.spec.ram)
        self.pool = SegmentPool(base, size)
        self.iommu_domain = 0
        self.luts: dict[int, LutRange] = {}  # key: id(LutRange) issued
        self._next = 1

    def load(self) -> None:
        """Bring up the adapters as the driver does at load time."""
        for ntb in self.adapters:
            self.fabric.reserve_cpu_requesters(ntb.id)
            ntb.rid_add(self.fabric.maps[self.host].functions[ntb.id].bdf.rid)
        iommu = self.fabric.iommus[self.host]
        if iommu.enabled and self.adapters:
            self.iommu_domain = iommu.domain_alloc()
            iommu.map(self.iommu_domain, self.pool.base, self.pool.base, self.pool.size,
                      page_size=HUGE_PAGE_SIZE)
            # The adapters' DMA engines write out through the NTB windows (peer-to-peer
            # into the NTB BAR), so the windows are identity-mapped too.
            for ntb in self.adapters:
                iommu.map(self.iommu_domain, ntb.window_base, ntb.window_base,
                          ntb.window_size, page_size=HUGE_PAGE_SIZE)
            for ntb in self.adapters:
                iommu.attach(self.fabric.maps[self.host].functions[ntb.id].bdf.rid,
                             self.iommu_domain)
        log.info("node_load: %s adapters=%s pool=%#x+%#x", self.host,
                 [n.id for n in self.adapters], self.pool.base, self.pool.size)

    def unload(self) -> None:
        """Undo ``load`` and clear every LUT entry this driver programmed."""
        for rng in list(self.luts.values()):
            self.lut_unmap(rng)
        for ntb in self.adapters:
            for rid in ntb.rid_entries():
                ntb.rid_remove(rid)
        if self.iommu_domain:
            self.fabric.iommus[self.host].domain_free(self.iommu_domain)
            self.iommu_domain = 0

    # -- adapters and node ids --------------------------------------------------------------

    def adapter(self, adapter_no: int) -> NtbAdapter:
        if not 0 <= adapter_no < len(self.adapters):
            raise NoSuchAdapter(f"host {self.host} has no adapter {adapter_no}; it has "
                                f"{len(self.adapters)}")
        return self.adapters[adapter_no]

    def local_node_id(self, adapter_no: int) -> int:
        return self.node_of_adapter[self.adapter(adapter_no).id]

    def resolve_node(self, node_id: int) -> str:
        """The adapter id of a node id; NoSuchNodeId if none."""
        try:
            return self.node_ids[node_id]
        except KeyError:
            raise NoSuchNodeId(f"no node id {node_id} in cluster; node ids: "
                               f"{sorted(self.node_ids)}") from None

    def reachable(self, adapter_no: int, peer_adapter: str) -> bool:
        return self.fabric.nt.route(self.adapter(adapter_no).id, peer_adapter) is not None

    # -- LUT programming ------------------------------------------------------------------

    def lut_map(self, adapter_no: int, peer_adapter: str, phys: int, size: int) -> LutRange:
        """Program LUT entries of a local adapter covering ``[phys, phys+size)`` remotely."""
        ntb = self.adapter(adapter_no)
        base = align_down(phys, ntb.slice_size)
        count = (align_up(phys + size, ntb.slice_size) - base) // ntb.slice_size
        first = ntb.lut_find_free(count)
        for i in range(count):
            ntb.peer_mw_set_trans(first + i, peer_adapter, base + i * ntb.slice_size)
        rng = LutRange(ntb.id, first, count, ntb.slice_addr(first) + (phys - base), size)
        self.luts[self._next] = rng
        self._next += 1
        return rng

    def lut_unmap(self, rng: LutRange) -> None:
        ntb = self.fabric.adapters[rng.adapter]
        for i in range(rng.count):
            ntb.peer_mw_clear_trans(rng.first + i)
        for k, v in list(self.luts.items()):
            if v is rng:
                del self.luts[k]

    def lut_usage(self) -> dict[str, tuple[int, int]]:
        """Per adapter: (address-LUT entries used, total)."""
        return {n.id: (len(n.lut_entries()), n.layout.lut_entries) for n in self.adapters}


__all__ = ["NODE_ID_STEP", "LutRange", "NodeDriver", "node_ids"]
