"""The inline Read/Write path and the general path agree, whichever wrote the data."""

from __future__ import annotations

import os

import pytest

from smartio.hw.devices.nvme import NvmeController

PAGE = 4096
READ, WRITE = 0x02, 0x01


@pytest.fixture
def io(nvme):
    """An enabled controller with I/O queue pair 1."""
    nvme.create_io_queue(1)
    return nvme


def _write(host, slba, data, **kw):
    buf = host.alloc(len(data))
    host.ctx.mem[buf: buf + len(data)] = data
    prp1, prp2 = host.prps(buf, len(data))
    return host.cmd(1, WRITE, nsid=1, prp1=prp1, prp2=prp2, cdw10=slba,
                    cdw12=(len(data) // 512 - 1) | kw.pop("cdw12_bits", 0), **kw)


def _read(host, slba, nbytes):
    buf = host.alloc(nbytes)
    prp1, prp2 = host.prps(buf, nbytes)
    cqe = host.cmd(1, READ, nsid=1, prp1=prp1, prp2=prp2, cdw10=slba, cdw12=nbytes // 512 - 1)
    return cqe, bytes(host.ctx.mem[buf: buf + nbytes])


def test_fast_path_serves_one_page_commands(io, monkeypatch):
    """A one-page Read/Write on a RAM namespace takes the inline path."""
    calls = []
    orig = NvmeController._fast_rw
    monkeypatch.setattr(NvmeController, "_fast_rw",
                        lambda self, *a: calls.append(orig(self, *a)) or calls[-1])
    data = os.urandom(PAGE)
    assert _write(io, 16, data).ok
    cqe, back = _read(io, 16, PAGE)
    assert cqe.ok and back == data and calls == [True, True]


def test_general_path_writes_are_seen_by_fast_reads(io):
    """Data written by a multi-page (PRP list) or FUA write reads back through the inline
    path: the never-written map cannot hide it."""
    data = os.urandom(4 * PAGE)
    assert _write(io, 64, data).ok  # PRP list: general path
    fua = os.urandom(PAGE)
    assert _write(io, 200, fua, cdw12_bits=1 << 30).ok  # FUA: general path
    for i in range(4):
        cqe, back = _read(io, 64 + i * 8, PAGE)  # one page each: inline path
        assert cqe.ok and back == data[i * PAGE: (i + 1) * PAGE]
    cqe, back = _read(io, 200, PAGE)
    assert cqe.ok and back == fua


def test_never_written_blocks_read_as_zeros_without_faulting_pages(io):
    """A read of blocks never written returns zeros and leaves them unwritten."""
    ns = io.ctrl.namespaces[1]
    cqe, back = _read(io, 1000, PAGE)
    assert cqe.ok and back == bytes(PAGE)
    assert ns.untouched(1000 * 512, 1000 * 512 + PAGE)


def test_fast_writes_are_seen_by_general_reads(io):
    """Data written inline reads back through a multi-page (general path) read."""
    parts = [os.urandom(PAGE) for _ in range(2)]
    for i, p in enumerate(parts):
        assert _write(io, 300 + i * 8, p).ok
    cqe, back = _read(io, 300, 2 * PAGE)
    assert cqe.ok and back == b"".join(parts)
