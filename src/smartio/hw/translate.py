"""The translation function: requester + address + size + direction -> backing memory + path.

DESIGN §3.3. Starting in the requester's host domain, a transaction is walked hop by hop:
the host IOMMU (for DMA from functions, when enabled), address decode against RAM, BARs
and NTB windows, the NTB's address LUT into the peer host's domain (checking the
requester-ID LUT and the link state of the path), the peer's IOMMU for traffic entering
through its NTB, and so on. Misses have PCIe semantics and are data, not exceptions: a
read of an unmapped or link-down window completes with all bytes 0xFF and a write is
dropped (``Piece.obj is None``); an IOMMU miss is also recorded as a fault at that IOMMU.

:class:`TranslationPort` is one requester's view with an IOTLB-style cache keyed by page;
the cache is dropped whenever the fabric generation changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartio.hw.enumeration import MSI_BASE, MSI_SIZE
from smartio.hw.ids import Requester
from smartio.hw.iommu import FAULT_NO_DOMAIN, FAULT_NOT_PRESENT, FAULT_READ_ONLY
from smartio.hw.memory import MemoryObject
from smartio.hw.route import Route
from smartio.hw.state import H_GEN
from smartio.hw.units import PAGE_SIZE

if TYPE_CHECKING:
    from smartio.hw.fabric import Fabric

MAX_NTB_CROSSINGS = 8

# Piece status values.
OK = "ok"
UNMAPPED = "unmapped"  # no region claims the address, or an invalid LUT entry
LINK_DOWN = "link-down"
IOMMU_FAULT = "iommu-fault"
NO_RID = "no-requester-entry"  # requester not in the egress NTB's requester-ID LUT
NO_PATH = "no-path"  # LUT names an adapter the fabric cannot reach
MULTICAST = "multicast"  # a posted write replicated to a multicast group's members


@dataclass(frozen=True, slots=True)
class Piece:
    """A contiguous part of a transfer and where it lands.

    ``obj`` is None when the transaction ends in a master abort, an unsupported request or
    an IOMMU fault: reads return 0xFF bytes and writes are dropped.
    """

    addr: int  # address in the requester's domain
    length: int
    obj: MemoryObject | None
    offset: int
    status: str
    route: Route
    group: int = -1  # multicast group (status MULTICAST); offset is then into the slice
    egress: str = ""  # the NTB adapter the multicast write leaves through

    @property
    def ok(self) -> bool:
        return self.obj is not None


@dataclass(frozen=True, slots=True)
class _Extent:
    """A cached resolution: ``[start, end)`` maps linearly onto ``obj`` at ``offset``."""

    start: int
    end: int
    obj: MemoryObject | None
    offset: int
    status: str
    route: Route
    group: int = -1
    egress: str = ""


class Translator:
    """Uncached translation over a fabric's tables (the slow path)."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric

    def resolve(self, req: Requester, addr: int, write: bool) -> _Extent:
        """Resolve the extent around ``addr`` that translates linearly and identically."""
        fab = self.fabric
        host = req.host
        rid = req.bdf.rid
        is_cpu = req.cpu
        hmap = fab.maps[host]
        src_chain: tuple[str, ...] = (host,)
        if not is_cpu:
            fn = hmap.by_bdf(req.bdf)
            src_chain = fn.chain if fn is not None else (host,)
        start, end = addr, addr + (1 << 64)  # narrowed below
        cur = addr
        route = Route(())
        for _ in range(MAX_NTB_CROSSINGS):
            hmap = fab.maps[host]
            via_root = False
            # 1. The IOMMU translates DMA from functions (never CPU accesses).
            iommu = fab.iommus[host]
            # Message writes to the interrupt controller's window are not DMA-remapped
            # (VT-d handles 0xFEEx_xxxx separately); everything else from a device is.
            if not is_cpu and iommu.enabled and not MSI_BASE <= cur < MSI_BASE + MSI_SIZE:
                via_root = True
                domain = iommu.domain_of(rid)
                hit = iommu.lookup(domain, cur) if domain else None
                if hit is None or (write and not hit[1]):
                    kind = (FAULT_NO_DOMAIN if not domain else
                            FAULT_NOT_PRESENT if hit is None else FAULT_READ_ONLY)
                    iommu.record_fault(rid, cur, write, kind)
                    in_page = cur & (PAGE_SIZE - 1)
                    return _Extent(max(start, addr - in_page),
                                   min(end, addr + PAGE_SIZE - in_page), None, 0, IOMMU_FAULT,
                                   route + Route(src_chain))
                phys, _, before, after = hit
                end = min(end, addr + after)
                start = max(start, addr - before)
                cur = phys
            # 2. Address decode in this host's domain.
            region = hmap.decode(cur)
            if region is None:
                nxt = hmap.next_start(cur)
                end = min(end, addr + (nxt - cur)) if nxt is not None else end
                prev = hmap.prev_end(cur)
                start = max(start, addr - (cur - prev))
                return _Extent(start, end, None, 0, UNMAPPED, route + Route(src_chain))
            end = min(end, addr + (region.end - cur))
            start = max(start, addr - (cur - region.start))
            if region.kind == "msi":
                r = route + fab.host_route(src_chain, (host,), via_root)
                return _Extent(start, end, fab.msi(host), cur - region.start, OK, r)
            if region.kind == "ram":
                r = route + fab.host_route(src_chain, (host,), via_root)
                if r.links and not fab.links_up(r.links):
                    return _Extent(start, end, None, 0, LINK_DOWN, r)
                return _Extent(start, end, fab.ram(host), region.offset + (cur - region.start),
                               OK, r)
            fn = hmap.functions[region.owner]
            if region.kind == "bar":
                r = route + fab.host_route(src_chain, fn.chain, via_root)
                if r.links and not fab.links_up(r.links):  # e.g. an expansion-chassis cable
                    return _Extent(start, end, None, 0, LINK_DOWN, r)
                obj = fab.bar(region.owner, region.bar)
                return _Extent(start, end, obj, cur - region.start, OK, r)
            # 3. An NTB window: LUT entry, requester-ID LUT, link state, next domain.
            ntb = fab.adapters[region.owner]
            index = (cur - region.start) // ntb.slice_size
            slice_start = region.start + index * ntb.slice_size
            end = min(end, addr + (slice_start + ntb.slice_size - cur))
            start = max(start, addr - (cur - slice_start))
            route = route + fab.host_route(src_chain, fn.chain, via_root)
            if route.links and not fab.links_up(route.links):
                return _Extent(start, end, None, 0, LINK_DOWN, route)
            entry = ntb.peer_mw_get_trans(index)
            if entry is None:
                return _Extent(start, end, None, 0, UNMAPPED, route)
            if not ntb.rid_has(rid):
                return _Extent(start, end, None, 0, NO_RID, route)
            if entry.group >= 0:
                return _Extent(start, end, None, cur - (addr - start) - slice_start, MULTICAST,
                               route, entry.group, ntb.id)
            nt = fab.nt.route(ntb.id, entry.peer)
            if nt is None:
                return _Extent(start, end, None, 0, NO_PATH, route)
            route = route + nt
            if not fab.links_up(nt.links):
                return _Extent(start, end, None, 0, LINK_DOWN, route)
            peer = fab.adapters[entry.peer]
            cur = entry.addr + (cur - slice_start)
            host = peer.host
            pfn = fab.maps[host].functions[peer.id]
            rid, is_cpu, src_chain = pfn.bdf.rid, False, pfn.chain
        return _Extent(start, end, None, 0, UNMAPPED, route)


MSI_SLOT = 8  # bytes per message slot: the last data dword, then a delivery counter


def deliver_msi(obj: MemoryObject, offset: int, data: memoryview) -> int:
    """The interrupt controller accepts a message write: it latches the data dword and
    counts the delivery (so that a waiter sees every interrupt, even with equal data)."""
    if len(data) != 4 or offset % MSI_SLOT:
        return 0  # not a well-formed message: the controller ignores it
    view = obj.view
    view[offset: offset + 4] = data
    count = int.from_bytes(view[offset + 4: offset + 8], "little")
    view[offset + 4: offset + 8] = ((count + 1) & 0xFFFFFFFF).to_bytes(4, "little")
    return 4


class TranslationPort:
    """One requester's cached view of the fabric (an IOTLB / ATC).

    ``lookup`` is the hot path: one generation check and one dict look-up when cached.
    """

    def __init__(self, fabric: Fabric, requester: Requester) -> None:
        self.fabric = fabric
        self.requester = requester
        self._slow = Translator(fabric)
        self._q = fabric.state.q
        self._gen = -1
        self._cache: dict[int, _Extent] = {}
        self.misses = 0

    def lookup(self, addr: int, write: bool = False) -> _Extent:
        """The cached extent containing ``addr`` for a read or a write."""
        gen = self._q[H_GEN]
        if gen != self._gen:
            self._cache.clear()
            self._gen = gen
        key = ((addr >> 12) << 1) | write
        ext = self._cache.get(key)
        if ext is None:
            self.misses += 1
            ext = self._slow.resolve(self.requester, addr, write)
            if ext.status != IOMMU_FAULT:  # like an IOTLB, never cache a fault: each
                self._cache[key] = ext  # faulting DMA must be recorded at the IOMMU
        return ext

    def translate(self, addr: int, size: int, write: bool = False) -> list[Piece]:
        """Split ``[addr, addr+size)`` into pieces with their backing memory and route."""
        out = []
        cur, left = addr, size
        while left > 0:
            ext = self.lookup(cur, write)
            n = min(left, ext.end - cur)
            off = ext.offset + (cur - ext.start) if ext.obj is not None or ext.group >= 0 else 0
            out.append(Piece(cur, n, ext.obj, off, ext.status, ext.route, ext.group, ext.egress))
            cur += n
            left -= n
        return out

    def read(self, addr: int, size: int) -> bytes:
        """Perform a read: bytes from backing memory, 0xFF where the path fails."""
        buf = bytearray()
        for p in self.translate(addr, size, False):
            if p.obj is None:
                buf += b"\xff" * p.length
            else:
                buf += p.obj.view[p.offset: p.offset + p.length]
        return bytes(buf)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> int:
        """Perform a posted write; returns the number of bytes that reached memory."""
        mv = memoryview(data).cast("B")
        done = pos = 0
        for p in self.translate(addr, len(mv), True):
            if p.obj is not None and p.obj.interrupt:
                done += deliver_msi(p.obj, p.offset, mv[pos: pos + p.length])
            elif p.obj is not None:
                p.obj.view[p.offset: p.offset + p.length] = mv[pos: pos + p.length]
                done += p.length
            elif p.group >= 0:
                done += self._multicast(p, mv[pos: pos + p.length])
            pos += p.length
        return done

    def _multicast(self, p: Piece, data: memoryview) -> int:
        """Replicate a posted write to every member of a group, as the switch does."""
        fab = self.fabric
        done = 0
        for m in fab.multicast.members(p.group):
            nt = fab.nt.route(p.egress, m.adapter)
            if nt is None or not fab.links_up(nt.links):
                continue  # that member's copy is lost, like any write on a dead path
            peer = fab.adapters[m.adapter]
            ingress = fab.port(fab.function(peer.id))
            done += ingress.write(m.addr + p.offset, data)
        return done


__all__ = [
    "IOMMU_FAULT",
    "LINK_DOWN",
    "NO_PATH",
    "NO_RID",
    "OK",
    "UNMAPPED",
    "Piece",
    "TranslationPort",
    "Translator",
]
