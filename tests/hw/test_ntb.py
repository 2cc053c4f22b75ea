"""NTB adapter tables: the address LUT and the requester-ID LUT (paper §3.3, §8.6), their
limits and errors, and their sharing between processes' fabric handles."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smartio.errors import IllegalParameter, MaxEntries, OutOfRange
from smartio.hw.fabric import CPU_RID_ENTRIES, Fabric
from smartio.hw.ids import BDF
from smartio.hw.ntb import LutEntry
from smartio.hw.topology import TopologySpec, load_preset
from smartio.hw.translate import OK, UNMAPPED
from smartio.hw.units import MiB

MakeFabric = Callable[[TopologySpec], Fabric]
SLICE = 32 * MiB  # 1 GiB window / 32 entries


@pytest.fixture
def fab(make_fabric: MakeFabric) -> Fabric:
    return make_fabric(load_preset("back-to-back"))


def test_window_geometry(fab: Fabric) -> None:
    """The window is the adapter's BAR2, cut into 32 equal slices."""
    ntb = fab.adapters["borrower:ntb0"]
    bar2 = fab.maps["borrower"].functions["borrower:ntb0"].bar(2)
    assert (ntb.window_base, ntb.window_size, ntb.slice_size) == (bar2.base, bar2.size, SLICE)
    assert ntb.slice_addr(0) == bar2.base
    assert ntb.slice_addr(31) == bar2.base + 31 * SLICE


def test_lut_set_get_clear(fab: Fabric) -> None:
    """An entry reads back as set, is listed, and reads as absent once cleared; each change
    moves the generation."""
    ntb = fab.adapters["borrower:ntb0"]
    assert ntb.peer_mw_get_trans(3) is None
    gen = fab.state.generation
    ntb.peer_mw_set_trans(3, "lender:ntb0", 5 * SLICE)
    ntb.peer_mw_set_trans(7, "lender:ntb0", 0)
    assert fab.state.generation == gen + 2
    assert ntb.peer_mw_get_trans(3) == LutEntry(3, "lender:ntb0", 5 * SLICE)
    assert ntb.lut_entries() == [LutEntry(3, "lender:ntb0", 5 * SLICE),
                                 LutEntry(7, "lender:ntb0", 0)]
    ntb.peer_mw_set_trans(3, "lender:ntb0", 9 * SLICE)  # reprogramming replaces
    assert ntb.peer_mw_get_trans(3) == LutEntry(3, "lender:ntb0", 9 * SLICE)
    ntb.peer_mw_clear_trans(3)
    assert ntb.peer_mw_get_trans(3) is None
    assert ntb.lut_entries() == [LutEntry(7, "lender:ntb0", 0)]
    assert fab.state.generation == gen + 4
    assert fab.adapters["lender:ntb0"].lut_entries() == []


@pytest.mark.parametrize("addr", [1, 4096, SLICE // 2, SLICE + 4096, -SLICE])
def test_unaligned_target_rejected(fab: Fabric, addr: int) -> None:
    """A LUT target not aligned to the slice size is rejected and the entry stays empty."""
    ntb = fab.adapters["borrower:ntb0"]
    with pytest.raises(IllegalParameter, match="borrower:ntb0"):
        ntb.peer_mw_set_trans(0, "lender:ntb0", addr)
    assert ntb.peer_mw_get_trans(0) is None


@pytest.mark.parametrize("peer", ["borrower:ntb0", "nowhere:ntb0", "lender"])
def test_bad_peer_rejected(fab: Fabric, peer: str) -> None:
    """A LUT entry must name another adapter of the topology."""
    ntb = fab.adapters["borrower:ntb0"]
    with pytest.raises(IllegalParameter):
        ntb.peer_mw_set_trans(0, peer, 0)
    assert ntb.peer_mw_get_trans(0) is None


@pytest.mark.parametrize("index", [-1, 32, 1000])
def test_index_out_of_range(fab: Fabric, index: int) -> None:
    """Setting, reading or clearing an entry outside 0..31 raises OutOfRange."""
    ntb = fab.adapters["borrower:ntb0"]
    with pytest.raises(OutOfRange, match=r"borrower:ntb0.*0\.\.31"):
        ntb.peer_mw_set_trans(index, "lender:ntb0", 0)
    with pytest.raises(OutOfRange):
        ntb.peer_mw_get_trans(index)
    with pytest.raises(OutOfRange):
        ntb.peer_mw_clear_trans(index)


def test_address_lut_exhaustion_names_adapter_and_table(fab: Fabric) -> None:
    """Filling the address LUT through lut_find_free ends in MaxEntries naming the adapter
    and the table; freed entries are found again, runs of consecutive entries too."""
    ntb = fab.adapters["borrower:ntb0"]
    for i in range(32):
        index = ntb.lut_find_free()
        assert index == i
        ntb.peer_mw_set_trans(index, "lender:ntb0", i * SLICE)
    with pytest.raises(MaxEntries) as ei:
        ntb.lut_find_free()
    assert "borrower:ntb0" in str(ei.value)
    assert "address LUT" in str(ei.value)
    assert ei.value.code == "SCI_ERR_MAX_ENTRIES"
    for i in (5, 7, 8, 9):
        ntb.peer_mw_clear_trans(i)
    assert ntb.lut_find_free() == 5
    assert ntb.lut_find_free(3) == 7
    with pytest.raises(MaxEntries, match="borrower:ntb0: address LUT"):
        ntb.lut_find_free(4)


def test_rid_lut_exhaustion_names_adapter_and_table(fab: Fabric) -> None:
    """The CPUs take two requester-ID entries; 30 more requesters fit, the next raises
    MaxEntries naming the adapter and the requester-ID LUT."""
    ntb = fab.adapters["borrower:ntb0"]
    fab.reserve_cpu_requesters("borrower:ntb0")
    assert len(ntb.rid_entries()) == CPU_RID_ENTRIES
    rids = [BDF(2, dev, 0).rid for dev in range(30)]
    for rid in rids:
        ntb.rid_add(rid)
    assert len(ntb.rid_entries()) == 32
    with pytest.raises(MaxEntries) as ei:
        ntb.rid_add(BDF(3, 0, 0).rid)
    assert "borrower:ntb0" in str(ei.value)
    assert "requester-ID LUT" in str(ei.value)
    assert not ntb.rid_has(BDF(3, 0, 0).rid)
    ntb.rid_remove(rids[4])
    assert ntb.rid_add(BDF(3, 0, 0).rid) == ntb.rid_entries().index(BDF(3, 0, 0).rid)


def test_rid_add_is_idempotent_and_remove_checks(fab: Fabric) -> None:
    """Adding a requester twice reuses its entry; removing one not present raises."""
    ntb = fab.adapters["lender:ntb0"]
    rid = fab.function("nvme0").bdf.rid
    i = ntb.rid_add(rid)
    assert ntb.rid_add(rid) == i
    assert ntb.rid_entries() == [rid]
    assert ntb.rid_has(rid)
    ntb.rid_remove(rid)
    assert not ntb.rid_has(rid)
    with pytest.raises(IllegalParameter, match="lender:ntb0"):
        ntb.rid_remove(rid)


def test_rid_entry_gates_translation(fab: Fabric) -> None:
    """The CPU's traffic passes the adapter only while its requester ID is in the LUT."""
    ntb = fab.adapters["borrower:ntb0"]
    ntb.peer_mw_set_trans(0, "lender:ntb0", 0)
    port = fab.cpu("borrower")
    assert port.write(ntb.slice_addr(0), b"no") == 0
    fab.reserve_cpu_requesters("borrower:ntb0")
    assert port.write(ntb.slice_addr(0), b"ok") == 2
    assert bytes(fab.ram("lender").view[0:2]) == b"ok"


def test_tables_are_shared_between_fabric_handles(fab: Fabric) -> None:
    """A second handle (Fabric.attach) sees LUT and requester-ID entries set through the
    first, and its cached translations follow changes made through the first."""
    other = Fabric.attach(fab.topo, fab.cluster)
    try:
        mine, theirs = fab.adapters["borrower:ntb0"], other.adapters["borrower:ntb0"]
        mine.peer_mw_set_trans(4, "lender:ntb0", 2 * SLICE)
        fab.reserve_cpu_requesters("borrower:ntb0")
        assert theirs.peer_mw_get_trans(4) == LutEntry(4, "lender:ntb0", 2 * SLICE)
        assert theirs.rid_entries() == mine.rid_entries() != []
        port = other.cpu("borrower")
        [p] = port.translate(theirs.slice_addr(4) + 8, 4, write=True)
        assert (p.status, p.offset) == (OK, 2 * SLICE + 8)
        assert port.write(theirs.slice_addr(4) + 8, b"seen") == 4
        assert bytes(fab.ram("lender").view[2 * SLICE + 8: 2 * SLICE + 12]) == b"seen"
        theirs.peer_mw_set_trans(6, "lender:ntb0", 0)
        assert mine.peer_mw_get_trans(6) == LutEntry(6, "lender:ntb0", 0)
        mine.peer_mw_clear_trans(4)
        assert [q.status for q in port.translate(theirs.slice_addr(4) + 8, 4)] == [UNMAPPED]
    finally:
        other.close()
    assert fab.adapters["borrower:ntb0"].peer_mw_get_trans(6) is not None


def test_link_state_follows_link_set(fab: Fabric) -> None:
    """link_is_up reports the cable's state on both adapters."""
    ntb_b, ntb_l = fab.adapters["borrower:ntb0"], fab.adapters["lender:ntb0"]
    assert ntb_b.link_is_up() and ntb_l.link_is_up()
    assert fab.link_set("lender:ntb0", False) == []
    assert not ntb_b.link_is_up() and not ntb_l.link_is_up()
    fab.link_set("lender:ntb0", True)
    assert ntb_b.link_is_up() and ntb_l.link_is_up()
