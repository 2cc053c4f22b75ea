"""The GPU model over an in-test context: copy engine, DMA mask, kernels, reset (§4.3, §6.4)."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Generator
from itertools import pairwise

import pytest

from smartio.errors import IllegalParameter, NotFound
from smartio.hw.devices.base import DeviceContext, DeviceModel
from smartio.hw.devices.gpu import CeState, GpuModel
from smartio.hw.devices.gpu_kernels import (
    KernelContext,
    LaunchState,
    kernel_id,
    register_kernel,
    unregister_kernel,
)
from smartio.hw.devices.gpu_regs import (
    DESC_SIZE,
    GPU_REGS,
    REGS_SIZE,
    Ctrl,
    Flag,
    GpuError,
    RegFile,
    Status,
    pack_copy,
    pack_launch,
)
from smartio.hw.units import MiB

CANARY = 0xA5
HOST = 0x8000_0000  # bus address of the borrower's RAM as the GPU sees it
WIN = HOST + 0x1000  # the mapped DMA window inside it
WIN_SIZE = 0x8000
HIGH = 1 << 40  # a window the fabric would deliver, but beyond a 40-bit DMA mask
DOORBELL = 0xF000_0000  # a peer's (NVMe) doorbell register, mapped peer-to-peer
RING = 0x10000  # ring offset in BAR0


class FakeCtx:
    """A DeviceContext over Python memory: mapped regions only, every DMA logged."""

    name = "gpu0"

    def __init__(self) -> None:
        self.host = bytearray([CANARY]) * 0x10000
        self.high = bytearray(0x1000)
        self.doorbell = bytearray(8)
        self.bars = {0: bytearray(16 * MiB), 1: bytearray(1 * MiB), 3: bytearray(32 * MiB)}
        self.views = {i: memoryview(b) for i, b in self.bars.items()}
        self.host_view = memoryview(self.host)
        # Only the window of host RAM is mapped (the DMA window, §4.3); the rest is canary.
        self.regions = [(WIN, self.host_view[WIN - HOST:WIN - HOST + WIN_SIZE]),
                        (HIGH, memoryview(self.high)), (DOORBELL, memoryview(self.doorbell))]
        self.irqs: list[int] = []
        self.dma_log: list[tuple[str, int, int]] = []
        self.doorbell_writes: list[int] = []
        self.master = True

    def _find(self, addr: int, size: int) -> memoryview | None:
        for base, view in self.regions:
            if base <= addr and addr + size <= base + len(view):
                return view[addr - base:addr - base + size]
        return None

    def bar(self, index: int) -> memoryview:
        return self.views[index]

    def dma_read(self, addr: int, size: int) -> bytes | None:
        self.dma_log.append(("r", addr, size))
        view = self._find(addr, size) if self.master else None
        return None if view is None else bytes(view)

    def dma_read_into(self, addr: int, dest: memoryview) -> bool:
        data = self.dma_read(addr, len(dest))
        if data is None:
            return False
        dest[:] = data
        return True

    def dma_write(self, addr: int, data: bytes | bytearray | memoryview) -> bool:
        self.dma_log.append(("w", addr, len(data)))
        view = self._find(addr, len(data)) if self.master else None
        if view is None:
            return False
        view[:] = data
        if addr == DOORBELL:
            self.doorbell_writes.append(struct.unpack("<I", bytes(data[:4]))[0])
        return True

    def interrupt(self, vector: int) -> None:
        self.irqs.append(vector)

    def bus_master(self) -> bool:
        return self.master

    def now_ns(self) -> int:
        return time.monotonic_ns()


class Host:
    """The host driver's side: the register block and a ring in BAR0 (or device memory)."""

    def __init__(self, ctx: FakeCtx, gpu: GpuModel, size: int = 8, *, ctrl: int = 0,
                 in_mem: bool = False, base: int = RING) -> None:
        self.ctx, self.gpu, self.size, self.tail = ctx, gpu, size, 0
        self.regs = RegFile(ctx.bar(0))
        self.space = ctx.bar(1) if in_mem else ctx.bar(0)
        self.base = base
        self.regs.write("ce_ring_base", base)
        self.regs.write("ce_ring_size", size)
        self.regs.write("ce_tail", 0)
        self.regs.write("ce_ctrl", Ctrl.EN | ctrl | (Ctrl.RING_MEM if in_mem else 0))
        gpu.poll()

    def submit(self, *descs: bytes) -> None:
        for d in descs:
            off = self.base + self.tail * DESC_SIZE
            self.space[off:off + DESC_SIZE] = d
            self.tail = (self.tail + 1) % self.size
        self.regs.write("ce_tail", self.tail)

    def run(self, limit: int = 1000) -> None:
        for _ in range(limit):
            if not self.gpu.poll():
                return
        raise AssertionError("the GPU never went idle")

    def reg(self, name: str) -> int:
        return self.regs.read(name)


@pytest.fixture
def ctx() -> FakeCtx:
    return FakeCtx()


@pytest.fixture
def gpu(ctx: FakeCtx) -> GpuModel:
    return GpuModel(ctx, {"memory": "1MiB", "dma_bits": 40})


@pytest.fixture
def host(ctx: FakeCtx, gpu: GpuModel) -> Host:
    return Host(ctx, gpu, ctrl=Ctrl.IEN)


def host_untouched_outside_window(ctx: FakeCtx) -> bool:
    lo, hi = WIN - HOST, WIN - HOST + WIN_SIZE
    return set(ctx.host[:lo]) == {CANARY} and set(ctx.host[hi:]) == {CANARY}


# -- contract and registers ------------------------------------------------------------


def test_model_satisfies_the_device_protocols(ctx: FakeCtx, gpu: GpuModel) -> None:
    """The fake is a DeviceContext and the model has poll/reset/close."""
    assert isinstance(ctx, DeviceContext)
    model: DeviceModel = gpu
    assert model.poll() is False


def test_register_table_is_aligned_and_disjoint() -> None:
    """Registers sit at natural alignment inside the block and never overlap."""
    spans = sorted((r.offset, r.offset + r.width // 8) for r in GPU_REGS)
    assert all(r.offset % (r.width // 8) == 0 for r in GPU_REGS)
    assert all(a[1] <= b[0] for a, b in pairwise(spans))
    assert spans[-1][1] <= REGS_SIZE


def test_identity_registers_follow_params(ctx: FakeCtx) -> None:
    """id, mem_size and dma_bits read back what the model was built with."""
    GpuModel(ctx, {"memory": 512 * 1024, "dma_bits": 36})
    regs = RegFile(ctx.bar(0))
    assert regs.read("id") == 0x1BB110DE
    assert (regs.read("mem_size"), regs.read("dma_bits")) == (512 * 1024, 36)


def test_bad_params_raise(ctx: FakeCtx) -> None:
    """Device memory larger than BAR1 or a silly DMA mask is a configuration error."""
    with pytest.raises(IllegalParameter):
        GpuModel(ctx, {"memory": "2MiB"})
    with pytest.raises(IllegalParameter):
        GpuModel(ctx, {"dma_bits": 0})


def test_host_cannot_write_read_only_registers(ctx: FakeCtx, gpu: GpuModel) -> None:
    """RegFile refuses host writes to RO registers."""
    with pytest.raises(IllegalParameter):
        RegFile(ctx.bar(0)).write("ce_head", 3)


def test_idle_poll_does_nothing(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """An enabled engine with an empty ring reports no work and issues no DMA."""
    assert not any(gpu.poll() for _ in range(1000))
    assert ctx.dma_log == [] and ctx.irqs == []


# -- copies ------------------------------------------------------------------------------


def test_copy_host_to_device(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """A COPY from a bus address lands in device memory at the offset."""
    ctx.host[WIN - HOST:WIN - HOST + 256] = bytes(range(256))
    host.submit(pack_copy(WIN, 0x100, 256, flags=Flag.DST_MEM))
    host.run()
    assert bytes(gpu.mem[0x100:0x200]) == bytes(range(256))
    assert (host.reg("ce_head"), host.reg("ce_completed")) == (1, 1)
    assert host.reg("ce_status") == Status.RDY


def test_copy_device_to_host(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """A COPY from device memory writes the bus address and nothing else."""
    gpu.mem[0:64] = b"\x42" * 64
    host.submit(pack_copy(0, WIN + 0x10, 64, flags=Flag.SRC_MEM))
    host.run()
    assert ctx.host[WIN - HOST + 0x10:WIN - HOST + 0x50] == b"\x42" * 64
    assert host_untouched_outside_window(ctx)


def test_copy_device_to_device_overlapping(gpu: GpuModel, host: Host) -> None:
    """A device-to-device COPY is a memmove, even when the ranges overlap."""
    gpu.mem[0:16] = bytes(range(16))
    host.submit(pack_copy(0, 4, 12, flags=Flag.SRC_MEM | Flag.DST_MEM))
    host.run()
    assert bytes(gpu.mem[0:16]) == bytes([0, 1, 2, 3, *range(12)])


def test_device_copy_needs_no_bus_master(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """Copies inside device memory never touch the bus, so BME does not matter."""
    ctx.master = False
    gpu.mem[0:4] = b"abcd"
    host.submit(pack_copy(0, 8, 4, flags=Flag.SRC_MEM | Flag.DST_MEM))
    host.run()
    assert bytes(gpu.mem[8:12]) == b"abcd" and ctx.dma_log == []


def test_copy_bus_to_bus(ctx: FakeCtx, host: Host) -> None:
    """A COPY between two bus addresses moves the bytes through the GPU's engine."""
    ctx.host[WIN - HOST:WIN - HOST + 8] = b"12345678"
    host.submit(pack_copy(WIN, WIN + 0x100, 8))
    host.run()
    assert ctx.host[WIN - HOST + 0x100:WIN - HOST + 0x108] == b"12345678"


def test_ring_wraps(ctx: FakeCtx, gpu: GpuModel) -> None:
    """Twenty copies through a four-entry ring run in order across the wrap."""
    host = Host(ctx, gpu, size=4)
    gpu.mem[0x1000:0x1014] = bytes(range(20))
    for i in range(0, 20, 2):
        host.submit(pack_copy(0x1000 + i, 0x2000 + i, 2, flags=Flag.SRC_MEM | Flag.DST_MEM),
                    pack_copy(0, 0, 0, flags=Flag.FENCE, fence=i + 1))
        host.run()
        assert host.reg("ce_fence") == i + 1
    assert host.reg("ce_completed") == 20
    assert host.reg("ce_head") == 20 % 4
    assert bytes(gpu.mem[0x2000:0x2014]) == bytes(range(20))


def test_ring_in_device_memory(ctx: FakeCtx, gpu: GpuModel) -> None:
    """With RING_MEM the engine fetches descriptors from device memory."""
    host = Host(ctx, gpu, size=4, in_mem=True, base=0x8000)
    gpu.mem[0:3] = b"xyz"
    host.submit(pack_copy(0, 0x100, 3, flags=Flag.SRC_MEM | Flag.DST_MEM))
    host.run()
    assert bytes(gpu.mem[0x100:0x103]) == b"xyz"


@pytest.mark.parametrize(("base", "size", "in_mem"), [
    (0x40, 8, False),  # over the register block
    (0xFE0000 - 4 * DESC_SIZE, 8, False),  # into the MSI-X table
    (RING + 8, 8, False),  # misaligned
    (RING, 1, False),  # too small
    (1 * MiB - 4 * DESC_SIZE, 8, True),  # past the end of device memory
])
def test_bad_ring_configuration(ctx: FakeCtx, gpu: GpuModel, base: int, size: int,
                                in_mem: bool) -> None:
    """A ring outside its space, misaligned or too small is refused with BAD_RING."""
    host = Host(ctx, gpu, size, base=base, in_mem=in_mem)
    assert host.reg("ce_status") == Status.ERR
    assert host.reg("ce_err_code") == GpuError.BAD_RING
    host.run()
    assert gpu.state is CeState.ERROR and host.reg("ce_completed") == 0


# -- fences and interrupts -----------------------------------------------------------------


def test_fence_and_interrupt(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """FENCE sets ce_fence, FENCE_WB writes it to memory, INTR raises vector 0 once."""
    host.submit(pack_copy(0, 0, 0, flags=Flag.SRC_MEM | Flag.DST_MEM),
                pack_copy(0, 0, 16, flags=Flag.SRC_MEM | Flag.DST_MEM | Flag.FENCE
                          | Flag.FENCE_WB | Flag.INTR, fence=0xDEAD_BEEF_0001,
                          fence_addr=WIN + 0x200))
    host.run()
    assert host.reg("ce_fence") == 0xDEAD_BEEF_0001
    assert struct.unpack_from("<Q", ctx.host, WIN - HOST + 0x200)[0] == 0xDEAD_BEEF_0001
    assert ctx.irqs == [0]


def test_no_interrupt_without_ien(ctx: FakeCtx, gpu: GpuModel) -> None:
    """INTR is silent while ce_ctrl.IEN is clear."""
    host = Host(ctx, gpu)
    host.submit(pack_copy(0, 0, 0, flags=Flag.INTR | Flag.FENCE, fence=7))
    host.run()
    assert ctx.irqs == [] and host.reg("ce_fence") == 7


# -- failures --------------------------------------------------------------------------------


def _snapshot(ctx: FakeCtx, gpu: GpuModel) -> tuple[bytes, bytes, bytes]:
    return bytes(ctx.host), bytes(ctx.high), bytes(gpu.mem)


@pytest.mark.parametrize("desc", [
    pack_copy(HIGH, 0, 64, flags=Flag.DST_MEM),
    pack_copy(0, HIGH, 64, flags=Flag.SRC_MEM),
    pack_copy(HIGH - 32, 0, 64, flags=Flag.DST_MEM),
    pack_copy(0, 0, 8, flags=Flag.SRC_MEM | Flag.DST_MEM | Flag.FENCE_WB, fence_addr=HIGH),
], ids=["src", "dst", "straddle", "fence_wb"])
def test_dma_beyond_mask_fails_untouched(ctx: FakeCtx, gpu: GpuModel, host: Host,
                                         desc: bytes) -> None:
    """A range reaching 2**dma_bits fails DMA_MASK: no DMA issued, no byte moved (§4.3)."""
    gpu.mem[0:64] = b"\x11" * 64
    before = _snapshot(ctx, gpu)
    host.submit(pack_copy(0, 0, 0, flags=Flag.SRC_MEM | Flag.DST_MEM), desc,
                pack_copy(0, 0x100, 64, flags=Flag.SRC_MEM | Flag.DST_MEM))
    host.run()
    assert host.reg("ce_status") == Status.ERR
    assert (host.reg("ce_err_code"), host.reg("ce_err_index")) == (GpuError.DMA_MASK, 1)
    assert host.reg("ce_head") == 1
    assert ctx.dma_log == [] and _snapshot(ctx, gpu) == before
    assert ctx.irqs == [0]


def test_wider_mask_reaches_high_window(ctx: FakeCtx) -> None:
    """With dma_bits=48 the same high window is reachable."""
    gpu = GpuModel(ctx, {"memory": "1MiB", "dma_bits": 48})
    host = Host(ctx, gpu)
    ctx.high[0:4] = b"high"
    host.submit(pack_copy(HIGH, 0, 4, flags=Flag.DST_MEM))
    host.run()
    assert bytes(gpu.mem[0:4]) == b"high"


def test_bus_master_clear_refuses(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """With Bus Master Enable clear a bus copy fails BUS_MASTER before any DMA."""
    ctx.master = False
    before = _snapshot(ctx, gpu)
    host.submit(pack_copy(WIN, 0, 64, flags=Flag.DST_MEM))
    host.run()
    assert host.reg("ce_err_code") == GpuError.BUS_MASTER
    assert ctx.dma_log == [] and _snapshot(ctx, gpu) == before


def test_unmapped_read_writes_nothing(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """A read the fabric cannot resolve fails DMA_READ and device memory keeps its bytes."""
    gpu.mem[0:0x2000] = b"\x77" * 0x2000
    host.submit(pack_copy(WIN + WIN_SIZE - 0x100, 0, 0x1000, flags=Flag.DST_MEM))
    host.run()
    assert host.reg("ce_err_code") == GpuError.DMA_READ
    assert bytes(gpu.mem[0:0x2000]) == b"\x77" * 0x2000
    assert host_untouched_outside_window(ctx)


def test_device_range_and_bad_descriptors(ctx: FakeCtx, gpu: GpuModel) -> None:
    """Out-of-range offsets, reserved flags and unknown opcodes each halt the ring."""
    cases = [(pack_copy(len(gpu.mem) - 8, 0, 16, flags=Flag.SRC_MEM | Flag.DST_MEM),
              GpuError.MEM_RANGE),
             (pack_copy(0, 0, 0, flags=1 << 9), GpuError.BAD_DESC),
             (bytes(DESC_SIZE), GpuError.BAD_DESC),
             (pack_launch(1, flags=Flag.FENCE_WB), GpuError.BAD_DESC)]
    for desc, code in cases:
        gpu.reset()
        host = Host(ctx, gpu)
        host.submit(desc)
        host.run()
        assert host.reg("ce_err_code") == code, desc


def test_error_recovery(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """Clearing EN clears ERR and head; the re-enabled ring runs again."""
    host.submit(pack_copy(HIGH, 0, 8, flags=Flag.DST_MEM))
    host.run()
    assert gpu.state is CeState.ERROR
    host.regs.write("ce_ctrl", 0)
    host.run()
    assert (host.reg("ce_status"), host.reg("ce_head"), host.reg("ce_err_code")) == (0, 0, 0)
    host = Host(ctx, gpu)
    host.submit(pack_copy(0, 0, 0, flags=Flag.FENCE, fence=5))
    host.run()
    assert host.reg("ce_fence") == 5 and gpu.state is CeState.READY


def test_bad_tail(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """A tail beyond the ring halts the engine with BAD_TAIL and the tail as index."""
    host.regs.write("ce_tail", 99)
    host.run()
    assert (host.reg("ce_err_code"), host.reg("ce_err_index")) == (GpuError.BAD_TAIL, 99)


# -- kernels ---------------------------------------------------------------------------------


def _fill(gpu: KernelContext, off: int, n: int, value: int) -> int:
    gpu.mem[off:off + n] = bytes([value]) * n
    return n


def _ring_doorbell(gpu: KernelContext, value: int) -> bool:
    return gpu.store(DOORBELL, struct.pack("<I", value))


def _boom(gpu: KernelContext) -> None:
    raise ValueError("kernel bug")


SCALE = "test_gpu_model.scale"


def _scale(gpu: KernelContext, off: int, n: int, k: int) -> None:
    gpu.mem[off:off + n] = bytes((b * k) & 0xFF for b in gpu.mem[off:off + n])


register_kernel(SCALE, _scale)
register_kernel("test_gpu_model.boom", _boom)


def test_kernel_reads_and_writes_device_memory(gpu: GpuModel) -> None:
    """An in-process kernel fills device memory; its return value is the launch result."""
    job = gpu.launch(_fill, 0x10, 32, 0x5A)
    assert job.state is LaunchState.QUEUED
    assert gpu.poll() is True
    assert job.state is LaunchState.DONE and job.result == 32
    assert bytes(gpu.mem[0x10:0x30]) == b"\x5a" * 32


def test_kernel_loads_and_stores_bus_addresses(ctx: FakeCtx, gpu: GpuModel) -> None:
    """A kernel loads host memory and rings a peer's doorbell with store() (§6.4)."""
    ctx.host[WIN - HOST:WIN - HOST + 4] = b"data"

    def k(g: KernelContext) -> tuple[bytes | None, bytes | None, bool]:
        ok = g.load_into(WIN, g.mem[0:4])
        return g.load(WIN, 4), g.load(HOST, 4), ok and _ring_doorbell(g, 3)

    job = gpu.launch(k)
    gpu.poll()
    assert job.result == (b"data", None, True)
    assert bytes(gpu.mem[0:4]) == b"data" and ctx.doorbell_writes == [3]


def test_kernel_dma_obeys_mask_and_bus_master(ctx: FakeCtx, gpu: GpuModel) -> None:
    """Kernel loads/stores beyond the mask, or with BME clear, fail without DMA."""
    def k(g: KernelContext) -> tuple[bytes | None, bool]:
        return g.load(HIGH, 8), g.store(HIGH, b"x")

    job = gpu.launch(k)
    gpu.poll()
    ctx.master = False
    job2 = gpu.launch(_ring_doorbell, 1)
    gpu.poll()
    assert job.result == (None, False) and job2.result is False
    assert ctx.dma_log == [] and ctx.doorbell_writes == []


def test_raising_kernel_is_reported(ctx: FakeCtx, gpu: GpuModel) -> None:
    """A kernel that raises is a failed launch; the engine keeps running later launches."""
    bad = gpu.launch(_boom)
    good = gpu.launch(_fill, 0, 1, 9)
    gpu.poll()
    assert bad.state is LaunchState.FAILED and "kernel bug" in (bad.error or "")
    assert good.state is LaunchState.DONE
    regs = RegFile(ctx.bar(0))
    assert (regs.read("kern_launched"), regs.read("kern_failed")) == (2, 1)


def test_long_running_kernel_steps_per_poll(ctx: FakeCtx, gpu: GpuModel) -> None:
    """A generator kernel advances one step per poll and waits on device memory."""
    def waiter(g: KernelContext) -> Generator[None, None, int]:
        spins = 0
        while g.mem[0] == 0:
            spins += 1
            yield
        _ring_doorbell(g, g.mem[0])
        return spins

    job = gpu.launch(waiter)
    for _ in range(3):
        assert gpu.poll() is True
    assert job.state is LaunchState.RUNNING
    gpu.mem[0] = 4
    gpu.poll()
    assert job.state is LaunchState.DONE and job.result == 3
    assert ctx.doorbell_writes == [4]


def test_named_kernel_launch_through_ring(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """A LAUNCH descriptor runs a registered kernel by id, in order with copies."""
    ctx.host[WIN - HOST:WIN - HOST + 4] = bytes([1, 2, 3, 4])
    host.submit(pack_copy(WIN, 0x40, 4, flags=Flag.DST_MEM),
                pack_launch(kernel_id(SCALE), 0x40, 4, 3, flags=Flag.FENCE | Flag.INTR,
                            fence=11),
                pack_copy(0x40, WIN + 8, 4, flags=Flag.SRC_MEM))
    host.run()
    assert ctx.host[WIN - HOST + 8:WIN - HOST + 12] == bytes([3, 6, 9, 12])
    assert host.reg("ce_fence") == 11 and ctx.irqs == [0]
    assert host.reg("kern_launched") == 1


def test_named_kernel_failures_halt_ring(ctx: FakeCtx, gpu: GpuModel) -> None:
    """An unknown kernel id is NO_KERNEL; a raising kernel is KERNEL_FAULT with its id."""
    host = Host(ctx, gpu)
    host.submit(pack_launch(0x1234_5678))
    host.run()
    assert (host.reg("ce_err_code"), host.reg("ce_err_index")) == (GpuError.NO_KERNEL, 0)
    gpu.reset()
    host = Host(ctx, gpu)
    host.submit(pack_launch(kernel_id("test_gpu_model.boom")))
    host.run()
    assert host.reg("ce_err_code") == GpuError.KERNEL_FAULT
    assert host.reg("kern_fail_id") == kernel_id("test_gpu_model.boom")


def test_launch_by_name_in_process(gpu: GpuModel) -> None:
    """launch() accepts a registered name; an unknown one raises NotFound."""
    gpu.mem[0:2] = bytes([5, 6])
    job = gpu.launch(SCALE, 0, 2, 2)
    gpu.poll()
    assert job.state is LaunchState.DONE and bytes(gpu.mem[0:2]) == bytes([10, 12])
    with pytest.raises(NotFound):
        gpu.launch("no.such.kernel")


def test_kernel_registry() -> None:
    """Ids are CRC-32 of the name; re-registering is idempotent, a clash raises."""
    kid = register_kernel("test_gpu_model.tmp", _boom)
    assert kid == kernel_id("test_gpu_model.tmp") == zlib.crc32(b"test_gpu_model.tmp")
    assert register_kernel("test_gpu_model.tmp", _boom) == kid
    with pytest.raises(IllegalParameter):
        register_kernel("test_gpu_model.tmp", _fill)
    unregister_kernel("test_gpu_model.tmp")
    with pytest.raises(NotFound):
        unregister_kernel("test_gpu_model.tmp")


def test_long_running_ring_kernel_holds_the_ring(ctx: FakeCtx, gpu: GpuModel,
                                                 host: Host) -> None:
    """A generator kernel from the ring completes before the next descriptor runs."""
    def gate(g: KernelContext) -> Generator[None, None, None]:
        while g.mem[0] != 1:
            yield

    name = "test_gpu_model.gate"
    register_kernel(name, gate)
    try:
        host.submit(pack_launch(kernel_id(name)),
                    pack_copy(0, 0, 0, flags=Flag.FENCE, fence=1))
        for _ in range(5):
            gpu.poll()
        assert host.reg("ce_head") == 0 and host.reg("ce_fence") == 0
        gpu.mem[0] = 1
        host.run()
        assert host.reg("ce_head") == 2 and host.reg("ce_fence") == 1
    finally:
        unregister_kernel(name)


# -- reset -----------------------------------------------------------------------------------


def test_reset_clears_state(ctx: FakeCtx, gpu: GpuModel, host: Host) -> None:
    """A function-level reset drops kernels, halts the ring and restores register values."""
    host.submit(pack_copy(0, 0, 0, flags=Flag.FENCE, fence=9))
    host.run()
    finished = gpu.launch(_fill, 0, 1, 1)

    def forever(g: KernelContext) -> Generator[None, None, None]:
        while True:
            yield

    running = gpu.launch(forever)
    gpu.poll()
    queued = gpu.launch(_boom)
    gpu.reset()
    assert finished.state is LaunchState.DONE
    assert running.state is queued.state is LaunchState.CANCELLED
    assert gpu.state is CeState.DISABLED
    regs = RegFile(ctx.bar(0))
    for r in GPU_REGS:
        if r.name not in ("mem_size", "dma_bits", "ring_max"):
            assert regs.read(r.name) == r.reset, r.name
    assert gpu.poll() is False and ctx.dma_log == []


def test_close_cancels_kernels(gpu: GpuModel) -> None:
    """close() cancels queued kernels so nothing runs afterwards."""
    job = gpu.launch(_fill, 0, 1, 1)
    gpu.close()
    assert job.state is LaunchState.CANCELLED and gpu.poll() is False
