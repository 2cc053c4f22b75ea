"""The queue half of the NVMe controller: doorbells, arbitration, execution, completion.

:class:`QueueEngine` is the base of :class:`~.controller.NvmeController` and holds what
the admin handlers manipulate (``sqs``, ``cqs``, :meth:`add_sq`, :meth:`delete_cq`, …).
The flow of one command (NVMe 1.4 §4, nvme-reference §1.6–§1.7):

* a doorbell write only records ``sq_tail`` / ``cq_head`` (:meth:`_on_doorbells`); a
  write to a nonexistent queue or with a value beyond the queue size is ignored and
  raises an Error AER when one is outstanding. The host writes concurrently with the
  poll: a write to an existing queue that lands after the per-queue scan is left for the
  next poll, never taken for a write to a nonexistent queue;
* :meth:`_arbitrate` runs one round-robin round, fetching at most the Arbitration
  feature's burst from each SQ (one DMA per contiguous run of SQEs);
* :meth:`_execute` dispatches through :data:`~.admin.ADMIN_COMMANDS` or
  :data:`~.nvm.IO_COMMANDS`; the completion waits in the CQ's ``waiting`` deque, or in
  a min-heap until its media ready time (compute, then hold);
* :meth:`_post_backlog` writes CQEs while the CQ has room — body first, the status/phase
  word last — and marks the CQ's vector for one MSI-X message per poll.

A failed SQE fetch or CQE post is fatal (CSTS.CFS, QEMU); everything else a guest can do
wrong is a status code.
"""

from __future__ import annotations

import heapq
import logging
from typing import TYPE_CHECKING, cast

from smartio.hw.devices.base import DeviceContext
from smartio.hw.devices.nvme.admin import ADMIN_COMMANDS
from smartio.hw.devices.nvme.commands import Outcome, refuse
from smartio.hw.devices.nvme.config import NvmeConfig
from smartio.hw.devices.nvme.events import AERL, AsyncEvents, ErrorInfo, EventType
from smartio.hw.devices.nvme.features import FID_ARBITRATION, arbitration_burst
from smartio.hw.devices.nvme.logpages import ErrorLog
from smartio.hw.devices.nvme.nvm import IO_COMMANDS
from smartio.hw.devices.nvme.queues import (
    CQE_BODY,
    CQE_SIZE,
    CQE_STATUS,
    CQE_STATUS_OFFSET,
    SQE,
    SQE_SIZE,
    Command,
    Completion,
    CompletionQueue,
    SubmissionQueue,
)
from smartio.hw.devices.nvme.regs import Doorbells, RegisterFile
from smartio.hw.devices.nvme.state import State, StateMachine
from smartio.hw.devices.nvme.status import Status, describe

if TYPE_CHECKING:
    from smartio.hw.devices.nvme.controller import NvmeController

log = logging.getLogger(__name__)


_ZERO_PAGE = memoryview(bytes(65536))


class QueueEngine:
    """Queues and the command pipeline; the subclass supplies registers and state."""

    ctx: DeviceContext
    cfg: NvmeConfig
    regs: RegisterFile
    doorbells: Doorbells
    fsm: StateMachine
    features: dict[int, int]

    def _init_queues(self) -> None:
        self._as_controller = cast("NvmeController", self)  # what the handlers are given
        n = self.cfg.io_queues + 1
        self.sqs: list[SubmissionQueue | None] = [None] * n
        self.cqs: list[CompletionQueue | None] = [None] * n
        self._active_sqs: list[SubmissionQueue] = []
        self._active_cqs: list[CompletionQueue] = []
        self._heap: list[tuple[int, int, Completion]] = []
        self._seq = 0
        self._backlog: dict[int, CompletionQueue] = {}
        self._irq: set[int] = set()
        self._sq_work = False
        self.events: AsyncEvents = AsyncEvents()
        self.error_log: ErrorLog = ErrorLog()
        self.qs_created = False

    def _drop_queues(self) -> None:
        """Forget every queue, held completion and AER (controller or function reset)."""
        for qid in range(len(self.sqs)):
            self.sqs[qid] = None
            self.cqs[qid] = None
        self._active_sqs.clear()
        self._active_cqs.clear()
        self._heap.clear()
        self._backlog.clear()
        self._irq.clear()
        self._sq_work = False
        self.events.clear()
        self.qs_created = False

    def _fatal(self, why: str) -> None:
        """A queue DMA failed: CSTS.CFS, and nothing more until the host resets."""
        log.error("nvme_err_cfs: %s %s", self.ctx.name, why)
        self.regs.set("csts.cfs", 1)
        self.fsm.move(State.FAILED, why)

    # -- queues (used by the admin handlers) ------------------------------------------

    def add_cq(self, cq: CompletionQueue) -> None:
        self.cqs[cq.qid] = cq
        self._active_cqs.append(cq)
        self._active_cqs.sort(key=lambda q: q.qid)
        self.doorbells.clear(Doorbells.cq_head(cq.qid))
        if cq.qid:
            self.qs_created = True
        log.debug("nvme_create_cq: %s qid=%d size=%d iv=%d", self.ctx.name, cq.qid, cq.size,
                  cq.iv)

    def add_sq(self, sq: SubmissionQueue) -> None:
        self.sqs[sq.qid] = sq
        self._active_sqs.append(sq)
        self._active_sqs.sort(key=lambda q: q.qid)
        sq.cq.sqs.add(sq.qid)
        self.doorbells.clear(Doorbells.sq_tail(sq.qid))
        log.debug("nvme_create_sq: %s qid=%d size=%d cqid=%d", self.ctx.name, sq.qid, sq.size,
                  sq.cq.qid)

    def delete_sq(self, sq: SubmissionQueue) -> None:
        """Remove an SQ; its held commands complete as Aborted – SQ Deletion (0/08h)."""
        sq.deleted = True
        self.sqs[sq.qid] = None
        self._active_sqs.remove(sq)
        sq.cq.sqs.discard(sq.qid)
        self.doorbells.clear(Doorbells.sq_tail(sq.qid))
        keep = [e for e in self._heap if e[2].sq is not sq]
        if len(keep) != len(self._heap):
            for _, _, c in self._heap:
                if c.sq is sq:
                    c.status = Status.ABORTED_SQ_DELETED.value
                    sq.cq.waiting.append(c)
            heapq.heapify(keep)
            self._heap = keep
            self._backlog[sq.cq.qid] = sq.cq
        log.debug("nvme_delete_sq: %s qid=%d", self.ctx.name, sq.qid)

    def delete_cq(self, cq: CompletionQueue) -> None:
        self.cqs[cq.qid] = None
        self._active_cqs.remove(cq)
        self.doorbells.clear(Doorbells.cq_head(cq.qid))
        cq.waiting.clear()
        self._backlog.pop(cq.qid, None)
        log.debug("nvme_delete_cq: %s qid=%d", self.ctx.name, cq.qid)

    # -- doorbells -----------------------------------------------------------------------

    def _on_doorbells(self) -> None:
        db = self.doorbells
        live, shadow = db.live_w, db.shadow_w  # hot path: index the word views directly
        for sq in self._active_sqs:
            index = sq.qid << 1  # Doorbells.sq_tail
            value = live[index]
            if value != shadow[index]:
                shadow[index] = value
                if value & 0xFFFF >= sq.size:
                    self._invalid_doorbell(ErrorInfo.INVALID_DOORBELL_VALUE, index, value)
                else:
                    sq.sq_tail = value & 0xFFFF
                    self._sq_work = True
        for cq in self._active_cqs:
            index = cq.qid << 1 | 1  # Doorbells.cq_head
            value = live[index]
            if value != shadow[index]:
                shadow[index] = value
                if value & 0xFFFF >= cq.size:
                    self._invalid_doorbell(ErrorInfo.INVALID_DOORBELL_VALUE, index, value)
                else:
                    cq.cq_head = value & 0xFFFF
                    if cq.waiting:
                        self._backlog[cq.qid] = cq
        if db.dirty():  # a write to no queue, or one that landed during the scans above
            for index, value in db.stray_writes(self._has_doorbell):
                self._invalid_doorbell(ErrorInfo.INVALID_DOORBELL_REGISTER, index, value)

    def _has_doorbell(self, index: int) -> bool:
        """Whether doorbell word ``index`` belongs to an existing queue."""
        qid = index >> 1
        if qid >= len(self.sqs):
            return False
        return (self.cqs if index & 1 else self.sqs)[qid] is not None

    def _invalid_doorbell(self, info: ErrorInfo, index: int, value: int) -> None:
        kind = "cq_head" if index & 1 else "sq_tail"
        what = "value" if info is ErrorInfo.INVALID_DOORBELL_VALUE else "queue"
        log.warning("nvme_ub_db_wr_invalid_%s: %s %s qid=%d value=%#x", what, self.ctx.name,
                    kind, index >> 1, value)
        self.error_log.record(index >> 1, 0xFFFF, 0)
        if self.events.waiting:  # QEMU posts the Error event only when an AER is outstanding
            self.events.post(EventType.ERROR, info)
            self._deliver_events()

    # -- command processing --------------------------------------------------------------

    def _arbitrate(self) -> bool:
        """One round-robin round: up to the arbitration burst from each SQ with work."""
        did = work = False
        ab = self.features[FID_ARBITRATION]
        for sq in tuple(self._active_sqs):
            if sq.deleted or sq.sq_head == sq.sq_tail:
                continue
            did = self._fetch(sq, arbitration_burst(ab, sq.size)) > 0 or did
            if self.fsm.state is not State.READY:
                return True
            work = work or sq.sq_head != sq.sq_tail
        self._sq_work = work
        return did

    def _fetch(self, sq: SubmissionQueue, budget: int) -> int:
        limit = sq.size + AERL + 1  # bounds held completions when the CQ is full
        done = 0
        while done < budget and sq.sq_head != sq.sq_tail and not sq.deleted:
            count = min((sq.sq_tail - sq.sq_head) % sq.size, budget - done,
                        limit - sq.outstanding, sq.size - sq.sq_head)
            if count <= 0:
                break
            addr = sq.base + sq.sq_head * SQE_SIZE
            raw = self.ctx.dma_read(addr, count * SQE_SIZE)
            if raw is None:
                self._fatal(f"SQ {sq.qid} entry fetch failed at {addr:#x}")
                return done
            fast = self._fast_rw if sq.qid else None
            for i in range(count):
                sq.sq_head = (sq.sq_head + 1) % sq.size
                if fast is not None and fast(sq, raw, i * SQE_SIZE):
                    continue
                cmd = Command.parse(sq, raw, i * SQE_SIZE)
                sq.outstanding += 1
                self._execute(cmd)
                if self.fsm.state is not State.READY:
                    return done + i + 1
            done += count
        return done

    def _fast_rw(self, sq: SubmissionQueue, raw: bytes, off: int) -> bool:
        """The common case done inline: a Read or Write of one PRP1 page on an instant
        (RAM) namespace whose CQ has room and nothing waiting. Anything else — and any
        failure — returns False and takes the general path, which also owns every error
        status, so both paths answer identically."""
        cdw0, nsid, _c2, _c3, _mptr, prp1, _prp2, c10, c11, c12, _c13, _c14, _c15 = \
            SQE.unpack_from(raw, off)
        opcode = cdw0 & 0xFF
        if (opcode != 0x02 and opcode != 0x01) or cdw0 & 0xFF00 or c12 & 0xFFFF0000:
            return False  # not Read/Write, or FUSE/PSDT set, or FUA/LR/PRINFO bits
        ns = self._as_controller.namespaces.get(nsid)
        cq = sq.cq
        if ns is None or not ns.timeline.profile.instant or cq.waiting or cq.full():
            return False
        nlb = (c12 & 0xFFFF) + 1
        slba = c10 | c11 << 32
        nbytes = nlb << ns.lbads
        page = self._as_controller.page_size
        if nbytes > page - (prp1 & (page - 1)) or prp1 & 3 or not ns.in_range(slba, nlb):
            return False
        start = slba << ns.lbads
        ctx = self.ctx
        smart = self._as_controller.smart
        if opcode == 0x02:
            data = (_ZERO_PAGE[:nbytes] if ns.untouched(start, start + nbytes)
                    else ns.view[start: start + nbytes])
            if not ctx.dma_write(prp1, data):
                return False
            smart.read_commands += 1
            smart.bytes_read += nbytes
        else:
            if not ctx.dma_read_into(prp1, ns.view[start: start + nbytes]):
                return False
            ns.mark_written(start, start + nbytes)
            smart.write_commands += 1
            smart.bytes_written += nbytes
        addr = cq.base + cq.cq_tail * CQE_SIZE
        if not (ctx.dma_write(addr, CQE_BODY.pack(0, 0, sq.sq_head, sq.qid, cdw0 >> 16))
                and ctx.dma_write(addr + CQE_STATUS_OFFSET, CQE_STATUS.pack(cq.phase))):
            self._fatal(f"CQ {cq.qid} entry post failed at {addr:#x}")
            return True
        cq.advance()
        if cq.ien:
            self._irq.add(cq.iv)
        return True

    def _execute(self, cmd: Command) -> None:
        admin = cmd.sq.qid == 0
        spec = (ADMIN_COMMANDS if admin else IO_COMMANDS).get(cmd.opcode)
        if spec is None:
            log.debug("nvme_err_invalid_opcode: sq=%d opcode=%#x", cmd.sq.qid, cmd.opcode)
            out = refuse(Status.INVALID_OPCODE)
        elif cmd.fuse or cmd.psdt:  # no fused commands; SGLS = 0, so PRPs only
            log.debug("nvme_err_invalid_fuse_psdt: fuse=%d psdt=%d", cmd.fuse, cmd.psdt)
            out = refuse(Status.INVALID_FIELD)
        else:
            if admin:
                log.debug("nvme_admin_cmd: %s cid=%d %s", self.ctx.name, cmd.cid, spec.name)
            try:
                out = spec.handler(self._as_controller, cmd)
            except OSError as exc:  # the backing file or device failed
                log.error("nvme_err_backing: %s %s: %s", self.ctx.name, spec.name, exc)
                out = Outcome(Status.INTERNAL_ERROR.value)
        if out.held:
            self._deliver_events()
            return
        if out.status:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("nvme_cmd_error: sq=%d cid=%d opcode=%#x %s", cmd.sq.qid, cmd.cid,
                          cmd.opcode, describe(out.status))
            self.error_log.record(cmd.sq.qid, cmd.cid, out.status, cmd.nsid)
        self._complete(cmd.sq, cmd.cid, out.status, out.dw0, out.ready_ns)

    def _complete(self, sq: SubmissionQueue, cid: int, status: int, dw0: int,
                  ready_ns: int) -> None:
        c = Completion(sq, cid, status, dw0, ready_ns)
        if ready_ns:
            self._seq += 1
            heapq.heappush(self._heap, (ready_ns, self._seq, c))
        else:
            sq.cq.waiting.append(c)
            self._backlog[sq.cq.qid] = sq.cq

    def _deliver_events(self) -> None:
        for cmd, dw0 in self.events.due():
            log.debug("nvme_aer_complete: %s cid=%d dw0=%#x", self.ctx.name, cmd.cid, dw0)
            self._complete(cmd.sq, cmd.cid, 0, dw0, 0)

    def _release_due(self) -> None:
        now = self.ctx.now_ns()
        heap = self._heap
        while heap and heap[0][0] <= now:
            c = heapq.heappop(heap)[2]
            cq = c.sq.cq
            cq.waiting.append(c)
            self._backlog[cq.qid] = cq

    def _post_backlog(self) -> bool:
        did = False
        for qid, cq in list(self._backlog.items()):
            while cq.waiting and not cq.full():
                if not self._post(cq, cq.waiting[0]):
                    return True
                cq.waiting.popleft()
                did = True
            if not cq.waiting:
                del self._backlog[qid]
        return did

    def _post(self, cq: CompletionQueue, c: Completion) -> bool:
        """Write one CQE: body first, the status/phase word last (measurements.md)."""
        addr = cq.base + cq.cq_tail * CQE_SIZE
        sq = c.sq
        ctx = self.ctx
        if not (ctx.dma_write(addr, CQE_BODY.pack(c.dw0, 0, sq.sq_head, sq.qid, c.cid))
                and ctx.dma_write(addr + CQE_STATUS_OFFSET,
                                  CQE_STATUS.pack((c.status << 1 | cq.phase) & 0xFFFF))):
            self._fatal(f"CQ {cq.qid} entry post failed at {addr:#x}")
            return False
        cq.advance()
        sq.outstanding -= 1
        if sq.sq_head != sq.sq_tail and not sq.deleted:
            self._sq_work = True
        if cq.ien:
            self._irq.add(cq.iv)
        return True


__all__ = ["QueueEngine"]
