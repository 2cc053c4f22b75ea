"""NVMe definitions the driver needs (NVMe base specification 1.4), declared once.

Register offsets and fields, opcodes, and status codes with their specification names.
The controller model has its own copy on the device side of the bus, as silicon does.
"""

from __future__ import annotations

import struct

from smartio.errors import SmartIOError

# Controller registers (BAR0).
REG_CAP, REG_VS, REG_INTMS, REG_INTMC, REG_CC, REG_CSTS = 0x00, 0x08, 0x0C, 0x10, 0x14, 0x1C
REG_AQA, REG_ASQ, REG_ACQ = 0x24, 0x28, 0x30
DOORBELL_BASE = 0x1000

CC_EN = 1 << 0
CC_IOSQES = 6 << 16
CC_IOCQES = 4 << 20
CC_SHN_NORMAL = 1 << 14
CSTS_RDY = 1 << 0
CSTS_CFS = 1 << 1
CSTS_SHST_MASK = 3 << 2
CSTS_SHST_COMPLETE = 2 << 2

# Admin opcodes.
ADM_DELETE_SQ, ADM_CREATE_SQ, ADM_GET_LOG_PAGE = 0x00, 0x01, 0x02
ADM_DELETE_CQ, ADM_CREATE_CQ, ADM_IDENTIFY = 0x04, 0x05, 0x06
ADM_ABORT, ADM_SET_FEATURES, ADM_GET_FEATURES, ADM_AER = 0x08, 0x09, 0x0A, 0x0C
# NVM opcodes.
NVM_FLUSH, NVM_WRITE, NVM_READ, NVM_WRITE_ZEROES, NVM_DSM = 0x00, 0x01, 0x02, 0x08, 0x09
# Features.
FEAT_ARBITRATION, FEAT_NUM_QUEUES, FEAT_IRQ_COALESCING, FEAT_VWC = 0x01, 0x07, 0x08, 0x06

SQE_SIZE = 64
CQE_SIZE = 16

#: (SCT, SC) -> name, as in the specification and Linux's nvme.h.
STATUS_NAMES = {
    (0, 0x00): "SUCCESS", (0, 0x01): "INVALID_OPCODE", (0, 0x02): "INVALID_FIELD",
    (0, 0x03): "CMDID_CONFLICT", (0, 0x04): "DATA_TRANSFER_ERROR",
    (0, 0x06): "INTERNAL", (0, 0x07): "ABORT_REQ", (0, 0x08): "ABORT_QUEUE",
    (0, 0x0B): "INVALID_NS", (0, 0x0C): "CMD_SEQ_ERROR", (0, 0x13): "PRP_INVALID_OFFSET",
    (0, 0x80): "LBA_RANGE", (1, 0x00): "CQ_INVALID", (1, 0x01): "QID_INVALID",
    (1, 0x02): "QUEUE_SIZE", (1, 0x05): "AER_LIMIT", (1, 0x08): "INVALID_VECTOR",
    (1, 0x09): "INVALID_LOG_PAGE", (1, 0x0C): "INVALID_QUEUE_DELETION",
    (1, 0x0E): "FEATURE_NOT_CHANGEABLE",
}


def status_name(sct: int, sc: int) -> str:
    return STATUS_NAMES.get((sct, sc), f"SCT{sct}_SC{sc:#04x}")


class NvmeError(SmartIOError):
    """A command completed with an error status; ``code`` is ``NVME_SC_<NAME>``."""

    def __init__(self, what: str, sct: int, sc: int, dnr: bool = False) -> None:
        self.sct, self.sc, self.dnr = sct, sc, dnr
        name = status_name(sct, sc)
        super().__init__(f"{what} failed: {name} (SCT {sct}, SC {sc:#04x}"
                         f"{', DNR' if dnr else ''})", code=f"NVME_SC_{name}")


class NvmeTimeout(SmartIOError):
    """A command did not complete in time; the message names it."""

    code = "NVME_TIMEOUT"


def sqe(opcode: int, cid: int, nsid: int = 0, prp1: int = 0, prp2: int = 0,
        cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0, cdw14: int = 0,
        cdw15: int = 0) -> bytes:
    """A 64-byte submission queue entry (PRP data pointer)."""
    return struct.pack("<IIQQQQIIIIII", opcode | (cid << 16), nsid, 0, 0, prp1, prp2,
                       cdw10, cdw11, cdw12, cdw13, cdw14, cdw15)


__all__ = [name for name in dir() if name.isupper() and not name.startswith("_")] + [
    "NvmeError", "NvmeTimeout", "sqe", "status_name"]
