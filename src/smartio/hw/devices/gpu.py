"""A GPU (Quadro P4000-like): device memory, a copy engine and kernels (paper §4.3, §6.4).

Device memory is BAR1: the CPU and peers map it through the fabric (GPUDirect, §6.4), the
model just uses the memoryview. BAR0 holds a register block and, after it, room for the
copy engine's command ring. The engine executes descriptors in ring order — copies between
bus addresses and device memory, and launches of named kernels — like one CUDA stream. Its
DMA is limited by the DMA mask (``dma_bits``, default 40): a bus address range that
reaches ``2**dma_bits`` fails without any DMA issued, the addressing limitation of §4.3
that makes large DMA windows placed high out of reach. Kernels are Python callables run by
the engine with access only to device memory and the GPU's own DMA
(:mod:`~smartio.hw.devices.gpu_kernels`), so a kernel can ring an NVMe doorbell through a
peer-to-peer mapping (§6.4, Fig. 18). The tables live in
:mod:`~smartio.hw.devices.gpu_regs`.

Register block (BAR0, little-endian; RO registers are written only by the device, a host
write to one is undefined behaviour the device never reads back)::

    0x000 id             RO 32  device id << 16 | vendor id (0x1BB110DE)
    0x004 version        RO 32  0x00010000
    0x008 mem_size       RO 64  bytes of device memory (BAR1)
    0x010 dma_bits       RO 32  DMA mask width
    0x014 ring_max       RO 32  largest ring, in descriptors (65536)
    0x018 kern_launched  RO 32  kernels started (ring and in-process), wraps
    0x01C kern_failed    RO 32  kernels that raised, wraps
    0x020 ce_ctrl        RW 32  bit 0 EN, bit 1 IEN (interrupts), bit 2 RING_MEM
    0x024 ce_status      RO 32  bit 0 RDY, bit 1 ERR
    0x028 ce_ring_base   RW 64  ring offset in BAR0 (>= 0x1000) or, with RING_MEM, in BAR1
    0x030 ce_ring_size   RW 32  ring entries, 2..ring_max
    0x034 ce_tail        RW 32  doorbell: index of the next free slot (host-owned)
    0x038 ce_head        RO 32  index of the next descriptor to execute
    0x03C ce_completed   RO 32  descriptors completed, wraps
    0x040 ce_fence       RO 64  fence of the last completed descriptor flagged FENCE
    0x048 ce_err_code    RO 32  GpuError (1 BAD_RING, 2 BAD_TAIL, 3 BAD_DESC, 4 MEM_RANGE,
                                5 DMA_MASK, 6 BUS_MASTER, 7 DMA_READ, 8 DMA_WRITE,
                                9 NO_KERNEL, 10 KERNEL_FAULT)
    0x04C ce_err_index   RO 32  ring index of the failing descriptor (the tail for BAD_TAIL)
    0x050 kern_fail_id   RO 32  kernel id of the last kernel that raised (0: anonymous)
    0x054 .. 0xFFF       reserved (reads 0)
    0x1000 ..            free for a command ring, up to the MSI-X table
    0xFE0000 / 0xFF0000  MSI-X table / PBA (placed by :mod:`smartio.hw.pci.layout`)

Bring-up: write ce_ring_base and ce_ring_size, then ce_ctrl.EN; the engine latches the ring
and sets RDY with head 0 (descriptors already below ce_tail run at once). Submit: fill the
slot at the tail, then write ce_tail = (tail + 1) % size. A failed descriptor halts the
engine with ERR set and head left on it; nothing after it runs. Recovery: clear EN, wait
for ce_status == 0 (head is 0 again), set ce_tail to 0, re-enable. An error also raises
interrupt vector 0 when IEN is set.

Descriptor (64 bytes, little-endian)::

    0x00 u8  op       1 COPY, 2 LAUNCH
    0x01 u8  nargs    LAUNCH: number of args used (0..6)
    0x02 u16 flags    bit 0 SRC_MEM, 1 DST_MEM, 2 FENCE, 3 FENCE_WB (COPY only), 4 INTR
    0x04 u32 kernel   LAUNCH: kernel id (CRC-32 of the registered name)
    0x08 u64 fence    value for ce_fence (FENCE) and the write-back (FENCE_WB)
    COPY:   0x10 u64 src, 0x18 u64 dst (bus addresses, or device-memory offsets with
            SRC_MEM / DST_MEM), 0x20 u64 len (<= 1 GiB), 0x28 u64 fence_addr, 0x30 rsvd
    LAUNCH: 0x10 .. 0x3F six u64 args

On completion the engine advances ce_head, bumps ce_completed, writes the fence to
fence_addr (FENCE_WB) and ce_fence (FENCE), then raises vector 0 (INTR with IEN). Every
check (ranges, mask, Bus Master Enable) is made before any byte moves, and a bus read lands
in a bounce buffer first, so a failing descriptor writes nothing. A LAUNCH completes when
its kernel returns: a long-running (generator) kernel holds the ring until it finishes.
In-process users call :meth:`GpuModel.launch`; those launches run beside the ring.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from enum import Enum
from typing import Any

from smartio.errors import IllegalParameter, NotFound
from smartio.hw.devices.base import DeviceContext
from smartio.hw.devices.gpu_kernels import (
    Kernel,
    KernelContext,
    Launch,
    LaunchState,
    kernel_id,
    lookup_kernel,
)
from smartio.hw.devices.gpu_regs import (
    COPY_FLAGS,
    DESC,
    DESC_SIZE,
    LAUNCH_FLAGS,
    MAX_ARGS,
    MAX_COPY,
    REG,
    REGS_SIZE,
    RING_MAX,
    Ctrl,
    Flag,
    GpuError,
    Op,
    RegFile,
    Status,
)
from smartio.hw.pci.layout import msix_layout
from smartio.hw.units import parse_size

log = logging.getLogger(__name__)

BATCH = 256  # descriptors per poll, so in-process kernels and the engine loop keep turning
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_CTRL = REG["ce_ctrl"].offset
_TAIL = REG["ce_tail"].offset
_EN = int(Ctrl.EN)


class CeState(Enum):
    DISABLED = "disabled"
    READY = "ready"
    ERROR = "error"


_TRANSITIONS: dict[CeState, set[CeState]] = {
    CeState.DISABLED: {CeState.READY, CeState.ERROR},
    CeState.READY: {CeState.DISABLED, CeState.ERROR},
    CeState.ERROR: {CeState.DISABLED},
}
_STATUS = {CeState.DISABLED: 0, CeState.READY: Status.RDY, CeState.ERROR: Status.ERR}


class GpuModel:
    """The GPU device model (implements :class:`~smartio.hw.devices.base.DeviceModel`).

    Args:
        ctx: the engine's device context (BAR0 registers, BAR1 device memory, DMA).
        params: ``memory`` (size of device memory, default all of BAR1) and ``dma_bits``
            (DMA mask width, default 40).

    Raises:
        IllegalParameter: a parameter is malformed or BAR0/BAR1 is too small.
    """

    def __init__(self, ctx: DeviceContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        bar0, bar1 = ctx.bar(0), ctx.bar(1)
        try:
            memory = parse_size(params.get("memory", len(bar1)))
            dma_bits = int(params.get("dma_bits", 40))
        except (TypeError, ValueError) as exc:
            raise IllegalParameter(f"{ctx.name}: bad GPU parameter: {exc}") from exc
        if not 1 <= dma_bits <= 64:
            raise IllegalParameter(f"{ctx.name}: dma_bits {dma_bits} outside 1..64")
        if memory > len(bar1):
            raise IllegalParameter(
                f"{ctx.name}: memory {memory:#x} larger than BAR1 ({len(bar1):#x})")
        msix = msix_layout("gpu", params)
        self.bar0 = bar0
        # A ring in BAR0 lies between the register block and the MSI-X table.
        self._bar0_end = msix.table_offset if msix is not None and msix.bir == 0 else len(bar0)
        self.regs = RegFile(bar0)
        self.mem = bar1[:memory]
        self.dma_bits = dma_bits
        self._limit = 1 << dma_bits
        self.kctx = KernelContext(ctx, self.mem, dma_bits)
        self._queue: deque[Launch] = deque()
        self._resident: list[Launch] = []
        self._ring_launch: Launch | None = None
        self._ring_desc: tuple[int, ...] = ()
        self._ring = memoryview(b"")
        self._size = 0
        self._head = 0
        self.state = CeState.DISABLED
        self._launched = self._failed = self._completed = 0
        self.reset()

    # -- DeviceModel ------------------------------------------------------------------

    def poll(self) -> bool:
        """Run in-process kernels, follow ce_ctrl.EN and execute submitted descriptors."""
        did = False
        if self._queue or self._resident:
            did = self._run_launches()
        en = _U32.unpack_from(self.bar0, _CTRL)[0] & _EN
        state = self.state
        if state is CeState.READY:
            if not en:
                self._disable()
                return True
            tail = _U32.unpack_from(self.bar0, _TAIL)[0]
            if tail != self._head or self._ring_launch is not None:
                return self._run_ring(tail) or did
        elif state is CeState.DISABLED:
            if en:
                self._enable()
                return True
        elif not en:  # ERROR until the host clears EN
            self._disable()
            return True
        return did

    def reset(self) -> None:
        """Function-level reset: registers, ring and kernels back to power-on state.

        Device memory keeps its contents (a reset does not scrub VRAM).
        """
        self._cancel_all()
        self.regs.reset()
        self.regs.write("mem_size", len(self.mem), device=True)
        self.regs.write("dma_bits", self.dma_bits, device=True)
        self.regs.write("ring_max", RING_MAX, device=True)
        self.state = CeState.DISABLED
        self._ring, self._size, self._head = memoryview(b""), 0, 0
        self._launched = self._failed = self._completed = 0

    def close(self) -> None:
        """Cancel queued and running kernels; the BARs belong to the engine."""
        self._cancel_all()

    # -- in-process kernels -------------------------------------------------------------

    def launch(self, kernel: Kernel | str, *args: Any) -> Launch:
        """Queue ``kernel(gpu, *args)`` to run from a later :meth:`poll`.

        Args:
            kernel: a callable, or the name of a registered kernel.
            args: passed through unchanged (any Python objects).

        Returns:
            The launch handle: its ``state`` ends DONE (``result`` set) or FAILED
            (``error`` set).

        Raises:
            NotFound: ``kernel`` names no registered kernel.
        """
        if isinstance(kernel, str):
            entry = lookup_kernel(kernel_id(kernel))
            if entry is None or entry[0] != kernel:
                raise NotFound(f"no kernel named {kernel!r}")
            job = Launch(entry[1], args, kernel, kernel_id(kernel))
        else:
            job = Launch(kernel, args, getattr(kernel, "__name__", "kernel"))
        self._queue.append(job)
        return job

    def _run_launches(self) -> bool:
        running: list[Launch] = []
        for job in self._resident:
            if job.step(self.kctx):
                self._kernel_done(job)
            else:
                running.append(job)
        while self._queue:
            job = self._queue.popleft()
            self._kernel_started()
            if job.step(self.kctx):
                self._kernel_done(job)
            else:
                running.append(job)
        self._resident = running
        return True

    def _kernel_started(self) -> None:
        self._launched += 1
        self.regs.write("kern_launched", self._launched, device=True)

    def _kernel_done(self, job: Launch) -> None:
        if job.state is LaunchState.FAILED:
            self._failed += 1
            self.regs.write("kern_failed", self._failed, device=True)
            self.regs.write("kern_fail_id", job.kid, device=True)
            log.warning("gpu_err_kernel %s: kernel %s failed: %s", self.ctx.name, job.name,
                        job.error)

    def _cancel_all(self) -> None:
        for job in (*self._queue, *self._resident):
            job.cancel()
        self._queue.clear()
        self._resident = []
        if self._ring_launch is not None:
            self._ring_launch.cancel()
            self._ring_launch = None

    # -- copy engine ----------------------------------------------------------------------

    def _set_state(self, new: CeState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise AssertionError(f"copy engine: no transition {self.state.name} -> {new.name}")
        log.debug("gpu_ce_state %s: %s -> %s", self.ctx.name, self.state.name, new.name)
        self.state = new
        self.regs.write("ce_status", _STATUS[new], device=True)

    def _enable(self) -> None:
        ctrl = self.regs.read("ce_ctrl")
        base, size = self.regs.read("ce_ring_base"), self.regs.read("ce_ring_size")
        in_mem = bool(ctrl & Ctrl.RING_MEM)
        space = self.mem if in_mem else self.bar0
        low, high = (0, len(self.mem)) if in_mem else (REGS_SIZE, self._bar0_end)
        if (not 2 <= size <= RING_MAX or base % DESC_SIZE or base < low
                or base + size * DESC_SIZE > high):
            log.warning("gpu_ub_ring %s: ring base %#x size %d invalid", self.ctx.name, base,
                        size)
            self._fail(GpuError.BAD_RING, 0)
            return
        self._ring, self._size, self._head = space[base:base + size * DESC_SIZE], size, 0
        self.regs.write("ce_head", 0, device=True)
        self._set_state(CeState.READY)

    def _disable(self) -> None:
        if self._ring_launch is not None:
            self._ring_launch.cancel()
            self._ring_launch = None
        self._ring, self._size, self._head = memoryview(b""), 0, 0
        for name in ("ce_head", "ce_err_code", "ce_err_index"):
            self.regs.write(name, 0, device=True)
        self._set_state(CeState.DISABLED)

    def _fail(self, code: GpuError, index: int) -> None:
        if self._ring_launch is not None:
            self._ring_launch.cancel()
            self._ring_launch = None
        log.warning("gpu_err_ce %s: descriptor %d failed: %s", self.ctx.name, index, code.name)
        self.regs.write("ce_err_code", code, device=True)
        self.regs.write("ce_err_index", index, device=True)
        self._set_state(CeState.ERROR)
        self._irq()

    def _irq(self) -> None:
        if self.regs.read("ce_ctrl") & Ctrl.IEN:
            self.ctx.interrupt(0)

    def _run_ring(self, tail: int) -> bool:
        if tail >= self._size:
            self._fail(GpuError.BAD_TAIL, tail)
            return True
        for _ in range(BATCH):
            job = self._ring_launch
            if job is not None:
                if not job.step(self.kctx):
                    return True
                self._ring_launch = None
                self._kernel_done(job)
                err = GpuError.KERNEL_FAULT if job.state is LaunchState.FAILED else None
                desc = self._ring_desc
            else:
                if self._head == tail:
                    return True
                desc = DESC.unpack_from(self._ring, self._head * DESC_SIZE)
                err = self._execute(desc)
                if self._ring_launch is not None:
                    self._ring_desc = desc
                    return True
            if err is None:
                err = self._complete(desc)
            if err is not None:
                self._fail(err, self._head)
                return True
        return True

    def _execute(self, desc: tuple[int, ...]) -> GpuError | None:
        """Run one descriptor; an error code, or None when it is done or, with
        ``_ring_launch`` set, when its long-running kernel continues in later polls."""
        op, nargs, flags, kid = desc[0], desc[1], desc[2], desc[3]
        if op == Op.COPY:
            if flags & ~COPY_FLAGS:
                return GpuError.BAD_DESC
            return self._copy(flags, desc[5], desc[6], desc[7], desc[8])
        if op != Op.LAUNCH or flags & ~LAUNCH_FLAGS or nargs > MAX_ARGS:
            return GpuError.BAD_DESC
        entry = lookup_kernel(kid)
        if entry is None:
            return GpuError.NO_KERNEL
        job = Launch(entry[1], tuple(desc[5:5 + nargs]), entry[0], kid)
        self._kernel_started()
        if not job.step(self.kctx):
            self._ring_launch = job
            return None
        self._kernel_done(job)
        return GpuError.KERNEL_FAULT if job.state is LaunchState.FAILED else None

    def _copy(self, flags: int, src: int, dst: int, n: int, fence_addr: int) -> GpuError | None:
        if n > MAX_COPY:
            return GpuError.BAD_DESC
        src_mem, dst_mem = bool(flags & Flag.SRC_MEM), bool(flags & Flag.DST_MEM)
        size = len(self.mem)
        if (src_mem and src + n > size) or (dst_mem and dst + n > size):
            return GpuError.MEM_RANGE
        bus = [(a, n) for a, on_mem in ((src, src_mem), (dst, dst_mem)) if n and not on_mem]
        if flags & Flag.FENCE_WB:
            bus.append((fence_addr, 8))
        if bus:
            if not self.ctx.bus_master():
                return GpuError.BUS_MASTER
            if any(a + k > self._limit for a, k in bus):
                return GpuError.DMA_MASK
        if not n:
            return None
        data: bytes | memoryview | None
        if src_mem:
            data = self.mem[src:src + n]
        else:
            data = self.ctx.dma_read(src, n)  # a bounce buffer: a failed read writes nothing
            if data is None or len(data) != n:
                return GpuError.DMA_READ
        if dst_mem:
            self.mem[dst:dst + n] = data
        elif not self.ctx.dma_write(dst, data):
            return GpuError.DMA_WRITE
        return None

    def _complete(self, desc: tuple[int, ...]) -> GpuError | None:
        flags, fence = desc[2], desc[4]
        if flags & Flag.FENCE_WB and not self.ctx.dma_write(desc[8], _U64.pack(fence)):
            return GpuError.DMA_WRITE
        self._head = (self._head + 1) % self._size
        self._completed += 1
        self.regs.write("ce_head", self._head, device=True)
        self.regs.write("ce_completed", self._completed, device=True)
        if flags & Flag.FENCE:
            self.regs.write("ce_fence", fence, device=True)
        if flags & Flag.INTR:
            self._irq()
        return None


__all__ = ["CeState", "GpuModel"]
