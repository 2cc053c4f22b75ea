"""A route seen by the timing model: the elements it crosses and the links between them.

A :class:`~smartio.hw.route.Route` names elements only (requester first, completer last).
:class:`FabricView` looks each one up in the topology — root complex (a host), switch chip
(transparent or cluster switch), NTB adapter (its chip) or endpoint (its model) — and
finds the link between each consecutive pair: a slot or switch port an adapter, card or
endpoint sits in (its ``gen``/``width``) or a cable (``gen``/``width``/``length_m``).
The result, :class:`ResolvedPath`, is what the formulas of :mod:`.model` walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from smartio.errors import IllegalParameter, NotFound
from smartio.hw.enumeration import enumerate_all
from smartio.hw.models import ADAPTERS, CHIPS
from smartio.hw.paths import PathFinder
from smartio.hw.route import Route
from smartio.hw.timing.constants import Params
from smartio.hw.timing.link import LinkRates, link_rates
from smartio.hw.topology.schema import TopologySpec

ROOT = "root"
SWITCH = "switch"
NTB = "ntb"
ENDPOINT = "endpoint"


@dataclass(frozen=True, slots=True)
class Element:
    """One element of the fabric as the timing model sees it."""

    name: str
    kind: str  # root | switch | ntb | endpoint
    model: str  # host name for roots, switch/adapter/endpoint model otherwise
    chip: str = ""  # switch chip of switches and NTB adapters
    iommu: bool = False  # roots: whether the host's IOMMU is on

    @property
    def label(self) -> str:
        if self.kind == ROOT:
            return "root complex" + (" (IOMMU on)" if self.iommu else "")
        if self.kind in (SWITCH, NTB):
            return self.chip if self.chip == self.model else f"{self.chip} ({self.model})"
        return f"{self.model} device"


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """A link between two elements: a slot/port link or an external cable."""

    name: str
    gen: int
    width: int
    length_m: float
    rates: LinkRates


@dataclass(frozen=True, slots=True)
class ResolvedPath:
    """A route with its elements and the link between each consecutive pair."""

    route: Route
    elements: tuple[Element, ...]
    links: tuple[LinkInfo, ...]  # links[i] joins elements[i] and elements[i + 1]

    @property
    def requester(self) -> Element:
        return self.elements[0]

    @property
    def completer(self) -> Element:
        return self.elements[-1]

    def bottleneck(self, lo: int = 0) -> LinkInfo:
        """The slowest link from element ``lo`` to the completer."""
        return min(self.links[lo:], key=lambda lk: lk.rates.usable_gb_s)


class FabricView:
    """Elements and links of a topology, for resolving routes."""

    def __init__(self, topo: TopologySpec, params: Params, mps: int) -> None:
        self.topo = topo
        self.params = params
        self.mps = mps
        self._elements: dict[str, Element] = {}
        self._links: dict[frozenset[str], LinkInfo] = {}
        for h in topo.hosts:
            self._elements[h.name] = Element(h.name, ROOT, h.name, iommu=h.iommu)
            for a in h.adapters:
                self._elements[a.id] = Element(a.id, NTB, a.model, ADAPTERS[a.model].chip)
                self._add_link(a.id, a.upstream.element, a.gen, a.width, 0.0)
        for s in topo.switches:
            self._elements[s.name] = Element(s.name, SWITCH, s.model, s.chip)
            if s.upstream is not None:
                self._add_link(s.name, s.upstream.element, s.gen, s.width, 0.0)
        for e in topo.endpoints:
            self._elements[e.name] = Element(e.name, ENDPOINT, e.model)
            self._add_link(e.name, e.upstream.element, e.gen, e.width, 0.0)
        for lk in topo.links:
            self._add_link(lk.a.element, lk.b.element, lk.gen, lk.width, lk.length_m,
                           name=lk.name)
        for el in self._elements.values():
            if el.chip and el.chip not in CHIPS:
                raise IllegalParameter(f"{el.name}: chip {el.chip!r} has no hop latency")

    def _add_link(self, a: str, b: str, gen: int, width: int, length_m: float,
                  name: str | None = None) -> None:
        rates = link_rates(gen, width, self.mps, self.params)
        self._links[frozenset((a, b))] = LinkInfo(name or f"{a}<->{b}", gen, width, length_m,
                                                  rates)

    def element(self, name: str) -> Element:
        try:
            return self._elements[name]
        except KeyError:
            raise NotFound(f"no element {name!r} in topology {self.topo.name!r}") from None

    def link(self, a: str, b: str) -> LinkInfo:
        try:
            return self._links[frozenset((a, b))]
        except KeyError:
            raise NotFound(f"{a!r} and {b!r} are not linked in topology "
                           f"{self.topo.name!r}") from None

    def resolve(self, route: Route) -> ResolvedPath:
        """Elements and links of a route.

        Raises:
            IllegalParameter: the route has fewer than two elements (no PCIe crossed) or
                an endpoint in its middle.
            NotFound: an element or a link of the route is not in the topology.
        """
        if len(route.hops) < 2:
            raise IllegalParameter(f"route {route} crosses no PCIe link")
        elements = tuple(self.element(n) for n in route.hops)
        for el in elements[1:-1]:
            if el.kind == ENDPOINT:
                raise IllegalParameter(f"route {route} passes through endpoint {el.name}")
        links = tuple(self.link(a, b) for a, b in zip(route.hops, route.hops[1:], strict=False))
        return ResolvedPath(route, elements, links)


def with_iommu(topo: TopologySpec, hosts: Iterable[str]) -> TopologySpec:
    """The topology with the IOMMU of each named host turned on (for what-if studies).

    Raises:
        NotFound: a host is not in the topology.
    """
    on = set(hosts)
    unknown = on - {h.name for h in topo.hosts}
    if unknown:
        raise NotFound(f"no host {sorted(unknown)[0]!r} in topology {topo.name!r}")
    return msgspec.structs.replace(topo, hosts=tuple(
        msgspec.structs.replace(h, iommu=True) if h.name in on else h for h in topo.hosts))


def dma_route(topo: TopologySpec, a: str, b: str, via_root: bool | None = None,
              finder: PathFinder | None = None) -> Route:
    """The route a transaction from ``a`` to ``b`` takes, for modeling.

    With ``via_root`` None the route follows :mod:`smartio.hw.translate`: DMA from a
    function whose host has its IOMMU on goes up to that host's root complex (§5.3,
    §7.3.1); otherwise it takes the shortest path (§4.4).

    Raises:
        NotFound: a name is unknown or the hosts share no fabric.
        IllegalParameter: ``a`` and ``b`` are the same element.
    """
    finder = finder or PathFinder(topo, enumerate_all(topo))
    if via_root is None:
        host = next((m.functions[a].host for m in finder.maps.values() if a in m.functions),
                    None)
        via_root = host is not None and topo.host(host).iommu
    route = finder.path(a, b, via_root=via_root)
    if len(route.hops) < 2:
        raise IllegalParameter(f"{a} and {b} are the same element: no PCIe path")
    return route


__all__ = ["ENDPOINT", "NTB", "ROOT", "SWITCH", "Element", "FabricView", "LinkInfo",
           "ResolvedPath", "dma_route", "with_iommu"]
