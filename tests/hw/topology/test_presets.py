"""The built-in presets: all load, and each reproduces the paper testbed it names."""

from __future__ import annotations

from importlib import resources

import networkx as nx
import pytest

from smartio.errors import NotFound
from smartio.hw.models import SWITCHES
from smartio.hw.topology import (
    DEFAULT_PRESET,
    TopologySpec,
    load_preset,
    preset_names,
    resolve_topology,
)
from smartio.hw.units import GiB, MiB

EXPECTED = {
    "back-to-back",
    "cascade-60",
    "cluster-switch",
    "fig15-sharing",
    "fig21-chassis",
    "fig22-chassis",
    "fig23-longer-path",
    "fig24-p2p",
    "fig26-two-lenders",
    "fig30-two-lenders",
    "fig37-nvmeof",
}


def _text(name: str) -> str:
    return resources.files("smartio.hw.topology").joinpath("presets", f"{name}.toml").read_text()


def _graph(spec: TopologySpec) -> nx.Graph:
    """Hosts, chips (switches and NTB adapters) and endpoints, joined by slots and cables."""
    g = nx.Graph()
    for h in spec.hosts:
        g.add_node(h.name, kind="host")
        for a in h.adapters:
            g.add_node(a.id, kind="chip", chip=a.chip)
            g.add_edge(a.upstream.element, a.id)
    for s in spec.switches:
        g.add_node(s.name, kind="chip", chip=s.chip)
        if s.upstream is not None:
            g.add_edge(s.upstream.element, s.name)
    for e in spec.endpoints:
        g.add_node(e.name, kind="endpoint", model=e.model)
        g.add_edge(e.upstream.element, e.name)
    for lk in spec.links:
        g.add_edge(lk.a.element, lk.b.element)
    return g


def chips_between(spec: TopologySpec, a: str, b: str) -> list[str]:
    """The switch chips a transaction from ``a`` to ``b`` crosses (shortest path)."""
    g = _graph(spec)
    path = nx.shortest_path(g, a, b)
    return [g.nodes[n]["chip"] for n in path[1:-1] if g.nodes[n]["kind"] == "chip"]


def endpoints_of(spec: TopologySpec, host: str) -> set[str]:
    """Endpoints in ``host``'s own PCIe tree (reachable without crossing an NTB)."""
    g = _graph(spec)
    nt = {a.id for a in spec.adapters} | {s.name for s in spec.switches if s.mode == "cluster"}
    g.remove_nodes_from(nt)
    return {n for n in nx.node_connected_component(g, host) if g.nodes[n]["kind"] == "endpoint"}


# -- every preset ---------------------------------------------------------------------------


def test_preset_names() -> None:
    """The shipped presets are exactly the documented ones."""
    assert set(preset_names()) == EXPECTED
    assert DEFAULT_PRESET in preset_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_loads(name: str) -> None:
    """Every preset loads without errors; its name matches its file."""
    spec = load_preset(name)
    assert spec.name == name
    assert spec.source == f"preset:{name}"
    assert spec.description


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_header_cites_the_paper(name: str) -> None:
    """Each preset file starts with a comment citing the figure or section it reproduces."""
    text = _text(name)
    assert text.startswith("# ")
    header = text.split("\nname = ", 1)[0]
    assert "Fig." in header or "§" in header


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_ram_is_modest(name: str) -> None:
    """Host RAM stays between 256MiB and 2GiB (it becomes sparse shared-memory files)."""
    for h in load_preset(name).hosts:
        assert 256 * MiB <= h.ram <= 2 * GiB, h.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_mxs824_port_groups(name: str) -> None:
    """MXS824 links follow the x4-port grouping: x8 on even ports, x16 on multiples of four."""
    spec = load_preset(name)
    for s in spec.switches:
        if s.model != "MXS824":
            continue
        used: set[int] = set()
        for lk in spec.links:
            for ref in (lk.a, lk.b):
                if ref.element != s.name:
                    continue
                group = max(lk.width // 4, 1)
                assert ref.port % group == 0, f"{lk.name}: x{lk.width} on port {ref.port}"
                lanes = set(range(ref.port, ref.port + group))
                assert not used & lanes, f"{lk.name} overlaps another link's x4 ports"
                assert max(lanes) < SWITCHES["MXS824"].ports
                used |= lanes


def test_unknown_preset() -> None:
    """Asking for a preset that does not exist lists the ones that do."""
    with pytest.raises(NotFound, match="cascade-60"):
        load_preset("no-such-preset")


def test_resolve_topology_by_name() -> None:
    """resolve_topology accepts a preset name, and None means the default preset."""
    assert resolve_topology("fig15-sharing").name == "fig15-sharing"
    assert resolve_topology(None).name == DEFAULT_PRESET


# -- the paper's testbeds -------------------------------------------------------------------


def test_back_to_back() -> None:
    """Fig. 7/22(b): two hosts, one PXH830 cable; the lender's NVMe and GPU are two chips away."""
    spec = load_preset("back-to-back")
    assert [h.name for h in spec.hosts] == ["lender", "borrower"]
    assert not spec.switches
    assert endpoints_of(spec, "lender") == {"nvme0", "gpu0"}
    assert chips_between(spec, "borrower", "nvme0") == ["PEX8733", "PEX8733"]


def test_cluster_switch() -> None:
    """Four hosts, each with a PXH830 cabled to one MXS824; NVMe and GPU on different hosts."""
    spec = load_preset("cluster-switch")
    assert len(spec.hosts) == 4
    assert [(s.model, s.mode) for s in spec.switches] == [("MXS824", "cluster")]
    for h in spec.hosts:
        assert [a.model for a in h.adapters] == ["PXH830"]
    assert len(spec.links) == 4
    assert {lk.b.element for lk in spec.links} == {"mxs0"}
    owners = {e.model: next(h.name for h in spec.hosts if e.name in endpoints_of(spec, h.name))
              for e in spec.endpoints}
    assert sorted(owners) == ["gpu", "nvme"]
    assert owners["gpu"] != owners["nvme"]
    # host to remote device: own PXH830, MXS824, the lender's PXH830
    assert chips_between(spec, "node2", "nvme0") == ["PEX8733", "PM8536", "PEX8733"]


@pytest.mark.parametrize(("name", "device"), [("fig21-chassis", "nvme"), ("fig22-chassis", "gpu")])
def test_fig21_fig22_same_hops_local_and_lent(name: str, device: str) -> None:
    """Figs. 21/22: the device is three chips from the CPU using it, locally and when lent."""
    spec = load_preset(name)
    assert {h.name for h in spec.hosts} == {"local", "lender", "borrower"}
    assert endpoints_of(spec, "local") == {f"local-{device}0"}
    assert endpoints_of(spec, "lender") == {f"{device}0"}
    assert endpoints_of(spec, "borrower") == set()
    local = chips_between(spec, "local", f"local-{device}0")
    lent = chips_between(spec, "borrower", f"{device}0")
    assert local == ["PEX8733", "PEX8733", "PEX8796"]  # HIB68 host card, target card, chassis
    assert lent == ["PEX8733", "PEX8733", "PEX8796"]  # borrower PXH830, lender PXH830, chassis
    lender = spec.host("lender")
    assert lender.adapters[0].upstream.element == "lender-chassis"  # NTB next to the device
    assert not lender.iommu


def test_fig21_iommu_and_window() -> None:
    """Fig. 21: IOMMUs off everywhere; the lender's window maps all of the borrower's RAM."""
    spec = load_preset("fig21-chassis")
    assert not any(h.iommu for h in spec.hosts)
    assert spec.host("lender").adapters[0].window >= spec.host("borrower").ram


def test_fig22_iommu_and_window() -> None:
    """Fig. 22: local and borrower IOMMUs on, lender off, 1GiB NTB windows (low GPU addresses)."""
    spec = load_preset("fig22-chassis")
    assert spec.host("local").iommu and spec.host("borrower").iommu
    assert not spec.host("lender").iommu
    assert all(a.window == GiB for a in spec.adapters)


def test_fig23_one_more_hop_than_back_to_back() -> None:
    """Fig. 23: the MXS824's PM8536 is the only difference from Fig. 22(b)."""
    spec = load_preset("fig23-longer-path")
    b2b = chips_between(load_preset("fig22-chassis"), "borrower", "gpu0")
    switched = chips_between(spec, "borrower", "gpu0")
    assert switched == ["PEX8733", "PM8536", "PEX8733", "PEX8796"]
    assert sorted(switched) == sorted([*b2b, "PM8536"])
    assert [s.model for s in spec.switches if s.mode == "cluster"] == ["MXS824"]


def test_fig24_two_gpus_in_one_chassis() -> None:
    """Fig. 24: GPU-to-GPU traffic turns in the chassis, locally and when borrowed via MXS824."""
    spec = load_preset("fig24-p2p")
    assert endpoints_of(spec, "local") == {"local-gpu0", "local-gpu1"}
    assert endpoints_of(spec, "lender") == {"gpu0", "gpu1"}
    assert chips_between(spec, "local-gpu0", "local-gpu1") == ["PEX8796"]
    assert chips_between(spec, "gpu0", "gpu1") == ["PEX8796"]
    assert chips_between(spec, "borrower", "gpu0") == ["PEX8733", "PM8536", "PEX8733", "PEX8796"]
    assert spec.host("borrower").iommu
    assert not spec.host("lender").iommu and not spec.host("local").iommu


def test_fig26_different_lenders_add_four_hops() -> None:
    """Fig. 26: GPUs in different lenders are four chips further apart (NTB, MXS, NTB, chassis)."""
    spec = load_preset("fig26-two-lenders")
    assert {h.name for h in spec.hosts} == {"borrower", "lender-a", "lender-b"}
    assert endpoints_of(spec, "lender-a") == {"gpu-a0", "gpu-a1"}
    assert endpoints_of(spec, "lender-b") == {"gpu-b0"}
    same = chips_between(spec, "gpu-a0", "gpu-a1")
    different = chips_between(spec, "gpu-a0", "gpu-b0")
    assert same == ["PEX8796"]
    assert different == ["PEX8796", "PEX8733", "PM8536", "PEX8733", "PEX8796"]
    assert len(different) - len(same) == 4
    assert spec.host("borrower").iommu
    assert not spec.host("lender-a").iommu and not spec.host("lender-b").iommu


def test_fig30_local_single_and_two_lenders() -> None:
    """Fig. 30: two GPUs and an NVMe locally; one lender with all three; a second lender's GPU."""
    spec = load_preset("fig30-two-lenders")
    assert {h.name for h in spec.hosts} == {"local", "borrower", "lender-a", "lender-b"}
    models = {e.name: e.model for e in spec.endpoints}
    assert sorted(models[e] for e in endpoints_of(spec, "local")) == ["gpu", "gpu", "nvme"]
    assert sorted(models[e] for e in endpoints_of(spec, "lender-a")) == ["gpu", "gpu", "nvme"]
    assert sorted(models[e] for e in endpoints_of(spec, "lender-b")) == ["gpu"]
    assert endpoints_of(spec, "borrower") == set()
    assert len(chips_between(spec, "gpu-a0", "gpu-b0")) > len(chips_between(spec, "gpu-a0",
                                                                              "gpu-a1"))
    assert spec.host("borrower").iommu
    assert not any(spec.host(n).iommu for n in ("local", "lender-a", "lender-b"))


def test_fig15_one_lender_three_borrowers() -> None:
    """Fig. 15: one lender with the NVMe and three borrowers, all on one MXS824."""
    spec = load_preset("fig15-sharing")
    assert [h.name for h in spec.hosts] == ["lender", "borrower-a", "borrower-b", "borrower-c"]
    assert [(e.name, e.model) for e in spec.endpoints] == [("nvme0", "nvme")]
    assert endpoints_of(spec, "lender") == {"nvme0"}
    assert [s.model for s in spec.switches] == ["MXS824"]
    for b in ("borrower-a", "borrower-b", "borrower-c"):
        assert chips_between(spec, b, "nvme0") == ["PEX8733", "PM8536", "PEX8733"]
    assert spec.endpoints[0].params["io_queues"] >= 3


def test_fig37_local_and_remote_same_chips() -> None:
    """Fig. 37: local and remote SmartIO reach the NVMe across the same three chips; IOMMUs off."""
    spec = load_preset("fig37-nvmeof")
    assert {h.name for h in spec.hosts} == {"lender", "borrower"}
    assert endpoints_of(spec, "lender") == {"nvme0", "lender-ib0"}
    assert endpoints_of(spec, "borrower") == {"borrower-ib0"}
    assert chips_between(spec, "lender", "nvme0") == ["PEX8733", "PEX8733", "PEX8796"]
    assert chips_between(spec, "borrower", "nvme0") == ["PEX8733", "PEX8733", "PEX8796"]
    assert not any(h.iommu for h in spec.hosts)
    assert {e.model for e in spec.endpoints if e.name.endswith("ib0")} == {"nic"}


def test_cascade_60() -> None:
    """§7.4.2/§8.6: 60 nodes, seven MXS824s (one top, six sub-switches), x8 node links."""
    spec = load_preset("cascade-60")
    assert len(spec.hosts) == 60
    assert len({h.name for h in spec.hosts}) == 60
    assert len(spec.switches) == 7
    assert all(s.model == "MXS824" and s.mode == "cluster" for s in spec.switches)
    assert all(h.ram == 256 * MiB for h in spec.hosts)
    assert all([a.model for a in h.adapters] == ["PXH830"] for h in spec.hosts)
    assert [(e.name, e.model) for e in spec.endpoints] == [("nvme0", "nvme")]
    assert endpoints_of(spec, "node00") == {"nvme0"}

    node_links = [lk for lk in spec.links if ":" in lk.a.element]
    uplinks = [lk for lk in spec.links if ":" not in lk.a.element]
    assert len(node_links) == 60
    assert all(lk.width == 8 and lk.gen == 3 for lk in node_links)
    per_sub: dict[str, int] = {}
    for lk in node_links:
        per_sub[lk.b.element] = per_sub.get(lk.b.element, 0) + 1
    assert per_sub == {f"mxs-sub{k}": 10 for k in range(6)}
    assert len(uplinks) == 6
    assert {lk.b.element for lk in uplinks} == {"mxs-top"}
    assert {lk.a.element for lk in uplinks} == set(per_sub)

    # The cluster fabric is one tree: any node reaches the NVMe's lender across at most
    # three PM8536 hops (sub-switch, top, sub-switch) between two PXH830s.
    far = chips_between(spec, "node59", "nvme0")
    assert far == ["PEX8733", "PM8536", "PM8536", "PM8536", "PEX8733"]
    near = chips_between(spec, "node01", "nvme0")
    assert near == ["PEX8733", "PM8536", "PEX8733"]
