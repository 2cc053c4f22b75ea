"""The segment memory pool: contiguous host RAM reserved by the NTB driver (paper §3.3).

SISCI allocates linear segments from a pool of contiguous pages that the low-level driver
reserves in advance. We reserve the upper three quarters of a host's low RAM (2 MiB
aligned, so that IOMMUs can map it with large pages) and hand out page-aligned extents
first-fit, coalescing on free.
"""

from __future__ import annotations

import bisect

from smartio.errors import NoSpace
from smartio.hw.units import HUGE_PAGE_SIZE, PAGE_SIZE, align_up


class PoolExhausted(NoSpace):
    """The segment pool has no extent large enough."""


def pool_range(ram: int) -> tuple[int, int]:
    """(base, size) of the segment pool in a host with ``ram`` bytes of RAM."""
    low = min(ram, 2 << 30)
    base = align_up(low // 4, HUGE_PAGE_SIZE)
    return base, (low - base) // HUGE_PAGE_SIZE * HUGE_PAGE_SIZE


class SegmentPool:
    """First-fit allocator of page-aligned extents of physical RAM."""

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size
        self._free: list[tuple[int, int]] = [(base, size)]  # sorted (addr, size)
        self.used = 0

    def alloc(self, size: int) -> int:
        need = align_up(max(size, 1), PAGE_SIZE)
        for i, (addr, n) in enumerate(self._free):
            if n >= need:
                if n == need:
                    del self._free[i]
                else:
                    self._free[i] = (addr + need, n - need)
                self.used += need
                return addr
        raise PoolExhausted(f"segment pool exhausted: {size} bytes requested, "
                            f"{self.size - self.used} free in fragments")

    def free(self, addr: int, size: int) -> None:
        need = align_up(max(size, 1), PAGE_SIZE)
        i = bisect.bisect_left(self._free, (addr, 0))
        self._free.insert(i, (addr, need))
        self.used -= need
        # Coalesce with neighbours.
        if i + 1 < len(self._free) and addr + need == self._free[i + 1][0]:
            self._free[i] = (addr, need + self._free[i + 1][1])
            del self._free[i + 1]
        if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == addr:
            self._free[i - 1] = (self._free[i - 1][0], self._free[i - 1][1] + self._free[i][1])
            del self._free[i]


__all__ = ["PoolExhausted", "SegmentPool", "pool_range"]
