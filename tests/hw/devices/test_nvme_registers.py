"""NVMe controller registers and the enable/reset/shutdown state machine (nvme-ref §1.1–1.2)."""

from __future__ import annotations

import logging
import struct

import pytest

from smartio.errors import IllegalOperation, IllegalParameter
from smartio.hw.devices.nvme import (
    MSIX_PBA_OFFSET,
    MSIX_TABLE_OFFSET,
    NvmeController,
    State,
    msix_vectors,
)
from smartio.hw.devices.nvme.state import StateMachine

CAP, VS, INTMS, INTMC, CC, CSTS, NSSR, AQA, ASQ, ACQ, CMBLOC, CMBSZ = (
    0x00, 0x08, 0x0C, 0x10, 0x14, 0x1C, 0x20, 0x24, 0x28, 0x30, 0x38, 0x3C)


def test_cap_vs_and_power_on_values(make_nvme):
    """CAP advertises MQES, CQR, TO, DSTRD 0, CSS NVM and MPS 0..4; VS is 1.4; CSTS/CMB are 0."""
    host = make_nvme(params={"mqes": 255}, enable=False)
    cap = host.r64(CAP)
    assert cap & 0xFFFF == 255
    assert (cap >> 16) & 1 == 1
    assert (cap >> 17) & 3 == 0
    assert (cap >> 24) & 0xFF == 0x0F
    assert (cap >> 32) & 0xF == 0
    assert (cap >> 37) & 0xFF == 1
    assert (cap >> 48) & 0xF == 0 and (cap >> 52) & 0xF == 4
    assert host.r32(VS) == 0x00010400
    assert host.r32(CSTS) == 0 and host.r32(CC) == 0
    assert host.r32(CMBLOC) == 0 and host.r32(CMBSZ) == 0
    assert host.ctrl.state is State.DISABLED


def test_msix_layout_exported_and_masked(make_nvme):
    """MSI-X table at 0x2000 and PBA at 0x3000 with io_queues+1 vectors, all masked at reset."""
    assert MSIX_TABLE_OFFSET == 0x2000 and MSIX_PBA_OFFSET == 0x3000
    assert msix_vectors({"io_queues": 7}) == 8
    host = make_nvme(params={"io_queues": 7}, enable=False)
    assert host.ctrl.msix_vectors == 8
    for v in range(8):
        assert struct.unpack_from("<IIII", host.ctx.bar0, 0x2000 + 16 * v) == (0, 0, 0, 1)


def test_enable_sets_ready_and_logs_transition(make_nvme, caplog):
    """CC.EN 0->1 with a valid admin queue setup sets CSTS.RDY and logs DISABLED -> READY."""
    with caplog.at_level(logging.INFO, logger="smartio.hw.devices.nvme"):
        host = make_nvme()
    assert host.r32(CSTS) == 1
    assert host.ctrl.state is State.READY
    assert any("nvme_state" in r.message and "DISABLED -> READY" in r.message
               for r in caplog.records)


def test_poll_when_idle_reports_no_work(nvme):
    """An idle poll returns False (the engine may back off)."""
    nvme.poll()
    assert nvme.ctrl.poll() is False


def test_writes_before_one_poll_apply_in_fixed_order(make_nvme):
    """CC written before AQA/ASQ/ACQ in one poll window still enables with the new values."""
    host = make_nvme(enable=False)
    sq, cq = host.alloc(8 * 64), host.alloc(8 * 16)
    host.w32(CC, 1 | 6 << 16 | 4 << 20)  # the host wrote CC first ...
    host.w32(AQA, 7 | 7 << 16)  # ... then the admin queue registers
    host.w64(ASQ, sq)
    host.w64(ACQ, cq)
    host.poll()
    assert host.r32(CSTS) == 1
    assert host.ctrl.sqs[0] is not None and host.ctrl.sqs[0].size == 8
    assert host.ctrl.cqs[0] is not None and host.ctrl.cqs[0].base == cq


@pytest.mark.parametrize("case", ["asq_unaligned", "acq_unaligned", "aqa_zero", "css",
                                  "mps_too_big", "ams"])
def test_bad_enable_sets_cfs(make_nvme, caplog, case):
    """Every failed CC.EN 0->1 check sets CSTS.CFS (not RDY); clearing EN recovers."""
    host = make_nvme(enable=False)
    kw: dict = {}
    if case == "asq_unaligned":
        kw["asq"] = host.alloc(8192) + 0x200
    elif case == "acq_unaligned":
        kw["acq"] = host.alloc(8192) + 0x40
    elif case == "aqa_zero":
        kw["entries"] = 1
    elif case == "css":
        kw["cc_extra"] = 0b001 << 4
    elif case == "mps_too_big":
        kw["mps"] = 5
    elif case == "ams":
        kw["cc_extra"] = 0b001 << 11
    with caplog.at_level(logging.WARNING, logger="smartio.hw.devices.nvme"):
        csts = host.enable(**kw)
    assert csts & 0b11 == 0b10, f"CSTS={csts:#x}"
    assert host.ctrl.state is State.FAILED
    assert any(r.message.startswith("nvme_err_startfail") for r in caplog.records)
    assert host.disable() == 0
    assert host.ctrl.state is State.DISABLED
    assert host.enable() & 0b11 == 0b01


def test_enable_with_larger_page_size(make_nvme):
    """CC.MPS = 4 (64 KiB pages) is accepted and sets the page size used for PRPs."""
    host = make_nvme(mps=4)
    assert host.ctrl.page_size == 64 << 10
    cqe, data = host.identify(1)
    assert cqe.ok and data[512] == 0x66


def test_disable_frees_queues_and_zeroes_registers(nvme):
    """CC.EN 1->0 frees every queue and clears CSTS, CC, INTMS/INTMC; queues can be made again."""
    nvme.create_io_queue(1)
    nvme.w32(INTMS, 3)
    nvme.poll()
    assert nvme.disable() == 0
    assert nvme.r32(CC) == 0 and nvme.r32(INTMS) == 0 and nvme.r32(INTMC) == 0
    assert all(q is None for q in nvme.ctrl.sqs) and all(q is None for q in nvme.ctrl.cqs)
    assert nvme.ctrl.state is State.DISABLED
    assert nvme.enable() == 1
    nvme.create_io_queue(1)


def test_readonly_register_writes_are_undone(nvme, caplog):
    """Host writes to CAP, VS, CSTS, NSSR and CMBSZ are logged as ub_ and restored."""
    cap, vs, csts = nvme.r64(CAP), nvme.r32(VS), nvme.r32(CSTS)
    with caplog.at_level(logging.WARNING, logger="smartio.hw.devices.nvme"):
        for off in (CAP, CAP + 4, VS, CSTS, NSSR, CMBSZ, CMBLOC):
            nvme.w32(off, 0xDEADBEEF)
        nvme.poll()
    assert nvme.r64(CAP) == cap and nvme.r32(VS) == vs and nvme.r32(CSTS) == csts
    assert nvme.r32(NSSR) == 0 and nvme.r32(CMBSZ) == 0 and nvme.r32(CMBLOC) == 0
    assert any("nvme_ub_mmiowr_ro" in r.message for r in caplog.records)


def test_reserved_register_writes_are_undone(nvme, caplog):
    """Writes to reserved register space are logged and ignored."""
    with caplog.at_level(logging.WARNING, logger="smartio.hw.devices.nvme"):
        nvme.w32(0x18, 0x1234)
        nvme.w32(0x800, 0xFFFF)
        nvme.poll()
    assert nvme.r32(0x18) == 0 and nvme.r32(0x800) == 0
    assert sum("nvme_ub_mmiowr_reserved" in r.message for r in caplog.records) == 2
    assert nvme.r32(CSTS) == 1


def test_intms_sets_and_intmc_clears_the_mask(nvme):
    """INTMS writes set mask bits, INTMC writes clear them; both read back the mask."""
    nvme.w32(INTMS, 0b101)
    nvme.poll()
    assert nvme.r32(INTMS) == 0b101 and nvme.r32(INTMC) == 0b101
    nvme.w32(INTMC, 0b001)
    nvme.poll()
    assert nvme.r32(INTMS) == 0b100 and nvme.r32(INTMC) == 0b100


def test_shutdown_reports_complete_and_stops_fetching(nvme):
    """CC.SHN = normal sets CSTS.SHST = 10b, stops fetching; clearing EN returns to DISABLED."""
    cc = nvme.r32(CC)
    nvme.w32(CC, cc | 1 << 14)
    nvme.poll()
    assert (nvme.r32(CSTS) >> 2) & 3 == 0b10
    assert nvme.ctrl.state is State.SHUTDOWN
    nvme.submit(0, 0x06, prp1=nvme.alloc(4096), cdw10=1)
    assert nvme.reap(0, polls=5) is None
    nvme.w32(CC, cc)  # clearing SHN clears SHST
    nvme.poll()
    assert (nvme.r32(CSTS) >> 2) & 3 == 0
    assert nvme.disable() == 0
    assert nvme.ctrl.state is State.DISABLED


def test_abrupt_shutdown_also_completes(nvme):
    """CC.SHN = abrupt also reports SHST complete."""
    nvme.w32(CC, nvme.r32(CC) | 2 << 14)
    nvme.poll()
    assert (nvme.r32(CSTS) >> 2) & 3 == 0b10


def test_function_reset_returns_to_power_on(nvme):
    """reset() drops queues and registers to power-on values but keeps namespace data."""
    nvme.create_io_queue(1)
    buf = nvme.alloc(512)
    nvme.ctx.mem[buf: buf + 512] = b"\x5a" * 512
    assert nvme.cmd(1, 0x01, nsid=1, prp1=buf).ok
    struct.pack_into("<IIII", nvme.ctx.bar0, 0x2000, 0xFEE00000, 0, 0x41, 0)
    nvme.ctrl.reset()
    assert nvme.r32(CSTS) == 0 and nvme.r32(CC) == 0 and nvme.r32(AQA) == 0
    assert nvme.ctrl.state is State.DISABLED
    assert struct.unpack_from("<IIII", nvme.ctx.bar0, 0x2000) == (0, 0, 0, 1)
    nvme.q.clear()
    assert nvme.enable() == 1
    nvme.create_io_queue(1)
    out = nvme.alloc(512)
    assert nvme.cmd(1, 0x02, nsid=1, prp1=out).ok
    assert nvme.ctx.mem[out: out + 512] == b"\x5a" * 512


def test_state_machine_refuses_undeclared_transition():
    """The guarded setter refuses a transition that is not in the table."""
    fsm = StateMachine("t")
    with pytest.raises(IllegalOperation):
        fsm.move(State.SHUTDOWN, "no")


@pytest.mark.parametrize("params", [
    {"lba_size": 1000}, {"media": "tape"}, {"io_queues": 300}, {"mqes": 0},
    {"capacity": 1000}, {"serial": "x" * 21}, {"namespaces": 0}, {"backing": "file"},
    {"backing": "/nonexistent/device"},
])
def test_bad_parameters_raise(make_ctx, params):
    """Invalid topology parameters raise IllegalParameter, not a bare exception."""
    with pytest.raises(IllegalParameter):
        NvmeController(make_ctx(), {"capacity": 1 << 20, **params}, None)


def test_cmb_parameter_is_not_modelled(make_nvme, caplog):
    """A cmb size is logged as unsupported and CMBSZ stays 0 (no CMB)."""
    with caplog.at_level(logging.WARNING, logger="smartio.hw.devices.nvme"):
        host = make_nvme(params={"cmb": 1 << 20})
    assert host.r32(CMBSZ) == 0
    assert any("nvme_cmb_unsupported" in r.message for r in caplog.records)
