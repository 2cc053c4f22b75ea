"""I/O queue pairs and namespaces: Read, Write, Flush, Write Zeroes, Dataset Management.

A :class:`QueuePair` owns one SQ/CQ pair, created at run time, and is single-threaded and
lock-free (nvme-reference.md §1.8). Commands are identified by their slot (the CID), each
slot has its own PRP-list page, so a transfer up to MDTS needs no allocation. ``submit``
returns at once; ``poll`` reaps completions; ``wait`` polls until a command completes or
its timeout expires, naming the command that timed out.
"""

from __future__ import annotations

import struct
import time

from smartio.drivers.nvme import spec
from smartio.drivers.nvme.controller import PAGE, Controller, NamespaceInfo
from smartio.drivers.nvme.queues import Completion, CompletionQueue, SubmissionQueue
from smartio.drivers.nvme.spec import NvmeError, NvmeTimeout
from smartio.errors import IllegalParameter, OutOfRange
from smartio.lending import DmaBuffer


def _describe(what: str | tuple[str, int, int, int] | None) -> str:
    """A command's description, built only when it is needed (errors, timeouts)."""
    if what is None:
        return "command"
    if isinstance(what, str):
        return what
    name, nsid, lba, count = what
    return f"{name} ns {nsid} lba {lba}+{count}"


class QueuePair:
    """An I/O submission/completion queue pair."""

    def __init__(self, ctrl: Controller, depth: int = 64, vector: int | None = None) -> None:
        self.ctrl = ctrl
        self.depth = min(depth, ctrl.mqes)
        dev = ctrl.device
        self.sq_mem = dev.dma_alloc(self.depth * spec.SQE_SIZE)
        self.cq_mem = dev.dma_alloc(self.depth * spec.CQE_SIZE)
        self.prp_mem = dev.dma_alloc(self.depth * PAGE)  # one PRP-list page per slot
        # Another process may hold a queue id this process thinks free: try the next one.
        while True:
            self.qid = ctrl.alloc_qid()
            try:
                ctrl.create_io_queues(self.qid, self.depth, self.sq_mem, self.cq_mem, vector)
                break
            except NvmeError as e:
                if e.code == "NVME_SC_QID_INVALID" and ctrl.attached:
                    continue  # in use elsewhere; leave it out of our free list
                ctrl.release_qid(self.qid)
                for mem in (self.sq_mem, self.cq_mem, self.prp_mem):
                    mem.free()
                raise
        self.sq = SubmissionQueue(self.qid, self.depth, self.sq_mem, ctrl.doorbell(self.qid,
                                                                                   False))
        self.cq = CompletionQueue(self.qid, self.depth, self.cq_mem, ctrl.doorbell(self.qid,
                                                                                   True))
        self._free = list(range(self.depth - 2, -1, -1))  # one SQ slot always stays empty
        self._what: dict[int, str | tuple[str, int, int, int]] = {}
        self._done: dict[int, Completion] = {}
        self.outstanding = 0
        ctrl.qpairs[self.qid] = self
        self.closed = False

    # -- submission -------------------------------------------------------------------------

    def prps(self, cid: int, ioaddr: int, nbytes: int) -> tuple[int, int]:
        """PRP1/PRP2 for a contiguous transfer (nvme-reference.md §1.5)."""
        first = PAGE - (ioaddr % PAGE)
        if nbytes <= first:
            return ioaddr, 0
        rest = nbytes - first
        if rest <= PAGE:
            return ioaddr, ioaddr + first
        pages = [ioaddr + first + PAGE * i for i in range((rest + PAGE - 1) // PAGE)]
        if len(pages) > PAGE // 8:
            raise IllegalParameter(f"transfer of {nbytes} bytes needs a chained PRP list; "
                                   f"the driver limits transfers to {PAGE // 8 * PAGE} bytes")
        off = cid * PAGE
        struct.pack_into(f"<{len(pages)}Q", self.prp_mem.view, off, *pages)
        return ioaddr, self.prp_mem.ioaddr + off

    def submit(self, opcode: int, what: str | tuple[str, int, int, int], *, nsid: int = 0,
               buf: DmaBuffer | None = None, offset: int = 0, nbytes: int = 0,
               cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0,
               prp1: int = 0, prp2: int = 0) -> int:
        """Queue one command and ring the doorbell; returns its CID. The data pointer comes
        from ``buf`` (PRPs built here) or, for raw commands, from ``prp1``/``prp2``."""
        if not self._free:
            self.poll()
            if not self._free:
                raise OutOfRange(f"queue pair {self.qid} is full ({self.depth - 1} outstanding)")
        cid = self._free.pop()
        if buf is not None and nbytes:
            if offset < 0 or offset + nbytes > buf.size:
                self._free.append(cid)
                raise OutOfRange(f"{nbytes} bytes at offset {offset} exceed the {buf.size}-byte "
                                 "buffer")
            prp1, prp2 = self.prps(cid, buf.ioaddr + offset, nbytes)
        self.sq.push(spec.sqe(opcode, cid, nsid, prp1, prp2, cdw10, cdw11, cdw12, cdw13))
        self.sq.ring()
        self._what[cid] = what
        self.outstanding += 1
        return cid

    # -- completion ----------------------------------------------------------------------------

    def poll(self) -> int:
        """Reap every available completion; returns how many."""
        n = 0
        cq = self.cq
        while True:
            c = cq.pop()
            if c is None:
                break
            self.sq.head = c.sqhd
            self._done[c.cid] = c
            self._free.append(c.cid)
            self.outstanding -= 1
            n += 1
        if n:
            cq.ring()
        return n

    def take_completions(self) -> list[Completion]:
        """Reap, then hand over every completion not yet waited for (for async users)."""
        self.poll()
        out = list(self._done.values())
        for c in out:
            self._what.pop(c.cid, None)
        self._done.clear()
        return out

    def wait(self, cid: int, timeout: float | None = None, check: bool = True) -> Completion:
        """Poll until command ``cid`` completes; raise NvmeError on an error status."""
        limit = self.ctrl.timeout if timeout is None else timeout
        deadline = 0.0
        spins = 0
        done = self._done
        while cid not in done:
            if not self.poll():
                spins += 1
                if spins == 64:
                    deadline = time.monotonic() + limit
                elif spins > 64 and spins % 64 == 0:
                    if time.monotonic() > deadline:
                        raise NvmeTimeout(f"{_describe(self._what.get(cid))} (cid {cid}, queue "
                                          f"{self.qid}) did not complete within {limit:g} s")
                    time.sleep(0)
        c = done.pop(cid)
        what = self._what.pop(cid, None)
        if check and not c.ok:
            raise NvmeError(_describe(what), c.sct, c.sc, c.dnr)
        return c

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.ctrl.delete_io_queues(self.qid)
        finally:
            self.sq.release()
            self.cq.release()
            self.ctrl.qpairs.pop(self.qid, None)
            self.ctrl.release_qid(self.qid)
            for mem in (self.sq_mem, self.cq_mem, self.prp_mem):
                mem.free()

    def __enter__(self) -> QueuePair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Namespace:
    """An NVM namespace: block I/O through a queue pair."""

    def __init__(self, ctrl: Controller, nsid: int = 1) -> None:
        if nsid not in ctrl.namespaces:
            raise IllegalParameter(f"namespace {nsid} is not active; active: "
                                   f"{sorted(ctrl.namespaces)}")
        self.ctrl = ctrl
        self.nsid = nsid
        self.info: NamespaceInfo = ctrl.namespaces[nsid]
        self.lba_size = self.info.lba_size
        self.blocks = self.info.nsze

    @property
    def size(self) -> int:
        return self.blocks * self.lba_size

    def _rw(self, qp: QueuePair, opcode: int, buf: DmaBuffer, lba: int, count: int,
            offset: int) -> int:
        nbytes = count * self.lba_size
        if count < 1 or count > 0x10000:
            raise IllegalParameter(f"{count} blocks; expected 1..65536")
        if lba < 0:  # (a range past the end is the controller's to refuse: LBA_RANGE)
            raise IllegalParameter(f"negative LBA {lba}; expected 0..{self.blocks - 1}")
        if nbytes > self.ctrl.max_transfer:
            raise IllegalParameter(f"{nbytes} bytes exceed the controller's MDTS "
                                   f"({self.ctrl.max_transfer} bytes)")
        what = ("Read" if opcode == spec.NVM_READ else "Write", self.nsid, lba, count)
        return qp.submit(opcode, what, nsid=self.nsid, buf=buf, offset=offset, nbytes=nbytes,
                         cdw10=lba & 0xFFFFFFFF, cdw11=lba >> 32, cdw12=count - 1)

    def submit_read(self, qp: QueuePair, buf: DmaBuffer, lba: int, count: int,
                    offset: int = 0) -> int:
        return self._rw(qp, spec.NVM_READ, buf, lba, count, offset)

    def submit_write(self, qp: QueuePair, buf: DmaBuffer, lba: int, count: int,
                     offset: int = 0) -> int:
        return self._rw(qp, spec.NVM_WRITE, buf, lba, count, offset)

    def read(self, qp: QueuePair, buf: DmaBuffer, lba: int, count: int,
             offset: int = 0) -> None:
        qp.wait(self.submit_read(qp, buf, lba, count, offset))

    def write(self, qp: QueuePair, buf: DmaBuffer, lba: int, count: int,
              offset: int = 0) -> None:
        qp.wait(self.submit_write(qp, buf, lba, count, offset))

    def flush(self, qp: QueuePair) -> None:
        qp.wait(qp.submit(spec.NVM_FLUSH, f"Flush ns {self.nsid}", nsid=self.nsid))

    def write_zeroes(self, qp: QueuePair, lba: int, count: int) -> None:
        qp.wait(qp.submit(spec.NVM_WRITE_ZEROES, f"Write Zeroes ns {self.nsid} lba {lba}",
                          nsid=self.nsid, cdw10=lba & 0xFFFFFFFF, cdw11=lba >> 32,
                          cdw12=count - 1))

    def deallocate(self, qp: QueuePair, ranges: list[tuple[int, int]]) -> None:
        """Dataset Management / deallocate ``(lba, count)`` ranges (reads return zeros)."""
        if not 1 <= len(ranges) <= 256:
            raise IllegalParameter(f"{len(ranges)} ranges; expected 1..256")
        buf = self.ctrl.scratch()
        for i, (lba, count) in enumerate(ranges):
            struct.pack_into("<IIQ", buf.view, 16 * i, 0, count, lba)
        qp.wait(qp.submit(spec.NVM_DSM, f"Deallocate ns {self.nsid}", nsid=self.nsid,
                          buf=buf, nbytes=16 * len(ranges), cdw10=len(ranges) - 1,
                          cdw11=1 << 2))


__all__ = ["Namespace", "QueuePair"]
