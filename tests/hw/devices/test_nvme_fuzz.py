"""Fuzzing the NVMe controller: random register writes, doorbells and SQEs never raise,
never wedge (a reset controller still answers Identify) and never write outside memory."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartio.hw.devices.nvme import NvmeController

DMA_LO, DMA_HI = 1 << 20, 3 << 20  # the FakeContext DMA window (conftest.py)
PARAMS = {"capacity": 1 << 20, "io_queues": 3, "mqes": 63, "mdts": 3}
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
window_addr = st.integers(DMA_LO, DMA_HI - 1)
page_addr = window_addr.map(lambda a: a & ~0xFFF)
addr = st.one_of(page_addr, window_addr, u64, st.just(0))
small = st.integers(0, 70)
edge16 = st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64, 255, 256, 0x8000,
                          0xFFFE, 0xFFFF])
edge_dword = st.builds(lambda lo, hi: lo | hi << 16, edge16, edge16)

reg_offsets = st.sampled_from([0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24,
                               0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C, 0x40, 0x800, 0xFFC])
reg_values = st.one_of(u32, small, page_addr, st.sampled_from(
    [0x460001, 0x464001, 0x468001, 0x460000, 0x1F001F, 0x00070007, 0x460011, 0x460381]))
reg_write = st.tuples(st.just("reg"), reg_offsets, reg_values)
db_write = st.tuples(st.just("db"), st.integers(0, 12), st.one_of(small, u32))
other = st.sampled_from([("poll",), ("enable",), ("clock",), ("flr",)])
ops = st.lists(st.one_of(reg_write, db_write, other), max_size=40)

known_opcodes = st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0A, 0x0C])
opcodes = st.one_of(known_opcodes, known_opcodes, known_opcodes, st.integers(0, 255))
sqe = st.fixed_dictionaries({
    "opcode": opcodes,
    "fuse": st.integers(0, 15).map(lambda x: 1 if x == 15 else 0),
    "psdt": st.integers(0, 15).map(lambda x: 2 if x == 15 else 0),
    "nsid": st.one_of(st.sampled_from([0, 1, 1, 2, 0xFFFFFFFF]), u32),
    "prp1": addr, "prp2": addr,
    # Low halves are QIDs/CNS/FIDs/LIDs/flags, high halves sizes/vectors/CQIDs: edges.
    "cdw10": st.one_of(small, u32, edge_dword),
    "cdw11": st.one_of(small, u32, edge_dword),
    "cdw12": st.one_of(small, u32, edge_dword),
    "cdw13": st.one_of(st.just(0), u32),
})


def _recover_and_identify(host, ctx, ctrl):
    """Controller reset by CC.EN=0, re-enable, and a valid Identify must complete."""
    host.disable()
    assert host.enable() == 1, f"CSTS={host.r32(0x1C):#x}"
    cqe, data = host.identify(1)
    assert cqe.ok and data[512] == 0x66
    assert ctx.canaries_intact()
    # The MSI-X area past the advertised vectors is never written by the model.
    assert ctx.bar0[0x2000 + 16 * ctrl.msix_vectors: 0x3000] == bytes(
        0x1000 - 16 * ctrl.msix_vectors)


@FUZZ
@given(script=ops, media=st.sampled_from(["ram", "nand"]))
def test_random_register_and_doorbell_writes(nvme_kit, script, media):
    """Random register/doorbell writes, enables and resets never raise or wedge the controller."""
    Ctx, Host = nvme_kit
    ctx = Ctx()
    ctrl = NvmeController(ctx, {**PARAMS, "media": media})
    host = Host(ctrl, ctx)
    try:
        for op in script:
            if op[0] == "reg":
                host.w32(op[1], op[2])
            elif op[0] == "db":
                host.w32(0x1000 + 4 * op[1], op[2])
            elif op[0] == "enable":
                host.q.clear()
                host.enable()
            elif op[0] == "clock":
                ctx.now += 50_000
            elif op[0] == "flr":
                ctrl.reset()
            ctrl.poll()
        for _ in range(3):
            ctrl.poll()
        ctrl.reset()
        host.q.clear()
        _recover_and_identify(host, ctx, ctrl)
    finally:
        ctrl.close()


@FUZZ
@given(admin=st.lists(sqe, max_size=12), io=st.lists(sqe, max_size=12),
       media=st.sampled_from(["ram", "optane", "nand"]))
def test_random_sqes(nvme_kit, admin, io, media):
    """Random admin and I/O SQEs complete or fail as data; the controller recovers after a reset."""
    Ctx, Host = nvme_kit
    ctx = Ctx()
    ctrl = NvmeController(ctx, {**PARAMS, "media": media})
    host = Host(ctrl, ctx)
    try:
        assert host.enable(entries=16) == 1
        host.create_io_queue(1, entries=16)
        for i in range(max(len(admin), len(io))):
            if i < len(admin):
                host.submit(0, **admin[i])
            if i < len(io):
                host.submit(1, **io[i])
            ctrl.poll()
            ctx.now += 30_000
            host.reap(0, polls=1)
            host.reap(1, polls=1)
        for _ in range(20):
            ctx.now += 100_000
            ctrl.poll()
            host.reap(0, polls=0)
            host.reap(1, polls=0)
        _recover_and_identify(host, ctx, ctrl)
    finally:
        ctrl.close()


def test_idle_poll_is_cheap(nvme):
    """20,000 idle polls of an enabled controller with I/O queues take well under a second."""
    nvme.create_io_queue(1)
    nvme.create_io_queue(2)
    nvme.poll()
    t = time.perf_counter()
    for _ in range(20_000):
        nvme.ctrl.poll()
    assert time.perf_counter() - t < 1.0
