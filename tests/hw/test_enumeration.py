"""Per-host PCIe enumeration: BAR placement, bridge windows, bus numbers, address decode.

Paper §3.2/§3.3 (each host enumerates its own tree), §4.3 and §8.6 (a large NTB BAR ends
up above RAM), §7.1.2 (a 1 GiB window is placed low, below 4 GiB).
"""

from __future__ import annotations

import itertools

import pytest

from smartio.hw.enumeration import HIGH_RAM_BASE, HostMap, enumerate_all
from smartio.hw.topology import TopologySpec, load_preset, loads_topology, preset_names
from smartio.hw.units import GiB

PHYS_LIMIT = 1 << 52

B2B = """
name = "b2b-{window}"

[[hosts]]
name = "a"
ram = "{ram}"

[[hosts.adapters]]
name = "ntb0"
slot = 0
window = "{window}"

[[hosts]]
name = "b"
ram = "1GiB"

[[hosts.adapters]]
name = "ntb0"
slot = 0
window = "1GiB"

[[links]]
a = "a:ntb0/0"
b = "b:ntb0/0"
"""

CHASSIS = """
name = "chassis"

[[hosts]]
name = "h"
ram = "4GiB"

[[switches]]
name = "card"
model = "MXH832"
host = "h"
slot = 0

[[switches]]
name = "box"
model = "PEX8796"

[[links]]
a = "card/0"
b = "box/0"

[[endpoints]]
name = "nvme0"
model = "nvme"
at = "box/1"

[[endpoints]]
name = "gpu0"
model = "gpu"
at = "box/2"
params = { memory = "512MiB" }

[[endpoints]]
name = "nic0"
model = "nic"
at = "h/1"
"""

# Root ports whose subtrees are not multiples of their alignment (1 GiB + 32 MiB, then a
# 256 MiB-aligned one), so each window must be aligned on its own, not just packed.
MIXED = """
name = "mixed"

[[hosts]]
name = "h"
ram = "3GiB"
slots = 6

[[endpoints]]
name = "big"
model = "gpu"
at = "h/0"
params = { memory = "1GiB" }

[[endpoints]]
name = "small"
model = "gpu"
at = "h/1"

[[endpoints]]
name = "nic0"
model = "nic"
at = "h/2"

[[endpoints]]
name = "nvme0"
model = "nvme"
at = "h/3"
"""


def _b2b(window: str, ram: str = "2GiB") -> TopologySpec:
    return loads_topology(B2B.format(window=window, ram=ram), source="inline")


def _topologies() -> list[TopologySpec]:
    out = [load_preset("back-to-back"), _b2b("4GiB", "6GiB"),
           loads_topology(CHASSIS, source="inline"), loads_topology(MIXED, source="inline")]
    if "fig21-chassis" in preset_names():
        out.append(load_preset("fig21-chassis"))
    return out


TOPOLOGIES = _topologies()
IDS = [t.name for t in TOPOLOGIES]


def _check_map(hmap: HostMap) -> None:
    """Every invariant of one host's address map (shared by the preset test)."""
    bars = [(f, b) for f in hmap.functions.values() for b in f.bars]
    for f, b in bars:
        assert b.size > 0 and b.size & (b.size - 1) == 0, f"{f.name} bar{b.index} size"
        assert b.base % b.size == 0, f"{f.name} bar{b.index} at {b.base:#x} not aligned"
        assert b.end <= PHYS_LIMIT, f"{f.name} bar{b.index} beyond 52 bits"
        if not b.is64:
            assert b.end <= 4 * GiB, f"32-bit {f.name} bar{b.index} at {b.base:#x}"
    regions = sorted(hmap.regions, key=lambda r: r.start)
    assert len(regions) == len(bars) + sum(r.kind in ("ram", "msi") for r in regions)
    assert [r.start for r in regions if r.kind == "msi"] == [0xFEE0_0000]
    for lo, hi in itertools.pairwise(regions):
        assert lo.end <= hi.start, f"{lo} overlaps {hi}"
    assert regions[-1].end <= PHYS_LIMIT
    assert sum(r.size for r in regions if r.kind == "ram") == hmap.ram
    # Bus numbers: every function on its own secondary bus, never a switch's internal bus.
    fn_buses = [f.bdf.bus for f in hmap.functions.values()]
    assert len(set(fn_buses)) == len(fn_buses)
    internal = {br.bdf.bus for br in hmap.bridges if br.bdf.bus != 0}
    assert not internal & set(fn_buses)
    assert 0 not in fn_buses
    assert len({br.bdf for br in hmap.bridges}) == len(hmap.bridges)
    # Every BAR is forwarded by each bridge between the function and the root complex.
    by_child = {br.child: br for br in hmap.bridges}
    assert len(by_child) == len(hmap.bridges)
    for f, b in bars:
        assert f.chain[0] == f.name and f.chain[-1] == hmap.host
        for element in f.chain[:-1]:
            br = by_child[element]
            base, size = (br.pf_base, br.pf_size) if b.prefetchable else (br.np_base, br.np_size)
            assert base <= b.base and b.end <= base + size, (
                f"{f.name} bar{b.index} {b.base:#x}+{b.size:#x} outside the window of "
                f"bridge {br.bdf} to {element} ({base:#x}+{size:#x})")


@pytest.mark.parametrize("topo", TOPOLOGIES, ids=IDS)
def test_address_map_invariants(topo: TopologySpec) -> None:
    """BARs are naturally aligned, disjoint from each other and RAM, inside their bridge
    windows, 32-bit ones below 4 GiB, and bus numbers are unique."""
    maps = enumerate_all(topo)
    assert set(maps) == {h.name for h in topo.hosts}
    for hmap in maps.values():
        _check_map(hmap)


@pytest.mark.parametrize("topo", TOPOLOGIES, ids=IDS)
def test_enumeration_is_deterministic(topo: TopologySpec) -> None:
    """Two enumerations of the same topology give identical maps."""
    assert enumerate_all(topo) == enumerate_all(topo)


def test_enumeration_survives_reloading_the_text() -> None:
    """Loading the same TOML twice enumerates to the same addresses and BDFs."""
    a = enumerate_all(loads_topology(CHASSIS, source="one"))
    b = enumerate_all(loads_topology(CHASSIS, source="two"))
    assert a == b


def test_small_ntb_window_is_placed_low() -> None:
    """A 1 GiB NTB window fits the 32-bit MMIO window and is placed below 4 GiB (§7.1.2)."""
    hmap = enumerate_all(_b2b("1GiB"))["a"]
    win = hmap.functions["a:ntb0"].bar(2)
    assert win.size == 1 * GiB
    assert win.end <= 4 * GiB
    assert win.base >= 2 * GiB  # above low RAM
    region = hmap.decode(win.base)
    assert region is not None and region.kind == "ntb-window" and region.owner == "a:ntb0"


@pytest.mark.parametrize("ram", ["2GiB", "6GiB", "70GiB"])
def test_large_ntb_window_goes_above_ram(ram: str) -> None:
    """A 4 GiB NTB window does not fit below 4 GiB and goes above the end of RAM (§4.3, §8.6)."""
    topo = _b2b("4GiB", ram)
    hmap = enumerate_all(topo)["a"]
    win = hmap.functions["a:ntb0"].bar(2)
    ram_end = max(r.end for r in hmap.regions if r.kind == "ram")
    assert win.size == 4 * GiB
    assert win.base >= 4 * GiB
    assert win.base >= ram_end
    assert win.base % win.size == 0
    # The adapter's register BAR is non-prefetchable and stays low.
    assert hmap.functions["a:ntb0"].bar(0).end <= 4 * GiB
    _check_map(hmap)


def test_chassis_endpoints_are_reached_through_the_chassis() -> None:
    """Endpoints in an expansion chassis have chains through the chassis switch and the host
    card, and sit on buses below the card's bridges."""
    topo = loads_topology(CHASSIS, source="inline")
    hmap = enumerate_all(topo)["h"]
    assert hmap.functions["nvme0"].chain == ("nvme0", "box", "card", "h")
    assert hmap.functions["gpu0"].chain == ("gpu0", "box", "card", "h")
    assert hmap.functions["nic0"].chain == ("nic0", "h")
    children = {br.child: br for br in hmap.bridges}
    assert {"card", "box", "nvme0", "gpu0", "nic0"} <= set(children)
    assert children["card"].bdf.bus == 0 and children["nic0"].bdf.bus == 0  # root ports
    assert children["box"].bdf.bus != 0  # a downstream port of the card
    assert children["nvme0"].bdf.bus not in (0, children["box"].bdf.bus)
    # The chassis's windows hold all of its BARs; a slot device's BAR is outside them.
    box = children["box"]
    nic = hmap.functions["nic0"].bar(0)
    assert not box.pf_base <= nic.base < box.pf_base + box.pf_size
    gpu = hmap.functions["gpu0"].bar(1)
    assert gpu.size == 512 * 2**20
    assert box.pf_base <= gpu.base and gpu.end <= box.pf_base + box.pf_size


def test_decode_finds_region_edges_and_holes() -> None:
    """decode() returns the region at its first and last byte, and None in the holes."""
    for topo in TOPOLOGIES:
        for hmap in enumerate_all(topo).values():
            regions = sorted(hmap.regions, key=lambda r: r.start)
            for r in regions:
                assert hmap.decode(r.start) == r
                assert hmap.decode(r.end - 1) == r
            for lo, hi in itertools.pairwise(regions):
                if lo.end < hi.start:
                    assert hmap.decode(lo.end) is None
                    assert hmap.decode(hi.start - 1) is None
                    assert hmap.decode((lo.end + hi.start) // 2) is None
            assert hmap.decode(regions[-1].end) is None
            assert hmap.decode(PHYS_LIMIT - 1) is None
    # Host b of the inline pair has 1 GiB of RAM: nothing claims [1 GiB, 2 GiB).
    b = enumerate_all(_b2b("1GiB"))["b"]
    assert b.decode(1 * GiB - 1) is not None and b.decode(1 * GiB - 1).kind == "ram"
    assert b.decode(1 * GiB) is None
    assert b.decode(2 * GiB - 1) is None


def test_decode_of_ram_below_and_above_the_mmio_hole() -> None:
    """RAM above 2 GiB continues at 4 GiB with the right backing offset; between is MMIO."""
    hmap = enumerate_all(_b2b("4GiB", "6GiB"))["a"]
    low = hmap.decode(0)
    high = hmap.decode(HIGH_RAM_BASE)
    assert low is not None and low.kind == "ram" and low.size == 2 * GiB
    assert high is not None and high.kind == "ram" and high.offset == 2 * GiB
    assert high.size == 4 * GiB
    assert hmap.decode(HIGH_RAM_BASE - 1) is None or hmap.decode(HIGH_RAM_BASE - 1).kind != "ram"


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_enumerates(name: str) -> None:
    """Every built-in preset enumerates and satisfies the address-map invariants."""
    topo = load_preset(name)
    maps = enumerate_all(topo)
    assert set(maps) == {h.name for h in topo.hosts}
    for hmap in maps.values():
        _check_map(hmap)
        for a in topo.adapters:
            if a.host == hmap.host:
                assert hmap.functions[a.id].bar(2).size == a.window


@pytest.mark.skipif("cascade-60" not in preset_names(), reason="no cascade-60 preset")
def test_cascade_60_enumerates_all_hosts() -> None:
    """The 60-host cascade preset enumerates every one of its hosts."""
    topo = load_preset("cascade-60")
    maps = enumerate_all(topo)
    assert len(topo.hosts) == 60
    assert len(maps) == 60
    assert all(hmap.functions for hmap in maps.values())
