"""Physical Region Page mapping and the data transfers that use it (NVMe 1.4 §4.3).

Follows QEMU's ``nvme_map_prp()`` (nvme-reference §1.5). The page size is CC.MPS's. PRP1
may start at any dword-aligned offset and covers the rest of its page. If the remainder
fits in one page PRP2 is a page-aligned data pointer; otherwise PRP2 points to a PRP list
that may start at an offset, whose last entry chains to the next list page when more
entries are needed, and every data entry must have offset 0. A violation is PRP Offset
Invalid (0/13h); a list that cannot be read is a Data Transfer Error (0/04h).

Only the list entries actually needed are fetched, so a short list at the end of a DMA
window still works. Physically contiguous pages are merged into one DMA.
"""

from __future__ import annotations

import logging
import struct

from smartio.hw.devices.base import DeviceContext
from smartio.hw.devices.nvme.status import Status, fail

log = logging.getLogger(__name__)

Segments = list[tuple[int, int]]  # (bus address, length)


def map_prp(ctx: DeviceContext, prp1: int, prp2: int, length: int,
            page_size: int) -> Segments | int:
    """Resolve PRP1/PRP2 for a ``length``-byte transfer.

    Returns:
        The segments, or the failing status (an int, DNR included).
    """
    if prp1 & 0x3:
        log.debug("nvme_err_prp_unaligned: prp1=%#x", prp1)
        return fail(Status.PRP_OFFSET_INVALID)
    mask = page_size - 1
    first = min(length, page_size - (prp1 & mask))
    segs: Segments = [(prp1, first)]
    left = length - first
    if left == 0:
        return segs
    if left <= page_size:
        if prp2 & mask:
            log.debug("nvme_err_prp2_offset: prp2=%#x", prp2)
            return fail(Status.PRP_OFFSET_INVALID)
        segs.append((prp2, left))
        return segs
    # PRP2 is a list pointer; the first list page may start at an offset.
    if prp2 & 0x7:
        log.debug("nvme_err_prp_list_unaligned: prp2=%#x", prp2)
        return fail(Status.PRP_OFFSET_INVALID)
    per_page = page_size // 8
    list_addr = prp2
    room = (page_size - (prp2 & mask)) // 8  # entries left in this list page
    while left:
        needed = -(-left // page_size)
        count = needed if needed <= room else room  # the last of `room` chains onward
        raw = ctx.dma_read(list_addr, count * 8)
        if raw is None:
            log.debug("nvme_err_prp_list_read: %#x", list_addr)
            return Status.DATA_TRANSFER_ERROR.value
        entries = struct.unpack(f"<{count}Q", raw)
        data_entries = entries if needed <= room else entries[:-1]
        for ent in data_entries:
            if ent & mask:
                log.debug("nvme_err_prp_entry_offset: %#x", ent)
                return fail(Status.PRP_OFFSET_INVALID)
            n = min(left, page_size)
            last_addr, last_len = segs[-1]
            if last_addr + last_len == ent:
                segs[-1] = (last_addr, last_len + n)
            else:
                segs.append((ent, n))
            left -= n
        if left:
            list_addr = entries[-1]
            if list_addr & mask:
                log.debug("nvme_err_prp_chain_offset: %#x", list_addr)
                return fail(Status.PRP_OFFSET_INVALID)
            room = per_page
    return segs


def write_host(ctx: DeviceContext, segs: Segments, data: bytes | bytearray | memoryview) -> bool:
    """Copy ``data`` (exactly the mapped length) to host memory; False if a DMA failed."""
    mv = memoryview(data)
    pos = 0
    for addr, n in segs:
        if not ctx.dma_write(addr, mv[pos: pos + n]):
            return False
        pos += n
    return True


def read_host(ctx: DeviceContext, segs: Segments, dest: memoryview) -> bool:
    """Fill ``dest`` from host memory; False if a DMA failed."""
    pos = 0
    for addr, n in segs:
        if not ctx.dma_read_into(addr, dest[pos: pos + n]):
            return False
        pos += n
    return True


__all__ = ["Segments", "map_prp", "read_host", "write_host"]
