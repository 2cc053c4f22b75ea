"""Properties of the translation function (DESIGN §3.3) over the back-to-back preset.

Every byte written through a mapped path lands at the backing offset the tables say;
nothing written to an unmapped path touches any backing memory, reads of it return 0xFF
and the piece says why; IOMMU faults are recorded; peer-to-peer turns at the lowest
common switch unless the IOMMU forces it to the root; the IOTLB follows table changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartio.hw.fabric import Fabric
from smartio.hw.memory import MemoryObject
from smartio.hw.topology import TopologySpec, load_preset, loads_topology
from smartio.hw.translate import (
    IOMMU_FAULT,
    LINK_DOWN,
    NO_RID,
    OK,
    UNMAPPED,
    TranslationPort,
)
from smartio.hw.units import HUGE_PAGE_SIZE, PAGE_SIZE, GiB

MakeFabric = Callable[[TopologySpec], Fabric]

SLICE = 32 << 20  # 1 GiB window / 32 LUT entries (PXH830 defaults)
RAM_PAGES = 2 * GiB // PAGE_SIZE
HOPS_B2L = ("borrower", "borrower:ntb0", "lender:ntb0", "lender")
HOPS_NVME_TO_BORROWER = ("nvme0", "lender", "lender:ntb0", "borrower:ntb0", "borrower")
PROPS = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module")
def b2b(make_module_fabric: MakeFabric) -> Fabric:
    """The back-to-back fabric as the NTB drivers leave it: CPU requesters reserved on the
    borrower's adapter, and the lender's NVMe allowed out through the lender's adapter."""
    fab = make_module_fabric(load_preset("back-to-back"))
    fab.reserve_cpu_requesters("borrower:ntb0")
    fab.adapters["lender:ntb0"].rid_add(fab.function("nvme0").bdf.rid)
    return fab


def _inverted(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def _all_objects(fab: Fabric) -> list[MemoryObject]:
    objs = [fab.ram(h.name) for h in fab.topo.hosts]
    for hmap in fab.maps.values():
        for r in hmap.regions:
            if r.kind == "bar":
                objs.append(fab.bar(r.owner, r.bar))
    return objs


@contextlib.contextmanager
def _lut(fab: Fabric, adapter: str, entries: dict[int, tuple[str, int]]):
    """Program address-LUT entries for the duration of one example."""
    ntb = fab.adapters[adapter]
    for index, (peer, addr) in entries.items():
        ntb.peer_mw_set_trans(index, peer, addr)
    try:
        yield ntb
    finally:
        for index in entries:
            ntb.peer_mw_clear_trans(index)


@contextlib.contextmanager
def _domain(fab: Fabric, host: str, rid: int | None):
    """An IOMMU domain (with ``rid`` attached) for the duration of one example."""
    iommu = fab.iommus[host]
    d = iommu.domain_alloc()
    if rid is not None:
        iommu.attach(rid, d)
    try:
        yield d
    finally:
        iommu.domain_free(d)


# -- mapped paths --------------------------------------------------------------------------


@PROPS
@given(
    slot=st.integers(0, 30),
    targets=st.lists(st.integers(0, 2 * GiB // SLICE - 1), min_size=2, max_size=2, unique=True),
    off=st.one_of(st.integers(0, SLICE - 1), st.integers(SLICE - 3 * PAGE_SIZE, SLICE - 1)),
    data=st.binary(min_size=1, max_size=3 * PAGE_SIZE),
)
def test_cpu_write_through_ntb_slices_lands_in_lender_ram(
    b2b: Fabric, slot: int, targets: list[int], off: int, data: bytes
) -> None:
    """A borrower CPU write through two LUT slices lands at each slice's lender RAM target."""
    ram = b2b.ram("lender")
    entries = {slot + i: ("lender:ntb0", t * SLICE) for i, t in enumerate(targets)}
    with _lut(b2b, "borrower:ntb0", entries) as ntb:
        first = min(len(data), SLICE - off)
        expect = [(targets[0] * SLICE + off, data[:first]), (targets[1] * SLICE, data[first:])]
        for o, chunk in expect:
            ram.view[o: o + len(chunk)] = _inverted(chunk)
        addr = ntb.slice_addr(slot) + off
        port = b2b.cpu("borrower")

        assert port.write(addr, data) == len(data)

        for o, chunk in expect:
            assert bytes(ram.view[o: o + len(chunk)]) == chunk
        assert port.read(addr, len(data)) == data
        pieces = port.translate(addr, len(data), write=True)
        assert sum(p.length for p in pieces) == len(data)
        for p in pieces:
            rel = p.addr - ntb.slice_addr(slot)
            assert p.status == OK
            assert p.obj is ram
            assert p.offset == targets[rel // SLICE] * SLICE + rel % SLICE
            assert p.route.hops == HOPS_B2L


def _expected_runs(fab: Fabric, host: str, addr: int, size: int):
    """Oracle: (addr, length, object, offset) runs of a local CPU access, decoded per region
    of the host map (object None where nothing decodes, or an unprogrammed NTB window)."""
    hmap = fab.maps[host]
    a, end = addr, addr + size
    while a < end:
        r = hmap.decode(a)
        if r is not None and r.kind == "ntb-window":
            n = min(end, r.end) - a
            yield a, n, None, 0
        elif r is None:
            nxt = hmap.next_start(a)
            n = min(end, nxt if nxt is not None else end) - a
            yield a, n, None, 0
        else:
            n = min(end, r.end) - a
            if r.kind == "ram":
                yield a, n, fab.ram(host), r.offset + (a - r.start)
            else:
                yield a, n, fab.bar(r.owner, r.bar), a - r.start
        a += n


@PROPS
@given(data=st.data())
def test_cpu_write_to_local_ram_and_bars_lands_at_backing_offset(b2b: Fabric, data) -> None:
    """A CPU write into its own host's RAM and BARs (across region edges) lands at the
    backing offset of each region, and nothing lands where no region decodes."""
    host = data.draw(st.sampled_from(["lender", "borrower"]), label="host")
    hmap = b2b.maps[host]
    # NTB windows and the interrupt controller's message window have their own tests.
    regions = [r for r in hmap.regions if r.kind not in ("ntb-window", "msi")]
    r = data.draw(st.sampled_from(regions), label="region")
    payload = data.draw(st.binary(min_size=1, max_size=2 * PAGE_SIZE), label="payload")
    anchor = data.draw(st.sampled_from([r.start, r.end, r.start + r.size // 2]), label="anchor")
    addr = max(0, anchor + data.draw(st.integers(-2 * PAGE_SIZE, 2 * PAGE_SIZE), label="delta"))
    runs = list(_expected_runs(b2b, host, addr, len(payload)))
    for a, n, obj, off in runs:
        if obj is not None:
            rel = a - addr
            obj.view[off: off + n] = _inverted(payload[rel: rel + n])
    port = b2b.cpu(host)

    expect_done = sum(n for _, n, obj, _ in runs if obj is not None)
    assert port.write(addr, payload) == expect_done

    back = port.read(addr, len(payload))
    for a, n, obj, off in runs:
        rel = a - addr
        if obj is None:
            assert back[rel: rel + n] == b"\xff" * n
        else:
            assert bytes(obj.view[off: off + n]) == payload[rel: rel + n]
            assert back[rel: rel + n] == payload[rel: rel + n]


def test_lender_cpu_write_to_gpu_bar1_lands_in_bar_backing(b2b: Fabric) -> None:
    """A lender CPU write at gpu0 BAR1 + off lands at offset off of BAR1's backing object."""
    bar1 = b2b.maps["lender"].functions["gpu0"].bar(1)
    obj = b2b.bar("gpu0", 1)
    off = bar1.size - 3 * PAGE_SIZE + 17
    pieces = b2b.cpu("lender").translate(bar1.base + off, 64, write=True)
    assert [(p.obj, p.offset, p.status) for p in pieces] == [(obj, off, OK)]
    assert pieces[0].route.hops == ("lender", "gpu0")
    b2b.cpu("lender").write(bar1.base + off, b"gpu-bar1" * 8)
    assert bytes(obj.view[off: off + 64]) == b"gpu-bar1" * 8


@PROPS
@given(
    slot=st.integers(0, 31),
    iova_slice=st.integers(0, (1 << 48) // SLICE - 1),
    huge=st.booleans(),
    frames=st.lists(st.integers(0, RAM_PAGES - 1), min_size=4, max_size=4, unique=True),
    huge_frame=st.integers(0, 2 * GiB // HUGE_PAGE_SIZE - 1),
    off=st.integers(0, 4 * PAGE_SIZE - 1),
    data=st.binary(min_size=1, max_size=2 * PAGE_SIZE),
)
def test_device_dma_through_ntb_and_iommu_lands_at_translated_page(
    b2b: Fabric, slot: int, iova_slice: int, huge: bool, frames: list[int], huge_frame: int,
    off: int, data: bytes,
) -> None:
    """The lender's NVMe writing through the lender NTB into borrower IOVA space lands at the
    physical page the borrower IOMMU maps each IOVA page to (4 KiB and 2 MiB pages)."""
    data = data[: 4 * PAGE_SIZE - off]
    iova = iova_slice * SLICE
    rid = b2b.function("borrower:ntb0").bdf.rid
    iommu = b2b.iommus["borrower"]
    ram = b2b.ram("borrower")
    with _domain(b2b, "borrower", rid) as d, \
            _lut(b2b, "lender:ntb0", {slot: ("borrower:ntb0", iova)}) as ntb:
        if huge:
            iommu.map(d, iova, huge_frame * HUGE_PAGE_SIZE, HUGE_PAGE_SIZE,
                      page_size=HUGE_PAGE_SIZE)

            def phys(k: int) -> int:
                return huge_frame * HUGE_PAGE_SIZE + off + k
        else:
            for p, f in enumerate(frames):
                iommu.map(d, iova + p * PAGE_SIZE, f * PAGE_SIZE, PAGE_SIZE)

            def phys(k: int) -> int:
                return frames[(off + k) // PAGE_SIZE] * PAGE_SIZE + (off + k) % PAGE_SIZE
        for k, b in enumerate(data):
            ram.view[phys(k)] = b ^ 0xFF
        port = b2b.port(b2b.function("nvme0"))
        addr = ntb.slice_addr(slot) + off
        faults = iommu.fault_count

        assert port.write(addr, data) == len(data)

        assert bytes(ram.view[phys(k)] for k in range(len(data))) == data
        assert port.read(addr, len(data)) == data
        for p in port.translate(addr, len(data), write=True):
            assert (p.status, p.obj, p.offset) == (OK, ram, phys(p.addr - addr))
            assert p.route.hops == HOPS_NVME_TO_BORROWER
        assert iommu.fault_count == faults


# -- unmapped paths ------------------------------------------------------------------------


def _holes(fab: Fabric, host: str) -> list[tuple[int, int]]:
    """Gaps of a host's address map (the last one capped at 1 TiB above the top)."""
    out, cur = [], 0
    for r in fab.maps[host].regions:
        if r.start > cur:
            out.append((cur, r.start))
        cur = max(cur, r.end)
    out.append((cur, cur + (1 << 40)))
    return out


SCENARIOS = ["hole", "lut", "link-down", "rid-cpu", "rid-device", "iommu-miss",
             "iommu-read-only", "iommu-no-domain"]


@pytest.mark.parametrize("kind", SCENARIOS)
@settings(max_examples=15, deadline=None)
@given(
    slot=st.integers(0, 31),
    target=st.integers(0, 2 * GiB // SLICE - 1),
    page=st.integers(0, SLICE // PAGE_SIZE - 1),
    in_page=st.integers(0, PAGE_SIZE - 1),
    data=st.binary(min_size=1, max_size=2 * PAGE_SIZE),
    draw=st.data(),
)
def test_unmapped_paths_never_touch_backing_memory(
    b2b: Fabric, kind: str, slot: int, target: int, page: int, in_page: int, data: bytes, draw,
) -> None:
    """Writes to holes, unprogrammed slices, down links, requesters without a requester-ID
    entry and IOMMU misses change no backing byte; reads give 0xFF; pieces say why."""
    off = page * PAGE_SIZE + in_page
    iommu = b2b.iommus["borrower"]
    b_ntb, l_ntb = b2b.adapters["borrower:ntb0"], b2b.adapters["lender:ntb0"]
    lender_ram, borrower_ram = b2b.ram("lender"), b2b.ram("borrower")
    would_be: list[tuple[MemoryObject, int]] = []  # where the data lands if the check fails
    read_back: bytes | None = None  # what a read returns (None: all 0xFF)
    fault_kind = None
    with contextlib.ExitStack() as stack:
        if kind == "hole":
            host = draw.draw(st.sampled_from(["lender", "borrower"]), label="host")
            lo, hi = draw.draw(st.sampled_from(_holes(b2b, host)), label="hole")
            addr = draw.draw(st.integers(lo, hi - 1), label="addr")
            data = data[: hi - addr]
            port, status = b2b.cpu(host), UNMAPPED
        elif kind in ("lut", "link-down", "rid-cpu"):
            port, addr = b2b.cpu("borrower"), b_ntb.slice_addr(slot) + off
            data = data[: SLICE - off]
            would_be.append((lender_ram, target * SLICE + off))
            status = UNMAPPED
            if kind != "lut":
                stack.enter_context(_lut(b2b, "borrower:ntb0",
                                         {slot: ("lender:ntb0", target * SLICE)}))
            if kind == "link-down":
                b2b.link_set("borrower:ntb0", False)
                stack.callback(b2b.link_set, "borrower:ntb0", True)
                status = LINK_DOWN
            elif kind == "rid-cpu":
                rid = port.requester.bdf.rid
                b_ntb.rid_remove(rid)
                stack.callback(b_ntb.rid_add, rid)
                status = NO_RID
        else:
            # DMA from a lender function through the lender NTB into borrower IOVA space;
            # the IOVA page is mapped (read-only where it matters) onto a canary frame.
            data = data[: PAGE_SIZE - in_page]
            iova = target * SLICE
            frame = (target * 977 + page) % RAM_PAGES * PAGE_SIZE
            rid = b2b.function("borrower:ntb0").bdf.rid
            d = stack.enter_context(_domain(b2b, "borrower",
                                            None if kind == "iommu-no-domain" else rid))
            stack.enter_context(_lut(b2b, "lender:ntb0", {slot: ("borrower:ntb0", iova)}))
            addr = l_ntb.slice_addr(slot) + off
            requester = "gpu0" if kind == "rid-device" else "nvme0"
            port = b2b.port(b2b.function(requester))
            page_iova = iova + page * PAGE_SIZE
            status = IOMMU_FAULT
            if kind == "iommu-miss":
                # Map the neighbours but not the page itself.
                for nb in (page_iova - PAGE_SIZE, page_iova + PAGE_SIZE):
                    if nb >= 0:
                        iommu.map(d, nb, frame, PAGE_SIZE)
                fault_kind = "not-present"
            else:
                iommu.map(d, page_iova, frame, PAGE_SIZE,
                          write=kind not in ("iommu-read-only", "iommu-no-domain"))
                fault_kind = {"iommu-read-only": "write-to-read-only",
                              "iommu-no-domain": "no-domain"}.get(kind)
            if kind == "rid-device":
                status, fault_kind = NO_RID, None
            would_be.append((borrower_ram, frame + in_page))
        n = len(data)
        canary = bytes(b ^ 0xA5 for b in data)
        spots: list[tuple[MemoryObject, int]] = []
        samples = [(m, o) for m in _all_objects(b2b) for o in (0, addr % (m.size - n))]
        for obj, o in would_be + samples:
            if all(other is not obj or abs(o - p) >= n for other, p in spots):
                spots.append((obj, o))  # non-overlapping, so each holds the whole canary
                obj.view[o: o + n] = canary
        if kind == "iommu-read-only":
            read_back = canary
        faults_before = iommu.fault_count

        pieces = port.translate(addr, n, write=True)
        written = port.write(addr, data)
        back = port.read(addr, n)

        assert {p.status for p in pieces} == {status}
        assert all(p.obj is None for p in pieces)
        assert sum(p.length for p in pieces) == n
        assert written == 0
        for obj, o in spots:
            assert bytes(obj.view[o: o + n]) == canary, (obj, o)
        assert back == (read_back if read_back is not None else b"\xff" * n)
        new_faults = iommu.faults()[faults_before - iommu.fault_count:] \
            if iommu.fault_count > faults_before else []
        if fault_kind is None:
            assert new_faults == []
        else:
            assert new_faults, "an IOMMU miss records a fault"
            assert all(f.kind == fault_kind for f in new_faults if f.write)
            assert {f.addr & ~(PAGE_SIZE - 1) for f in new_faults} == {
                (iova + off) & ~(PAGE_SIZE - 1)}


# -- faults and routes ---------------------------------------------------------------------


def test_iommu_fault_recorded_for_each_faulting_access(b2b: Fabric) -> None:
    """Every DMA into an unmapped IOVA records a fault with the requester the IOMMU sees
    (the borrower's NTB) and the exact IOVA, even when repeated in one page."""
    iommu = b2b.iommus["borrower"]
    rid = b2b.function("borrower:ntb0").bdf.rid
    iova = 0x7_0000_0000
    with _domain(b2b, "borrower", rid), \
            _lut(b2b, "lender:ntb0", {5: ("borrower:ntb0", iova)}) as ntb:
        port = b2b.port(b2b.function("nvme0"))
        before = iommu.fault_count
        port.write(ntb.slice_addr(5) + 0x10, b"a" * 8)
        port.write(ntb.slice_addr(5) + 0x80, b"b" * 8)
        port.read(ntb.slice_addr(5) + 0x2000, 4)
        got = iommu.faults()[-(iommu.fault_count - before):]
    assert [(f.rid, f.addr, f.write, f.kind) for f in got] == [
        (rid, iova + 0x10, True, "not-present"),
        (rid, iova + 0x80, True, "not-present"),
        (rid, iova + 0x2000, False, "not-present"),
    ]
    assert [f.seq for f in got] == list(range(before, before + 3))


def test_iova_beyond_48_bits_faults_instead_of_aliasing(b2b: Fabric) -> None:
    """A DMA to an IOVA above the IOMMU's 48-bit input range faults rather than aliasing
    the mapping of the same low 48 bits."""
    iommu = b2b.iommus["borrower"]
    rid = b2b.function("borrower:ntb0").bdf.rid
    ram = b2b.ram("borrower")
    with _domain(b2b, "borrower", rid) as d, \
            _lut(b2b, "lender:ntb0", {2: ("borrower:ntb0", 1 << 48)}) as ntb:
        iommu.map(d, 0, 0x10_0000, PAGE_SIZE)
        ram.view[0x10_0000: 0x10_0008] = b"\x00" * 8
        port = b2b.port(b2b.function("nvme0"))
        pieces = port.translate(ntb.slice_addr(2), 8, write=True)
        assert port.write(ntb.slice_addr(2), b"aliased!") == 0
        assert [p.status for p in pieces] == [IOMMU_FAULT]
        assert bytes(ram.view[0x10_0000: 0x10_0008]) == b"\x00" * 8
        assert iommu.faults()[-1].addr == 1 << 48


CHASSIS = """
name = "p2p-chassis"
{hosts}
"""

CHASSIS_HOST = """
[[hosts]]
name = "{h}"
ram = "64MiB"
iommu = {iommu}

[[switches]]
name = "{h}-card"
model = "MXH832"
host = "{h}"
slot = 0

[[switches]]
name = "{h}-chassis"
model = "PEX8796"

[[links]]
a = "{h}-card/0"
b = "{h}-chassis/0"

[[endpoints]]
name = "{h}-nvme"
model = "nvme"
at = "{h}-chassis/1"

[[endpoints]]
name = "{h}-gpu"
model = "gpu"
at = "{h}-chassis/2"
params = {{ memory = "16MiB" }}
"""


@pytest.fixture(scope="module")
def chassis(make_module_fabric: MakeFabric) -> Fabric:
    """Two hosts, each with an MXH832 card cabled to a PEX8796 chassis holding an NVMe and
    a GPU; host ``open`` has its IOMMU off, host ``guarded`` on."""
    hosts = CHASSIS_HOST.format(h="open", iommu="false") + CHASSIS_HOST.format(
        h="guarded", iommu="true")
    return make_module_fabric(loads_topology(CHASSIS.format(hosts=hosts), source="p2p"))


def test_p2p_turns_at_lowest_common_switch_without_iommu(chassis: Fabric) -> None:
    """With the IOMMU off, NVMe-to-GPU-BAR DMA turns at the chassis switch and lands in the
    GPU's BAR; DMA to RAM climbs through the card to the root."""
    gpu_bar = chassis.maps["open"].functions["open-gpu"].bar(1)
    port = chassis.port(chassis.function("open-nvme"))
    [p] = port.translate(gpu_bar.base + 0x3000, 16, write=True)
    assert (p.status, p.obj, p.offset) == (OK, chassis.bar("open-gpu", 1), 0x3000)
    assert p.route.hops == ("open-nvme", "open-chassis", "open-gpu")
    assert p.route.links == ()
    [r] = port.translate(0x1000, 16, write=True)
    assert r.route.hops == ("open-nvme", "open-chassis", "open-card", "open")
    assert port.write(gpu_bar.base + 0x3000, b"p2p-p2p-p2p-p2p!") == 16
    assert bytes(chassis.bar("open-gpu", 1).view[0x3000:0x3010]) == b"p2p-p2p-p2p-p2p!"


def test_p2p_goes_via_root_with_iommu(chassis: Fabric) -> None:
    """With the IOMMU on, NVMe DMA to an IOVA mapped onto the GPU's BAR goes up to the root
    complex and back down, crossing the card-chassis cable twice."""
    iommu = chassis.iommus["guarded"]
    nvme = chassis.function("guarded-nvme")
    gpu_bar = chassis.maps["guarded"].functions["guarded-gpu"].bar(1)
    cable = chassis.link_index("guarded-card/0")
    d = iommu.domain_alloc()
    try:
        iommu.attach(nvme.bdf.rid, d)
        iommu.map(d, 0x4000_0000, gpu_bar.base + 0x2000, PAGE_SIZE)
        port = chassis.port(nvme)
        [p] = port.translate(0x4000_0000 + 0x10, 16, write=True)
        assert (p.status, p.obj, p.offset) == (OK, chassis.bar("guarded-gpu", 1), 0x2010)
        assert p.route.hops == ("guarded-nvme", "guarded-chassis", "guarded-card", "guarded",
                                "guarded-card", "guarded-chassis", "guarded-gpu")
        assert p.route.links == (*cable, *cable)
        # The same physical address used directly as an IOVA is not mapped: a fault.
        before = iommu.fault_count
        [q] = port.translate(gpu_bar.base + 0x2010, 16, write=True)
        assert q.status == IOMMU_FAULT
        assert [(f.rid, f.addr) for f in iommu.faults()[before - iommu.fault_count:]] == [
            (nvme.bdf.rid, gpu_bar.base + 0x2010)]
    finally:
        iommu.domain_free(d)


def test_chassis_cable_down_cuts_paths_that_cross_it(chassis: Fabric) -> None:
    """With the card-chassis cable down, CPU access to a chassis BAR and device DMA to RAM
    are LINK_DOWN (0xFF, dropped), while P2P below the chassis still lands."""
    gpu_bar = chassis.maps["open"].functions["open-gpu"].bar(1)
    cpu, nvme = chassis.cpu("open"), chassis.port(chassis.function("open-nvme"))
    bar = chassis.bar("open-gpu", 1)
    bar.view[0x5000:0x5004] = b"live"
    chassis.link_set("open-card/0", False)
    try:
        assert [p.status for p in cpu.translate(gpu_bar.base + 0x5000, 4)] == [LINK_DOWN]
        assert cpu.read(gpu_bar.base + 0x5000, 4) == b"\xff" * 4
        assert cpu.write(gpu_bar.base + 0x5000, b"dead") == 0
        assert [p.status for p in nvme.translate(0x1000, 4, write=True)] == [LINK_DOWN]
        assert nvme.read(gpu_bar.base + 0x5000, 4) == b"live"
    finally:
        chassis.link_set("open-card/0", True)
    assert cpu.read(gpu_bar.base + 0x5000, 4) == b"live"


# -- the translation cache -----------------------------------------------------------------


def test_cache_follows_lut_changes(b2b: Fabric) -> None:
    """A cached translation is dropped when its LUT entry is cleared: the generation moves
    and the next translation of the same address is UNMAPPED."""
    ntb = b2b.adapters["borrower:ntb0"]
    port = TranslationPort(b2b, b2b.cpu("borrower").requester)
    addr = ntb.slice_addr(9) + 0x1234
    ntb.peer_mw_set_trans(9, "lender:ntb0", 3 * SLICE)
    try:
        [p] = port.translate(addr, 8)
        assert (p.status, p.offset) == (OK, 3 * SLICE + 0x1234)
        misses = port.misses
        port.translate(addr + 8, 8)
        assert port.misses == misses  # same page: served from the cache
        gen = b2b.state.generation
    finally:
        ntb.peer_mw_clear_trans(9)
    assert b2b.state.generation == gen + 1
    [q] = port.translate(addr, 8)
    assert (q.status, q.obj) == (UNMAPPED, None)
    assert port.misses == misses + 1
    assert port.read(addr, 4) == b"\xff" * 4
