"""NVMe admin commands: Identify, queue management, features, log pages, Abort, AER (§1.3)."""

from __future__ import annotations

import struct

import pytest

from smartio.hw.devices.nvme.admin import ADMIN_COMMANDS
from smartio.hw.devices.nvme.nvm import IO_COMMANDS

IDENTIFY, CREATE_CQ, CREATE_SQ, DELETE_SQ, DELETE_CQ = 0x06, 0x05, 0x01, 0x00, 0x04
SET_FEATURES, GET_FEATURES, GET_LOG_PAGE, ABORT, AER = 0x09, 0x0A, 0x02, 0x08, 0x0C


def status(cqe):
    return (cqe.sct, cqe.sc, cqe.dnr)


# -- Identify -------------------------------------------------------------------------


def test_identify_controller_fields(make_nvme):
    """CNS 1 has SN, MN, FR, MDTS, VER, AERL, SQES/CQES, NN, ONCS, VWC, SGLS at spec offsets."""
    host = make_nvme(params={"namespaces": 3, "serial": "S123", "model": "M-1", "mdts": 6})
    cqe, d = host.identify(1)
    assert cqe.ok
    assert struct.unpack_from("<H", d, 0)[0] == 0x8086
    assert d[4:24] == b"S123".ljust(20) and d[24:64] == b"M-1".ljust(40)
    assert d[64:72] == b"1.0".ljust(8)
    assert d[77] == 6
    assert struct.unpack_from("<I", d, 80)[0] == 0x00010400
    assert d[111] == 1
    assert struct.unpack_from("<H", d, 256)[0] == 0  # OACS: no optional admin commands
    assert d[259] == 3  # AERL
    assert d[261] & 0x02  # LPA: commands supported and effects log
    assert d[512] == 0x66 and d[513] == 0x44
    assert struct.unpack_from("<I", d, 516)[0] == 3
    assert struct.unpack_from("<H", d, 520)[0] == 0b1100  # ONCS: DSM (2) + Write Zeroes (3)
    assert d[525] & 1
    assert struct.unpack_from("<I", d, 536)[0] == 0
    assert d[768:768 + 23] == b"nqn.2019-08.org.smartio"


@pytest.mark.parametrize("lba_size,lbads", [(512, 9), (4096, 12)])
def test_identify_namespace_fields(make_nvme, lba_size, lbads):
    """CNS 0 reports NSZE/NCAP/NUSE in blocks, one LBA format and its LBADS."""
    host = make_nvme(params={"capacity": 1 << 20, "lba_size": lba_size})
    cqe, d = host.identify(0, nsid=1)
    assert cqe.ok
    nsze = (1 << 20) // lba_size
    assert struct.unpack_from("<QQQ", d, 0) == (nsze, nsze, nsze)
    assert d[25] == 0 and d[26] == 0
    assert d[33] & 0x7 == 1  # deallocated blocks read as zeros
    assert struct.unpack_from("<HBB", d, 128) == (0, lbads, 0)


def test_identify_active_namespace_list(make_nvme):
    """CNS 2 lists the active NSIDs greater than NSID, ascending, zero-terminated."""
    host = make_nvme(params={"namespaces": 3})
    _, d = host.identify(2, nsid=0)
    assert struct.unpack_from("<4I", d, 0) == (1, 2, 3, 0)
    _, d = host.identify(2, nsid=1)
    assert struct.unpack_from("<3I", d, 0) == (2, 3, 0)
    cqe, _ = host.identify(2, nsid=0xFFFFFFFE)
    assert status(cqe) == (0, 0x0B, True)


def test_identify_descriptor_list(make_nvme):
    """CNS 3 returns EUI-64, NGUID and UUID descriptors; the NGUID matches CNS 0's."""
    host = make_nvme()
    cqe, d = host.identify(3, nsid=1)
    assert cqe.ok
    assert (d[0], d[1]) == (1, 8)
    assert (d[12], d[13]) == (2, 16)
    assert (d[32], d[33]) == (3, 16)
    _, ns = host.identify(0, nsid=1)
    assert d[16:32] == ns[104:120]
    assert d[4:12] == ns[120:128]


@pytest.mark.parametrize("cns", [0, 3])
@pytest.mark.parametrize("nsid", [0, 2, 0xFFFFFFFF])
def test_identify_invalid_nsid(nvme, cns, nsid):
    """Namespace Identify with NSID 0, > NN or broadcast is Invalid Namespace (0/0Bh, DNR)."""
    cqe, _ = nvme.identify(cns, nsid=nsid)
    assert status(cqe) == (0, 0x0B, True)


def test_identify_unknown_cns_is_invalid_field(nvme):
    """An unsupported CNS is Invalid Field (0/02h, DNR)."""
    cqe, _ = nvme.identify(0x1F)
    assert status(cqe) == (0, 0x02, True)


def test_identify_with_prp1_offset_uses_prp2(nvme):
    """A 4 KiB Identify at a PRP1 offset spills into the page PRP2 names."""
    base = nvme.alloc(3 * 4096)
    prp1, prp2 = base + 0x100, base + 2 * 4096
    cqe = nvme.admin(IDENTIFY, prp1=prp1, prp2=prp2, cdw10=1)
    assert cqe.ok
    mem = nvme.ctx.mem
    first = 4096 - 0x100
    data = bytes(mem[prp1: prp1 + first]) + bytes(mem[prp2: prp2 + 0x100])
    assert data[512] == 0x66 and data[24:36] == b"smartio NVMe"
    assert mem[base + 4096: base + 2 * 4096] == bytes(4096)  # the skipped page untouched


# -- queue management -------------------------------------------------------------------


def _create_cq(host, qid, qsize=15, prp1=None, pc=1, ien=1, iv=1):
    prp1 = host.alloc(64 * 16) if prp1 is None else prp1
    return host.admin(CREATE_CQ, prp1=prp1, cdw10=qid | qsize << 16,
                      cdw11=pc | ien << 1 | iv << 16)


def _create_sq(host, qid, cqid, qsize=15, prp1=None, pc=1):
    prp1 = host.alloc(64 * 64) if prp1 is None else prp1
    return host.admin(CREATE_SQ, prp1=prp1, cdw10=qid | qsize << 16, cdw11=pc | cqid << 16)


@pytest.mark.parametrize("case,expect", [
    ("qid0", (1, 0x01)), ("qid_too_big", (1, 0x01)), ("qid_in_use", (1, 0x01)),
    ("qsize0", (1, 0x02)), ("qsize_over_mqes", (1, 0x02)), ("prp_offset", (0, 0x13)),
    ("vector", (1, 0x08)), ("pc0", (0, 0x02)),
])
def test_create_cq_refusals(make_nvme, case, expect):
    """Create I/O CQ refuses each bad field with its exact status and DNR (QEMU order)."""
    host = make_nvme(params={"io_queues": 4, "mqes": 63})
    kw: dict = {"qid": 1}
    if case == "qid0":
        kw["qid"] = 0
    elif case == "qid_too_big":
        kw["qid"] = 5
    elif case == "qid_in_use":
        assert _create_cq(host, 1).ok
    elif case == "qsize0":
        kw["qsize"] = 0
    elif case == "qsize_over_mqes":
        kw["qsize"] = 64
    elif case == "prp_offset":
        kw["prp1"] = host.alloc(8192) + 0x80
    elif case == "vector":
        kw["iv"] = 5
    elif case == "pc0":
        kw["pc"] = 0
    assert status(_create_cq(host, **kw)) == (*expect, True)


@pytest.mark.parametrize("case,expect", [
    ("cqid0", (1, 0x00)), ("cqid_missing", (1, 0x00)), ("qid0", (1, 0x01)),
    ("qid_too_big", (1, 0x01)), ("qid_in_use", (1, 0x01)), ("qsize0", (1, 0x02)),
    ("qsize_over_mqes", (1, 0x02)), ("prp_offset", (0, 0x13)), ("pc0", (0, 0x02)),
])
def test_create_sq_refusals(make_nvme, case, expect):
    """Create I/O SQ refuses each bad field with its exact status and DNR."""
    host = make_nvme(params={"io_queues": 4, "mqes": 63})
    assert _create_cq(host, 1).ok
    kw: dict = {"qid": 1, "cqid": 1}
    if case == "cqid0":
        kw["cqid"] = 0
    elif case == "cqid_missing":
        kw["cqid"] = 2
    elif case == "qid0":
        kw["qid"] = 0
    elif case == "qid_too_big":
        kw["qid"] = 5
    elif case == "qid_in_use":
        assert _create_sq(host, 1, 1).ok
    elif case == "qsize0":
        kw["qsize"] = 0
    elif case == "qsize_over_mqes":
        kw["qsize"] = 64
    elif case == "prp_offset":
        kw["prp1"] = host.alloc(8192) + 0x40
    elif case == "pc0":
        kw["pc"] = 0
    assert status(_create_sq(host, **kw)) == (*expect, True)


def test_create_queue_needs_iosqes_iocqes(make_nvme):
    """With CC.IOSQES/IOCQES not 6/4, queue creation is Invalid Queue Size (1/02h)."""
    host = make_nvme(enable=False)
    host.enable()
    host.w32(0x14, 1)  # EN stays 1; IOSQES = IOCQES = 0
    host.poll()
    assert status(_create_cq(host, 1)) == (1, 0x02, True)


def test_delete_queues(nvme):
    """Delete SQ/CQ: QID 0 or unknown is Invalid QID; a CQ with SQs is Invalid Queue Deletion."""
    assert status(nvme.admin(DELETE_SQ, cdw10=0)) == (1, 0x01, True)
    assert status(nvme.admin(DELETE_SQ, cdw10=1)) == (1, 0x01, True)
    assert status(nvme.admin(DELETE_CQ, cdw10=0)) == (1, 0x01, True)
    assert status(nvme.admin(DELETE_CQ, cdw10=3)) == (1, 0x01, True)
    nvme.create_io_queue(1)
    assert status(nvme.admin(DELETE_CQ, cdw10=1)) == (1, 0x0C, True)
    assert nvme.admin(DELETE_SQ, cdw10=1).ok
    assert nvme.admin(DELETE_CQ, cdw10=1).ok
    assert nvme.ctrl.sqs[1] is None and nvme.ctrl.cqs[1] is None
    assert _create_cq(nvme, 1).ok  # the QID is free again


def test_delete_sq_aborts_held_commands(make_nvme):
    """Deleting an SQ completes its held (media-timed) commands with Aborted SQ Deletion (0/08h)."""
    host = make_nvme(params={"media": "nand"})
    host.create_io_queue(1)
    cid = host.submit(1, 0x02, nsid=1, prp1=host.alloc(4096), cdw12=7)
    host.poll(3)
    assert host.peek(1) is None  # held: the clock has not moved
    assert host.admin(DELETE_SQ, cdw10=1).ok
    cqe = host.reap(1)
    assert cqe is not None and cqe.cid == cid and (cqe.sct, cqe.sc) == (0, 0x08)


# -- features -------------------------------------------------------------------------------


def test_number_of_queues(make_nvme):
    """NumQ returns the fixed allocation; 0xFFFF is Invalid Field; after an I/O CQ, 0/0Ch."""
    host = make_nvme(params={"io_queues": 6})
    cqe = host.admin(SET_FEATURES, cdw10=0x07, cdw11=63 | 63 << 16)
    assert cqe.ok and cqe.dw0 == 5 | 5 << 16
    assert status(host.admin(SET_FEATURES, cdw10=0x07, cdw11=0xFFFF)) == (0, 0x02, True)
    assert status(host.admin(SET_FEATURES, cdw10=0x07, cdw11=0xFFFF << 16)) == (0, 0x02, True)
    assert host.admin(GET_FEATURES, cdw10=0x07).dw0 == 5 | 5 << 16
    assert _create_cq(host, 1).ok
    assert status(host.admin(SET_FEATURES, cdw10=0x07, cdw11=1)) == (0, 0x0C, True)


@pytest.mark.parametrize("fid,value", [(0x01, 0x00030201), (0x08, 0x0A05), (0x06, 0),
                                       (0x0B, 0x1F), (0x02, 0)])
def test_set_then_get_feature(nvme, fid, value):
    """Arbitration, Int. Coalescing, VWC, AEN config and power state are stored and read back."""
    assert nvme.admin(SET_FEATURES, cdw10=fid, cdw11=value).ok
    assert nvme.admin(GET_FEATURES, cdw10=fid).dw0 == value


def test_feature_defaults_and_capabilities(nvme):
    """Get SEL=default gives the default, SEL=supported says changeable, SEL>3 is Invalid Field."""
    nvme.admin(SET_FEATURES, cdw10=0x08, cdw11=0x1234)
    assert nvme.admin(GET_FEATURES, cdw10=0x08 | 1 << 8).dw0 == 0
    assert nvme.admin(GET_FEATURES, cdw10=0x08 | 3 << 8).dw0 == 0b100
    assert status(nvme.admin(GET_FEATURES, cdw10=0x08 | 4 << 8)) == (0, 0x02, True)


def test_feature_refusals(nvme):
    """Unknown FID, bad power state or vector is Invalid Field; SV=1 is Not Saveable (1/0Dh)."""
    assert status(nvme.admin(GET_FEATURES, cdw10=0x55)) == (0, 0x02, True)
    assert status(nvme.admin(SET_FEATURES, cdw10=0x55)) == (0, 0x02, True)
    assert status(nvme.admin(SET_FEATURES, cdw10=0x01 | 1 << 31)) == (1, 0x0D, True)
    assert status(nvme.admin(SET_FEATURES, cdw10=0x02, cdw11=1)) == (0, 0x02, True)
    assert status(nvme.admin(SET_FEATURES, cdw10=0x09, cdw11=99)) == (0, 0x02, True)
    assert status(nvme.admin(GET_FEATURES, cdw10=0x09, cdw11=99)) == (0, 0x02, True)
    assert nvme.admin(SET_FEATURES, cdw10=0x09, cdw11=2 | 1 << 16).ok
    assert nvme.admin(GET_FEATURES, cdw10=0x09, cdw11=2).dw0 == 2 | 1 << 16


def test_features_reset_on_controller_reset(nvme):
    """A controller reset returns features to their defaults."""
    nvme.admin(SET_FEATURES, cdw10=0x08, cdw11=0x77)
    nvme.disable()
    nvme.enable()
    assert nvme.admin(GET_FEATURES, cdw10=0x08).dw0 == 0


# -- log pages ---------------------------------------------------------------------------


def _log(host, lid, nbytes, offset=0, rae=0):
    buf = host.alloc(max(nbytes, 4096))
    numd = nbytes // 4 - 1
    cqe = host.admin(GET_LOG_PAGE, prp1=buf, cdw10=lid | rae << 15 | (numd & 0xFFFF) << 16,
                     cdw11=numd >> 16, cdw12=offset & 0xFFFFFFFF, cdw13=offset >> 32)
    return cqe, bytes(host.ctx.mem[buf: buf + nbytes])


def test_smart_log_counts_io(nvme):
    """SMART log (512 B) counts host read/write commands and data units."""
    nvme.create_io_queue(1)
    buf = nvme.alloc(4096)
    for _ in range(3):
        assert nvme.cmd(1, 0x01, nsid=1, prp1=buf, cdw12=7).ok
    assert nvme.cmd(1, 0x02, nsid=1, prp1=buf, cdw12=7).ok
    cqe, d = _log(nvme, 0x02, 512)
    assert cqe.ok
    assert struct.unpack_from("<H", d, 1)[0] > 273  # composite temperature in kelvin
    assert d[3] == 100
    assert int.from_bytes(d[64:80], "little") == 1  # host read commands
    assert int.from_bytes(d[80:96], "little") == 3  # host write commands
    assert int.from_bytes(d[48:64], "little") == 1  # 12 KiB written: one unit, rounded up


def test_error_log_records_failed_commands(nvme):
    """A failed command adds an Error Information entry (count, SQID, CID, status)."""
    cqe = nvme.admin(0x7F)
    log_cqe, d = _log(nvme, 0x01, 64 * 64)
    assert log_cqe.ok
    count, sqid, cid, st = struct.unpack_from("<QHHH", d, 0)
    assert count >= 1 and sqid == 0 and cid == cqe.cid and st >> 1 == cqe.status


def test_fw_slot_and_effects_logs(nvme):
    """FW slot log shows slot 1 active; the effects log marks exactly the dispatch tables' ops."""
    cqe, d = _log(nvme, 0x03, 512)
    assert cqe.ok and d[0] & 7 == 1 and d[8:11] == b"1.0"
    cqe, d = _log(nvme, 0x05, 4096)
    assert cqe.ok
    acs = struct.unpack_from("<256I", d, 0)
    iocs = struct.unpack_from("<256I", d, 1024)
    assert {op for op in range(256) if acs[op] & 1} == set(ADMIN_COMMANDS)
    assert {op for op in range(256) if iocs[op] & 1} == set(IO_COMMANDS)
    assert iocs[0x01] & 0b10 and not iocs[0x02] & 0b10  # Write changes LBA content, Read not


def test_log_page_offset_and_refusals(nvme):
    """Offsets read part of a page; unknown LID, unaligned or past-end offsets are Invalid Field."""
    _, full = _log(nvme, 0x05, 4096)
    cqe, part = _log(nvme, 0x05, 8, offset=1024 + 4)
    assert cqe.ok and part == full[1028:1036]
    assert status(_log(nvme, 0x7E, 512)[0]) == (0, 0x02, True)
    assert status(_log(nvme, 0x02, 8, offset=2)[0]) == (0, 0x02, True)
    assert status(_log(nvme, 0x02, 8, offset=512)[0]) == (0, 0x02, True)


# -- Abort, AER, generic checks ----------------------------------------------------------


def test_abort_reports_not_aborted(nvme):
    """Abort completes successfully with DW0 bit 0 = 1 (command not aborted)."""
    cqe = nvme.admin(ABORT, cdw10=0 | 5 << 16)
    assert cqe.ok and cqe.dw0 & 1


def test_aer_is_held_and_limited(nvme):
    """AERs are held without completion; the AERL+2nd is AER Limit Exceeded (1/05h)."""
    cids = [nvme.submit(0, AER) for _ in range(4)]
    nvme.poll(3)
    assert nvme.peek(0) is None
    cqe = nvme.admin(AER)
    assert (cqe.sct, cqe.sc) == (1, 0x05) and cqe.cid not in cids


def test_invalid_doorbell_write_completes_an_aer(nvme, caplog):
    """A doorbell write to a missing queue completes an outstanding AER (Error, info 0, log 01h)."""
    cid = nvme.submit(0, AER)
    nvme.poll(2)
    nvme.w32(0x1000 + 8 * 3, 1)  # SQ 3 does not exist
    cqe = nvme.reap(0)
    assert cqe is not None and cqe.cid == cid and cqe.ok
    assert cqe.dw0 == 0x00 | 0x00 << 8 | 0x01 << 16
    assert any("nvme_ub_db_wr_invalid_queue" in r.message for r in caplog.records)


def test_invalid_doorbell_value_is_masked_until_log_read(nvme):
    """A too-large tail gives an AER (info 01h); later events wait until the Error log is read."""
    nvme.create_io_queue(1, entries=16)
    cids = [nvme.submit(0, AER) for _ in range(2)]
    nvme.poll(2)
    nvme.w32(0x1000 + 8, 100)  # SQ 1 tail beyond its 16 entries
    cqe = nvme.reap(0)
    assert cqe is not None and cqe.cid == cids[0] and cqe.dw0 == 0x01 << 8 | 0x01 << 16
    nvme.w32(0x1000 + 8, 200)  # masked: no completion until the log is read
    assert nvme.reap(0, polls=3) is None
    assert _log(nvme, 0x01, 64)[0].ok
    nvme.w32(0x1000 + 8 + 4, 99)  # CQ 1 head beyond its size
    cqe = nvme.reap(0)
    assert cqe is not None and cqe.cid == cids[1] and cqe.dw0 == 0x01 << 8 | 0x01 << 16
    nvme.w32(0x1000 + 8, 0)
    nvme.w32(0x1000 + 8 + 4, 0)
    nvme.poll()
    assert nvme.ctrl.sqs[1].sq_tail == 0  # the bad values were ignored


def test_doorbell_error_without_aer_is_only_logged(nvme, caplog):
    """With no AER outstanding an invalid doorbell write is logged and otherwise ignored."""
    nvme.w32(0x1000 + 8 * 2, 5)
    nvme.poll()
    assert any("nvme_ub_db_wr_invalid" in r.message for r in caplog.records)
    assert nvme.identify(1)[0].ok


@pytest.mark.parametrize("field,value", [("psdt", 1), ("psdt", 2), ("fuse", 1), ("fuse", 2)])
def test_admin_psdt_or_fuse_is_invalid_field(nvme, field, value):
    """PSDT != 0 (SGL) or FUSE != 0 on an admin command is Invalid Field (0/02h, DNR)."""
    cqe = nvme.admin(IDENTIFY, prp1=nvme.alloc(4096), cdw10=1, **{field: value})
    assert status(cqe) == (0, 0x02, True)


@pytest.mark.parametrize("opcode", [0x03, 0x07, 0x10, 0x7C, 0x80, 0xFF])
def test_unknown_admin_opcode_is_invalid_opcode(nvme, opcode):
    """An opcode missing from the admin table is Invalid Opcode (0/01h, DNR)."""
    assert status(nvme.admin(opcode)) == (0, 0x01, True)
