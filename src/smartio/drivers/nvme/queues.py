"""Submission and completion queues in DMA memory, with pure head/tail/phase arithmetic.

As in libnvm: the queue objects own their memory (a DMA buffer from the device API) and
their doorbells (32-bit registers in BAR0); submitting writes the whole SQE, then the tail
doorbell; completions are detected by the phase bit, read *before* the body (the
torn-descriptor rule, measurements.md), and acknowledged with the head doorbell.
"""

from __future__ import annotations

import struct

from smartio.drivers.nvme.spec import CQE_SIZE, SQE_SIZE
from smartio.lending import DmaBuffer


class Completion:
    __slots__ = ("cid", "dnr", "dw0", "sc", "sct", "sqhd", "sqid")

    def __init__(self, dw0: int, sqhd: int, sqid: int, cid: int, status: int) -> None:
        self.dw0 = dw0
        self.sqhd = sqhd
        self.sqid = sqid
        self.cid = cid
        self.sc = (status >> 1) & 0xFF
        self.sct = (status >> 9) & 0x7
        self.dnr = bool(status >> 15)

    @property
    def ok(self) -> bool:
        return self.sc == 0 and self.sct == 0

    def __repr__(self) -> str:
        return (f"Completion(cid={self.cid}, sqid={self.sqid}, sct={self.sct}, "
                f"sc={self.sc:#x}, dw0={self.dw0:#x})")


class SubmissionQueue:
    def __init__(self, qid: int, depth: int, mem: DmaBuffer, doorbell: memoryview) -> None:
        self.qid = qid
        self.depth = depth
        self.mem = mem
        self.view = mem.view
        self.doorbell = doorbell  # one uint32 ('I') element
        self.tail = 0
        self.head = 0  # as reported by the controller in CQEs (SQHD)

    @property
    def full(self) -> bool:
        return (self.tail + 1) % self.depth == self.head

    def push(self, entry: bytes) -> None:
        off = self.tail * SQE_SIZE
        self.view[off: off + SQE_SIZE] = entry
        self.tail = (self.tail + 1) % self.depth

    def ring(self) -> None:
        self.doorbell[0] = self.tail

    def release(self) -> None:
        """Drop the doorbell view (so the BAR can be unmapped)."""
        self.doorbell.release()


class CompletionQueue:
    def __init__(self, qid: int, depth: int, mem: DmaBuffer, doorbell: memoryview) -> None:
        self.qid = qid
        self.depth = depth
        self.mem = mem
        self.view = mem.view
        self.doorbell = doorbell
        self.head = 0
        self.phase = 1

    def pop(self) -> Completion | None:
        """The next completion, or None. Reads the phase word first, then the body."""
        off = self.head * CQE_SIZE
        status = self.view[off + 14] | (self.view[off + 15] << 8)
        if (status & 1) != self.phase:
            return None
        dw0, _, sqhd, sqid, cid = struct.unpack_from("<IIHHH", self.view, off)
        self.head += 1
        if self.head == self.depth:
            self.head = 0
            self.phase ^= 1
        return Completion(dw0, sqhd, sqid, cid, status)

    def ring(self) -> None:
        self.doorbell[0] = self.head

    def release(self) -> None:
        self.doorbell.release()


__all__ = ["Completion", "CompletionQueue", "SubmissionQueue"]
