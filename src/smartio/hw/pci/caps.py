"""PCI capability structures, each a small class that places itself in the list.

Like cocotbext-pcie's ``caps/``: a capability knows its id, its size, its reset contents
and its write masks; :func:`build_capabilities` lays a list out from 0x40 and chains the
next pointers. Offsets of fields are the specification's (PCI 3.0 §6.7/§6.8, PCIe 4.0 §7.5).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smartio.hw.pci.config import Access, Masks

CAP_PM = 0x01
CAP_MSI = 0x05
CAP_PCIE = 0x10
CAP_MSIX = 0x11

# MSI-X message control bits.
MSIX_ENABLE = 1 << 15
MSIX_FUNCTION_MASK = 1 << 14
# MSI message control bits.
MSI_ENABLE = 1 << 0
MSI_64BIT = 1 << 7
# PCIe device control / capability bits.
DEVCTL_INITIATE_FLR = 1 << 15
DEVCAP_FLR = 1 << 28


class Capability:
    """Base class. Extension points: ``cap_id``, ``size``, ``body`` and ``masks``."""

    cap_id = 0
    size = 0

    def body(self) -> bytes:
        """Bytes after the (id, next) header, ``size - 2`` long."""
        raise NotImplementedError

    def set_masks(self, masks: Masks, off: int) -> None:
        """Mark the writable bits of this capability at offset ``off``."""


class PowerManagement(Capability):
    cap_id, size = CAP_PM, 8

    def body(self) -> bytes:
        return struct.pack("<HHxx", 0x0003, 0x0008)  # PMC v1.2; PMCSR: D0, no soft reset

    def set_masks(self, masks: Masks, off: int) -> None:
        masks.set(off + 4, 2, Access.RW, 0x0003)  # PowerState


class Msi(Capability):
    """MSI with a 64-bit address and one vector."""

    cap_id, size = CAP_MSI, 16

    def body(self) -> bytes:
        return struct.pack("<HIIH", MSI_64BIT, 0, 0, 0)

    def set_masks(self, masks: Masks, off: int) -> None:
        masks.set(off + 2, 2, Access.RW, MSI_ENABLE | 0x70)  # enable, multiple message enable
        masks.set(off + 4, 4, Access.RW, 0xFFFFFFFC)
        masks.set(off + 8, 4, Access.RW)
        masks.set(off + 12, 2, Access.RW)


@dataclass
class PciExpress(Capability):
    """PCI Express capability of an endpoint, with Function Level Reset."""

    gen: int = 3
    width: int = 16
    cap_id = CAP_PCIE
    size = 0x3C

    def body(self) -> bytes:
        devcap = 0x1 | DEVCAP_FLR  # max payload 256 B supported, FLR capable
        devctl = (1 << 5) | (2 << 12)  # MPS 256 B, MRRS 512 B
        lnkcap = self.gen | (self.width << 4)
        lnksta = self.gen | (self.width << 4)
        b = struct.pack("<HIHHIHH", 0x0002, devcap, devctl, 0, lnkcap, 0, lnksta)
        return b.ljust(self.size - 2, b"\0")

    def set_masks(self, masks: Masks, off: int) -> None:
        masks.set(off + 8, 2, Access.RW, 0xFFFF)  # device control (FLR bit included)
        masks.set(off + 10, 2, Access.W1C, 0x000F)  # device status error bits
        masks.set(off + 16, 2, Access.RW, 0x0FFF)  # link control


@dataclass
class MsiX(Capability):
    """MSI-X with its table and pending-bit array in a BAR."""

    vectors: int = 1
    bir: int = 0
    table_offset: int = 0
    pba_offset: int = 0
    cap_id = CAP_MSIX
    size = 12

    def body(self) -> bytes:
        return struct.pack("<HII", (self.vectors - 1) & 0x7FF, self.table_offset | self.bir,
                           self.pba_offset | self.bir)

    def set_masks(self, masks: Masks, off: int) -> None:
        masks.set(off + 2, 2, Access.RW, MSIX_ENABLE | MSIX_FUNCTION_MASK)


CAPS_BASE = 0x40


def build_capabilities(view: memoryview, masks: Masks, caps: list[Capability]) -> None:
    """Lay ``caps`` out from 0x40 (4-byte aligned) and chain them from the header."""
    off = CAPS_BASE
    view[0x34] = off if caps else 0
    for i, cap in enumerate(caps):
        nxt = 0 if i == len(caps) - 1 else (off + cap.size + 3) & ~3
        view[off] = cap.cap_id
        view[off + 1] = nxt
        body = cap.body()
        view[off + 2: off + 2 + len(body)] = body
        cap.set_masks(masks, off)
        off = nxt


__all__ = [
    "CAP_MSI",
    "CAP_MSIX",
    "CAP_PCIE",
    "CAP_PM",
    "DEVCTL_INITIATE_FLR",
    "MSIX_ENABLE",
    "MSIX_FUNCTION_MASK",
    "MSI_ENABLE",
    "Capability",
    "Msi",
    "MsiX",
    "PciExpress",
    "PowerManagement",
    "build_capabilities",
]
