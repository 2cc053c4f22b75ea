"""NVM command set I/O commands (NVMe 1.4 §6; checks per nvme-reference §1.4).

:data:`IO_COMMANDS` is the dispatch table; ONCS bits come from it (Write Zeroes bit 3,
Dataset Management bit 2). QEMU's checks, all with DNR: a bad NSID is Invalid Namespace
or Format (0/0Bh); a transfer larger than MDTS is Invalid Field; SLBA + NLB beyond NSZE
is LBA Out of Range (0/80h). A failed DMA is a Data Transfer Error (0/04h); the blocks a
failed Write covered are then indeterminate, as on a real device.

Data moves at once between host memory and the namespace's backing memory (DMA straight
into the mapping); the completion is held until the media timeline says the transfer
would have finished (compute, then hold).
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

from smartio.hw.devices.nvme.commands import (
    OK,
    CommandSpec,
    Outcome,
    receive,
    refuse,
    table,
)
from smartio.hw.devices.nvme.logpages import LBCC
from smartio.hw.devices.nvme.namespace import Namespace
from smartio.hw.devices.nvme.prp import map_prp, read_host, write_host
from smartio.hw.devices.nvme.queues import Command
from smartio.hw.devices.nvme.status import Status

if TYPE_CHECKING:
    from smartio.hw.devices.nvme.controller import NvmeController

log = logging.getLogger(__name__)

NSID_BROADCAST = 0xFFFF_FFFF
FUA = 1 << 30
DSM_AD = 1 << 2  # CDW11 attribute: deallocate
DSM_RANGE = struct.Struct("<IIQ")  # context attributes, length in LBAs, starting LBA


def _namespace(ctrl: NvmeController, cmd: Command) -> Namespace | Outcome:
    ns = ctrl.namespaces.get(cmd.nsid)
    if ns is None:
        log.debug("nvme_err_invalid_nsid: opcode=%#x nsid=%#x", cmd.opcode, cmd.nsid)
        return refuse(Status.INVALID_NAMESPACE)
    return ns


def _rw(ctrl: NvmeController, cmd: Command, write: bool) -> Outcome:
    ns = _namespace(ctrl, cmd)
    if isinstance(ns, Outcome):
        return ns
    slba = cmd.cdw10 | cmd.cdw11 << 32
    nlb = (cmd.cdw12 & 0xFFFF) + 1
    nbytes = nlb << ns.lbads
    if ctrl.mdts_bytes and nbytes > ctrl.mdts_bytes:
        log.debug("nvme_err_mdts: %d bytes > %d", nbytes, ctrl.mdts_bytes)
        return refuse(Status.INVALID_FIELD)
    if not ns.in_range(slba, nlb):
        log.debug("nvme_err_lba_range: slba=%#x nlb=%d nsze=%d", slba, nlb, ns.nsze)
        return refuse(Status.LBA_OUT_OF_RANGE)
    segs = map_prp(ctrl.ctx, cmd.prp1, cmd.prp2, nbytes, ctrl.page_size)
    if isinstance(segs, int):
        return Outcome(segs)
    blocks = ns.blocks(slba, nlb)
    ok = read_host(ctrl.ctx, segs, blocks) if write else write_host(ctrl.ctx, segs, blocks)
    blocks.release()
    if write and ok:
        ns.mark_written(slba << ns.lbads, (slba + nlb) << ns.lbads)
    if not ok:
        log.debug("nvme_err_dma: %s slba=%#x", "write" if write else "read", slba)
        return Outcome(Status.DATA_TRANSFER_ERROR.value)
    smart = ctrl.smart
    if write:
        smart.write_commands += 1
        smart.bytes_written += nbytes
        if cmd.cdw12 & FUA:
            ns.flush()
    else:
        smart.read_commands += 1
        smart.bytes_read += nbytes
    if ns.timeline.profile.instant:
        return OK
    return Outcome(0, 0, ns.timeline.schedule(ctrl.ctx.now_ns(), write, nbytes))


def read(ctrl: NvmeController, cmd: Command) -> Outcome:
    return _rw(ctrl, cmd, write=False)


def write(ctrl: NvmeController, cmd: Command) -> Outcome:
    return _rw(ctrl, cmd, write=True)


def flush(ctrl: NvmeController, cmd: Command) -> Outcome:
    if cmd.nsid == NSID_BROADCAST:  # all namespaces (Identify VWC bits 2:1 = 11b)
        for each in ctrl.namespaces.values():
            each.flush()
        return OK
    ns = _namespace(ctrl, cmd)
    if isinstance(ns, Outcome):
        return ns
    ns.flush()
    return OK


def write_zeroes(ctrl: NvmeController, cmd: Command) -> Outcome:
    ns = _namespace(ctrl, cmd)
    if isinstance(ns, Outcome):
        return ns
    slba = cmd.cdw10 | cmd.cdw11 << 32
    nlb = (cmd.cdw12 & 0xFFFF) + 1
    if not ns.in_range(slba, nlb):
        log.debug("nvme_err_lba_range: write zeroes slba=%#x nlb=%d", slba, nlb)
        return refuse(Status.LBA_OUT_OF_RANGE)
    ns.zero(slba, nlb)  # DEAC or not, the blocks read back as zeros
    ctrl.smart.write_commands += 1
    return OK


def dataset_management(ctrl: NvmeController, cmd: Command) -> Outcome:
    ns = _namespace(ctrl, cmd)
    if isinstance(ns, Outcome):
        return ns
    nr = (cmd.cdw10 & 0xFF) + 1
    raw = receive(ctrl, cmd, nr * DSM_RANGE.size)
    if isinstance(raw, int):
        return Outcome(raw)
    if not cmd.cdw11 & DSM_AD:
        return OK  # integral-read/write hints only: nothing to do
    ranges = [DSM_RANGE.unpack_from(raw, i * DSM_RANGE.size) for i in range(nr)]
    for _attr, nlb, slba in ranges:
        if nlb and not ns.in_range(slba, nlb):
            log.debug("nvme_err_lba_range: dsm slba=%#x nlb=%d", slba, nlb)
            return refuse(Status.LBA_OUT_OF_RANGE)
    for _attr, nlb, slba in ranges:
        if nlb:
            ns.zero(slba, nlb)
    return OK


IO_COMMANDS: dict[int, CommandSpec] = table(
    CommandSpec(0x00, "flush", flush),
    CommandSpec(0x01, "write", write, effects=LBCC),
    CommandSpec(0x02, "read", read),
    CommandSpec(0x08, "write_zeroes", write_zeroes, effects=LBCC, oncs_bit=3),
    CommandSpec(0x09, "dataset_management", dataset_management, effects=LBCC, oncs_bit=2),
)


__all__ = ["IO_COMMANDS"]
