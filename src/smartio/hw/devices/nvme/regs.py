"""BAR0 of the NVMe controller: the register table, field names, doorbells and MSI-X.

Layout (nvme-reference §1.1): controller registers at 0x000..0xFFF, declared once in
:data:`REGS`; doorbells from 0x1000 with CAP.DSTRD = 0 (SQy tail at ``0x1000 + 8y``, CQy
head at ``0x1000 + 8y + 4``); the MSI-X table at :data:`MSIX_TABLE_OFFSET` and its PBA at
:data:`MSIX_PBA_OFFSET` (BIR 0), which the PCI config-space code advertises.

The BAR is plain shared memory: host writes are not trapped. :class:`RegisterFile` and
:class:`Doorbells` keep a shadow copy; a poll compares live memory with the shadow in one
``memcmp`` (``bytearray != memoryview``) and only then looks at individual words. The
controller's own stores go to both copies. Words are little-endian, as on the hosts the
emulator runs on (native ``memoryview.cast``, like ``smartio.hw.state``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

REG_SPACE = 0x1000
DOORBELL_BASE = 0x1000
DOORBELL_SPACE = 0x1000
DSTRD = 0
DOORBELL_STRIDE = 4 << DSTRD
MSIX_BIR = 0
MSIX_TABLE_OFFSET = 0x2000
MSIX_PBA_OFFSET = 0x3000
MSIX_ENTRY_SIZE = 16
BAR0_SIZE = 0x4000
NVME_VERSION = 0x00010400  # 1.4.0, like QEMU and FEMU
CAP_TO = 0x0F  # ready timeout, 500 ms units (7.5 s, as QEMU)
MPSMIN = 0  # 4 KiB
MPSMAX = 4  # 64 KiB

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class Access(Enum):
    """Who may change a register. Host writes to RO registers are logged and undone."""

    RO = "RO"
    RW = "RW"
    RW1S = "RW1S"  # write 1 to set (INTMS)
    RW1C = "RW1C"  # write 1 to clear (INTMC)


@dataclass(frozen=True)
class Reg:
    name: str
    offset: int
    width: int  # bytes
    access: Access
    reset: int = 0


#: Controller registers (NVMe 1.4 §3.1). CAP's reset value comes from the configuration.
REGS: tuple[Reg, ...] = (
    Reg("cap", 0x00, 8, Access.RO),
    Reg("vs", 0x08, 4, Access.RO, NVME_VERSION),
    Reg("intms", 0x0C, 4, Access.RW1S),
    Reg("intmc", 0x10, 4, Access.RW1C),
    Reg("cc", 0x14, 4, Access.RW),
    Reg("csts", 0x1C, 4, Access.RO),
    Reg("nssr", 0x20, 4, Access.RO),  # CAP.NSSRS = 0: NVM subsystem reset not supported
    Reg("aqa", 0x24, 4, Access.RW),
    Reg("asq", 0x28, 8, Access.RW),
    Reg("acq", 0x30, 8, Access.RW),
    Reg("cmbloc", 0x38, 4, Access.RO),
    Reg("cmbsz", 0x3C, 4, Access.RO),
)
REG: dict[str, Reg] = {r.name: r for r in REGS}
#: Dword indices of BAR0 covered by a register of :data:`REGS` (the rest is reserved).
_REGISTER_DWORDS: frozenset[int] = frozenset(
    i for r in REGS for i in range(r.offset // 4, (r.offset + r.width) // 4))
#: Several host writes can land between two polls; apply them in NVMeVirt's fixed order.
WRITE_ORDER: tuple[str, ...] = ("aqa", "asq", "acq", "cc", "intms", "intmc")


@dataclass(frozen=True)
class Field:
    """A bit field of a register, named ``reg.field`` after the specification."""

    reg: str
    shift: int
    width: int

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def get(self, value: int) -> int:
        return (value >> self.shift) & self.mask

    def put(self, value: int, field: int) -> int:
        return (value & ~(self.mask << self.shift)) | ((field & self.mask) << self.shift)


FIELDS: dict[str, Field] = {
    "cap.mqes": Field("cap", 0, 16), "cap.cqr": Field("cap", 16, 1),
    "cap.ams": Field("cap", 17, 2), "cap.to": Field("cap", 24, 8),
    "cap.dstrd": Field("cap", 32, 4), "cap.nssrs": Field("cap", 36, 1),
    "cap.css": Field("cap", 37, 8), "cap.mpsmin": Field("cap", 48, 4),
    "cap.mpsmax": Field("cap", 52, 4), "cap.pmrs": Field("cap", 56, 1),
    "cap.cmbs": Field("cap", 57, 1),
    "vs.mjr": Field("vs", 16, 16), "vs.mnr": Field("vs", 8, 8), "vs.ter": Field("vs", 0, 8),
    "cc.en": Field("cc", 0, 1), "cc.css": Field("cc", 4, 3), "cc.mps": Field("cc", 7, 4),
    "cc.ams": Field("cc", 11, 3), "cc.shn": Field("cc", 14, 2),
    "cc.iosqes": Field("cc", 16, 4), "cc.iocqes": Field("cc", 20, 4),
    "cc.crime": Field("cc", 24, 1),
    "csts.rdy": Field("csts", 0, 1), "csts.cfs": Field("csts", 1, 1),
    "csts.shst": Field("csts", 2, 2), "csts.nssro": Field("csts", 4, 1),
    "csts.pp": Field("csts", 5, 1),
    "aqa.asqs": Field("aqa", 0, 12), "aqa.acqs": Field("aqa", 16, 12),
    "cmbloc.bir": Field("cmbloc", 0, 3), "cmbloc.ofst": Field("cmbloc", 12, 20),
    "cmbsz.szu": Field("cmbsz", 8, 4), "cmbsz.sz": Field("cmbsz", 12, 20),
}

CAP_CSS_NVM = 1 << 0  # CAP.CSS bit 37: NVM command set
CC_CSS_NVM = 0b000
SHN_NONE, SHN_NORMAL, SHN_ABRUPT = 0b00, 0b01, 0b10
SHST_NORMAL, SHST_OCCURRING, SHST_COMPLETE = 0b00, 0b01, 0b10
IOSQES = 6  # 64-byte SQ entries
IOCQES = 4  # 16-byte CQ entries


def cap_value(mqes: int) -> int:
    """CAP for a controller whose queues hold at most ``mqes + 1`` entries."""
    cap = 0
    for name, value in (("cap.mqes", mqes), ("cap.cqr", 1), ("cap.to", CAP_TO),
                        ("cap.dstrd", DSTRD), ("cap.css", CAP_CSS_NVM),
                        ("cap.mpsmin", MPSMIN), ("cap.mpsmax", MPSMAX)):
        cap = FIELDS[name].put(cap, value)
    return cap


def _pack(width: int) -> struct.Struct:
    return _U64 if width == 8 else _U32


class RegisterFile:
    """BAR0 0x000..0xFFF and the controller's shadow of it."""

    def __init__(self, bar: memoryview, cap: int) -> None:
        self.live = bar[:REG_SPACE]
        self.shadow = bytearray(REG_SPACE)
        self._resets = {r.name: (cap if r.name == "cap" else r.reset) for r in REGS}

    def dirty(self) -> bool:
        """Whether the host wrote anything since the last look (one memcmp)."""
        return self.shadow != self.live

    def reset(self) -> None:
        """Every register to its reset value, reserved space to zero."""
        self.shadow[:] = bytes(REG_SPACE)
        for name, value in self._resets.items():
            r = REG[name]
            _pack(r.width).pack_into(self.shadow, r.offset, value)
        self.live[:] = self.shadow

    def __getitem__(self, name: str) -> int:
        """The controller's current value of register ``name``."""
        r = REG[name]
        return int(_pack(r.width).unpack_from(self.shadow, r.offset)[0])

    def get(self, field: str) -> int:
        """A field (``"cc.en"``) of the controller's current value."""
        f = FIELDS[field]
        return f.get(self[f.reg])

    def store(self, name: str, value: int) -> None:
        """A controller-side write: both the live BAR and the shadow."""
        r = REG[name]
        p = _pack(r.width)
        p.pack_into(self.shadow, r.offset, value)
        p.pack_into(self.live, r.offset, value)

    def set(self, field: str, value: int) -> None:
        f = FIELDS[field]
        self.store(f.reg, f.put(self[f.reg], value))

    def written(self, name: str) -> int | None:
        """The host's new value of ``name`` if it differs from the shadow, else None."""
        r = REG[name]
        p = _pack(r.width)
        live = int(p.unpack_from(self.live, r.offset)[0])
        return None if live == p.unpack_from(self.shadow, r.offset)[0] else live

    def accept(self, name: str, value: int) -> None:
        """Take the host's write into the shadow."""
        r = REG[name]
        _pack(r.width).pack_into(self.shadow, r.offset, value)

    def restore(self, name: str) -> None:
        """Undo a host write (read-only register)."""
        r = REG[name]
        self.live[r.offset: r.offset + r.width] = self.shadow[r.offset: r.offset + r.width]

    def stray_writes(self) -> list[int]:
        """Offsets of reserved-space dwords differing from the shadow; undone.

        Only dwords that belong to no register count: the host keeps running while the
        controller polls, so a register that differs here may hold a write that landed
        after the per-register checks of this poll. It is left for the next poll, which
        applies it (undoing it here would lose e.g. a CC write).
        """
        if not self.dirty():
            return []
        out = []
        live, shadow = self.live.cast("I"), memoryview(self.shadow).cast("I")
        for i in range(REG_SPACE // 4):
            if live[i] != shadow[i] and i not in _REGISTER_DWORDS:
                out.append(4 * i)
                live[i] = shadow[i]
        live.release()
        shadow.release()
        return out

    def release(self) -> None:
        self.live.release()


class Doorbells:
    """The doorbell page (SQy tail, CQy head) and its shadow."""

    def __init__(self, bar: memoryview) -> None:
        self.live = bar[DOORBELL_BASE: DOORBELL_BASE + DOORBELL_SPACE]
        self.shadow = bytearray(DOORBELL_SPACE)
        self.live_w = self.live.cast("I")  # word views: SQy tail at 2y, CQy head at 2y+1
        self.shadow_w = memoryview(self.shadow).cast("I")

    @staticmethod
    def sq_tail(qid: int) -> int:
        """Word index of SQ ``qid``'s tail doorbell."""
        return 2 * qid

    @staticmethod
    def cq_head(qid: int) -> int:
        """Word index of CQ ``qid``'s head doorbell."""
        return 2 * qid + 1

    def dirty(self) -> bool:
        return self.shadow != self.live

    def clear(self, index: int) -> None:
        """Zero one doorbell (a queue is created or deleted)."""
        self.live_w[index] = 0
        self.shadow_w[index] = 0

    def reset(self) -> None:
        self.shadow[:] = bytes(DOORBELL_SPACE)
        self.live[:] = self.shadow

    def stray_writes(self, owned: Callable[[int], bool]) -> list[tuple[int, int]]:
        """(word index, value) of every changed word of no queue, accepted as seen.

        ``owned(index)`` tells whether a word is the doorbell of an existing queue. Such
        a word is skipped even if it differs: the host rings doorbells concurrently with
        the poll, so it holds a write that landed after this poll's per-queue scan, and
        the next poll's scan takes it (accepting it here would lose it).
        """
        out = []
        lw, sw = self.live_w, self.shadow_w
        for i in range(len(sw)):
            if lw[i] != sw[i] and not owned(i):
                out.append((i, int(lw[i])))
                sw[i] = lw[i]
        return out

    def release(self) -> None:
        self.live_w.release()
        self.shadow_w.release()
        self.live.release()


def msix_reset(bar: memoryview, vectors: int) -> None:
    """MSI-X table entries to their reset state (vector masked) and the PBA to zero."""
    for v in range(vectors):
        off = MSIX_TABLE_OFFSET + MSIX_ENTRY_SIZE * v
        struct.pack_into("<IIII", bar, off, 0, 0, 0, 1)
    bar[MSIX_PBA_OFFSET: MSIX_PBA_OFFSET + (vectors + 63) // 64 * 8] = bytes(
        (vectors + 63) // 64 * 8)


__all__ = [
    "BAR0_SIZE", "DOORBELL_BASE", "FIELDS", "MSIX_BIR", "MSIX_ENTRY_SIZE", "MSIX_PBA_OFFSET",
    "MSIX_TABLE_OFFSET", "NVME_VERSION", "REG", "REGS", "WRITE_ORDER", "Access", "Doorbells",
    "Field", "Reg", "RegisterFile", "cap_value", "msix_reset",
]
