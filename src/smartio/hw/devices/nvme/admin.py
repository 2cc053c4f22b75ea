"""Admin command set (NVMe 1.4 §5; checks and status codes per nvme-reference §1.3).

:data:`ADMIN_COMMANDS` is the dispatch table (opcode → handler, effects); an opcode that
is not in it completes with Invalid Opcode. The queue-management checks follow QEMU's
``nvme_create_cq``/``nvme_create_sq`` in order, each refusal with its exact status and
DNR. Handlers log guest mistakes as ``nvme_err_*`` trace events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from smartio.hw.devices.nvme.commands import (
    HELD,
    OK,
    CommandSpec,
    Outcome,
    refuse,
    send,
    table,
)
from smartio.hw.devices.nvme.features import get_features, set_features
from smartio.hw.devices.nvme.identify import (
    CNS_ACTIVE_NSIDS,
    CNS_CONTROLLER,
    CNS_NAMESPACE,
    CNS_NS_DESCRIPTORS,
    FIRMWARE,
    active_nsids,
    identify_namespace,
    ns_descriptors,
)
from smartio.hw.devices.nvme.logpages import (
    CCC,
    LID_EFFECTS,
    LID_ERROR,
    LID_FW_SLOT,
    LID_SMART,
    fw_slot_page,
)
from smartio.hw.devices.nvme.queues import Command, CompletionQueue, SubmissionQueue
from smartio.hw.devices.nvme.regs import IOCQES, IOSQES
from smartio.hw.devices.nvme.status import Status

if TYPE_CHECKING:
    from smartio.hw.devices.nvme.controller import NvmeController

log = logging.getLogger(__name__)

NSID_BROADCAST = 0xFFFF_FFFF


# -- Identify -------------------------------------------------------------------------


def _ns_data(ctrl: NvmeController, cmd: Command,
             build: Callable[[NvmeController, int], bytes]) -> bytes | Outcome:
    nsid = cmd.nsid
    if nsid == 0 or nsid == NSID_BROADCAST or nsid > ctrl.cfg.namespaces:
        log.debug("nvme_err_invalid_nsid: identify nsid=%#x", nsid)
        return refuse(Status.INVALID_NAMESPACE)
    if nsid not in ctrl.namespaces:
        return bytes(4096)  # an inactive NSID reads as zeros
    return build(ctrl, nsid)


def _cns_namespace(ctrl: NvmeController, cmd: Command) -> bytes | Outcome:
    return _ns_data(ctrl, cmd, lambda c, n: identify_namespace(c.cfg, n))


def _cns_controller(ctrl: NvmeController, cmd: Command) -> bytes | Outcome:
    return ctrl.identify_controller_data


def _cns_active_nsids(ctrl: NvmeController, cmd: Command) -> bytes | Outcome:
    if cmd.nsid >= NSID_BROADCAST - 1:
        return refuse(Status.INVALID_NAMESPACE)
    return active_nsids(list(ctrl.namespaces), cmd.nsid)


def _cns_descriptors(ctrl: NvmeController, cmd: Command) -> bytes | Outcome:
    return _ns_data(ctrl, cmd, lambda c, n: ns_descriptors(c.cfg, n))


IDENTIFY_CNS: dict[int, Callable[[NvmeController, Command], bytes | Outcome]] = {
    CNS_NAMESPACE: _cns_namespace,
    CNS_CONTROLLER: _cns_controller,
    CNS_ACTIVE_NSIDS: _cns_active_nsids,
    CNS_NS_DESCRIPTORS: _cns_descriptors,
}


def identify(ctrl: NvmeController, cmd: Command) -> Outcome:
    cns = cmd.cdw10 & 0xFF
    build = IDENTIFY_CNS.get(cns)
    if build is None:
        log.debug("nvme_err_identify_cns: %#x", cns)
        return refuse(Status.INVALID_FIELD)
    data = build(ctrl, cmd)
    if isinstance(data, Outcome):
        return data
    return send(ctrl, cmd, data)


# -- Queue management -----------------------------------------------------------------


def create_cq(ctrl: NvmeController, cmd: Command) -> Outcome:
    qid, qsize = cmd.cdw10 & 0xFFFF, cmd.cdw10 >> 16
    pc, ien, iv = cmd.cdw11 & 1, (cmd.cdw11 >> 1) & 1, cmd.cdw11 >> 16
    cfg = ctrl.cfg
    if qid == 0 or qid > cfg.io_queues or ctrl.cqs[qid] is not None:
        log.debug("nvme_err_invalid_create_cq_qid: %d", qid)
        return refuse(Status.INVALID_QID)
    if qsize == 0 or qsize > cfg.mqes or ctrl.regs.get("cc.iocqes") != IOCQES:
        log.debug("nvme_err_invalid_create_cq_size: %d", qsize)
        return refuse(Status.INVALID_QUEUE_SIZE)
    if cmd.prp1 & (ctrl.page_size - 1):
        log.debug("nvme_err_invalid_create_cq_addr: %#x", cmd.prp1)
        return refuse(Status.PRP_OFFSET_INVALID)
    if iv >= cfg.msix_vectors:
        log.debug("nvme_err_invalid_create_cq_vector: %d", iv)
        return refuse(Status.INVALID_INTERRUPT_VECTOR)
    if not pc:  # CAP.CQR = 1: queues must be physically contiguous
        log.debug("nvme_err_invalid_create_cq_pc")
        return refuse(Status.INVALID_FIELD)
    ctrl.add_cq(CompletionQueue(qid, cmd.prp1, qsize + 1, bool(ien), iv))
    return OK


def create_sq(ctrl: NvmeController, cmd: Command) -> Outcome:
    qid, qsize = cmd.cdw10 & 0xFFFF, cmd.cdw10 >> 16
    pc, qprio, cqid = cmd.cdw11 & 1, (cmd.cdw11 >> 1) & 3, cmd.cdw11 >> 16
    cfg = ctrl.cfg
    cq = ctrl.cqs[cqid] if 0 < cqid <= cfg.io_queues else None
    if cq is None:
        log.debug("nvme_err_invalid_create_sq_cqid: %d", cqid)
        return refuse(Status.CQ_INVALID)
    if qid == 0 or qid > cfg.io_queues or ctrl.sqs[qid] is not None:
        log.debug("nvme_err_invalid_create_sq_qid: %d", qid)
        return refuse(Status.INVALID_QID)
    if qsize == 0 or qsize > cfg.mqes or ctrl.regs.get("cc.iosqes") != IOSQES:
        log.debug("nvme_err_invalid_create_sq_size: %d", qsize)
        return refuse(Status.INVALID_QUEUE_SIZE)
    if cmd.prp1 & (ctrl.page_size - 1):
        log.debug("nvme_err_invalid_create_sq_addr: %#x", cmd.prp1)
        return refuse(Status.PRP_OFFSET_INVALID)
    if not pc:
        log.debug("nvme_err_invalid_create_sq_pc")
        return refuse(Status.INVALID_FIELD)
    ctrl.add_sq(SubmissionQueue(qid, cmd.prp1, qsize + 1, cq, qprio))
    return OK


def delete_sq(ctrl: NvmeController, cmd: Command) -> Outcome:
    qid = cmd.cdw10 & 0xFFFF
    sq = ctrl.sqs[qid] if 0 < qid <= ctrl.cfg.io_queues else None
    if sq is None:
        log.debug("nvme_err_invalid_delete_sq: %d", qid)
        return refuse(Status.INVALID_QID)
    ctrl.delete_sq(sq)
    return OK


def delete_cq(ctrl: NvmeController, cmd: Command) -> Outcome:
    qid = cmd.cdw10 & 0xFFFF
    cq = ctrl.cqs[qid] if 0 < qid <= ctrl.cfg.io_queues else None
    if cq is None:
        log.debug("nvme_err_invalid_delete_cq: %d", qid)
        return refuse(Status.INVALID_QID)
    if cq.sqs:
        log.debug("nvme_err_invalid_delete_cq_busy: %d has SQs %s", qid, sorted(cq.sqs))
        return refuse(Status.INVALID_QUEUE_DELETION)
    ctrl.delete_cq(cq)
    return OK


# -- Log pages, Abort, AER ----------------------------------------------------------


LOG_PAGES: dict[int, Callable[[NvmeController], bytes]] = {
    LID_ERROR: lambda c: c.error_log.page(),
    LID_SMART: lambda c: c.smart.page(c.error_log.count),
    LID_FW_SLOT: lambda c: fw_slot_page(FIRMWARE),
    LID_EFFECTS: lambda c: c.effects_page,
}


def get_log_page(ctrl: NvmeController, cmd: Command) -> Outcome:
    lid, rae = cmd.cdw10 & 0xFF, (cmd.cdw10 >> 15) & 1
    numd = ((cmd.cdw11 & 0xFFFF) << 16 | cmd.cdw10 >> 16) + 1
    offset = cmd.cdw12 | cmd.cdw13 << 32
    build = LOG_PAGES.get(lid)
    if build is None:
        log.debug("nvme_err_log_page_lid: %#x", lid)
        return refuse(Status.INVALID_FIELD)
    page = build(ctrl)
    if offset & 3 or offset >= len(page):
        log.debug("nvme_err_log_page_offset: %#x", offset)
        return refuse(Status.INVALID_FIELD)
    data = page[offset: offset + numd * 4]
    out = send(ctrl, cmd, data)
    if out.status == 0 and not rae:
        ctrl.events.log_read(lid)
    return out


def abort(ctrl: NvmeController, cmd: Command) -> Outcome:
    """Best effort, and this model never aborts: DW0 bit 0 = 1 ("not aborted") is legal."""
    return Outcome(0, 1)


def async_event_request(ctrl: NvmeController, cmd: Command) -> Outcome:
    if not ctrl.events.request(cmd):
        log.debug("nvme_err_aer_limit_exceeded")
        return refuse(Status.AER_LIMIT_EXCEEDED)
    return HELD


ADMIN_COMMANDS: dict[int, CommandSpec] = table(
    CommandSpec(0x00, "delete_io_sq", delete_sq),
    CommandSpec(0x01, "create_io_sq", create_sq),
    CommandSpec(0x02, "get_log_page", get_log_page),
    CommandSpec(0x04, "delete_io_cq", delete_cq),
    CommandSpec(0x05, "create_io_cq", create_cq),
    CommandSpec(0x06, "identify", identify),
    CommandSpec(0x08, "abort", abort),
    CommandSpec(0x09, "set_features", set_features, effects=CCC),
    CommandSpec(0x0A, "get_features", get_features),
    CommandSpec(0x0C, "async_event_request", async_event_request),
)


__all__ = ["ADMIN_COMMANDS", "IDENTIFY_CNS", "LOG_PAGES"]
