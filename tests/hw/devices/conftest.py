"""Fixtures for device-model tests: a DeviceContext over plain Python memory.

:class:`FakeContext` implements :class:`smartio.hw.devices.base.DeviceContext` without a
fabric: "host memory" is a bytearray addressed from bus address 0, of which only the DMA
window ``[DMA_LO, DMA_HI)`` may be reached; the rest is filled with a canary pattern so a
test can prove no stray byte landed there. BAR0 is a 16 KiB bytearray, interrupts are
logged, the clock only moves when a test moves it, and address ranges can be made to
fail to model a broken DMA path.

:class:`NvmeHost` is a tiny raw-command NVMe host over that context: it writes SQEs,
rings doorbells, polls the controller and reads CQEs by phase tag (phase first, then
the body). ``make_nvme`` builds a controller plus host and closes it after the test.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smartio.hw.devices.nvme import NvmeController, pack_sqe

MEM_SIZE = 4 << 20
DMA_LO = 1 << 20
DMA_HI = 3 << 20
CANARY = 0xA5
BAR_SIZE = 16 << 10


class FakeContext:
    """A DeviceContext over a bytearray: DMA window, canaries, interrupt log, fake clock."""

    def __init__(self, name: str = "nvme0") -> None:
        self.name = name
        self.mem = bytearray([CANARY]) * MEM_SIZE
        self.mem[DMA_LO:DMA_HI] = bytes(DMA_HI - DMA_LO)
        self.bar0 = bytearray(BAR_SIZE)
        self.interrupts: list[int] = []
        self.now = 0
        self.bme = True
        self.fail: list[tuple[int, int]] = []  # [lo, hi) ranges whose DMA fails
        self.writes: list[tuple[int, int]] = []  # (addr, length) of each DMA write, in order
        self.refused = 0

    # DeviceContext ------------------------------------------------------------------

    def bar(self, index: int) -> memoryview:
        assert index == 0
        return memoryview(self.bar0)

    def _ok(self, addr: int, size: int) -> bool:
        if not self.bme or addr < DMA_LO or addr + size > DMA_HI or size < 0:
            self.refused += 1
            return False
        for lo, hi in self.fail:
            if addr < hi and lo < addr + size:
                self.refused += 1
                return False
        return True

    def dma_read(self, addr: int, size: int) -> bytes | None:
        if not self._ok(addr, size):
            return None
        return bytes(self.mem[addr: addr + size])

    def dma_read_into(self, addr: int, dest: memoryview) -> bool:
        if not self._ok(addr, len(dest)):
            return False
        dest[:] = self.mem[addr: addr + len(dest)]
        return True

    def dma_write(self, addr: int, data: bytes | bytearray | memoryview) -> bool:
        n = len(memoryview(data).cast("B"))
        if not self._ok(addr, n):
            return False
        self.mem[addr: addr + n] = data
        self.writes.append((addr, n))
        if len(self.writes) > 4096:
            del self.writes[:2048]
        return True

    def interrupt(self, vector: int) -> None:
        self.interrupts.append(vector)

    def bus_master(self) -> bool:
        return self.bme

    def now_ns(self) -> int:
        return self.now

    # test helpers --------------------------------------------------------------------

    def canaries_intact(self) -> bool:
        """No byte outside the DMA window changed."""
        return (self.mem[:DMA_LO].count(CANARY) == DMA_LO
                and self.mem[DMA_HI:].count(CANARY) == MEM_SIZE - DMA_HI)


@dataclass
class Cqe:
    dw0: int
    sqhd: int
    sqid: int
    cid: int
    word: int  # status << 1 | phase

    @property
    def status(self) -> int:
        """15-bit status: SCT << 8 | SC, DNR = 0x4000."""
        return self.word >> 1

    @property
    def sct(self) -> int:
        return (self.word >> 9) & 0x7

    @property
    def sc(self) -> int:
        return (self.word >> 1) & 0xFF

    @property
    def dnr(self) -> bool:
        return bool(self.word & 0x8000)

    @property
    def ok(self) -> bool:
        return self.status & 0x7FF == 0


@dataclass
class HostQueue:
    qid: int
    sq_base: int
    sq_size: int
    cq_base: int
    cq_size: int
    sq_tail: int = 0
    cq_head: int = 0
    phase: int = 1


class NvmeHost:
    """Raw NVMe host: registers, SQEs, doorbells and phase-tagged CQEs."""

    def __init__(self, ctrl: NvmeController, ctx: FakeContext) -> None:
        self.ctrl = ctrl
        self.ctx = ctx
        self._next = DMA_LO
        self._cid = 0
        self.page = 4096  # CC.MPS page size the host enabled with
        self.q: dict[int, HostQueue] = {}

    # memory and registers -----------------------------------------------------------

    def alloc(self, size: int, align: int | None = None) -> int:
        align = self.page if align is None else align
        addr = (self._next + align - 1) // align * align
        self._next = addr + size
        assert self._next <= DMA_HI, "test host memory exhausted"
        return addr

    def w32(self, off: int, value: int) -> None:
        struct.pack_into("<I", self.ctx.bar0, off, value & 0xFFFF_FFFF)

    def r32(self, off: int) -> int:
        return int(struct.unpack_from("<I", self.ctx.bar0, off)[0])

    def w64(self, off: int, value: int) -> None:
        self.w32(off, value)
        self.w32(off + 4, value >> 32)

    def r64(self, off: int) -> int:
        return int(struct.unpack_from("<Q", self.ctx.bar0, off)[0])

    def poll(self, n: int = 1) -> None:
        for _ in range(n):
            self.ctrl.poll()

    # bring-up -------------------------------------------------------------------------

    def enable(self, entries: int = 32, mps: int = 0, cc_extra: int = 0,
               asq: int | None = None, acq: int | None = None) -> int:
        """Program AQA/ASQ/ACQ and set CC.EN; returns CSTS after one poll."""
        page = 4096 << mps
        self.page = page
        sq = self.alloc(entries * 64, page) if asq is None else asq
        cq = self.alloc(entries * 16, page) if acq is None else acq
        self.w32(0x24, (entries - 1) | (entries - 1) << 16)
        self.w64(0x28, sq)
        self.w64(0x30, cq)
        self.w32(0x14, 1 | mps << 7 | 6 << 16 | 4 << 20 | cc_extra)
        self.poll()
        self.q[0] = HostQueue(0, sq, entries, cq, entries)
        return self.r32(0x1C)

    def disable(self) -> int:
        self.w32(0x14, self.r32(0x14) & ~1)
        self.poll()
        self.q.clear()
        return self.r32(0x1C)

    # commands ---------------------------------------------------------------------------

    def next_cid(self) -> int:
        self._cid = (self._cid + 1) & 0xFFFF
        return self._cid

    def submit(self, qid: int, opcode: int, ring: bool = True, **fields: Any) -> int:
        """Write one SQE at the queue's tail (and ring its doorbell); returns the CID."""
        q = self.q[qid]
        cid = fields.pop("cid", None)
        cid = self.next_cid() if cid is None else cid
        sqe = pack_sqe(opcode, cid, **fields)
        addr = q.sq_base + q.sq_tail * 64
        self.ctx.mem[addr: addr + 64] = sqe
        q.sq_tail = (q.sq_tail + 1) % q.sq_size
        if ring:
            self.ring_sq(qid)
        return cid

    def ring_sq(self, qid: int) -> None:
        self.w32(0x1000 + 8 * qid, self.q[qid].sq_tail)

    def peek(self, cqid: int) -> Cqe | None:
        """The CQE at the head if its phase matches (phase word first, then body)."""
        q = self.q[cqid]
        addr = q.cq_base + q.cq_head * 16
        (word,) = struct.unpack_from("<H", self.ctx.mem, addr + 14)
        if word & 1 != q.phase:
            return None
        dw0, _, sqhd, sqid, cid = struct.unpack_from("<IIHHH", self.ctx.mem, addr)
        return Cqe(dw0, sqhd, sqid, cid, word)

    def reap(self, cqid: int, polls: int = 20, ring: bool = True) -> Cqe | None:
        """Poll until a CQE arrives on ``cqid``; consume it and ring the head doorbell."""
        for _ in range(polls + 1):
            cqe = self.peek(cqid)
            if cqe is not None:
                q = self.q[cqid]
                q.cq_head += 1
                if q.cq_head == q.cq_size:
                    q.cq_head = 0
                    q.phase ^= 1
                if ring:
                    self.ring_cq(cqid)
                return cqe
            self.ctrl.poll()
        return None

    def ring_cq(self, cqid: int) -> None:
        self.w32(0x1000 + 8 * cqid + 4, self.q[cqid].cq_head)

    def cmd(self, qid: int, opcode: int, cqid: int | None = None, **fields: Any) -> Cqe:
        """Submit and wait for the completion (the CQ defaults to the SQ's own)."""
        cid = self.submit(qid, opcode, **fields)
        cqe = self.reap(qid if cqid is None else cqid)
        assert cqe is not None, f"no completion for opcode {opcode:#x}"
        assert cqe.cid == cid
        return cqe

    def admin(self, opcode: int, **fields: Any) -> Cqe:
        return self.cmd(0, opcode, **fields)

    def prps(self, buf: int, nbytes: int) -> tuple[int, int]:
        """PRP1/PRP2 for a contiguous page-aligned buffer (a PRP list when > 2 pages)."""
        page = self.page
        n = -(-nbytes // page)
        if n <= 1:
            return buf, 0
        if n == 2:
            return buf, buf + page
        plist = self.alloc(8 * (n - 1))
        self.ctx.mem[plist: plist + 8 * (n - 1)] = struct.pack(
            f"<{n - 1}Q", *[buf + i * page for i in range(1, n)])
        return buf, plist

    def identify(self, cns: int, nsid: int = 0) -> tuple[Cqe, bytes]:
        buf = self.alloc(4096)
        cqe = self.admin(0x06, nsid=nsid, prp1=buf, cdw10=cns)
        return cqe, bytes(self.ctx.mem[buf: buf + 4096])

    def create_io_queue(self, qid: int, entries: int = 64, iv: int | None = None,
                        cqid: int | None = None, ien: bool = True) -> None:
        """Create CQ ``cqid`` (default ``qid``) unless it exists, then SQ ``qid`` on it."""
        cqid = qid if cqid is None else cqid
        if cqid not in self.q or self.q[cqid].cq_size == 0:
            cq = self.alloc(entries * 16)
            vec = cqid if iv is None else iv
            cqe = self.admin(0x05, prp1=cq, cdw10=cqid | (entries - 1) << 16,
                             cdw11=1 | int(ien) << 1 | vec << 16)
            assert cqe.ok, cqe
            self.q[cqid] = HostQueue(cqid, 0, 0, cq, entries)
        sq = self.alloc(entries * 64)
        cqe = self.admin(0x01, prp1=sq, cdw10=qid | (entries - 1) << 16, cdw11=1 | cqid << 16)
        assert cqe.ok, cqe
        if qid == cqid:
            self.q[qid].sq_base, self.q[qid].sq_size = sq, entries
        else:
            self.q[qid] = HostQueue(qid, sq, entries, 0, 0)


MakeNvme = Callable[..., NvmeHost]


@pytest.fixture
def make_nvme() -> Iterator[MakeNvme]:
    """Build controller + host over a FakeContext; ``enable`` brings it to RDY."""
    made: list[NvmeController] = []

    def make(params: dict[str, object] | None = None, data_dir: Path | None = None,
             enable: bool = True, name: str = "nvme0", **kw: Any) -> NvmeHost:
        ctx = FakeContext(name)
        p: dict[str, object] = {"capacity": 1 << 20, "io_queues": 4}
        p.update(params or {})
        ctrl = NvmeController(ctx, p, data_dir)
        made.append(ctrl)
        host = NvmeHost(ctrl, ctx)
        if enable:
            csts = host.enable(**kw)
            assert csts & 1, f"controller did not become ready: CSTS={csts:#x}"
        return host

    yield make
    for ctrl in made:
        ctrl.close()


@pytest.fixture
def nvme(make_nvme: MakeNvme) -> NvmeHost:
    """An enabled controller (4 I/O queue pairs, one 1 MiB namespace of 512 B blocks)."""
    return make_nvme()


@pytest.fixture
def make_ctx() -> Callable[..., FakeContext]:
    """The FakeContext class, for tests that build a model themselves."""
    return FakeContext


@pytest.fixture
def nvme_kit() -> tuple[type[FakeContext], type[NvmeHost]]:
    """(FakeContext, NvmeHost) for tests that create and close controllers themselves."""
    return FakeContext, NvmeHost
