"""The real DeviceContext: a function's BARs, config space, DMA and interrupts on a fabric.

Every DMA is checked the way a root port and the function itself would: Bus Master Enable
must be set (otherwise the attempt is refused and logged as ``ub_dma_bme``), the address
must be below the function's DMA mask, and the transfer goes through the fabric
translation of the function as requester (its IOTLB-style cache included), so the host
IOMMU and every NTB on the path apply. A transfer with any failing piece is refused as a
whole — no byte of it lands — and the model reports a data-transfer error.

Interrupts are MSI-X messages when MSI-X is enabled (address/data from the table in the
BAR; a masked vector sets its pending bit), MSI when MSI is enabled, else legacy INTx
(the Interrupt Status bit). A message is a posted memory write through the fabric.
"""

from __future__ import annotations

import logging
import struct
import time

from smartio.hw.fabric import Fabric
from smartio.hw.ids import Requester
from smartio.hw.pci.caps import CAP_MSI, CAP_MSIX, MSI_ENABLE, MSIX_ENABLE, MSIX_FUNCTION_MASK
from smartio.hw.pci.config import CMD_BUS_MASTER, CMD_INTX_DISABLE, STATUS_INTERRUPT
from smartio.hw.pci.layout import function_layout

log = logging.getLogger(__name__)


class FabricContext:
    """A device model's view of the world, for the function ``name`` of a fabric."""

    def __init__(self, fabric: Fabric, name: str, dma_bits: int = 64) -> None:
        self.fabric = fabric
        self.name = name
        self.function = fabric._function(name)
        self.config = fabric.config(name)
        self.port = fabric.port(Requester(self.function.host, self.function.bdf))
        self.dma_limit = 1 << dma_bits
        self._bars = {b.index: fabric.bar(name, b.index).view for b in self.function.bars}
        _, _, self.msix = function_layout(fabric.topo, self.function)
        self._cfg = self.config.view
        self.refused = 0  # DMA attempts refused (BME clear, beyond mask, failed path)

    def bar(self, index: int) -> memoryview:
        return self._bars[index]

    def bus_master(self) -> bool:
        return bool(self.config.view[0x04] & CMD_BUS_MASTER)

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def _allowed(self, addr: int, size: int, what: str) -> bool:
        if self._cfg[0x04] & CMD_BUS_MASTER and 0 <= addr and addr + size <= self.dma_limit:
            return True  # the common case, checked first
        if not self.config.view[0x04] & CMD_BUS_MASTER:
            self.refused += 1
            log.warning("ub_dma_bme: %s %s of %d bytes at %#x with Bus Master Enable clear",
                        self.name, what, size, addr)
            return False
        if addr < 0 or addr + size > self.dma_limit:
            self.refused += 1
            log.warning("ub_dma_mask: %s %s at %#x+%d beyond its DMA mask (%#x)", self.name,
                        what, addr, size, self.dma_limit)
            return False
        return True

    def dma_read(self, addr: int, size: int) -> bytes | None:
        if not self._allowed(addr, size, "read"):
            return None
        ext = self.port.lookup(addr, False)  # fast path: one cached extent covers it
        if addr + size <= ext.end:
            if ext.obj is None:
                self.refused += 1
                return None
            off = ext.offset + (addr - ext.start)
            return bytes(ext.obj.view[off: off + size])
        pieces = self.port.translate(addr, size, False)
        if len(pieces) == 1:
            p = pieces[0]
            if p.obj is None:
                self.refused += 1
                return None
            return bytes(p.obj.view[p.offset: p.offset + size])
        if any(p.obj is None for p in pieces):
            self.refused += 1
            return None
        return b"".join(bytes(p.obj.view[p.offset: p.offset + p.length])  # type: ignore[union-attr]
                        for p in pieces)

    def dma_read_into(self, addr: int, dest: memoryview) -> bool:
        size = len(dest)
        if not self._allowed(addr, size, "read"):
            return False
        ext = self.port.lookup(addr, False)
        if addr + size <= ext.end:
            if ext.obj is None:
                self.refused += 1
                return False
            off = ext.offset + (addr - ext.start)
            dest[:] = ext.obj.view[off: off + size]
            return True
        pieces = self.port.translate(addr, size, False)
        if any(p.obj is None for p in pieces):
            self.refused += 1
            return False
        pos = 0
        for p in pieces:
            dest[pos: pos + p.length] = p.obj.view[p.offset: p.offset + p.length]  # type: ignore[union-attr]
            pos += p.length
        return True

    def dma_write(self, addr: int, data: bytes | bytearray | memoryview) -> bool:
        size = len(data)
        if not self._allowed(addr, size, "write"):
            return False
        ext = self.port.lookup(addr, True)
        if addr + size <= ext.end:
            if ext.obj is None:
                self.refused += 1
                return False
            if not ext.obj.interrupt:
                off = ext.offset + (addr - ext.start)
                ext.obj.view[off: off + size] = data
                return True
        mv = memoryview(data).cast("B")
        pieces = self.port.translate(addr, size, True)
        if any(p.obj is None for p in pieces):
            self.refused += 1
            return False
        pos = 0
        for p in pieces:
            if p.obj.interrupt:  # type: ignore[union-attr]
                self.port.write(p.addr, mv[pos: pos + p.length])
            else:
                p.obj.view[p.offset: p.offset + p.length] = mv[pos: pos + p.length]  # type: ignore[union-attr]
            pos += p.length
        return True

    def interrupt(self, vector: int) -> None:
        cfg = self.config
        msix = cfg.find_capability(CAP_MSIX) if self.msix is not None else None
        if msix is not None and self.msix is not None:
            ctrl = cfg.read(msix + 2, 2)
            if ctrl & MSIX_ENABLE:
                if vector >= self.msix.vectors:
                    log.warning("ub_msix_vector: %s vector %d of %d", self.name, vector,
                                self.msix.vectors)
                    return
                bar = self._bars[self.msix.bir]
                entry = self.msix.table_offset + 16 * vector
                lo, hi, data, vctl = struct.unpack_from("<IIII", bar, entry)
                if ctrl & MSIX_FUNCTION_MASK or vctl & 1:
                    pba = self.msix.pba_offset + vector // 8
                    bar[pba] |= 1 << (vector % 8)  # pending until unmasked
                    return
                self._post((hi << 32) | lo, data)
                return
        msi = cfg.find_capability(CAP_MSI)
        if msi is not None:
            ctrl = cfg.read(msi + 2, 2)
            if ctrl & MSI_ENABLE:
                addr = cfg.read(msi + 4, 4) | (cfg.read(msi + 8, 4) << 32)
                data = cfg.read(msi + 12, 2)
                # PCI 3.0 §6.8.1.3: the function may modify only the low log2(Multiple
                # Message Enable) bits of the data; with one message it sends it unchanged.
                low = (1 << ((ctrl >> 4) & 7)) - 1
                self._post(addr, (data & ~low) | (vector & low))
                return
        if not cfg.view[0x05] & (CMD_INTX_DISABLE >> 8):
            cfg.view[0x06] |= STATUS_INTERRUPT  # INTx asserted (level, until the driver acks)

    def _post(self, addr: int, data: int) -> None:
        """A message-signalled interrupt: a posted 4-byte write through the fabric."""
        if not self.config.view[0x04] & CMD_BUS_MASTER:
            log.warning("ub_msi_bme: %s interrupt with Bus Master Enable clear", self.name)
            return
        self.port.write(addr, data.to_bytes(4, "little"))

    def flr_requested(self) -> bool:
        """Whether the driver initiated a Function Level Reset (PCIe device control)."""
        from smartio.hw.pci.caps import CAP_PCIE, DEVCTL_INITIATE_FLR

        off = self.config.find_capability(CAP_PCIE)
        return off is not None and bool(self.config.read(off + 8, 2) & DEVCTL_INITIATE_FLR)

    def flr_complete(self) -> None:
        """Finish an FLR: config back to power-on contents (BARs keep their addresses)."""
        reset, _, _ = function_layout(self.fabric.topo, self.function)
        self.config.view[:len(reset)] = reset


__all__ = ["FabricContext"]
