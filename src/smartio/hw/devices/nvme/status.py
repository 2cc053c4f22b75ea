"""NVMe completion status codes (NVMe 1.4 §4.6.1) as the model returns them.

A modelled error is data: a handler returns one of these values and the controller puts
it in the completion queue entry. Values use QEMU's 15-bit layout (``SCT << 8 | SC``,
``include/block/nvme.h`` ``NvmeStatusCodes``) with :data:`DNR` (bit 14 before the shift)
or-ed in; the CQE status/phase word is ``status << 1 | phase`` (nvme-reference §1.6).
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Status Code Type and Status Code, packed ``SCT << 8 | SC``."""

    SUCCESS = 0x0000
    INVALID_OPCODE = 0x0001
    INVALID_FIELD = 0x0002
    CID_CONFLICT = 0x0003
    DATA_TRANSFER_ERROR = 0x0004
    INTERNAL_ERROR = 0x0006
    ABORTED_BY_REQUEST = 0x0007
    ABORTED_SQ_DELETED = 0x0008
    INVALID_NAMESPACE = 0x000B
    COMMAND_SEQUENCE_ERROR = 0x000C
    PRP_OFFSET_INVALID = 0x0013
    LBA_OUT_OF_RANGE = 0x0080
    CQ_INVALID = 0x0100
    INVALID_QID = 0x0101
    INVALID_QUEUE_SIZE = 0x0102
    AER_LIMIT_EXCEEDED = 0x0105
    INVALID_INTERRUPT_VECTOR = 0x0108
    INVALID_LOG_PAGE = 0x0109
    INVALID_QUEUE_DELETION = 0x010C
    FEATURE_NOT_SAVEABLE = 0x010D
    FEATURE_NOT_CHANGEABLE = 0x010E


#: Do Not Retry, in the 15-bit status (bit 15 of the CQE status/phase word).
DNR = 0x4000
#: More (an Error Information log entry exists), bit 14 of the CQE word.
MORE = 0x2000

# Failures a retry may cure: they complete without DNR (QEMU does the same).
_RETRYABLE = frozenset({
    Status.DATA_TRANSFER_ERROR, Status.INTERNAL_ERROR, Status.ABORTED_BY_REQUEST,
    Status.ABORTED_SQ_DELETED, Status.AER_LIMIT_EXCEEDED,
})


def fail(status: Status) -> int:
    """The status as a command completes with it: DNR set unless a retry may succeed."""
    return int(status) if status in _RETRYABLE else int(status) | DNR


def sct(status: int) -> int:
    """Status Code Type of a 15-bit status."""
    return (status >> 8) & 0x7


def sc(status: int) -> int:
    """Status Code of a 15-bit status."""
    return status & 0xFF


def describe(status: int) -> str:
    """``NAME(sct/sc)`` with ``+DNR`` when set, for trace events."""
    code = status & 0x7FF
    try:
        name = Status(code).name
    except ValueError:
        name = "UNKNOWN"
    dnr = "+DNR" if status & DNR else ""
    return f"{name}({sct(status)}/{sc(status):02x}h){dnr}"


__all__ = ["DNR", "MORE", "Status", "describe", "fail", "sc", "sct"]
