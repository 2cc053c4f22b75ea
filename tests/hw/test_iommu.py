"""The host IOMMU: domains, 4 KiB and 2 MiB page tables, the device table and the fault
ring (VT-d second-level translation as modelled in ``smartio.hw.iommu``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from smartio.errors import IllegalParameter, MaxEntries, OutOfRange
from smartio.hw.fabric import Fabric
from smartio.hw.iommu import Iommu
from smartio.hw.state import IOMMU_DEVICES, IOMMU_DOMAINS, IOMMU_FAULTS, IOMMU_POOL_PAGES
from smartio.hw.topology import TopologySpec, load_preset
from smartio.hw.translate import IOMMU_FAULT, OK
from smartio.hw.units import HUGE_PAGE_SIZE, PAGE_SIZE, GiB, MiB

MakeFabric = Callable[[TopologySpec], Fabric]


@pytest.fixture
def fab(make_fabric: MakeFabric) -> Fabric:
    """Back to back; the lender's NVMe may send through the lender NTB."""
    f = make_fabric(load_preset("back-to-back"))
    f.adapters["lender:ntb0"].rid_add(f.function("nvme0").bdf.rid)
    return f


@pytest.fixture
def iommu(fab: Fabric) -> Iommu:
    """The borrower's IOMMU (enabled in the preset)."""
    return fab.iommus["borrower"]


def test_enabled_follows_topology(fab: Fabric) -> None:
    """The IOMMU is enabled exactly on the hosts whose topology says iommu = true."""
    assert fab.iommus["borrower"].enabled
    assert not fab.iommus["lender"].enabled


def test_map_4k_pages_lookup_offsets(iommu: Iommu) -> None:
    """Each 4 KiB page of a mapping translates to its own physical page, keeping the offset,
    with the bytes before and after the address inside the page."""
    d = iommu.domain_alloc()
    iommu.map(d, 0x1234_5000, 0x7000_0000, 3 * PAGE_SIZE)
    assert iommu.lookup(d, 0x1234_5000) == (0x7000_0000, True, 0, PAGE_SIZE)
    assert iommu.lookup(d, 0x1234_6abc) == (0x7000_1abc, True, 0xabc, PAGE_SIZE - 0xabc)
    assert iommu.lookup(d, 0x1234_7fff) == (0x7000_2fff, True, 0xfff, 1)
    assert iommu.lookup(d, 0x1234_4fff) is None
    assert iommu.lookup(d, 0x1234_8000) is None


def test_map_2m_page_lookup_offsets(iommu: Iommu) -> None:
    """A 2 MiB page translates every offset inside it and nothing beyond it."""
    d = iommu.domain_alloc()
    iommu.map(d, 6 * HUGE_PAGE_SIZE, 40 * HUGE_PAGE_SIZE, HUGE_PAGE_SIZE,
              page_size=HUGE_PAGE_SIZE)
    base = 6 * HUGE_PAGE_SIZE
    assert iommu.lookup(d, base) == (40 * HUGE_PAGE_SIZE, True, 0, HUGE_PAGE_SIZE)
    assert iommu.lookup(d, base + 0x12_3456) == (
        40 * HUGE_PAGE_SIZE + 0x12_3456, True, 0x12_3456, HUGE_PAGE_SIZE - 0x12_3456)
    assert iommu.lookup(d, base - 1) is None
    assert iommu.lookup(d, base + HUGE_PAGE_SIZE) is None


def test_4k_and_2m_pages_side_by_side(iommu: Iommu) -> None:
    """4 KiB pages and a 2 MiB page in the same level-2 table translate independently."""
    d = iommu.domain_alloc()
    iommu.map(d, 0, 0x4000_0000, HUGE_PAGE_SIZE, page_size=HUGE_PAGE_SIZE)
    iommu.map(d, HUGE_PAGE_SIZE, 0x1000, 2 * PAGE_SIZE)
    assert iommu.lookup(d, 0x1_0010) == (0x4001_0010, True, 0x1_0010, HUGE_PAGE_SIZE - 0x1_0010)
    assert iommu.lookup(d, HUGE_PAGE_SIZE + PAGE_SIZE + 8) == (0x2008, True, 8, PAGE_SIZE - 8)
    assert iommu.lookup(d, HUGE_PAGE_SIZE + 2 * PAGE_SIZE) is None


def test_unmap_removes_only_the_range(iommu: Iommu) -> None:
    """Unmapping the middle page of three leaves its neighbours mapped."""
    d = iommu.domain_alloc()
    iommu.map(d, 0x10_0000, 0x20_0000, 3 * PAGE_SIZE)
    iommu.unmap(d, 0x10_1000, PAGE_SIZE)
    assert iommu.lookup(d, 0x10_1000) is None
    assert iommu.lookup(d, 0x10_0000)[0] == 0x20_0000
    assert iommu.lookup(d, 0x10_2000)[0] == 0x20_2000
    iommu.unmap(d, 0x10_0000, 3 * PAGE_SIZE)  # holes in the range are skipped
    assert iommu.lookup(d, 0x10_0000) is None
    assert iommu.lookup(d, 0x10_2000) is None


def test_unmap_2m_page(iommu: Iommu) -> None:
    """Unmapping part of a 2 MiB page unmaps the whole page (as VT-d drivers do)."""
    d = iommu.domain_alloc()
    iommu.map(d, HUGE_PAGE_SIZE, 0, HUGE_PAGE_SIZE, page_size=HUGE_PAGE_SIZE)
    iommu.unmap(d, HUGE_PAGE_SIZE + PAGE_SIZE, PAGE_SIZE)
    assert iommu.lookup(d, HUGE_PAGE_SIZE) is None
    assert iommu.lookup(d, 2 * HUGE_PAGE_SIZE - 1) is None


def test_4k_map_inside_2m_page_keeps_the_rest(iommu: Iommu) -> None:
    """Remapping one 4 KiB page inside a 2 MiB page changes only that page."""
    d = iommu.domain_alloc()
    iommu.map(d, 0, 0x4000_0000, HUGE_PAGE_SIZE, page_size=HUGE_PAGE_SIZE, write=False)
    iommu.map(d, 5 * PAGE_SIZE, 0x9000, PAGE_SIZE)
    assert iommu.lookup(d, 5 * PAGE_SIZE + 1) == (0x9001, True, 1, PAGE_SIZE - 1)
    assert iommu.lookup(d, 4 * PAGE_SIZE + 2) == (0x4000_4002, False, 2, PAGE_SIZE - 2)
    assert iommu.lookup(d, HUGE_PAGE_SIZE - 1) == (0x401F_FFFF, False, PAGE_SIZE - 1, 1)


def _fill_pool(iommu: Iommu) -> int:
    """Map sparse 4 KiB pages in a new domain until the page-table pool is exhausted."""
    d = iommu.domain_alloc()
    with pytest.raises(MaxEntries, match=rf"{iommu.host}.*page-table pool"):
        for i in range(IOMMU_POOL_PAGES + 1):
            iommu.map(d, i * HUGE_PAGE_SIZE, 0, PAGE_SIZE)  # one level-1 table each
    return d


def test_2m_map_over_4k_pages_releases_their_table(iommu: Iommu) -> None:
    """Replacing 4 KiB pages by a 2 MiB page returns their table to the pool: with the pool
    otherwise full, swapping back and forth keeps working."""
    d = iommu.domain_alloc()
    iommu.map(d, 0, 0, PAGE_SIZE)
    _fill_pool(iommu)
    for i in range(4):
        iommu.map(d, 0, HUGE_PAGE_SIZE, HUGE_PAGE_SIZE, page_size=HUGE_PAGE_SIZE)
        iommu.map(d, 0, i * PAGE_SIZE, PAGE_SIZE)
        assert iommu.lookup(d, 0x10) == (i * PAGE_SIZE + 0x10, True, 0x10, PAGE_SIZE - 0x10)
        assert iommu.lookup(d, PAGE_SIZE) == (HUGE_PAGE_SIZE + PAGE_SIZE, True, 0, PAGE_SIZE)


def _dma(fab: Fabric, iova: int, data: bytes | None, size: int = 0):
    """DMA from the lender's NVMe through LUT slot 0 into borrower IOVA space."""
    ntb = fab.adapters["lender:ntb0"]
    slice_iova = iova - iova % ntb.slice_size
    ntb.peer_mw_set_trans(0, "borrower:ntb0", slice_iova)
    port = fab.port(fab.function("nvme0"))
    addr = ntb.slice_addr(0) + (iova - slice_iova)
    if data is None:
        return port.translate(addr, size), port.read(addr, size)
    return port.translate(addr, len(data), write=True), port.write(addr, data)


def test_read_only_page_faults_on_write(fab: Fabric, iommu: Iommu) -> None:
    """DMA reads of a read-only page succeed; writes fault (write-to-read-only) and leave the
    page untouched."""
    d = iommu.domain_alloc()
    rid = fab.function("borrower:ntb0").bdf.rid
    iommu.attach(rid, d)
    iommu.map(d, 0x8000_0000, 0x30_0000, PAGE_SIZE, write=False)
    assert iommu.lookup(d, 0x8000_0000) == (0x30_0000, False, 0, PAGE_SIZE)
    ram = fab.ram("borrower")
    ram.view[0x30_0010:0x30_0018] = b"readonly"
    pieces, back = _dma(fab, 0x8000_0010, None, 8)
    assert [p.status for p in pieces] == [OK]
    assert back == b"readonly"
    pieces, written = _dma(fab, 0x8000_0010, b"written!")
    assert [p.status for p in pieces] == [IOMMU_FAULT]
    assert written == 0
    assert bytes(ram.view[0x30_0010:0x30_0018]) == b"readonly"
    last = iommu.faults()[-1]
    assert (last.rid, last.addr, last.write, last.kind) == (
        rid, 0x8000_0010, True, "write-to-read-only")


def test_domain_free_returns_page_tables(iommu: Iommu) -> None:
    """Allocating domains with sparse mappings and freeing them, far more often than the
    page-table pool could hold without reuse, never exhausts the pool."""
    for i in range(IOMMU_POOL_PAGES // 9 + 50):  # ~10 table pages per round
        d = iommu.domain_alloc()
        for iova in (0, 1 << 30, 1 << 40):
            iommu.map(d, iova + i * PAGE_SIZE, i * PAGE_SIZE, PAGE_SIZE)
        assert iommu.lookup(d, (1 << 40) + i * PAGE_SIZE) == (i * PAGE_SIZE, True, 0,
                                                             PAGE_SIZE)
        iommu.domain_free(d)
    with pytest.raises(IllegalParameter, match="no IOMMU domain"):
        iommu.lookup(d, 0)


def test_pool_exhaustion_raises_max_entries_and_free_recovers(iommu: Iommu) -> None:
    """Mapping more sparse pages than the page-table pool can describe raises MaxEntries
    naming the host; freeing the domain makes the pool usable again."""
    d = _fill_pool(iommu)
    with pytest.raises(MaxEntries, match="borrower"):
        iommu.domain_alloc()
    iommu.domain_free(d)
    d2 = iommu.domain_alloc()
    iommu.map(d2, 1 << 40, 0, PAGE_SIZE)
    assert iommu.lookup(d2, 1 << 40) == (0, True, 0, PAGE_SIZE)


def test_detach_removes_requester_from_domain(fab: Fabric, iommu: Iommu) -> None:
    """After detach the requester has no domain and its DMA faults as no-domain."""
    d = iommu.domain_alloc()
    rid = fab.function("borrower:ntb0").bdf.rid
    iommu.attach(rid, d)
    iommu.map(d, 0, 0x1000, PAGE_SIZE)
    assert iommu.domain_of(rid) == d
    assert [p.status for p in _dma(fab, 0x10, b"x")[0]] == [OK]
    iommu.detach(rid)
    assert iommu.domain_of(rid) == 0
    assert [p.status for p in _dma(fab, 0x10, b"x")[0]] == [IOMMU_FAULT]
    assert iommu.faults()[-1].kind == "no-domain"


def test_device_table_attach_replace_and_full(iommu: Iommu) -> None:
    """Attaching a requester again moves it (one entry per requester); domain_free detaches
    its requesters only; the device table holds IOMMU_DEVICES requesters, then MaxEntries."""
    d1, d2 = iommu.domain_alloc(), iommu.domain_alloc()
    iommu.attach(0x100, d1)
    iommu.attach(0x200, d1)
    iommu.attach(0x300, d2)
    iommu.attach(0x100, d2)
    assert [iommu.domain_of(r) for r in (0x100, 0x200, 0x300, 0x400)] == [d2, d1, d2, 0]
    iommu.domain_free(d1)
    assert [iommu.domain_of(r) for r in (0x100, 0x200, 0x300)] == [d2, 0, d2]
    for rid in range(0x1000, 0x1000 + IOMMU_DEVICES - 2):
        iommu.attach(rid, d2)
    iommu.attach(0x100, d2)  # already present: no new entry needed
    with pytest.raises(MaxEntries, match=r"borrower.*device table"):
        iommu.attach(0x2000, d2)
    with pytest.raises(IllegalParameter, match="no IOMMU domain"):
        iommu.attach(0x2000, d1)


def test_fault_ring_keeps_the_newest_faults_in_order(iommu: Iommu) -> None:
    """The fault ring holds the newest IOMMU_FAULTS faults, oldest first, with rid, address,
    direction, kind and sequence number; the count keeps growing."""
    extra = 6
    for i in range(IOMMU_FAULTS + extra):
        iommu.record_fault(0x100 + i, 0x1000 * i, bool(i % 2), 1 + i % 3)
    faults = iommu.faults()
    assert iommu.fault_count == IOMMU_FAULTS + extra
    assert len(faults) == IOMMU_FAULTS
    kinds = ["no-domain", "not-present", "write-to-read-only"]
    assert [(f.seq, f.rid, f.addr, f.write, f.kind) for f in faults] == [
        (i, 0x100 + i, 0x1000 * i, bool(i % 2), kinds[i % 3])
        for i in range(extra, IOMMU_FAULTS + extra)]


@pytest.mark.parametrize(("iova", "phys", "size", "page_size"), [
    (0x1001, 0, PAGE_SIZE, PAGE_SIZE),
    (0, 0x800, PAGE_SIZE, PAGE_SIZE),
    (0, 0, 100, PAGE_SIZE),
    (PAGE_SIZE, 0, HUGE_PAGE_SIZE, HUGE_PAGE_SIZE),
    (0, PAGE_SIZE, HUGE_PAGE_SIZE, HUGE_PAGE_SIZE),
    (0, 0, 4 * MiB + PAGE_SIZE, HUGE_PAGE_SIZE),
    (0, 0, 8 * PAGE_SIZE, 8 * PAGE_SIZE),
    (-PAGE_SIZE, 0, PAGE_SIZE, PAGE_SIZE),
])
def test_bad_alignment_raises_illegal_parameter(iommu: Iommu, iova: int, phys: int, size: int,
                                                page_size: int) -> None:
    """A map whose IOVA, physical address or size is not aligned to a 4 KiB or 2 MiB page
    size (or names another page size) raises IllegalParameter and maps nothing."""
    d = iommu.domain_alloc()
    with pytest.raises(IllegalParameter):
        iommu.map(d, iova, phys, size, page_size=page_size)
    assert iommu.lookup(d, max(0, iova) & ~(PAGE_SIZE - 1)) is None


@pytest.mark.parametrize(("iova", "size"), [(0, 0), ((1 << 48) - PAGE_SIZE, 2 * PAGE_SIZE),
                                            (1 << 48, PAGE_SIZE)])
def test_map_outside_48_bit_iova_raises_out_of_range(iommu: Iommu, iova: int,
                                                     size: int) -> None:
    """An empty map or one reaching past the 48-bit IOVA space raises OutOfRange."""
    d = iommu.domain_alloc()
    with pytest.raises(OutOfRange):
        iommu.map(d, iova, 0, size)


def test_lookup_beyond_48_bits_misses(iommu: Iommu) -> None:
    """An IOVA beyond 48 bits does not alias the mapping of its low 48 bits."""
    d = iommu.domain_alloc()
    iommu.map(d, 0x5000, 0x9000, PAGE_SIZE)
    assert iommu.lookup(d, 0x5000) == (0x9000, True, 0, PAGE_SIZE)
    assert iommu.lookup(d, (1 << 48) + 0x5000) is None


def test_too_many_domains_raises_max_entries_naming_host(iommu: Iommu) -> None:
    """The 64th live domain raises MaxEntries naming the host; freeing one makes room."""
    ds = [iommu.domain_alloc() for _ in range(IOMMU_DOMAINS - 1)]
    assert sorted(ds) == list(range(1, IOMMU_DOMAINS))
    with pytest.raises(MaxEntries, match="borrower") as ei:
        iommu.domain_alloc()
    assert ei.value.code == "SCI_ERR_MAX_ENTRIES"
    iommu.domain_free(ds[10])
    assert iommu.domain_alloc() == ds[10]


def test_unknown_domain_raises_illegal_parameter(iommu: Iommu) -> None:
    """Mapping into, attaching to or looking up in a domain never allocated (or 0) raises."""
    for call in (lambda: iommu.map(5, 0, 0, PAGE_SIZE), lambda: iommu.attach(0x100, 5),
                 lambda: iommu.lookup(0, 0), lambda: iommu.unmap(IOMMU_DOMAINS, 0, PAGE_SIZE)):
        with pytest.raises(IllegalParameter, match="no IOMMU domain"):
            call()


def test_table_changes_bump_the_generation(fab: Fabric, iommu: Iommu) -> None:
    """Every IOMMU table change moves the fabric generation (so IOTLBs revalidate)."""
    gens = [fab.state.generation]
    d = iommu.domain_alloc()
    gens.append(fab.state.generation)
    iommu.attach(0x100, d)
    gens.append(fab.state.generation)
    iommu.map(d, 0, 0, 1 * GiB, page_size=HUGE_PAGE_SIZE)
    gens.append(fab.state.generation)
    iommu.unmap(d, 0, HUGE_PAGE_SIZE)
    gens.append(fab.state.generation)
    iommu.detach(0x100)
    gens.append(fab.state.generation)
    iommu.domain_free(d)
    gens.append(fab.state.generation)
    assert all(b > a for a, b in itertools.pairwise(gens))
