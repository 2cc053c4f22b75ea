"""NVMe namespaces' backing stores (RAM, sparse file, device path) and media hold times."""

from __future__ import annotations

import os

import pytest

from smartio.errors import IllegalParameter
from smartio.hw.devices.nvme import NvmeController

READ, WRITE, FLUSH = 0x02, 0x01, 0x00
PAGE = 4096


def _io(host, opcode, slba, nbytes, data=None, nsid=1, qid=1):
    buf = host.alloc(nbytes)
    if data is not None:
        host.ctx.mem[buf: buf + nbytes] = data
    prp1, prp2 = host.prps(buf, nbytes)
    lba = host.ctrl.cfg.lba_size
    cqe = host.cmd(qid, opcode, nsid=nsid, prp1=prp1, prp2=prp2, cdw10=slba,
                   cdw12=nbytes // lba - 1)
    return cqe, bytes(host.ctx.mem[buf: buf + nbytes])


def test_file_backing_is_sparse_and_persists(make_nvme, tmp_path):
    """backing=file creates <name>-ns<N>.img sparse; data survives a new controller instance."""
    params = {"backing": "file", "capacity": 64 << 20, "namespaces": 2}
    host = make_nvme(params=params, data_dir=tmp_path, name="nvmeX")
    host.create_io_queue(1)
    data = os.urandom(2 * PAGE)
    assert _io(host, WRITE, 100, 2 * PAGE, data, nsid=2)[0].ok
    assert host.cmd(1, FLUSH, nsid=0xFFFFFFFF).ok
    img = tmp_path / "nvmeX-ns2.img"
    assert img.stat().st_size == 64 << 20
    assert img.stat().st_blocks * 512 < 8 << 20  # sparse
    host.ctrl.close()
    with open(img, "rb") as f:
        f.seek(100 * 512)
        assert f.read(2 * PAGE) == data
    again = make_nvme(params=params, data_dir=tmp_path, name="nvmeX")
    again.create_io_queue(1)
    cqe, back = _io(again, READ, 100, 2 * PAGE, nsid=2)
    assert cqe.ok and back == data
    assert _io(again, READ, 100, 2 * PAGE, nsid=1)[1] == bytes(2 * PAGE)


def test_shutdown_flushes_file_backing(make_nvme, tmp_path):
    """CC.SHN flushes the backing file before reporting SHST complete."""
    host = make_nvme(params={"backing": "file"}, data_dir=tmp_path)
    host.create_io_queue(1)
    assert _io(host, WRITE, 0, 512, b"\xab" * 512)[0].ok
    host.w32(0x14, host.r32(0x14) | 1 << 14)
    host.poll()
    assert (host.r32(0x1C) >> 2) & 3 == 0b10
    assert (tmp_path / "nvme0-ns1.img").read_bytes()[:512] == b"\xab" * 512


def test_device_path_backing_places_namespaces_back_to_back(make_nvme, tmp_path):
    """A device path backs namespace N at offset (N-1)*capacity of the device."""
    dev = tmp_path / "disk.img"
    cap = 1 << 20
    dev.write_bytes(bytes(2 * cap))
    host = make_nvme(params={"backing": str(dev), "namespaces": 2, "capacity": cap})
    host.create_io_queue(1)
    assert _io(host, WRITE, 1, 512, b"\xcd" * 512, nsid=2)[0].ok
    assert host.cmd(1, FLUSH, nsid=2).ok
    raw = dev.read_bytes()
    assert raw[cap + 512: cap + 1024] == b"\xcd" * 512
    assert raw[:cap] == bytes(cap)


def test_device_too_small_is_refused(make_ctx, tmp_path):
    """A device smaller than namespaces * capacity raises IllegalParameter."""
    dev = tmp_path / "small.img"
    dev.write_bytes(bytes(4096))
    with pytest.raises(IllegalParameter):
        NvmeController(make_ctx(), {"backing": str(dev), "capacity": 1 << 20}, None)


def test_4k_lba_format(make_nvme):
    """With lba_size=4096 one block is 4 KiB and NLB counts 4 KiB blocks."""
    host = make_nvme(params={"lba_size": 4096})
    host.create_io_queue(1)
    data = os.urandom(3 * PAGE)
    assert _io(host, WRITE, 5, 3 * PAGE, data)[0].ok
    assert bytes(host.ctrl.namespaces[1].view[5 * PAGE: 8 * PAGE]) == data
    assert _io(host, READ, 5, 3 * PAGE)[1] == data


def test_ram_media_completes_at_once(nvme):
    """RAM media posts the completion in the same poll, whatever the clock says."""
    nvme.create_io_queue(1)
    nvme.submit(1, READ, nsid=1, prp1=nvme.alloc(PAGE), cdw12=7)
    nvme.poll()
    assert nvme.peek(1) is not None


@pytest.mark.parametrize("opcode,hold", [(READ, 9_000), (WRITE, 10_000)])
def test_optane_holds_completion_until_ready(make_nvme, opcode, hold):
    """Optane: data moves at once, the CQE is posted only when now_ns reaches the hold time."""
    host = make_nvme(params={"media": "optane"})
    host.create_io_queue(1)
    host.ctx.now = 1_000
    buf = host.alloc(PAGE)
    host.ctx.mem[buf: buf + PAGE] = b"\x33" * PAGE
    host.submit(1, opcode, nsid=1, prp1=buf, cdw12=7)
    host.poll(3)
    assert host.peek(1) is None
    if opcode == WRITE:  # compute, then hold: the data is already there
        assert bytes(host.ctrl.namespaces[1].view[:PAGE]) == b"\x33" * PAGE
    host.ctx.now = 1_000 + hold - 1
    host.poll(2)
    assert host.peek(1) is None
    host.ctx.now = 1_000 + hold
    host.poll()
    cqe = host.reap(1, polls=0)
    assert cqe is not None and cqe.ok


def test_nand_timeline_serialises_commands(make_nvme):
    """NAND media: two 4 KiB reads at t=0 complete at 80 µs and 160 µs (one busy-until timeline)."""
    host = make_nvme(params={"media": "nand"})
    host.create_io_queue(1)
    buf = host.alloc(PAGE)
    a = host.submit(1, READ, nsid=1, prp1=buf, cdw12=7, ring=False)
    b = host.submit(1, READ, nsid=1, prp1=buf, cdw12=7)
    host.poll(2)
    host.ctx.now = 79_999
    host.poll()
    assert host.peek(1) is None
    host.ctx.now = 80_000
    assert host.reap(1, polls=1).cid == a
    host.ctx.now = 159_999
    assert host.reap(1, polls=2) is None
    host.ctx.now = 160_000
    assert host.reap(1, polls=1).cid == b


def test_held_completions_post_in_ready_order(make_nvme):
    """The completion heap posts a short command before an earlier-submitted longer one."""
    host = make_nvme(params={"media": "optane", "io_queues": 2})
    host.create_io_queue(1)
    big, small = host.alloc(8 * PAGE), host.alloc(PAGE)
    p1, p2 = host.prps(big, 8 * PAGE)
    slow = host.submit(1, READ, nsid=1, prp1=p1, prp2=p2, cdw12=63, ring=False)
    fast = host.submit(1, READ, nsid=1, prp1=small, cdw12=7)
    host.poll(2)
    host.ctx.now = 10**9
    got = [host.reap(1).cid for _ in range(2)]
    assert got == [fast, slow]
