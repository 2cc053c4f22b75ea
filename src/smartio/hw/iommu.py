"""A host's IOMMU: domains, 4-level page tables of 4 KiB and 2 MiB pages, and faults.

Modelled on VT-d second-level translation: a device table maps requester IDs to domains,
each domain has a 4-level radix table (9 bits per level, 4 KiB leaves or 2 MiB leaves at
level 2), and a DMA whose requester has no domain or whose address has no mapping is a
*fault*: recorded with the requester and the address (as data, never raised) and blocked.
The tables live in the cluster's shared fabric state; every change bumps the generation
that translation caches watch (DESIGN §3.3). CPU accesses never pass through the IOMMU.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartio.errors import IllegalParameter, MaxEntries, OutOfRange
from smartio.hw.state import (
    IOMMU_DEVICES,
    IOMMU_DOMAINS,
    IOMMU_FAULTS,
    IOMMU_POOL_PAGES,
    PT_WORDS,
    VALID,
    FabricState,
    IommuLayout,
)
from smartio.hw.units import HUGE_PAGE_SIZE, PAGE_SIZE

PTE_WRITE = 1 << 1
PTE_LARGE = 1 << 7
ADDR_MASK = ((1 << 52) - 1) & ~(PAGE_SIZE - 1)
IOVA_LIMIT = 1 << 48

# Fault kinds.
FAULT_NO_DOMAIN = 1
FAULT_NOT_PRESENT = 2
FAULT_READ_ONLY = 3
FAULT_NAMES = {FAULT_NO_DOMAIN: "no-domain", FAULT_NOT_PRESENT: "not-present",
               FAULT_READ_ONLY: "write-to-read-only"}


@dataclass(frozen=True)
class IommuFault:
    """One recorded IOMMU fault."""

    seq: int
    rid: int
    addr: int
    write: bool
    kind: str


class Iommu:
    """The IOMMU of one host."""

    def __init__(self, state: FabricState, layout: IommuLayout) -> None:
        self.state = state
        self.layout = layout
        self.host = layout.host
        self.q = state.q

    @property
    def enabled(self) -> bool:
        return bool(self.q[self.layout.ctrl])

    # -- device table and domains ----------------------------------------------------------

    def domain_alloc(self) -> int:
        """Allocate a domain with an empty page table; returns its id (1..63)."""
        q, lay = self.q, self.layout
        with self.state.locked():
            for d in range(1, IOMMU_DOMAINS):
                if q[lay.domains + d] == 0:
                    q[lay.domains + d] = self._page_alloc()
                    self.state.bump()
                    return d
        raise MaxEntries(f"{self.host}: IOMMU domain table full ({IOMMU_DOMAINS - 1} domains)")

    def domain_free(self, domain: int) -> None:
        """Free a domain, its page tables, and detach every requester attached to it."""
        q, lay = self.q, self.layout
        root = self._root(domain)
        with self.state.locked():
            for i in range(IOMMU_DEVICES):
                w = q[lay.devices + i]
                if w & VALID and (w >> 16) & 0xFFFF == domain:
                    q[lay.devices + i] = 0
            self._free_tree(root, 4)
            q[lay.domains + domain] = 0
            self.state.bump()

    def attach(self, rid: int, domain: int) -> None:
        """Put requester ``rid`` in ``domain`` (replacing any previous domain)."""
        self._root(domain)
        q, lay = self.q, self.layout
        with self.state.locked():
            free = -1
            for i in range(IOMMU_DEVICES):
                w = q[lay.devices + i]
                if w & VALID and w & 0xFFFF == rid:
                    free = i
                    break
                if not w & VALID and free < 0:
                    free = i
            if free < 0:
                raise MaxEntries(f"{self.host}: IOMMU device table full ({IOMMU_DEVICES})")
            q[lay.devices + free] = VALID | (domain << 16) | rid
            self.state.bump()

    def detach(self, rid: int) -> None:
        q, lay = self.q, self.layout
        with self.state.locked():
            for i in range(IOMMU_DEVICES):
                w = q[lay.devices + i]
                if w & VALID and w & 0xFFFF == rid:
                    q[lay.devices + i] = 0
                    self.state.bump()

    def domain_of(self, rid: int) -> int:
        """The domain of requester ``rid``, or 0 when it has none."""
        q, base = self.q, self.layout.devices
        for i in range(IOMMU_DEVICES):
            w = q[base + i]
            if w & VALID and w & 0xFFFF == rid:
                return (w >> 16) & 0xFFFF
        return 0

    # -- page tables ---------------------------------------------------------------------

    def map(self, domain: int, iova: int, phys: int, size: int, *, write: bool = True,
            page_size: int = PAGE_SIZE) -> None:
        """Map ``size`` bytes at ``iova`` onto ``phys`` with 4 KiB or 2 MiB pages."""
        if page_size not in (PAGE_SIZE, HUGE_PAGE_SIZE):
            raise IllegalParameter(f"IOMMU page size {page_size:#x}; expected 4KiB or 2MiB")
        for name, v in (("iova", iova), ("phys", phys), ("size", size)):
            if v % page_size or v < 0:
                raise IllegalParameter(f"IOMMU map {name} {v:#x} not aligned to {page_size:#x}")
        if size == 0 or iova + size > IOVA_LIMIT:
            raise OutOfRange(f"IOMMU map of {size:#x} bytes at {iova:#x}: outside 48-bit IOVA")
        root = self._root(domain)
        flags = VALID | (PTE_WRITE if write else 0)
        leaf_level = 1 if page_size == PAGE_SIZE else 2
        with self.state.locked():
            for off in range(0, size, page_size):
                table = self._walk_alloc(root, iova + off, leaf_level)
                idx = ((iova + off) >> (12 + 9 * (leaf_level - 1))) & 511
                large = PTE_LARGE if leaf_level == 2 else 0
                w = self.layout.pool + table * PT_WORDS + idx
                old = self.q[w]
                if large and old & VALID and not old & PTE_LARGE:
                    self._free_tree((old & ADDR_MASK) >> 12, 1)  # 4 KiB pages replaced
                self.q[w] = (phys + off) | flags | large
            self.state.bump()

    def unmap(self, domain: int, iova: int, size: int) -> None:
        """Remove the mappings of ``[iova, iova+size)``; unmapped pages are skipped."""
        root = self._root(domain)
        with self.state.locked():
            off = 0
            while off < size:
                hit = self._walk(root, iova + off)
                if hit is None:
                    off += PAGE_SIZE
                    continue
                table, idx, level = hit
                self.q[self.layout.pool + table * PT_WORDS + idx] = 0
                step = PAGE_SIZE if level == 1 else HUGE_PAGE_SIZE
                off = ((iova + off) // step + 1) * step - iova
            self.state.bump()

    def lookup(self, domain: int, iova: int) -> tuple[int, bool, int, int] | None:
        """Translate one IOVA: (physical address, writable, offset in page, bytes left in
        page), or None when nothing is mapped there."""
        root = self._root(domain)
        if not 0 <= iova < IOVA_LIMIT:  # beyond the 48-bit input range: never aliases
            return None
        hit = self._walk(root, iova)
        if hit is None:
            return None
        table, idx, level = hit
        pte = self.q[self.layout.pool + table * PT_WORDS + idx]
        page = PAGE_SIZE if level == 1 else HUGE_PAGE_SIZE
        off = iova & (page - 1)
        base = pte & ADDR_MASK & ~(page - 1)
        return base + off, bool(pte & PTE_WRITE), off, page - off

    def _root(self, domain: int) -> int:
        if not 1 <= domain < IOMMU_DOMAINS or not self.q[self.layout.domains + domain]:
            raise IllegalParameter(f"{self.host}: no IOMMU domain {domain}")
        return self.q[self.layout.domains + domain]

    def _walk(self, root: int, iova: int) -> tuple[int, int, int] | None:
        q, pool = self.q, self.layout.pool
        table = root
        for level in (4, 3, 2, 1):
            idx = (iova >> (12 + 9 * (level - 1))) & 511
            pte = q[pool + table * PT_WORDS + idx]
            if not pte & VALID:
                return None
            if level == 1 or (level == 2 and pte & PTE_LARGE):
                return table, idx, level
            table = (pte & ADDR_MASK) >> 12
        return None

    def _walk_alloc(self, root: int, iova: int, leaf_level: int) -> int:
        q, pool = self.q, self.layout.pool
        table = root
        for level in range(4, leaf_level, -1):
            idx = (iova >> (12 + 9 * (level - 1))) & 511
            w = pool + table * PT_WORDS + idx
            pte = q[w]
            if pte & VALID and not pte & PTE_LARGE:
                table = (pte & ADDR_MASK) >> 12
                continue
            page = self._page_alloc()
            if pte & VALID:  # split a 2 MiB page: its other 4 KiB pages stay mapped
                base, keep = pte & ADDR_MASK, pte & (VALID | PTE_WRITE)
                for i in range(PT_WORDS):
                    q[pool + page * PT_WORDS + i] = (base + i * PAGE_SIZE) | keep
            q[w] = VALID | (page << 12)
            table = page
        return table

    def _page_alloc(self) -> int:
        q, ctrl, pool = self.q, self.layout.ctrl, self.layout.pool
        head = q[ctrl + 2]
        if head:
            q[ctrl + 2] = q[pool + head * PT_WORDS]
            page = head
        else:
            page = q[ctrl + 1]
            if page >= IOMMU_POOL_PAGES:
                raise MaxEntries(f"{self.host}: IOMMU page-table pool exhausted "
                                 f"({IOMMU_POOL_PAGES} pages)")
            q[ctrl + 1] = page + 1
        base = pool + page * PT_WORDS
        for i in range(PT_WORDS):
            q[base + i] = 0
        return page

    def _free_tree(self, table: int, level: int) -> None:
        q, pool = self.q, self.layout.pool
        if level > 1:  # level-1 entries are leaves; so are large entries at level 2
            for i in range(PT_WORDS):
                pte = q[pool + table * PT_WORDS + i]
                if pte & VALID and not pte & PTE_LARGE:
                    self._free_tree((pte & ADDR_MASK) >> 12, level - 1)
        q[pool + table * PT_WORDS] = q[self.layout.ctrl + 2]
        q[self.layout.ctrl + 2] = table

    # -- faults ----------------------------------------------------------------------------

    def record_fault(self, rid: int, addr: int, write: bool, kind: int) -> None:
        """Record a fault (hardware does this; no lock, a ring that overwrites)."""
        q, ctrl, base = self.q, self.layout.ctrl, self.layout.faults
        seq = q[ctrl + 3]
        w = base + 4 * (seq % IOMMU_FAULTS)
        q[w] = rid | (int(write) << 16)
        q[w + 1] = addr
        q[w + 2] = kind
        q[w + 3] = seq + 1
        q[ctrl + 3] = seq + 1

    @property
    def fault_count(self) -> int:
        return self.q[self.layout.ctrl + 3]

    def faults(self) -> list[IommuFault]:
        """The recorded faults still in the ring, oldest first."""
        q, ctrl, base = self.q, self.layout.ctrl, self.layout.faults
        n = q[ctrl + 3]
        out = []
        for seq in range(max(0, n - IOMMU_FAULTS), n):
            w = base + 4 * (seq % IOMMU_FAULTS)
            out.append(IommuFault(seq, q[w] & 0xFFFF, q[w + 1], bool(q[w] >> 16 & 1),
                                  FAULT_NAMES.get(q[w + 2], "unknown")))
        return out


__all__ = ["FAULT_NAMES", "Iommu", "IommuFault"]
