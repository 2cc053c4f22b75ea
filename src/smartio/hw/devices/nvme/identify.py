"""Identify data structures (NVMe 1.4 §5.15.2; byte offsets per nvme-reference §1.3).

CNS 00h Namespace, 01h Controller, 02h Active Namespace ID list, 03h Namespace
Identification Descriptor list. Each is 4 KiB. OACS and ONCS are derived from the
dispatch tables by the caller, so Identify advertises exactly what the controller runs.
"""

from __future__ import annotations

import struct
import uuid

from smartio.hw.devices.nvme.config import NvmeConfig
from smartio.hw.devices.nvme.events import AERL
from smartio.hw.devices.nvme.logpages import ELPE
from smartio.hw.devices.nvme.regs import NVME_VERSION

IDENTIFY_SIZE = 4096
CNS_NAMESPACE = 0x00
CNS_CONTROLLER = 0x01
CNS_ACTIVE_NSIDS = 0x02
CNS_NS_DESCRIPTORS = 0x03

PCI_VENDOR = 0x8086
FIRMWARE = "1.0"
ACL = 3  # Abort Command Limit, 0's based
VWC = 0x07  # volatile write cache present; Flush with NSID FFFFFFFFh supported
DLFEAT = 0x09  # deallocated blocks read as zeros; Write Zeroes may deallocate
NIDT_EUI64, NIDT_NGUID, NIDT_UUID = 0x01, 0x02, 0x03


def _ascii(text: str, width: int) -> bytes:
    return text.encode("ascii")[:width].ljust(width)


def ns_uuid(cfg: NvmeConfig, nsid: int) -> uuid.UUID:
    """A stable per-namespace UUID (also its NGUID and, truncated, its EUI-64)."""
    return uuid.uuid5(uuid.NAMESPACE_OID, f"smartio.nvme/{cfg.serial}/{cfg.model}/{nsid}")


def identify_controller(cfg: NvmeConfig, oacs: int, oncs: int) -> bytes:
    """CNS 01h: the Identify Controller data structure."""
    d = bytearray(IDENTIFY_SIZE)
    struct.pack_into("<HH", d, 0, PCI_VENDOR, PCI_VENDOR)  # VID, SSVID
    d[4:24] = _ascii(cfg.serial, 20)
    d[24:64] = _ascii(cfg.model, 40)
    d[64:72] = _ascii(FIRMWARE, 8)
    d[72] = 6  # RAB: recommended arbitration burst, 2^6
    d[77] = cfg.mdts
    struct.pack_into("<HI", d, 78, 0, NVME_VERSION)  # CNTLID, VER
    d[111] = 1  # CNTRLTYPE: I/O controller
    struct.pack_into("<HBBBBBB", d, 256, oacs, ACL, AERL, 0x03, 0x02, ELPE, 0)
    # FRMW 0x03: one slot, slot 1 read-only. LPA 0x02: effects log. NPSS = 0.
    struct.pack_into("<HH", d, 266, 343, 373)  # WCTEMP, CCTEMP (kelvin)
    d[512] = 0x66  # SQES: 64-byte entries
    d[513] = 0x44  # CQES: 16-byte entries
    struct.pack_into("<HIH", d, 514, 0, cfg.namespaces, oncs)  # MAXCMD, NN, ONCS
    d[525] = VWC
    struct.pack_into("<I", d, 536, 0)  # SGLS: no SGL support
    nqn = f"nqn.2019-08.org.smartio:nvme:{cfg.serial}"
    d[768:1024] = nqn.encode("ascii")[:256].ljust(256, b"\0")
    struct.pack_into("<H", d, 2048, 2500)  # PSD0 MP: 25 W
    return bytes(d)


def identify_namespace(cfg: NvmeConfig, nsid: int) -> bytes:
    """CNS 00h for an active namespace."""
    d = bytearray(IDENTIFY_SIZE)
    nsze = cfg.nlb
    struct.pack_into("<QQQ", d, 0, nsze, nsze, nsze)  # NSZE, NCAP, NUSE
    d[25] = 0  # NLBAF: one format (0's based)
    d[26] = 0  # FLBAS: format 0
    d[33] = DLFEAT
    u = ns_uuid(cfg, nsid).bytes
    d[104:120] = u  # NGUID
    d[120:128] = u[:8]  # EUI64
    lbads = cfg.lba_size.bit_length() - 1
    struct.pack_into("<HBB", d, 128, 0, lbads, 0)  # LBAF0: MS, LBADS, RP
    return bytes(d)


def active_nsids(nsids: list[int], after: int) -> bytes:
    """CNS 02h: up to 1024 active NSIDs greater than ``after``, ascending."""
    ids = sorted(n for n in nsids if n > after)[:1024]
    d = bytearray(IDENTIFY_SIZE)
    struct.pack_into(f"<{len(ids)}I", d, 0, *ids)
    return bytes(d)


def ns_descriptors(cfg: NvmeConfig, nsid: int) -> bytes:
    """CNS 03h: EUI-64, NGUID and UUID descriptors (NIDT, NIDL, 2 reserved, NID)."""
    u = ns_uuid(cfg, nsid).bytes
    d = bytearray(IDENTIFY_SIZE)
    pos = 0
    for nidt, nid in ((NIDT_EUI64, u[:8]), (NIDT_NGUID, u), (NIDT_UUID, u)):
        d[pos] = nidt
        d[pos + 1] = len(nid)
        d[pos + 4: pos + 4 + len(nid)] = nid
        pos += 4 + len(nid)
    return bytes(d)


__all__ = [
    "CNS_ACTIVE_NSIDS", "CNS_CONTROLLER", "CNS_NAMESPACE", "CNS_NS_DESCRIPTORS", "FIRMWARE",
    "IDENTIFY_SIZE", "active_nsids", "identify_controller", "identify_namespace",
    "ns_descriptors", "ns_uuid",
]
