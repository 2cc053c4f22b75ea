"""NVMe controller bring-up and admin commands, over any device implementing PciDevice.

The sequence real drivers follow (SPDK's ``nvme_ctrlr_state``; nvme-reference.md §1.2):
disable and wait for CSTS.RDY = 0 within CAP.TO, program AQA/ASQ/ACQ, enable and wait for
RDY = 1, Identify Controller, Set Features Number of Queues, Identify the active
namespaces. Every wait is bounded by CAP.TO; a command that does not complete in time is
reported by name. Queue pairs are created and deleted at run time.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass

from smartio.drivers.nvme import spec
from smartio.drivers.nvme.queues import Completion, CompletionQueue, SubmissionQueue
from smartio.drivers.nvme.spec import NvmeError, NvmeTimeout
from smartio.errors import IllegalOperation, IllegalParameter
from smartio.lending import DmaBuffer, PciDevice

log = logging.getLogger(__name__)

ADMIN_DEPTH = 32
PAGE = 4096


@dataclass(frozen=True)
class ControllerInfo:
    """Fields of Identify Controller (CNS 1) that users look at."""

    vid: int
    ssvid: int
    serial: str
    model: str
    firmware: str
    mdts: int
    cntlid: int
    version: int
    oacs: int
    aerl: int
    sqes: int
    cqes: int
    nn: int
    oncs: int
    vwc: int
    raw: bytes


@dataclass(frozen=True)
class NamespaceInfo:
    nsid: int
    nsze: int
    ncap: int
    nuse: int
    lba_size: int
    raw: bytes


def parse_identify_controller(b: bytes) -> ControllerInfo:
    vid, ssvid = struct.unpack_from("<HH", b, 0)
    return ControllerInfo(
        vid, ssvid, b[4:24].decode(errors="replace").strip(),
        b[24:64].decode(errors="replace").strip(), b[64:72].decode(errors="replace").strip(),
        b[77], struct.unpack_from("<H", b, 78)[0], struct.unpack_from("<I", b, 80)[0],
        struct.unpack_from("<H", b, 256)[0], b[259], b[512], b[513],
        struct.unpack_from("<I", b, 516)[0], struct.unpack_from("<H", b, 520)[0], b[525],
        bytes(b))


def parse_identify_namespace(nsid: int, b: bytes) -> NamespaceInfo:
    nsze, ncap, nuse = struct.unpack_from("<QQQ", b, 0)
    flbas = b[26] & 0xF
    lbads = b[128 + 4 * flbas + 2]
    return NamespaceInfo(nsid, nsze, ncap, nuse, 1 << lbads if lbads else 512, bytes(b))


class Controller:
    """An NVMe controller driven from userspace (libnvm / pynvme style)."""

    def __init__(self, device: PciDevice, *, io_queues: int | None = None,
                 attach: bool = False) -> None:
        """Bring the controller up (reset it), or with ``attach`` join one that another
        process of this host brought up (SPDK's secondary processes): no reset, the admin
        queue is shared under the function's cross-process lock, and each process creates
        its own I/O queue pairs."""
        self.device = device
        self.attached = attach
        device.enable(memory=True, bus_master=True)
        self.bar = device.map_bar(0)
        self.regs32 = self.bar.cast("I")
        self._cid = 0
        self.admin_sq: SubmissionQueue | None = None
        self.admin_cq: CompletionQueue | None = None
        try:
            cap = self._read64(spec.REG_CAP)
            self.mqes = (cap & 0xFFFF) + 1
            self.timeout = max(0.5, ((cap >> 24) & 0xFF) * 0.5)
            self.dstrd = 4 << ((cap >> 32) & 0xF)
            self.mpsmin = 1 << (12 + ((cap >> 48) & 0xF))
            if self.mpsmin != PAGE:
                raise IllegalOperation(f"controller's minimum page size is {self.mpsmin}; "
                                       "this driver uses 4 KiB pages (is this an NVMe?)")
            self._bring_up(attach, io_queues)
        except BaseException:
            self._release_views()  # so that closing the device cannot hide this error
            raise

    def _bring_up(self, attach: bool, io_queues: int | None) -> None:
        if attach:
            self._attach_admin()
        else:
            self.reset()
        self.info = self.identify_controller()
        self.max_transfer = (PAGE << self.info.mdts) if self.info.mdts else 1 << 30
        want = io_queues or 31
        if attach:
            dw0 = self.get_features(spec.FEAT_NUM_QUEUES)
            nsqa, ncqa = (dw0 & 0xFFFF) + 1, (dw0 >> 16) + 1
        else:
            nsqa, ncqa = self.set_num_queues(want)
        self.io_queues = min(nsqa, ncqa) if attach else min(nsqa, ncqa, want)
        self._free_qids = list(range(self.io_queues, 0, -1))
        self.qpairs: dict[int, object] = {}
        self.namespaces = {nsid: self.identify_namespace(nsid) for nsid in self.active_nsids()}

    # -- registers ---------------------------------------------------------------------------

    def _read32(self, off: int) -> int:
        return self.regs32[off // 4]

    def _write32(self, off: int, value: int) -> None:
        self.regs32[off // 4] = value & 0xFFFFFFFF

    def _read64(self, off: int) -> int:
        return self.regs32[off // 4] | (self.regs32[off // 4 + 1] << 32)

    def _write64(self, off: int, value: int) -> None:
        self.regs32[off // 4] = value & 0xFFFFFFFF
        self.regs32[off // 4 + 1] = value >> 32

    def doorbell(self, qid: int, cq: bool) -> memoryview:
        off = spec.DOORBELL_BASE + (2 * qid + int(cq)) * self.dstrd
        return self.bar[off: off + 4].cast("I")

    def _wait_csts(self, mask: int, value: int, what: str) -> None:
        """Wait until ``CSTS & mask == value``, bounded by CAP.TO."""
        deadline = time.monotonic() + self.timeout
        while True:
            csts = self._read32(spec.REG_CSTS)
            if csts & mask == value:
                return
            if value and csts & spec.CSTS_CFS:
                raise NvmeTimeout(f"{what}: the controller reported a fatal status (CSTS.CFS)")
            if time.monotonic() > deadline:
                raise NvmeTimeout(f"{what}: CSTS {csts:#x} did not reach {value:#x} within "
                                  f"CAP.TO ({self.timeout:g} s); is the device engine running?")
            time.sleep(0.0005)

    # -- bring-up ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Disable, set up the admin queue pair, enable (controller reset)."""
        with self.device.exclusive():
            self._reset()

    def _reset(self) -> None:
        self._write32(spec.REG_CC, self._read32(spec.REG_CC) & ~spec.CC_EN)
        self._wait_csts(spec.CSTS_RDY, 0, "disable")
        if self.admin_sq is None:
            sq_mem = self.device.dma_alloc(ADMIN_DEPTH * spec.SQE_SIZE)
            cq_mem = self.device.dma_alloc(ADMIN_DEPTH * spec.CQE_SIZE)
            self.admin_sq = SubmissionQueue(0, ADMIN_DEPTH, sq_mem, self.doorbell(0, False))
            self.admin_cq = CompletionQueue(0, ADMIN_DEPTH, cq_mem, self.doorbell(0, True))
        assert self.admin_cq is not None
        self.admin_sq.tail = self.admin_sq.head = 0
        self.admin_cq.head, self.admin_cq.phase = 0, 1
        self.admin_cq.view[:] = bytes(len(self.admin_cq.view))
        self._write32(spec.REG_AQA, (ADMIN_DEPTH - 1) | ((ADMIN_DEPTH - 1) << 16))
        self._write64(spec.REG_ASQ, self.admin_sq.mem.ioaddr)
        self._write64(spec.REG_ACQ, self.admin_cq.mem.ioaddr)
        self._write32(spec.REG_CC, spec.CC_IOSQES | spec.CC_IOCQES | spec.CC_EN)
        self._wait_csts(spec.CSTS_RDY, spec.CSTS_RDY, "enable")

    def _attach_admin(self) -> None:
        """Join the admin queue pair another process set up (registers tell where)."""
        if not self._read32(spec.REG_CSTS) & spec.CSTS_RDY:
            raise IllegalOperation("cannot attach: the controller is not enabled (CSTS.RDY=0);"
                                   " bring it up in one process first")
        aqa = self._read32(spec.REG_AQA)
        sq_depth, cq_depth = (aqa & 0xFFF) + 1, ((aqa >> 16) & 0xFFF) + 1
        asq, acq = self._read64(spec.REG_ASQ), self._read64(spec.REG_ACQ)
        sq_mem, cq_mem = self.device.dma_attach(asq), self.device.dma_attach(acq)
        if sq_mem.ioaddr != asq or cq_mem.ioaddr != acq:
            raise IllegalOperation("cannot attach: the admin queues do not start their buffers")
        self.admin_sq = SubmissionQueue(0, sq_depth, sq_mem, self.doorbell(0, False))
        self.admin_cq = CompletionQueue(0, cq_depth, cq_mem, self.doorbell(0, True))

    def _sync_admin(self) -> None:
        """Take up the admin queue state other processes left (under the lock): the tail
        and head are the doorbells' last values, the phase follows from the CQ memory."""
        sq, cq = self.admin_sq, self.admin_cq
        assert sq is not None and cq is not None
        sq.tail = sq.doorbell[0] % sq.depth
        cq.head = cq.doorbell[0] % cq.depth
        last = (cq.head - 1) % cq.depth
        phase = cq.view[last * spec.CQE_SIZE + 14] & 1
        cq.phase = phase if cq.head else phase ^ 1

    def shutdown(self) -> None:
        """Normal shutdown (CC.SHN = 01b), waiting for CSTS.SHST = complete."""
        self._write32(spec.REG_CC, self._read32(spec.REG_CC) | spec.CC_SHN_NORMAL)
        self._wait_csts(spec.CSTS_SHST_MASK, spec.CSTS_SHST_COMPLETE, "shutdown")

    # -- admin commands --------------------------------------------------------------------------

    def next_cid(self) -> int:
        self._cid = (self._cid + 1) & 0xFFFF
        return self._cid

    def admin(self, opcode: int, what: str, *, nsid: int = 0, prp1: int = 0, prp2: int = 0,
              cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0,
              cdw14: int = 0, cdw15: int = 0, check: bool = True) -> Completion:
        """Submit an admin command and wait for its completion (bounded by CAP.TO)."""
        with self.device.exclusive():  # the admin queue may be shared between processes
            self._sync_admin()
            return self._admin(opcode, what, nsid, prp1, prp2, cdw10, cdw11, cdw12, cdw13,
                               cdw14, cdw15, check)

    def _admin(self, opcode: int, what: str, nsid: int, prp1: int, prp2: int, cdw10: int,
               cdw11: int, cdw12: int, cdw13: int, cdw14: int, cdw15: int,
               check: bool) -> Completion:
        sq, cq = self.admin_sq, self.admin_cq
        assert sq is not None and cq is not None
        cid = self.next_cid()
        sq.push(spec.sqe(opcode, cid, nsid, prp1, prp2, cdw10, cdw11, cdw12, cdw13, cdw14,
                         cdw15))
        sq.ring()
        deadline = time.monotonic() + self.timeout
        spins = 0
        while True:
            c = cq.pop()
            if c is not None:
                cq.ring()
                sq.head = c.sqhd
                if c.cid != cid:
                    log.warning("ub_admin_cid: completion for cid %d while waiting for %d",
                                c.cid, cid)
                    continue
                if check and not c.ok:
                    raise NvmeError(what, c.sct, c.sc, c.dnr)
                return c
            spins += 1
            if spins > 200:
                if time.monotonic() > deadline:
                    raise NvmeTimeout(f"admin command {what} (opcode {opcode:#04x}, cid {cid}) "
                                      f"did not complete within {self.timeout:g} s")
                time.sleep(0)

    def _identify(self, cns: int, nsid: int = 0, what: str = "") -> bytes:
        buf = self.scratch()
        self.admin(spec.ADM_IDENTIFY, what or f"Identify CNS {cns}", nsid=nsid,
                   prp1=buf.ioaddr, cdw10=cns)
        return bytes(buf.view[:4096])

    def scratch(self) -> DmaBuffer:
        if not hasattr(self, "_scratch"):
            self._scratch = self.device.dma_alloc(PAGE)
        return self._scratch

    def identify_controller(self) -> ControllerInfo:
        return parse_identify_controller(self._identify(1, what="Identify Controller"))

    def identify_namespace(self, nsid: int) -> NamespaceInfo:
        return parse_identify_namespace(nsid, self._identify(0, nsid, f"Identify NS {nsid}"))

    def active_nsids(self) -> list[int]:
        raw = self._identify(2, 0, "Identify active NSIDs")
        ids = struct.unpack_from("<1024I", raw)
        return [i for i in ids if i]

    def set_num_queues(self, count: int) -> tuple[int, int]:
        """Set Features Number of Queues; returns the (NSQA, NCQA) granted (1-based)."""
        c = self.admin(spec.ADM_SET_FEATURES, "Set Features (Number of Queues)",
                       cdw10=spec.FEAT_NUM_QUEUES, cdw11=(count - 1) | ((count - 1) << 16))
        return (c.dw0 & 0xFFFF) + 1, (c.dw0 >> 16) + 1

    def get_features(self, fid: int) -> int:
        return self.admin(spec.ADM_GET_FEATURES, f"Get Features {fid:#x}", cdw10=fid).dw0

    def get_log_page(self, lid: int, size: int = 512) -> bytes:
        buf = self.scratch()
        numd = size // 4 - 1
        self.admin(spec.ADM_GET_LOG_PAGE, f"Get Log Page {lid:#x}", nsid=0xFFFFFFFF,
                   prp1=buf.ioaddr, cdw10=lid | ((numd & 0xFFFF) << 16), cdw11=numd >> 16)
        return bytes(buf.view[:size])

    # -- queue pairs ---------------------------------------------------------------------------

    def alloc_qid(self) -> int:
        if not self._free_qids:
            raise IllegalOperation(f"all {self.io_queues} I/O queue pairs are in use")
        return self._free_qids.pop()

    def release_qid(self, qid: int) -> None:
        self._free_qids.append(qid)

    def create_io_queues(self, qid: int, depth: int, sq_mem: DmaBuffer, cq_mem: DmaBuffer,
                         vector: int | None = None) -> None:
        if not 2 <= depth <= self.mqes:
            raise IllegalParameter(f"queue depth {depth}; expected 2..{self.mqes} (CAP.MQES)")
        ien = vector is not None
        self.admin(spec.ADM_CREATE_CQ, f"Create I/O CQ {qid}", prp1=cq_mem.ioaddr,
                   cdw10=qid | ((depth - 1) << 16),
                   cdw11=1 | (int(ien) << 1) | ((vector or 0) << 16))
        try:
            self.admin(spec.ADM_CREATE_SQ, f"Create I/O SQ {qid}", prp1=sq_mem.ioaddr,
                       cdw10=qid | ((depth - 1) << 16), cdw11=1 | (qid << 16))
        except NvmeError:
            self.admin(spec.ADM_DELETE_CQ, f"Delete I/O CQ {qid}", cdw10=qid, check=False)
            raise

    def delete_io_queues(self, qid: int) -> None:
        self.admin(spec.ADM_DELETE_SQ, f"Delete I/O SQ {qid}", cdw10=qid)
        self.admin(spec.ADM_DELETE_CQ, f"Delete I/O CQ {qid}", cdw10=qid)

    def close(self, *, shutdown: bool | None = None) -> None:
        """Delete this process's queue pairs; shut the controller down unless attached."""
        for qp in list(self.qpairs.values()):
            qp.close()  # type: ignore[attr-defined]
        if shutdown is None:
            shutdown = not self.attached
        if shutdown:
            try:
                self.shutdown()
            except NvmeTimeout as e:
                log.warning("err_shutdown: %s", e)
        self._release_views()
        self.device.close()

    def _release_views(self) -> None:
        for q in (self.admin_sq, self.admin_cq):
            if q is not None:
                q.release()
        self.regs32.release()


__all__ = ["Controller", "ControllerInfo", "NamespaceInfo"]
