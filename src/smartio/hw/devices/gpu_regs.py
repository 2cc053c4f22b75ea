"""The GPU model's BAR0 register block and command-ring descriptors, declared once.

:mod:`smartio.hw.devices.gpu` documents the layouts; this module is their single source:
the register table (name, offset, width, access, reset), the control and status bits, the
64-byte descriptor format with its opcodes and flags, and the error codes the copy engine
reports. Host-side code (drivers, tests) builds descriptors with :func:`pack_copy` and
:func:`pack_launch` and reads registers through :class:`RegFile`, so no bit is packed by
hand in two places.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag

from smartio.errors import IllegalParameter


class Access(Enum):
    """Who may write a register. RO registers are written only by the device."""

    RO = "RO"
    RW = "RW"


@dataclass(frozen=True)
class Reg:
    name: str
    offset: int
    width: int  # bits: 32 or 64
    access: Access
    reset: int = 0


GPU_VENDOR_ID = 0x10DE
GPU_DEVICE_ID = 0x1BB1
VERSION = 0x0001_0000  # major.minor of this register interface

#: The register block; everything from ``REGS_SIZE`` to the end of BAR0 is free for rings.
GPU_REGS: tuple[Reg, ...] = (
    Reg("id", 0x000, 32, Access.RO, GPU_DEVICE_ID << 16 | GPU_VENDOR_ID),
    Reg("version", 0x004, 32, Access.RO, VERSION),
    Reg("mem_size", 0x008, 64, Access.RO),  # set from the "memory" parameter
    Reg("dma_bits", 0x010, 32, Access.RO),  # set from the "dma_bits" parameter
    Reg("ring_max", 0x014, 32, Access.RO),  # largest ring, in descriptors
    Reg("kern_launched", 0x018, 32, Access.RO),
    Reg("kern_failed", 0x01C, 32, Access.RO),
    Reg("ce_ctrl", 0x020, 32, Access.RW),
    Reg("ce_status", 0x024, 32, Access.RO),
    Reg("ce_ring_base", 0x028, 64, Access.RW),
    Reg("ce_ring_size", 0x030, 32, Access.RW),
    Reg("ce_tail", 0x034, 32, Access.RW),
    Reg("ce_head", 0x038, 32, Access.RO),
    Reg("ce_completed", 0x03C, 32, Access.RO),
    Reg("ce_fence", 0x040, 64, Access.RO),
    Reg("ce_err_code", 0x048, 32, Access.RO),
    Reg("ce_err_index", 0x04C, 32, Access.RO),
    Reg("kern_fail_id", 0x050, 32, Access.RO),
)
REG: dict[str, Reg] = {r.name: r for r in GPU_REGS}
REGS_SIZE = 0x1000
RING_MAX = 65536


class Ctrl(IntFlag):
    """``ce_ctrl`` bits."""

    EN = 1 << 0  # run the copy engine (latches the ring configuration)
    IEN = 1 << 1  # allow interrupt vector 0 (INTR descriptors and errors)
    RING_MEM = 1 << 2  # the ring lives in device memory (BAR1), not in BAR0


class Status(IntFlag):
    """``ce_status`` bits."""

    RDY = 1 << 0  # enabled and fetching descriptors
    ERR = 1 << 1  # halted on an error: see ce_err_code / ce_err_index


class Op(IntEnum):
    COPY = 1
    LAUNCH = 2


class Flag(IntFlag):
    """Descriptor flags (u16 at byte 2)."""

    SRC_MEM = 1 << 0  # COPY: src is a device-memory offset, not a bus address
    DST_MEM = 1 << 1  # COPY: dst is a device-memory offset, not a bus address
    FENCE = 1 << 2  # on completion, ce_fence := fence
    FENCE_WB = 1 << 3  # COPY: on completion, also DMA-write fence (u64 LE) to fence_addr
    INTR = 1 << 4  # on completion, raise interrupt vector 0 (when ce_ctrl.IEN)


# Plain ints: ``~`` of an IntFlag keeps only defined bits, which would hide reserved ones.
COPY_FLAGS = int(Flag.SRC_MEM | Flag.DST_MEM | Flag.FENCE | Flag.FENCE_WB | Flag.INTR)
LAUNCH_FLAGS = int(Flag.FENCE | Flag.INTR)


class GpuError(IntEnum):
    """``ce_err_code`` values (0: none)."""

    NONE = 0
    BAD_RING = 1  # ring base/size invalid when EN was set
    BAD_TAIL = 2  # ce_tail >= ring size
    BAD_DESC = 3  # unknown opcode, reserved flags, nargs > 6, length too large
    MEM_RANGE = 4  # a device-memory offset range lies outside device memory
    DMA_MASK = 5  # a bus address range reaches 2**dma_bits or beyond
    BUS_MASTER = 6  # Bus Master Enable is clear
    DMA_READ = 7  # the fabric failed a read
    DMA_WRITE = 8  # the fabric failed a write
    NO_KERNEL = 9  # LAUNCH names a kernel id that is not registered
    KERNEL_FAULT = 10  # the kernel raised


DESC_SIZE = 64
MAX_ARGS = 6
MAX_COPY = 1 << 30  # bytes one COPY descriptor may move
#: op u8, nargs u8, flags u16, kernel id u32, fence u64, six u64 words.
DESC = struct.Struct("<BBHIQ6Q")
assert DESC.size == DESC_SIZE

_FMT = {32: struct.Struct("<I"), 64: struct.Struct("<Q")}


def pack_copy(src: int, dst: int, length: int, *, flags: int = 0, fence: int = 0,
              fence_addr: int = 0) -> bytes:
    """A COPY descriptor: words are src, dst, len, fence_addr (then two reserved)."""
    return DESC.pack(Op.COPY, 0, flags, 0, fence, src, dst, length, fence_addr, 0, 0)


def pack_launch(kernel: int, *args: int, flags: int = 0, fence: int = 0) -> bytes:
    """A LAUNCH descriptor for kernel id ``kernel`` with up to six u64 ``args``.

    Raises:
        IllegalParameter: more than six arguments.
    """
    if len(args) > MAX_ARGS:
        raise IllegalParameter(f"a launch takes at most {MAX_ARGS} arguments, got {len(args)}")
    words = [*args, *([0] * (MAX_ARGS - len(args)))]
    return DESC.pack(Op.LAUNCH, len(args), flags, kernel, fence, *words)


class RegFile:
    """Named access to the register block in a BAR0 view (device or host side)."""

    __slots__ = ("view",)

    def __init__(self, view: memoryview) -> None:
        if len(view) < REGS_SIZE:
            raise IllegalParameter(f"BAR0 of {len(view)} bytes cannot hold the register block")
        self.view = view

    def read(self, name: str) -> int:
        r = REG[name]
        return int(_FMT[r.width].unpack_from(self.view, r.offset)[0])

    def write(self, name: str, value: int, *, device: bool = False) -> None:
        """Write ``value``; only the device (``device=True``) may write RO registers.

        Raises:
            IllegalParameter: a host write to an RO register.
        """
        r = REG[name]
        if r.access is Access.RO and not device:
            raise IllegalParameter(f"register {name} is read-only")
        _FMT[r.width].pack_into(self.view, r.offset, value & ((1 << r.width) - 1))

    def reset(self) -> None:
        """Zero the register block, then write every register's reset value."""
        self.view[:REGS_SIZE] = bytes(REGS_SIZE)
        for r in GPU_REGS:
            _FMT[r.width].pack_into(self.view, r.offset, r.reset)


__all__ = [
    "COPY_FLAGS",
    "DESC",
    "DESC_SIZE",
    "GPU_REGS",
    "LAUNCH_FLAGS",
    "MAX_ARGS",
    "MAX_COPY",
    "REG",
    "REGS_SIZE",
    "RING_MAX",
    "Access",
    "Ctrl",
    "Flag",
    "GpuError",
    "Op",
    "Reg",
    "RegFile",
    "Status",
    "pack_copy",
    "pack_launch",
]
