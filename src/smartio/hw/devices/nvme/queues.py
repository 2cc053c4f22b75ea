"""Submission and completion queues, commands and completions (NVMe 1.4 §4.1, §4.2, §4.6).

A :class:`SubmissionQueue` records the host's ``sq_tail`` (from its doorbell) and the
controller's ``sq_head`` (advanced at fetch). A :class:`CompletionQueue` records the
controller's ``cq_tail`` and ``phase`` and the host's ``cq_head``; it starts with phase 1
and inverts it whenever the tail wraps. It is full when ``(cq_tail + 1) % size ==
cq_head``: completions then wait in ``waiting`` until a head doorbell frees a slot.

A CQE is written in two stores (measurements.md, torn descriptors): bytes 0–13 (DW0,
SQHD, SQID, CID) first, then the status/phase word at bytes 14–15, so a host that polls
the phase tag never sees a new phase with an old body.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

SQE_SIZE = 64
CQE_SIZE = 16
SQE = struct.Struct("<IIIIQQQIIIIII")
CQE_BODY = struct.Struct("<IIHHH")  # DW0, DW1 (reserved), SQHD, SQID, CID
CQE_STATUS = struct.Struct("<H")  # status << 1 | phase, stored last
CQE_STATUS_OFFSET = 14


@dataclass(slots=True, eq=False)
class CompletionQueue:
    qid: int
    base: int
    size: int
    ien: bool = True
    iv: int = 0
    cq_head: int = 0
    cq_tail: int = 0
    phase: int = 1
    sqs: set[int] = field(default_factory=set)
    waiting: deque[Completion] = field(default_factory=deque)

    def full(self) -> bool:
        return (self.cq_tail + 1) % self.size == self.cq_head

    def slot_addr(self) -> int:
        return self.base + self.cq_tail * CQE_SIZE

    def advance(self) -> None:
        """Move the tail past a posted entry; the phase inverts when it wraps."""
        self.cq_tail += 1
        if self.cq_tail == self.size:
            self.cq_tail = 0
            self.phase ^= 1


@dataclass(slots=True, eq=False)
class SubmissionQueue:
    qid: int
    base: int
    size: int
    cq: CompletionQueue
    qprio: int = 0
    sq_head: int = 0
    sq_tail: int = 0
    outstanding: int = 0  # fetched, completion not yet posted
    deleted: bool = False

    def pending(self) -> int:
        """Entries the host submitted that the controller has not fetched."""
        return (self.sq_tail - self.sq_head) % self.size


@dataclass(slots=True, eq=False)
class Command:
    """One fetched SQE (NVMe 1.4 §4.2: CDW0 = opcode, FUSE, PSDT, CID)."""

    sq: SubmissionQueue
    opcode: int
    fuse: int
    psdt: int
    cid: int
    nsid: int
    mptr: int
    prp1: int
    prp2: int
    cdw10: int
    cdw11: int
    cdw12: int
    cdw13: int
    cdw14: int
    cdw15: int

    @classmethod
    def parse(cls, sq: SubmissionQueue, raw: bytes, offset: int = 0) -> Command:
        (cdw0, nsid, _cdw2, _cdw3, mptr, prp1, prp2,
         c10, c11, c12, c13, c14, c15) = SQE.unpack_from(raw, offset)
        return cls(sq, cdw0 & 0xFF, (cdw0 >> 8) & 0x3, (cdw0 >> 14) & 0x3, cdw0 >> 16, nsid,
                   mptr, prp1, prp2, c10, c11, c12, c13, c14, c15)


@dataclass(slots=True, eq=False)
class Completion:
    """A finished command waiting to be posted (possibly held until ``ready_ns``)."""

    sq: SubmissionQueue
    cid: int
    status: int  # 15-bit status, DNR included
    dw0: int = 0
    ready_ns: int = 0


def pack_sqe(opcode: int, cid: int, *, nsid: int = 0, prp1: int = 0, prp2: int = 0,
             cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0,
             cdw14: int = 0, cdw15: int = 0, fuse: int = 0, psdt: int = 0,
             mptr: int = 0) -> bytes:
    """A 64-byte SQE, for host-side code (drivers, tests)."""
    cdw0 = (opcode & 0xFF) | (fuse & 3) << 8 | (psdt & 3) << 14 | (cid & 0xFFFF) << 16
    return SQE.pack(cdw0, nsid, 0, 0, mptr, prp1, prp2, cdw10, cdw11, cdw12, cdw13, cdw14,
                    cdw15)


__all__ = [
    "CQE_BODY", "CQE_SIZE", "CQE_STATUS", "CQE_STATUS_OFFSET", "SQE", "SQE_SIZE", "Command",
    "Completion", "CompletionQueue", "SubmissionQueue", "pack_sqe",
]
