"""The model against its calibration targets on the paper's set-ups (§7.1.3, §7.3.1).

Presets: back-to-back (a GPU and an NVMe in the lender's root ports), fig22-chassis (the
Back-to-Back scenario of Figs. 22/23: GPU in the lender's expansion chassis, PXH830 cable)
and fig23-longer-path (the same with an MXS824 cluster switch between the adapters). The
§7.3.1 set-up is fig22-chassis with the lender's IOMMU on.
"""

from __future__ import annotations

import pytest

from smartio.hw.route import Route
from smartio.hw.timing import TimingModel
from smartio.hw.timing.path import dma_route, with_iommu
from smartio.hw.topology import TopologySpec, load_preset
from smartio.hw.units import KiB, MiB

SIZES = [4 * KiB << i for i in range(16)]  # 4 KiB .. 128 MiB, as bandwidthTest


def _setup(topo: TopologySpec, a: str, b: str) -> tuple[TimingModel, Route]:
    return TimingModel(topo), dma_route(topo, a, b)


@pytest.fixture(scope="module")
def b2b() -> tuple[TimingModel, Route]:
    return _setup(load_preset("fig22-chassis"), "gpu0", "borrower")


@pytest.fixture(scope="module")
def switched() -> tuple[TimingModel, Route]:
    return _setup(load_preset("fig23-longer-path"), "gpu0", "borrower")


@pytest.mark.parametrize("device", ["gpu0", "nvme0"])
def test_64b_read_round_trip_on_root_complex_only_path(device: str) -> None:
    """A 64 B DMA read of host RAM from a device in a root port takes 500-650 ns."""
    tm, route = _setup(load_preset("back-to-back"), device, "lender")
    assert route.hops == (device, "lender")
    t = tm.dma(route, 64, read=True)
    assert 500 <= t.latency_ns <= 650
    assert t.latency_ns == pytest.approx(tm.read_rtt(route, 64))


def test_longer_path_differs_by_one_pm8536_hop(b2b: tuple[TimingModel, Route],
                                               switched: tuple[TimingModel, Route]) -> None:
    """The Cluster Switch route is the Back-to-Back route plus the MXS824 (PM8536)."""
    short, long = b2b[1].hops, switched[1].hops
    assert [h for h in long if h not in short] == ["mxs0"]
    assert switched[0].resolve(switched[1]).elements[3].chip == "PM8536"


def test_extra_hop_adds_about_170_ns_to_small_writes(b2b: tuple[TimingModel, Route],
                                                     switched: tuple[TimingModel, Route]) -> None:
    """One PM8536 hop (and its second 2 m cable) raises a small write's latency by ~170 ns."""
    for size in (4, 64, 256):
        extra = (switched[0].dma(switched[1], size, read=False).latency_ns
                 - b2b[0].dma(b2b[1], size, read=False).latency_ns)
        assert extra == pytest.approx(170, rel=0.1)


def test_large_writes_converge_above_512k(b2b: tuple[TimingModel, Route],
                                          switched: tuple[TimingModel, Route]) -> None:
    """Writes of 512 KiB and more are within 5% of Back-to-Back; 4 KiB writes are not."""
    for size in SIZES:
        near = b2b[0].dma(b2b[1], size, read=False).throughput_gb_s
        far = switched[0].dma(switched[1], size, read=False).throughput_gb_s
        assert far <= near
        if size >= 512 * KiB:
            assert far >= 0.95 * near, size
    small_near = b2b[0].dma(b2b[1], 4 * KiB, read=False).throughput_gb_s
    small_far = switched[0].dma(switched[1], 4 * KiB, read=False).throughput_gb_s
    assert small_far < 0.95 * small_near


def test_reads_stay_measurably_lower_on_the_longer_path(
        b2b: tuple[TimingModel, Route], switched: tuple[TimingModel, Route]) -> None:
    """Reads of every size stay >10% slower with the extra hop (fewer reads in flight)."""
    for size in SIZES:
        near = b2b[0].dma(b2b[1], size, read=True)
        far = switched[0].dma(switched[1], size, read=True)
        assert far.throughput_gb_s < 0.9 * near.throughput_gb_s, size
    assert "outstanding" in far.limit  # Little's law, not the link, limits long reads


def test_iommu_read_collapse_of_section_7_3_1() -> None:
    """With the lender IOMMU splitting reads, DMA reads fall from ~10 GB/s to 1.5 +- 0.3 GB/s."""
    topo = load_preset("fig22-chassis")
    bare = _setup(topo, "gpu0", "borrower")
    iommu = _setup(with_iommu(topo, ["lender"]), "gpu0", "borrower")
    assert "lender" in iommu[1].hops[1:-1]  # DMA now turns at the lender's root complex
    before = bare[0].dma(bare[1], 128 * MiB, read=True).throughput_gb_s
    after = iommu[0].dma(iommu[1], 128 * MiB, read=True)
    assert before == pytest.approx(10.2, rel=0.05)
    assert after.throughput_gb_s == pytest.approx(1.5, abs=0.3)
    assert "root complex lender" in after.limit
    # Writes are posted: the detour costs latency, not the plateau.
    w = iommu[0].dma(iommu[1], 128 * MiB, read=False).throughput_gb_s
    assert w == pytest.approx(bare[0].dma(bare[1], 128 * MiB, read=False).throughput_gb_s,
                              rel=0.01)


def test_iommu_without_splitting_only_costs_translation() -> None:
    """Turning the split off (split = MRRS) removes the collapse: splitting is the cause."""
    topo = with_iommu(load_preset("fig22-chassis"), ["lender"])
    route = dma_route(topo, "gpu0", "borrower")
    split = TimingModel(topo).dma(route, 16 * MiB, read=True).throughput_gb_s
    whole = TimingModel(topo, {"iommu.split_b": 256,
                               "rc.p2p_read_tags": 56}).dma(route, 16 * MiB, read=True)
    assert whole.throughput_gb_s > 2 * split
