"""NVMe command latency pieces and the SQ placements of §7.4.1 (Fig. 34)."""

from __future__ import annotations

import pytest

from smartio.hw.timing import TimingModel
from smartio.hw.timing.path import dma_route
from smartio.hw.topology import TopologySpec, load_preset, loads_topology
from smartio.hw.units import KiB

# Fig. 34(a): the borrower (CPU, CQ, local GPU for data) reaches the lender's expansion
# chassis (NVMe, P4000 GPU, PXH830) through an MXS824; the lender's IOMMU is off.
FIG34 = """
name = "fig34-sq-placement"
[[hosts]]
name = "borrower"
iommu = true
[[hosts.adapters]]
name = "ntb0"
slot = 0
[[hosts]]
name = "lender"
[[hosts.adapters]]
name = "ntb0"
at = "lender-chassis/2"
[[switches]]
name = "lender-hib"
model = "HIB68"
host = "lender"
slot = 0
[[switches]]
name = "lender-tgt"
model = "PEX8733"
[[switches]]
name = "lender-chassis"
model = "PEX8796"
[[switches]]
name = "mxs0"
model = "MXS824"
[[links]]
a = "lender-hib/0"
b = "lender-tgt/0"
width = 16
[[links]]
a = "lender-tgt/1"
b = "lender-chassis/0"
width = 16
length_m = 0.1
[[links]]
a = "lender:ntb0/0"
b = "mxs0/0"
width = 16
length_m = 2.0
[[links]]
a = "borrower:ntb0/0"
b = "mxs0/4"
width = 16
length_m = 2.0
[[endpoints]]
name = "nvme0"
model = "nvme"
at = "lender-chassis/1"
[[endpoints]]
name = "gpu-remote"
model = "gpu"
at = "lender-chassis/3"
[[endpoints]]
name = "gpu-local"
model = "gpu"
at = "borrower/1"
"""


@pytest.fixture(scope="module")
def fig34() -> TopologySpec:
    return loads_topology(FIG34, source="fig34")


def _sq_placement(topo: TopologySpec, sq_at: str) -> float:
    tm = TimingModel(topo)
    c = tm.command_latency(
        doorbell=dma_route(topo, "borrower", "nvme0"),
        sqe_store=None if sq_at == "borrower" else dma_route(topo, "borrower", sq_at),
        sq=dma_route(topo, "nvme0", sq_at),
        data=dma_route(topo, "nvme0", "gpu-local"),
        cq=dma_route(topo, "nvme0", "borrower"),
        nbytes=4 * KiB, media="optane")
    return c.total_ns


def test_sq_placements_in_the_papers_order(fig34: TopologySpec) -> None:
    """SQ in local RAM is slowest, in the lender's RAM faster, in the lender's GPU fastest."""
    local = _sq_placement(fig34, "borrower")
    remote_ram = _sq_placement(fig34, "lender")
    remote_gpu = _sq_placement(fig34, "gpu-remote")
    assert local > remote_ram > remote_gpu
    assert local - remote_gpu > 500  # ns: distinct medians, not noise


def test_sqe_fetch_crosses_the_expected_chips(fig34: TopologySpec) -> None:
    """The SQE fetch crosses 4 chips from local RAM, 3 from remote RAM and 1 from the GPU."""
    tm = TimingModel(fig34)
    chips = {at: sum(1 for e in tm.resolve(dma_route(fig34, "nvme0", at)).elements[1:-1]
                     if e.chip)
             for at in ("borrower", "lender", "gpu-remote")}
    assert chips == {"borrower": 4, "lender": 3, "gpu-remote": 1}


def test_local_optane_read_matches_measured_qd1() -> None:
    """A local P4800X 4 KiB read with MSI models at ~8.9 us (AnandTech QD1 mean)."""
    topo = load_preset("back-to-back")
    tm = TimingModel(topo)
    to_host = dma_route(topo, "nvme0", "lender")
    c = tm.command_latency(doorbell=dma_route(topo, "lender", "nvme0"), sq=to_host,
                           data=to_host, cq=to_host, msi=to_host, nbytes=4 * KiB)
    assert c.total_ns == pytest.approx(8900, rel=0.05)
    assert c.media_ns == tm.params.media("optane")[0]
    assert c.total_ns == pytest.approx(c.submit_ns + c.sqe_fetch_ns + c.media_ns
                                       + c.data_ns + c.cqe_ns + c.msi_ns)


def test_cmb_polling_and_media_profiles() -> None:
    """An SQ in the CMB skips the fetch, polling skips the MSI, and NAND is slower than RAM."""
    topo = load_preset("back-to-back")
    tm = TimingModel(topo)
    to_host = dma_route(topo, "nvme0", "lender")
    cmb = tm.command_latency(sq=None, data=to_host, cq=to_host, nbytes=4 * KiB)
    assert cmb.sqe_fetch_ns == 0 and cmb.msi_ns == 0 and cmb.submit_ns == 0
    by_media = {m: tm.command_latency(data=to_host, cq=to_host, nbytes=4 * KiB,
                                      media=m).total_ns for m in ("ram", "optane", "nand")}
    assert by_media["ram"] < by_media["optane"] < by_media["nand"]
    write = tm.command_latency(data=to_host, cq=to_host, nbytes=4 * KiB, read=False,
                               media="nand")
    assert write.media_ns == tm.params.media("nand")[1] < by_media["nand"]
