"""TimingModel behaviour: reads vs writes, tags, alignment, CPU access, MSI, contention."""

from __future__ import annotations

import pytest

from smartio.errors import IllegalParameter, NotFound
from smartio.hw.route import Route
from smartio.hw.timing import Flow, TimingModel
from smartio.hw.timing.path import dma_route
from smartio.hw.topology import TopologySpec, load_preset, loads_topology
from smartio.hw.units import KiB, MiB


@pytest.fixture(scope="module")
def b2b() -> TopologySpec:
    return load_preset("back-to-back")


@pytest.fixture(scope="module")
def model(b2b: TopologySpec) -> TimingModel:
    return TimingModel(b2b)


def test_resolve_names_chips_and_links(model: TimingModel, b2b: TopologySpec) -> None:
    """A route resolves to its elements' kinds and chips and to the cable between adapters."""
    path = model.resolve(dma_route(b2b, "gpu0", "borrower"))
    assert [e.kind for e in path.elements] == ["endpoint", "root", "ntb", "ntb", "root"]
    assert path.elements[2].chip == "PEX8733"
    assert path.links[2].length_m == 2.0 and path.links[2].width == 16
    assert path.completer.iommu  # the borrower's IOMMU is on in this preset


def test_small_transfers_are_latency_bound_large_ones_rate_bound(
        model: TimingModel, b2b: TopologySpec) -> None:
    """Throughput rises with size toward the steady rate (formula 9)."""
    route = dma_route(b2b, "gpu0", "borrower")
    for read in (False, True):
        ts = [model.dma(route, s, read) for s in (64, 4 * KiB, 1 * MiB, 64 * MiB)]
        thr = [t.throughput_gb_s for t in ts]
        assert thr == sorted(thr)
        assert thr[-1] == pytest.approx(ts[-1].rate_gb_s, rel=0.01)
        assert ts[0].latency_ns == pytest.approx(ts[0].first_ns)


def test_read_rate_follows_littles_law(b2b: TopologySpec) -> None:
    """Doubling a requester's outstanding reads doubles a tag-limited read rate."""
    route = dma_route(b2b, "gpu0", "borrower")
    few = TimingModel(b2b, {"requester.gpu.tags": 8}).dma(route, 64 * MiB, True)
    more = TimingModel(b2b, {"requester.gpu.tags": 16}).dma(route, 64 * MiB, True)
    assert more.rate_gb_s == pytest.approx(2 * few.rate_gb_s, rel=1e-6)
    rtt = TimingModel(b2b).read_rtt(route, 256)
    assert few.rate_gb_s == pytest.approx(8 * 256 / rtt, rel=0.01)


def test_reads_are_capped_by_the_link(b2b: TopologySpec) -> None:
    """With unlimited tags a read reaches the link's read plateau, not more."""
    route = dma_route(b2b, "gpu0", "lender")
    t = TimingModel(b2b, {"requester.gpu.tags": 4096}).dma(route, 64 * MiB, True)
    assert t.rate_gb_s == pytest.approx(model_link_read(b2b), rel=0.02)
    assert t.limit.startswith("link")


def model_link_read(topo: TopologySpec) -> float:
    return TimingModel(topo).link(3, 16).usable_gb_s * 256 / 276


def test_x4_device_link_is_the_bottleneck(model: TimingModel, b2b: TopologySpec) -> None:
    """The NVMe's Gen3 x4 link bounds its write rate to a quarter of x16."""
    t = model.dma(dma_route(b2b, "nvme0", "lender"), 64 * MiB, False)
    assert t.rate_gb_s == pytest.approx(model.link(3, 4).write_gb_s, rel=1e-6)
    assert "nvme0" in t.limit


def test_unaligned_transfer_needs_more_tlps(model: TimingModel, b2b: TopologySpec) -> None:
    """A transfer starting off an MPS boundary issues one more TLP and is a little slower."""
    route = dma_route(b2b, "gpu0", "lender")
    aligned = model.dma(route, 64 * KiB, False)
    skewed = model.dma(route, 64 * KiB, False, addr=100)
    assert skewed.requests == aligned.requests + 1
    assert skewed.latency_ns > aligned.latency_ns


def test_remote_numa_adds_100_ns(model: TimingModel, b2b: TopologySpec) -> None:
    """A buffer on the other socket adds ~100 ns to a read round trip (pcie-bench)."""
    route = dma_route(b2b, "gpu0", "lender")
    near = model.dma(route, 64, True).latency_ns
    far = model.dma(route, 64, True, numa_remote=True).latency_ns
    assert far - near == pytest.approx(100)


def test_cpu_loads_are_serialized_and_stores_posted(model: TimingModel,
                                                    b2b: TopologySpec) -> None:
    """CPU loads over the NTB wait a round trip each; posted stores stream."""
    route = dma_route(b2b, "borrower", "gpu0")
    one = model.cpu_load(route, 8)
    many = model.cpu_load(route, 64)
    assert many.latency_ns == pytest.approx(8 * one.latency_ns)
    assert one.latency_ns > 1000  # core, two adapters and the lender's root, both ways
    store = model.cpu_store(route, 1 * MiB)
    assert store.rate_gb_s > 100 * many.rate_gb_s
    assert model.cpu_store(route, 64).latency_ns < one.latency_ns


def test_msi_is_a_small_posted_write_to_the_root(model: TimingModel, b2b: TopologySpec) -> None:
    """An MSI costs a 4 B write's one-way latency; it must end at a root complex."""
    msi = model.msi(dma_route(b2b, "nvme0", "borrower"))
    assert msi.op == "msi" and msi.nbytes == 4
    assert msi.latency_ns < model.dma(dma_route(b2b, "nvme0", "borrower"), 64, True).latency_ns
    with pytest.raises(IllegalParameter):
        model.msi(dma_route(b2b, "nvme0", "gpu0"))


def test_misuse_raises(model: TimingModel, b2b: TopologySpec) -> None:
    """Bad routes and sizes raise SmartIOError subclasses, never plain exceptions."""
    with pytest.raises(IllegalParameter):
        model.dma(Route(("gpu0",)), 64, True)
    with pytest.raises(IllegalParameter):
        model.dma(dma_route(b2b, "lender", "gpu0"), 64, True)  # a CPU: use cpu_load
    with pytest.raises(IllegalParameter):
        model.cpu_load(dma_route(b2b, "gpu0", "lender"), 8)
    with pytest.raises(IllegalParameter):
        model.dma(dma_route(b2b, "gpu0", "lender"), 0, True)
    with pytest.raises(NotFound):
        model.dma(Route(("gpu0", "borrower")), 64, True)  # not linked


def test_two_writers_share_a_link_fairly() -> None:
    """Two GPUs writing through one NTB cable each get half of it; one alone gets it all."""
    topo = loads_topology(TWO_GPUS, source="two-gpus")
    tm = TimingModel(topo)
    a = dma_route(topo, "gpu0", "borrower")
    b = dma_route(topo, "gpu1", "borrower")
    solo = tm.dma(a, 64 * MiB, False)
    both = tm.concurrent([Flow(a, 64 * MiB, False), Flow(b, 64 * MiB, False)])
    assert [t.rate_gb_s for t in both] == pytest.approx([solo.rate_gb_s / 2] * 2, rel=1e-6)
    assert "fair share" in both[0].limit
    assert both[0].latency_ns > 1.9 * solo.latency_ns


def test_slow_flow_leaves_its_share_to_the_fast_one() -> None:
    """Max-min fairness: a tag-limited reader keeps its rate, a writer gets the rest."""
    topo = loads_topology(TWO_GPUS, source="two-gpus")
    tm = TimingModel(topo, {"requester.gpu.tags": 8})
    reader = tm.dma(dma_route(topo, "gpu0", "borrower"), 64 * MiB, True)
    flows = [Flow(dma_route(topo, "gpu0", "borrower"), 64 * MiB, True),
             Flow(dma_route(topo, "gpu1", "borrower"), 64 * MiB, False)]
    shared = tm.concurrent(flows)
    assert shared[0].rate_gb_s == pytest.approx(reader.rate_gb_s)
    writer = tm.dma(flows[1].route, 64 * MiB, False)
    # Only the reader's 24 B requests share the writer's direction.
    assert 0.98 * writer.rate_gb_s < shared[1].rate_gb_s < writer.rate_gb_s


def test_opposite_directions_barely_contend() -> None:
    """Links are full duplex: a write and a read keep >= 90% (only read requests collide)."""
    topo = loads_topology(TWO_GPUS, source="two-gpus")
    tm = TimingModel(topo, {"requester.gpu.tags": 4096})
    f = [Flow(dma_route(topo, "gpu0", "borrower"), 64 * MiB, True),
         Flow(dma_route(topo, "gpu1", "borrower"), 64 * MiB, False)]
    solo = [tm.dma(x.route, x.nbytes, x.read) for x in f]
    shared = tm.concurrent(f)
    for s, c in zip(solo, shared, strict=True):
        assert 0.9 * s.rate_gb_s <= c.rate_gb_s <= s.rate_gb_s


TWO_GPUS = """
name = "two-gpus"
[[hosts]]
name = "lender"
[[hosts.adapters]]
name = "ntb0"
slot = 0
[[hosts]]
name = "borrower"
[[hosts.adapters]]
name = "ntb0"
slot = 0
[[switches]]
name = "chassis"
model = "PEX8796"
host = "lender"
slot = 1
[[links]]
a = "lender:ntb0/0"
b = "borrower:ntb0/0"
width = 16
[[endpoints]]
name = "gpu0"
model = "gpu"
at = "chassis/1"
[[endpoints]]
name = "gpu1"
model = "gpu"
at = "chassis/2"
"""
