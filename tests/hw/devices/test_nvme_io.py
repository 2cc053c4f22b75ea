"""NVMe I/O: Read/Write/Flush/Write Zeroes/DSM, PRPs (§1.4–1.5), CQ phase and arbitration (§1.6)."""

from __future__ import annotations

import os
import struct

import pytest

from smartio.hw.devices.nvme import State

READ, WRITE, FLUSH, WRITE_ZEROES, DSM = 0x02, 0x01, 0x00, 0x08, 0x09
PAGE = 4096


def status(cqe):
    return (cqe.sct, cqe.sc, cqe.dnr)


@pytest.fixture
def io(nvme):
    """An enabled controller with I/O queue pair 1 (64 entries)."""
    nvme.create_io_queue(1)
    return nvme


def _fill(host, addr, data):
    host.ctx.mem[addr: addr + len(data)] = data


def _write(host, slba, data, **kw):
    buf = host.alloc(len(data))
    _fill(host, buf, data)
    prp1, prp2 = host.prps(buf, len(data))
    return host.cmd(1, WRITE, nsid=1, prp1=prp1, prp2=prp2, cdw10=slba,
                    cdw12=len(data) // 512 - 1, **kw)


def _read(host, slba, nbytes):
    buf = host.alloc(nbytes)
    prp1, prp2 = host.prps(buf, nbytes)
    cqe = host.cmd(1, READ, nsid=1, prp1=prp1, prp2=prp2, cdw10=slba, cdw12=nbytes // 512 - 1)
    return cqe, bytes(host.ctx.mem[buf: buf + nbytes])


def test_write_then_read_round_trip(io):
    """Data written through PRP1 reads back identically; SQID/SQHD are reported."""
    data = os.urandom(PAGE)
    cqe = _write(io, 10, data)
    assert cqe.ok and cqe.sqid == 1 and cqe.sqhd == 1
    cqe, back = _read(io, 10, PAGE)
    assert cqe.ok and back == data and cqe.sqhd == 2
    assert io.ctrl.namespaces[1].view[10 * 512: 10 * 512 + PAGE] == data


def test_prp1_offset_with_prp2_data_pointer(io):
    """An unaligned 4 KiB transfer uses PRP1 to the page end and PRP2 as the second page."""
    data = os.urandom(PAGE)
    pages = io.alloc(3 * PAGE)
    prp1, prp2 = pages + 0x200, pages + 2 * PAGE
    _fill(io, prp1, data[: PAGE - 0x200])
    _fill(io, prp2, data[PAGE - 0x200:])
    assert io.cmd(1, WRITE, nsid=1, prp1=prp1, prp2=prp2, cdw12=7).ok
    assert _read(io, 0, PAGE)[1] == data


def test_prp_list_scattered_pages(io):
    """A 64 KiB read scatters into 16 non-contiguous pages named by a PRP list."""
    data = os.urandom(16 * PAGE)
    assert _write(io, 0, data).ok
    region = io.alloc(40 * PAGE)
    pages = [region + (2 * i + 1) * PAGE for i in range(16)]  # every other page
    plist = io.alloc(PAGE)
    _fill(io, plist, struct.pack("<15Q", *pages[1:]))
    assert io.cmd(1, READ, nsid=1, prp1=pages[0], prp2=plist, cdw12=127).ok
    mem = io.ctx.mem
    assert b"".join(bytes(mem[p: p + PAGE]) for p in pages) == data
    assert mem[region: region + PAGE] == bytes(PAGE)  # the gaps were not written


def test_prp_list_chains_across_list_pages(io):
    """A PRP list starting near a page end chains through its last entry to the next list page."""
    data = os.urandom(16 * PAGE)
    src = io.alloc(16 * PAGE)
    _fill(io, src, data)
    lists = io.alloc(2 * PAGE)
    first = lists + PAGE - 4 * 8  # room for 4 entries: 3 data + 1 chain
    second = lists + PAGE
    pages = [src + i * PAGE for i in range(16)]
    _fill(io, first, struct.pack("<4Q", pages[1], pages[2], pages[3], second))
    _fill(io, second, struct.pack("<12Q", *pages[4:]))
    assert io.cmd(1, WRITE, nsid=1, prp1=pages[0], prp2=first, cdw12=127).ok
    assert _read(io, 0, 16 * PAGE)[1] == data


def test_prp_with_8k_memory_pages(make_nvme):
    """With CC.MPS = 1 (8 KiB pages) a 16 KiB transfer is PRP1 + PRP2 data pointer."""
    host = make_nvme(mps=1)
    host.create_io_queue(1)
    data = os.urandom(4 * PAGE)
    a, b = host.alloc(8192, 8192), host.alloc(8192, 8192)
    _fill(host, a, data[:8192])
    _fill(host, b, data[8192:])
    assert host.cmd(1, WRITE, nsid=1, prp1=a, prp2=b, cdw12=31).ok
    assert bytes(host.ctrl.namespaces[1].view[: 4 * PAGE]) == data


@pytest.mark.parametrize("case", ["prp1_unaligned", "prp2_offset", "entry_offset",
                                  "chain_offset"])
def test_prp_offset_invalid(io, case):
    """PRP violations are PRP Offset Invalid (0/13h, DNR)."""
    src = io.alloc(16 * PAGE)
    lists = io.alloc(2 * PAGE)
    prp1, prp2, nlb = src, src + PAGE, 15  # 8 KiB: PRP2 is a data pointer
    if case == "prp1_unaligned":
        prp1 = src + 2
    elif case == "prp2_offset":
        prp2 = src + PAGE + 0x10
    elif case == "entry_offset":
        nlb, prp2 = 127, lists
        _fill(io, lists, struct.pack("<15Q", *[src + i * PAGE + 8 for i in range(1, 16)]))
    elif case == "chain_offset":
        nlb, prp2 = 127, lists + PAGE - 16
        _fill(io, prp2, struct.pack("<2Q", src + PAGE, lists + PAGE + 8))
    cqe = io.cmd(1, WRITE, nsid=1, prp1=prp1, prp2=prp2, cdw12=nlb)
    assert status(cqe) == (0, 0x13, True)


def test_unreadable_prp_list_is_data_transfer_error(io):
    """A PRP list outside host memory is a Data Transfer Error (0/04h)."""
    cqe = io.cmd(1, WRITE, nsid=1, prp1=io.alloc(PAGE), prp2=0x10_0000_0000, cdw12=31)
    assert (cqe.sct, cqe.sc) == (0, 0x04)


@pytest.mark.parametrize("where", ["below_window", "failing_path"])
def test_failed_read_dma_touches_nothing_else(io, where):
    """A Read whose buffer DMA fails completes with 0/04h and writes no other memory."""
    assert _write(io, 0, b"\x11" * PAGE).ok
    if where == "below_window":
        target = 0x8000  # host memory the device cannot reach (canaries)
    else:
        target = io.alloc(PAGE)
        io.ctx.fail.append((target, target + PAGE))
    cid = io.submit(1, READ, nsid=1, prp1=target, cdw12=7)
    before = bytes(io.ctx.mem)
    cqe = io.reap(1)
    assert cqe.cid == cid and (cqe.sct, cqe.sc) == (0, 0x04)
    assert io.ctx.canaries_intact()
    cq = io.q[1].cq_base
    changed = [i for i in range(len(before)) if before[i] != io.ctx.mem[i]]
    assert all(cq <= i < cq + 64 * 16 for i in changed)  # only the CQE itself
    assert io.ctrl.state is State.READY


def test_failed_write_dma_is_data_transfer_error(io):
    """A Write whose source cannot be read is a Data Transfer Error; the controller stays ready."""
    cqe = io.cmd(1, WRITE, nsid=1, prp1=DMA_BELOW, cdw12=0)
    assert (cqe.sct, cqe.sc) == (0, 0x04)
    assert _read(io, 0, 512)[0].ok


DMA_BELOW = 0x1000


@pytest.mark.parametrize("slba,nlb", [(2047, 1), (2048, 0), (0xFFFF_FFFF_FFFF_FFFF, 1),
                                      (0xFFFF_FFFF_FFFF_FF00, 0xFF)])
def test_lba_out_of_range(io, slba, nlb):
    """SLBA + NLB beyond NSZE, including a 64-bit wrap, is LBA Out of Range (0/80h, DNR)."""
    cqe = io.cmd(1, READ, nsid=1, prp1=io.alloc(2 * PAGE), prp2=0,
                 cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32, cdw12=nlb)
    assert status(cqe) == (0, 0x80, True)


def test_last_block_is_in_range(io):
    """The last block of the namespace can be written and read."""
    assert _write(io, 2047, b"\x42" * 512).ok
    assert _read(io, 2047, 512)[1] == b"\x42" * 512


def test_transfer_beyond_mdts_is_invalid_field(make_nvme):
    """A transfer larger than 2^MDTS pages is Invalid Field (0/02h, DNR); exactly MDTS is fine."""
    host = make_nvme(params={"mdts": 2})  # 16 KiB
    host.create_io_queue(1)
    buf = host.alloc(8 * PAGE)
    plist = host.alloc(PAGE)
    _fill(host, plist, struct.pack("<7Q", *[buf + i * PAGE for i in range(1, 8)]))
    assert host.cmd(1, READ, nsid=1, prp1=buf, prp2=plist, cdw12=31).ok
    assert status(host.cmd(1, READ, nsid=1, prp1=buf, prp2=plist, cdw12=32)) == (0, 0x02, True)


@pytest.mark.parametrize("opcode", [READ, WRITE, WRITE_ZEROES, DSM, FLUSH])
@pytest.mark.parametrize("nsid", [0, 2, 0xFFFFFFFF])
def test_invalid_namespace(io, opcode, nsid):
    """A bad NSID is Invalid Namespace (0/0Bh, DNR), except Flush to all namespaces."""
    cqe = io.cmd(1, opcode, nsid=nsid, prp1=io.alloc(PAGE))
    if opcode == FLUSH and nsid == 0xFFFFFFFF:
        assert cqe.ok
    else:
        assert status(cqe) == (0, 0x0B, True)


def test_flush_one_namespace(io):
    """Flush of an active namespace succeeds."""
    assert io.cmd(1, FLUSH, nsid=1).ok


@pytest.mark.parametrize("field,value", [("psdt", 1), ("fuse", 1)])
def test_io_psdt_or_fuse_is_invalid_field(io, field, value):
    """SGL (PSDT != 0) or fused I/O commands are Invalid Field (SGLS = 0, FUSES = 0)."""
    cqe = io.cmd(1, READ, nsid=1, prp1=io.alloc(PAGE), **{field: value})
    assert status(cqe) == (0, 0x02, True)


@pytest.mark.parametrize("opcode", [0x04, 0x05, 0x0C, 0x11, 0x80])
def test_unknown_io_opcode(io, opcode):
    """An opcode missing from the I/O table is Invalid Opcode (0/01h, DNR)."""
    assert status(io.cmd(1, opcode, nsid=1)) == (0, 0x01, True)


def test_write_zeroes(io):
    """Write Zeroes clears exactly its range; out of range is 0/80h."""
    assert _write(io, 0, b"\xee" * (4 * 512)).ok
    assert io.cmd(1, WRITE_ZEROES, nsid=1, cdw10=1, cdw12=1 | 1 << 25).ok
    back = _read(io, 0, 4 * 512)[1]
    assert back == b"\xee" * 512 + bytes(1024) + b"\xee" * 512
    assert status(io.cmd(1, WRITE_ZEROES, nsid=1, cdw10=2047, cdw12=1)) == (0, 0x80, True)


def test_dataset_management_deallocate_reads_zeros(io):
    """DSM with AD deallocates each range (reads back zeros); without AD it changes nothing."""
    assert _write(io, 0, b"\x77" * (8 * 512)).ok
    ranges = io.alloc(PAGE)
    _fill(io, ranges, struct.pack("<IIQ", 0, 2, 1) + struct.pack("<IIQ", 0, 1, 6))
    assert io.cmd(1, DSM, nsid=1, prp1=ranges, cdw10=1).ok  # no AD: hints only
    assert _read(io, 0, 8 * 512)[1] == b"\x77" * (8 * 512)
    assert io.cmd(1, DSM, nsid=1, prp1=ranges, cdw10=1, cdw11=1 << 2).ok
    back = _read(io, 0, 8 * 512)[1]
    assert back == (b"\x77" * 512 + bytes(1024) + b"\x77" * (3 * 512) + bytes(512)
                    + b"\x77" * 512)
    _fill(io, ranges, struct.pack("<IIQ", 0, 4, 2046))
    assert status(io.cmd(1, DSM, nsid=1, prp1=ranges, cdw10=0, cdw11=4)) == (0, 0x80, True)


def test_phase_inverts_when_the_cq_wraps(nvme):
    """A 4-entry CQ posts phase 1 on the first pass and phase 0 after the tail wraps."""
    nvme.create_io_queue(1, entries=4)
    buf = nvme.alloc(512)
    phases = []
    for _ in range(10):
        cqe = nvme.cmd(1, READ, nsid=1, prp1=buf)
        assert cqe.ok
        phases.append(cqe.word & 1)
    assert phases == [1, 1, 1, 1, 0, 0, 0, 0, 1, 1]


def test_full_cq_holds_completions_until_head_moves(nvme):
    """With the CQ full (tail+1 == head) nothing is posted until the head doorbell frees slots."""
    nvme.create_io_queue(1, entries=4)  # SQ and CQ of 4: three usable CQ slots
    nvme.create_io_queue(2, entries=16, cqid=1)  # a deeper SQ on the same CQ
    buf = nvme.alloc(512)
    cids = [nvme.submit(2, READ, nsid=1, prp1=buf) for _ in range(6)]
    nvme.poll(10)
    cq = nvme.q[1].cq_base
    mem = nvme.ctx.mem
    words = [struct.unpack_from("<H", mem, cq + 16 * i + 14)[0] & 1 for i in range(4)]
    assert words == [1, 1, 1, 0]  # three posted, the fourth slot still empty
    assert len(nvme.ctrl.cqs[1].waiting) == 3
    got = [nvme.reap(1, polls=0, ring=False) for _ in range(3)]
    assert [c.cid for c in got] == cids[:3]
    nvme.poll(5)
    assert nvme.peek(1) is None  # head not rung yet: still held
    nvme.ring_cq(1)
    got = [nvme.reap(1) for _ in range(3)]
    assert [c.cid for c in got] == cids[3:]
    assert [c.word & 1 for c in got] == [1, 0, 0]


def test_round_robin_between_sqs(nvme):
    """With arbitration burst 1, two busy SQs sharing a CQ alternate; burst 8 takes 8 from each."""
    nvme.create_io_queue(1, entries=64)
    nvme.create_io_queue(2, entries=64, cqid=1)
    buf = nvme.alloc(512)
    assert nvme.admin(0x09, cdw10=0x01, cdw11=0).ok  # AB = 0: one command per SQ per round
    for qid in (1, 2):
        for _ in range(4):
            nvme.submit(qid, READ, nsid=1, prp1=buf)
    order = [nvme.reap(1).sqid for _ in range(8)]
    assert order == [1, 2] * 4
    assert nvme.admin(0x09, cdw10=0x01, cdw11=3).ok  # AB = 3: bursts of 8
    for qid in (1, 2):
        for _ in range(16):
            nvme.submit(qid, READ, nsid=1, prp1=buf, ring=False)
        nvme.ring_sq(qid)
    order = [nvme.reap(1).sqid for _ in range(32)]
    assert order == [1] * 8 + [2] * 8 + [1] * 8 + [2] * 8


def test_interrupts_follow_ien_and_vector(nvme):
    """A CQ with IEN=1 signals its vector once per poll; IEN=0 never signals."""
    nvme.create_io_queue(1, iv=3)
    nvme.create_io_queue(2, ien=False)
    buf = nvme.alloc(512)
    nvme.ctx.interrupts.clear()
    nvme.submit(1, READ, nsid=1, prp1=buf, ring=False)
    nvme.submit(1, READ, nsid=1, prp1=buf)
    nvme.poll()
    assert nvme.ctx.interrupts == [3]
    nvme.ctx.interrupts.clear()
    assert nvme.cmd(2, READ, nsid=1, prp1=buf).ok
    assert nvme.ctx.interrupts == []


def test_cqe_status_word_is_written_last(io):
    """Each CQE is two stores: bytes 0–13 first, then the 2-byte status/phase word."""
    io.ctx.writes.clear()
    _read(io, 0, 512)
    cq = io.q[1].cq_base
    cqe_writes = [(a, n) for a, n in io.ctx.writes if cq <= a < cq + 64 * 16]
    assert cqe_writes == [(cq, 14), (cq + 14, 2)]


def test_sqe_fetch_failure_sets_cfs(io):
    """If the SQE fetch DMA fails (Bus Master off) the controller sets CSTS.CFS."""
    io.ctx.bme = False
    io.submit(1, READ, nsid=1, prp1=io.alloc(512))
    io.poll(2)
    assert io.r32(0x1C) & 0b10
    assert io.ctrl.state is State.FAILED
    io.ctx.bme = True
    assert io.disable() == 0
    assert io.enable() == 1
    assert io.identify(1)[0].ok


def test_cqe_post_failure_sets_cfs(io):
    """If a CQE cannot be written the controller sets CSTS.CFS and posts nothing more."""
    cq = io.q[1].cq_base
    io.ctx.fail.append((cq, cq + 64 * 16))
    io.submit(1, READ, nsid=1, prp1=io.alloc(512))
    io.poll(2)
    assert io.r32(0x1C) & 0b10 and io.ctrl.state is State.FAILED
    assert io.ctx.canaries_intact()


def test_batched_submissions_complete_in_order(io):
    """Many SQEs rung with one doorbell all complete, each with its CID, in submission order."""
    buf = io.alloc(512)
    cids = [io.submit(1, READ, nsid=1, prp1=buf, ring=False) for _ in range(40)]
    io.ring_sq(1)
    got = [io.reap(1).cid for _ in range(40)]
    assert got == cids
