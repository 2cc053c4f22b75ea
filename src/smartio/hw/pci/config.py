"""The 4 KiB configuration space of a PCI function (type 0 header), with write masks.

Registers are declared once in ``HEADER`` (name, offset, width, access, reset value); the
capability structures add theirs. The bytes live in shared memory (one object per function)
so that the host's drivers, the device engine and — later — shadow devices on borrowers
see one config space; every write goes through :meth:`ConfigSpace.write`, which applies
the hardware's write masks (read-only bits stay, W1C bits clear) exactly as silicon does.
BAR sizing works as on real hardware: write all ones, read back the size mask.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from smartio.errors import IllegalParameter, OutOfRange

CONFIG_SIZE = 4096

# Command register bits (PCI 3.0 §6.2.2).
CMD_IO = 1 << 0
CMD_MEMORY = 1 << 1
CMD_BUS_MASTER = 1 << 2
CMD_SERR = 1 << 8
CMD_INTX_DISABLE = 1 << 10
# Status register bits.
STATUS_INTERRUPT = 1 << 3
STATUS_CAP_LIST = 1 << 4
STATUS_W1C = 0xF900  # parity, signalled/received aborts, SERR, detected parity


class Access(Enum):
    RO = "ro"
    RW = "rw"
    W1C = "w1c"


@dataclass(frozen=True)
class Reg:
    name: str
    offset: int
    width: int
    access: Access
    reset: int = 0
    mask: int = -1  # writable bits for RW (all by default)


#: The type 0 header; values that depend on the model are filled in by ``build_header``.
HEADER: tuple[Reg, ...] = (
    Reg("vendor_id", 0x00, 2, Access.RO),
    Reg("device_id", 0x02, 2, Access.RO),
    Reg("command", 0x04, 2, Access.RW, 0, CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | CMD_SERR
        | CMD_INTX_DISABLE),
    Reg("status", 0x06, 2, Access.W1C, STATUS_CAP_LIST, STATUS_W1C),
    Reg("revision", 0x08, 1, Access.RO),
    Reg("class_code", 0x09, 3, Access.RO),
    Reg("cache_line_size", 0x0C, 1, Access.RW),
    Reg("latency_timer", 0x0D, 1, Access.RO),
    Reg("header_type", 0x0E, 1, Access.RO),
    Reg("bist", 0x0F, 1, Access.RO),
    # BAR0..5 at 0x10..0x24: masks come from the BAR sizes (see ``bar_masks``).
    Reg("subsystem_vendor_id", 0x2C, 2, Access.RO),
    Reg("subsystem_id", 0x2E, 2, Access.RO),
    Reg("rom_base", 0x30, 4, Access.RO),
    Reg("cap_ptr", 0x34, 1, Access.RO),
    Reg("interrupt_line", 0x3C, 1, Access.RW),
    Reg("interrupt_pin", 0x3D, 1, Access.RO),
)
REG = {r.name: r for r in HEADER}


@dataclass(frozen=True)
class BarInfo:
    index: int
    base: int
    size: int
    is64: bool
    prefetchable: bool


class Masks:
    """Per-byte write and write-1-to-clear masks of one function's config space."""

    def __init__(self) -> None:
        self.write = bytearray(CONFIG_SIZE)
        self.w1c = bytearray(CONFIG_SIZE)

    def set(self, offset: int, width: int, access: Access, mask: int = -1) -> None:
        m = mask & ((1 << (8 * width)) - 1)
        for i in range(width):
            b = (m >> (8 * i)) & 0xFF
            if access is Access.RW:
                self.write[offset + i] = b
            elif access is Access.W1C:
                self.w1c[offset + i] = b


def bar_words(bars: list[BarInfo]) -> dict[int, tuple[int, int]]:
    """(value, writable mask) of each BAR dword register, keyed by offset."""
    out: dict[int, tuple[int, int]] = {}
    for b in bars:
        off = 0x10 + 4 * b.index
        flags = (0b100 if b.is64 else 0) | (0b1000 if b.prefetchable else 0)
        low_mask = ~(b.size - 1) & 0xFFFFFFF0
        out[off] = ((b.base & 0xFFFFFFF0) | flags, low_mask)
        if b.is64:
            out[off + 4] = (b.base >> 32, 0xFFFFFFFF if b.size <= 1 << 32
                            else ~((b.size - 1) >> 32) & 0xFFFFFFFF)
    return out


class ConfigSpace:
    """Accessors over one function's config bytes (shared memory) and its masks."""

    def __init__(self, view: memoryview, masks: Masks) -> None:
        if len(view) < CONFIG_SIZE:
            raise IllegalParameter(f"config space needs {CONFIG_SIZE} bytes; got {len(view)}")
        self.view = view
        self.masks = masks

    def read(self, offset: int, size: int) -> int:
        """Read 1, 2 or 4 bytes (naturally aligned, like a config TLP)."""
        self._check(offset, size)
        return int.from_bytes(self.view[offset: offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        """Write 1, 2 or 4 bytes through the hardware's write masks."""
        self._check(offset, size)
        for i in range(size):
            b = (value >> (8 * i)) & 0xFF
            o = offset + i
            wm, cm = self.masks.write[o], self.masks.w1c[o]
            old = self.view[o]
            new = (old & ~wm) | (b & wm)
            new &= ~(b & cm) & 0xFF
            if new != old:
                self.view[o] = new

    def _check(self, offset: int, size: int) -> None:
        if size not in (1, 2, 4):
            raise IllegalParameter(f"config access of {size} bytes; expected 1, 2 or 4")
        if offset < 0 or offset + size > CONFIG_SIZE or offset % size:
            raise OutOfRange(f"config access at {offset:#x}+{size}: outside 4 KiB or not "
                             "naturally aligned")

    # -- convenience (drivers may also use raw read/write) -------------------------------

    @property
    def command(self) -> int:
        return self.read(0x04, 2)

    @property
    def bus_master(self) -> bool:
        return bool(self.view[0x04] & CMD_BUS_MASTER)

    @property
    def memory_enabled(self) -> bool:
        return bool(self.view[0x04] & CMD_MEMORY)

    def set_raw(self, offset: int, size: int, value: int) -> None:
        """Set bytes regardless of masks (hardware-side updates: status bits, reset)."""
        self.view[offset: offset + size] = value.to_bytes(size, "little")

    def capabilities(self) -> list[tuple[int, int]]:
        """(capability id, offset) of each capability in the list, in order."""
        out: list[tuple[int, int]] = []
        ptr = self.view[0x34] & 0xFC
        seen = set()
        while ptr and ptr not in seen and len(out) < 48:
            seen.add(ptr)
            out.append((self.view[ptr], ptr))
            ptr = self.view[ptr + 1] & 0xFC
        return out

    def find_capability(self, cap_id: int) -> int | None:
        for cid, off in self.capabilities():
            if cid == cap_id:
                return off
        return None


def pack_le(fmt: str, *values: int) -> bytes:
    return struct.pack("<" + fmt, *values)


__all__ = [
    "CMD_BUS_MASTER",
    "CMD_INTX_DISABLE",
    "CMD_MEMORY",
    "CONFIG_SIZE",
    "HEADER",
    "REG",
    "STATUS_CAP_LIST",
    "STATUS_INTERRUPT",
    "Access",
    "BarInfo",
    "ConfigSpace",
    "Masks",
    "Reg",
    "bar_words",
]
