"""Host writes that land while a poll is running (the BAR is shared memory, not trapped).

The device engine polls in its own process while the driver keeps storing to BAR0, so a
store can land between two steps of one poll. Such a store must be applied by this poll
or the next, never taken for a write to a nonexistent queue or to reserved space (which
would drop it: a doorbell ring lost for good, a command that never completes).
"""

from __future__ import annotations

import logging

import pytest

READ, WRITE, IDENTIFY = 0x02, 0x01, 0x06
CC, CSTS = 0x14, 0x1C


def _submit(host, qid: int, ring: bool) -> int:
    """One command on ``qid`` whose completion needs no data check (Identify or Write)."""
    if qid == 0:
        return host.submit(0, IDENTIFY, ring=ring, prp1=host.alloc(4096), cdw10=1)
    return host.submit(qid, WRITE, ring=ring, nsid=1, prp1=host.alloc(4096), cdw12=7)


@pytest.mark.parametrize("qid", [0, 1])
def test_sq_doorbell_landing_after_the_queue_scan_is_not_lost(nvme, caplog, qid):
    """The driver reaps a CQE, rings the CQ head, then rings the SQ tail; the poll that
    sees the head write scans the SQ doorbells before the tail store lands. That store is
    an ordinary ring of an existing SQ: the next poll fetches the command."""
    if qid:
        nvme.create_io_queue(qid)
    first = _submit(nvme, qid, ring=True)
    cqe = nvme.reap(qid)  # rings the CQ head: the doorbell page differs from the shadow
    assert cqe is not None and cqe.cid == first and cqe.ok
    second = _submit(nvme, qid, ring=False)

    db = nvme.ctrl.doorbells
    real_dirty = db.dirty
    landed = []

    def dirty_after_a_late_ring() -> bool:
        if not landed:  # the host's tail store lands after the per-queue scan
            nvme.ring_sq(qid)
            landed.append(True)
        return real_dirty()

    db.dirty = dirty_after_a_late_ring  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="smartio.hw.devices.nvme"):
        nvme.poll()
        assert landed, "the poll did not look at the doorbell page"
        db.dirty = real_dirty  # type: ignore[method-assign]
        cqe = nvme.reap(qid)
    assert cqe is not None and cqe.cid == second and cqe.ok
    assert nvme.ctrl.sqs[qid].sq_tail == nvme.q[qid].sq_tail
    assert not any("nvme_ub_db_wr_invalid" in r.message for r in caplog.records)


def test_write_to_a_missing_queue_during_the_scan_is_still_invalid(nvme, caplog):
    """Skipping existing queues' doorbells leaves nonexistent ones reported as before."""
    with caplog.at_level(logging.WARNING, logger="smartio.hw.devices.nvme"):
        nvme.w32(0x1000 + 8 * 3, 1)  # SQ 3 does not exist
        nvme.w32(0x1000 + 8 * 2 + 4, 1)  # nor does CQ 2
        nvme.poll()
    assert sum("nvme_ub_db_wr_invalid_queue" in r.message for r in caplog.records) == 2
    assert not nvme.ctrl.doorbells.dirty()
    assert nvme.identify(1)[0].ok


def test_cc_write_landing_before_the_reserved_check_is_applied(make_nvme, caplog):
    """AQA/ASQ/ACQ are applied, then CC.EN lands before the reserved-space check: it is
    a register write, applied by the next poll, not a reserved write to undo."""
    host = make_nvme(enable=False)
    regs = host.ctrl.regs
    sq, cq = host.alloc(32 * 64), host.alloc(32 * 16)
    host.w32(0x24, 31 | 31 << 16)
    host.w64(0x28, sq)
    host.w64(0x30, cq)
    cc = 1 | 6 << 16 | 4 << 20

    real = regs.stray_writes
    landed = []

    def stray_after_a_late_cc() -> list[int]:
        if not landed:
            host.w32(CC, cc)
            landed.append(True)
        return real()

    regs.stray_writes = stray_after_a_late_cc  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="smartio.hw.devices.nvme"):
        host.poll()
        assert landed
        regs.stray_writes = real  # type: ignore[method-assign]
        host.poll()
    assert host.r32(CC) == cc
    assert host.r32(CSTS) & 1, "CC.EN was lost"
    assert not any("nvme_ub_mmiowr" in r.message for r in caplog.records)
