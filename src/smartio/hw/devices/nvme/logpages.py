"""Log pages (NVMe 1.4 §5.14.1): Error Information, SMART / Health, Firmware Slot, and
Commands Supported and Effects — the last built from the same dispatch tables that
execute commands, so it cannot disagree with them.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

LID_ERROR = 0x01
LID_SMART = 0x02
LID_FW_SLOT = 0x03
LID_EFFECTS = 0x05

ELPE = 63  # Identify Controller byte 262, 0's based: 64 error log entries
ERROR_ENTRY = struct.Struct("<QHHHHQIBB")  # count, sqid, cid, status, loc, lba, nsid, vs, trtype
KELVIN_TEMP = 308  # composite temperature reported in SMART (35 °C)

# Commands Supported and Effects bits (NVMe 1.4 Figure 210).
CSUPP = 1 << 0
LBCC = 1 << 1  # logical block content change
NCC = 1 << 2  # namespace capability change
NIC = 1 << 3  # namespace inventory change
CCC = 1 << 4  # controller capability change


class ErrorLog:
    """The Error Information log: newest entry first, at most ELPE + 1 kept."""

    def __init__(self) -> None:
        self.count = 0
        self._entries: deque[bytes] = deque(maxlen=ELPE + 1)

    def record(self, sqid: int, cid: int, status: int, nsid: int = 0, lba: int = 0,
               location: int = 0xFFFF) -> None:
        self.count += 1
        self._entries.appendleft(ERROR_ENTRY.pack(
            self.count, sqid & 0xFFFF, cid & 0xFFFF, (status << 1) & 0xFFFF, location,
            lba & 0xFFFF_FFFF_FFFF_FFFF, nsid & 0xFFFF_FFFF, 0, 0))

    def page(self) -> bytes:
        out = bytearray(64 * (ELPE + 1))
        for i, entry in enumerate(self._entries):
            out[64 * i: 64 * i + len(entry)] = entry
        return bytes(out)


@dataclass
class SmartCounters:
    """What the SMART / Health log reports; the controller updates it as it works."""

    bytes_read: int = 0
    bytes_written: int = 0
    read_commands: int = 0
    write_commands: int = 0
    power_cycles: int = 1
    unsafe_shutdowns: int = 0
    media_errors: int = 0

    def page(self, error_count: int) -> bytes:
        out = bytearray(512)
        struct.pack_into("<BHBBB", out, 0, 0, KELVIN_TEMP, 100, 10, 0)
        units = (("bytes_read", 32), ("bytes_written", 48))
        for attr, off in units:  # thousands of 512-byte units, rounded up
            _u128(out, off, -(-getattr(self, attr) // 512_000))
        for value, off in ((self.read_commands, 64), (self.write_commands, 80),
                           (self.power_cycles, 112), (self.unsafe_shutdowns, 144),
                           (self.media_errors, 160), (error_count, 176)):
            _u128(out, off, value)
        return bytes(out)


def _u128(buf: bytearray, off: int, value: int) -> None:
    buf[off: off + 16] = value.to_bytes(16, "little")


def fw_slot_page(firmware: str) -> bytes:
    """Slot 1 active and read-only, holding ``firmware`` (FRS1, bytes 8–15)."""
    out = bytearray(512)
    out[0] = 0x01  # AFI: active slot 1
    out[8:16] = firmware.encode("ascii")[:8].ljust(8)
    return bytes(out)


def effects_page(admin: Mapping[int, int], io: Mapping[int, int]) -> bytes:
    """Commands Supported and Effects: ACS[opcode] at 4·op, IOCS[opcode] at 1024 + 4·op."""
    out = bytearray(4096)
    for base, table in ((0, admin), (1024, io)):
        for opcode, effects in table.items():
            struct.pack_into("<I", out, base + 4 * opcode, effects | CSUPP)
    return bytes(out)


__all__ = [
    "CCC", "CSUPP", "ELPE", "LBCC", "LID_EFFECTS", "LID_ERROR", "LID_FW_SLOT", "LID_SMART",
    "NCC", "NIC", "ErrorLog", "SmartCounters", "effects_page", "fw_slot_page",
]
