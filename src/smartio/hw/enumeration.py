"""Per-host PCIe enumeration: bus numbers, BAR sizing and placement, bridge windows.

Each host enumerates its own tree deterministically, the way firmware and Linux do
(paper §3.2, §3.3): root ports are bridges on bus 0, a transparent switch is an upstream
bridge plus one downstream bridge per port, endpoints get naturally aligned BARs, and each
bridge window covers its subtree (1 MiB granularity). Non-prefetchable BARs go in the
32-bit MMIO window; prefetchable 64-bit subtrees go there too while they fit and above RAM
when they do not, which is why a large NTB BAR ends up at a high address (§4.3, §8.6).

Address map of a host with R bytes of RAM: low RAM at 0 (up to 2 GiB), the 32-bit MMIO
window at 2 GiB, high RAM at 4 GiB, and the 64-bit MMIO window from 64 GiB (or above the
end of RAM).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from smartio.errors import TopologyError
from smartio.hw.ids import BDF
from smartio.hw.models import ENDPOINTS, NTB_REGS_SIZE
from smartio.hw.topology.schema import PortRef, TopologySpec
from smartio.hw.units import GiB, MiB, align_up

LOW_RAM_MAX = 2 * GiB
MMIO32_BASE = 2 * GiB
MMIO32_END = 0xFEC0_0000  # IOAPIC/LAPIC live above
HIGH_RAM_BASE = 4 * GiB
MMIO64_MIN_BASE = 64 * GiB
BRIDGE_ALIGN = 1 * MiB
MSI_BASE = 0xFEE0_0000  # the interrupt controller's message window (x86 LAPIC range)
MSI_SIZE = 1 * MiB


@dataclass(frozen=True)
class Bar:
    """An assigned BAR of a function."""

    index: int
    base: int
    size: int
    is64: bool
    prefetchable: bool

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass
class Function:
    """A PCIe function (endpoint or NTB adapter) as enumerated by its host."""

    name: str  # endpoint name, or "host:adapter" for NTB adapters
    host: str
    bdf: BDF
    kind: str  # "endpoint" | "ntb"
    model: str
    bars: list[Bar] = field(default_factory=list)
    chain: tuple[str, ...] = ()  # tree nodes from this function up to the root complex

    def bar(self, index: int) -> Bar:
        for b in self.bars:
            if b.index == index:
                return b
        raise KeyError(index)


@dataclass(frozen=True)
class Bridge:
    """A bridge (root port or switch downstream port) and the windows it forwards."""

    bdf: BDF
    child: str  # the element below it
    np_base: int
    np_size: int
    pf_base: int
    pf_size: int


@dataclass(frozen=True)
class Region:
    """One decoded range of a host's physical address space."""

    start: int
    size: int
    kind: str  # "ram" | "bar" | "ntb-window" | "msi"
    owner: str  # host name for RAM, function name for BARs
    bar: int = -1
    offset: int = 0  # offset into the backing object (RAM: file offset)
    prefetchable: bool = False
    is64: bool = False

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass
class HostMap:
    """The address space and device tree of one host."""

    host: str
    ram: int
    regions: list[Region]
    functions: dict[str, Function]
    bridges: list[Bridge]
    _starts: list[int] = field(default_factory=list)
    _by_bdf: dict[BDF, Function] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.regions.sort(key=lambda r: r.start)
        self._starts = [r.start for r in self.regions]
        self._by_bdf = {f.bdf: f for f in self.functions.values()}

    def decode(self, addr: int) -> Region | None:
        """The region containing ``addr``, or None (nothing claims it: master abort)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            r = self.regions[i]
            if addr < r.start + r.size:
                return r
        return None

    def next_start(self, addr: int) -> int | None:
        """Start of the first region above ``addr`` (None when there is none)."""
        i = bisect.bisect_right(self._starts, addr)
        return self._starts[i] if i < len(self._starts) else None

    def prev_end(self, addr: int) -> int:
        """End of the last region below ``addr`` (0 when there is none)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        return self.regions[i].end if i >= 0 else 0

    def by_bdf(self, bdf: BDF) -> Function | None:
        return self._by_bdf.get(bdf)


class _Node:
    """A node of one host's transparent tree during enumeration."""

    def __init__(self, name: str, kind: str, model: str = "") -> None:
        self.name = name
        self.kind = kind  # root | switch | endpoint | ntb
        self.model = model
        self.children: dict[int, _Node] = {}  # downstream port -> child
        self.bars: list[tuple[int, int, bool, bool]] = []  # index, size, is64, pref
        self.function: Function | None = None


def _build_trees(topo: TopologySpec) -> dict[str, _Node]:
    at: dict[PortRef, tuple[str, str, str]] = {}
    for h in topo.hosts:
        for a in h.adapters:
            at[a.upstream] = (a.id, "ntb", a.model)
    for s in topo.switches:
        if s.upstream is not None:
            at[s.upstream] = (s.name, "switch", s.model)
    for e in topo.endpoints:
        at[e.upstream] = (e.name, "endpoint", e.model)
    transparent = {s.name for s in topo.switches if s.mode == "transparent"}
    cables: dict[PortRef, PortRef] = {}
    for lk in topo.links:
        if lk.a.element in transparent and lk.b.element in transparent:
            cables[lk.a] = lk.b
            cables[lk.b] = lk.a
    sizes = {e.name: e for e in topo.endpoints}
    windows = {a.id: a.window for a in topo.adapters}
    switch_ports = {s.name: s.ports for s in topo.switches}
    nodes: dict[str, _Node] = {}

    def make(name: str, kind: str, model: str, up_port: int | None) -> _Node:
        node = _Node(name, kind, model)
        nodes[name] = node
        if kind == "ntb":
            node.bars = [(0, NTB_REGS_SIZE, False, False), (2, windows[name], True, True)]
        elif kind == "endpoint":
            spec = ENDPOINTS[model]
            params = sizes[name].params
            node.bars = [(b.index, int(params[b.size_param]) if b.size_param else b.size, b.is64,
                          b.prefetchable) for b in spec.bars]
        elif kind == "switch":
            for port in range(switch_ports[name]):
                if port == up_port:
                    continue
                child = at.get(PortRef(name, port))
                if child is not None:
                    node.children[port] = make(*child, None)
                elif PortRef(name, port) in cables:
                    far = cables[PortRef(name, port)]
                    if far.element not in nodes:
                        node.children[port] = make(far.element, "switch", "", far.port)
        return node

    roots = {}
    for h in topo.hosts:
        root = _Node(h.name, "root")
        for slot in range(h.slots):
            child = at.get(PortRef(h.name, slot))
            if child is not None:
                root.children[slot] = make(*child, None)
        roots[h.name] = root
    return roots


def _size_subtree(node: _Node) -> tuple[int, int, int, int]:
    """Return (np_size, np_align, pf_size, pf_align) of what sits below a bridge to ``node``."""
    np_items: list[tuple[int, int]] = []
    pf_items: list[tuple[int, int]] = []
    if node.kind in ("endpoint", "ntb"):
        for _, size, _, pref in node.bars:
            (pf_items if pref else np_items).append((size, size))
    else:
        for child in node.children.values():
            ns, na, ps, pa = _size_subtree(child)
            if ns:
                np_items.append((align_up(ns, BRIDGE_ALIGN), max(na, BRIDGE_ALIGN)))
            if ps:
                pf_items.append((align_up(ps, BRIDGE_ALIGN), max(pa, BRIDGE_ALIGN)))

    def pack(items: list[tuple[int, int]]) -> tuple[int, int]:
        cursor, align = 0, 0
        for size, al in sorted(items, key=lambda t: (-t[1], -t[0])):
            cursor = align_up(cursor, al) + size
            align = max(align, al)
        return cursor, align

    ns, na = pack(np_items)
    ps, pa = pack(pf_items)
    return ns, na, ps, pa


class _Enumerator:
    def __init__(self, host: str) -> None:
        self.host = host
        self.next_bus = 1
        self.functions: dict[str, Function] = {}
        self.bridges: list[Bridge] = []
        self._bridge_of: dict[str, BDF] = {}
        self._np_bases: dict[str, int] = {}
        self._pf_bases: dict[str, int] = {}

    def assign_buses(self, node: _Node, bus: int, chain: tuple[str, ...]) -> None:
        """Give every bridge its secondary bus and every function its BDF (depth first)."""
        if node.kind in ("endpoint", "ntb"):
            node.function = Function(node.name, self.host, BDF(bus, 0, 0), node.kind,
                                     node.model, chain=(node.name, *chain))
            self.functions[node.name] = node.function
            return
        if node.kind == "switch":
            internal = self.next_bus  # upstream port at bus:00.0, internal bus below it
            self.next_bus += 1
            chain = (node.name, *chain)
            for port, child in sorted(node.children.items()):
                if port > 31:
                    raise TopologyError(f"switch {node.name}: port {port} has no device number",
                                        expected="at most 32 ports on a transparent switch")
                sec = self._alloc_bus()
                self._bridge_of[child.name] = BDF(internal, port, 0)
                self.assign_buses(child, sec, chain)
            return
        for slot, child in sorted(node.children.items()):  # root complex
            sec = self._alloc_bus()
            self._bridge_of[child.name] = BDF(0, 1 + slot, 0)
            self.assign_buses(child, sec, chain)

    def _alloc_bus(self) -> int:
        bus = self.next_bus
        if bus > 255:
            raise TopologyError(f"host {self.host}: more than 255 buses",
                                expected="a smaller PCIe tree per host")
        self.next_bus += 1
        return bus

    def place(self, node: _Node, np_base: int, pf_base: int) -> None:
        """Assign addresses below ``node`` inside windows starting at the given bases."""
        if node.kind in ("endpoint", "ntb"):
            assert node.function is not None
            np_cur, pf_cur = np_base, pf_base
            for index, size, is64, pref in sorted(node.bars, key=lambda b: (-b[1], b[0])):
                if pref:
                    base = align_up(pf_cur, size)
                    pf_cur = base + size
                else:
                    base = align_up(np_cur, size)
                    np_cur = base + size
                node.function.bars.append(Bar(index, base, size, is64, pref))
            node.function.bars.sort(key=lambda b: b.index)
            return
        items = []
        for child in node.children.values():
            ns, na, ps, pa = _size_subtree(child)
            items.append((child, ns, max(na, BRIDGE_ALIGN), ps, max(pa, BRIDGE_ALIGN)))
        pf_cur = pf_base
        for child, _, _, ps, pa in sorted(items, key=lambda t: (-t[4], -t[3], t[0].name)):
            pf_cur = align_up(pf_cur, pa)
            self._pf_bases[child.name] = pf_cur
            pf_cur += align_up(ps, BRIDGE_ALIGN) if ps else 0
        np_cur = np_base
        for child, ns, na, _, _ in sorted(items, key=lambda t: (-t[2], -t[1], t[0].name)):
            np_cur = align_up(np_cur, na)
            self._np_bases[child.name] = np_cur
            np_cur += align_up(ns, BRIDGE_ALIGN) if ns else 0
        for child, ns, _, ps, _ in items:
            self._record_bridge(child, ns, ps)
            self.place(child, self._np_bases[child.name], self._pf_bases[child.name])

    def _record_bridge(self, child: _Node, np_size: int, pf_size: int) -> None:
        bdf = self._bridge_of[child.name]
        self.bridges.append(Bridge(bdf, child.name, self._np_bases[child.name],
                                   align_up(np_size, BRIDGE_ALIGN),
                                   self._pf_bases[child.name], align_up(pf_size, BRIDGE_ALIGN)))


def enumerate_host(topo: TopologySpec, host: str, root: _Node | None = None) -> HostMap:
    """Enumerate one host's PCIe tree and build its address map."""
    spec = topo.host(host)
    if root is None:
        root = _build_trees(topo)[host]
    en = _Enumerator(host)
    en.assign_buses(root, 0, (host,))
    low = min(spec.ram, LOW_RAM_MAX)
    high = spec.ram - low
    regions = [Region(0, low, "ram", host, offset=0),
               Region(MSI_BASE, MSI_SIZE, "msi", host)]
    if high:
        regions.append(Region(HIGH_RAM_BASE, high, "ram", host, offset=low))
    mmio64 = max(MMIO64_MIN_BASE, align_up(HIGH_RAM_BASE + high, MMIO64_MIN_BASE))
    # Root ports: prefetchable windows first, largest first, low while they fit in the
    # 32-bit window and above RAM otherwise; then non-prefetchable windows packed after them.
    ports = []
    for _, child in sorted(root.children.items()):
        ns, na, ps, pa = _size_subtree(child)
        ports.append((child, ns, max(na, BRIDGE_ALIGN), ps, max(pa, BRIDGE_ALIGN)))
    pf_low, pf_high = MMIO32_BASE, mmio64
    for child, _, _, ps, pa in sorted(ports, key=lambda t: (-t[4], -t[3], t[0].name)):
        base = align_up(pf_low, pa)
        if base + ps <= MMIO32_END:
            pf_low = base + (align_up(ps, BRIDGE_ALIGN) if ps else 0)
        else:
            base = align_up(pf_high, pa)
            pf_high = base + align_up(ps, BRIDGE_ALIGN)
        en._pf_bases[child.name] = base
    np_cur = align_up(pf_low, BRIDGE_ALIGN)
    for child, ns, na, _, _ in sorted(ports, key=lambda t: (-t[2], -t[1], t[0].name)):
        np_cur = align_up(np_cur, na)
        en._np_bases[child.name] = np_cur
        np_cur += align_up(ns, BRIDGE_ALIGN) if ns else 0
    if np_cur > MMIO32_END:
        raise TopologyError(f"host {host}: non-prefetchable BARs exceed the 32-bit MMIO window",
                            expected="less than ~2GiB of 32-bit BARs per host")
    for child, ns, _, ps, _ in ports:
        en._record_bridge(child, ns, ps)
        en.place(child, en._np_bases[child.name], en._pf_bases[child.name])
    for f in en.functions.values():
        for b in f.bars:
            if f.kind == "ntb" and b.index == 2:
                regions.append(Region(b.base, b.size, "ntb-window", f.name, bar=2,
                                      prefetchable=True, is64=True))
            else:
                regions.append(Region(b.base, b.size, "bar", f.name, bar=b.index,
                                      prefetchable=b.prefetchable, is64=b.is64))
    return HostMap(host, spec.ram, regions, en.functions, en.bridges)


def enumerate_all(topo: TopologySpec) -> dict[str, HostMap]:
    """Enumerate every host of a topology."""
    roots = _build_trees(topo)
    return {h.name: enumerate_host(topo, h.name, roots[h.name]) for h in topo.hosts}


__all__ = ["Bar", "Bridge", "Function", "HostMap", "Region", "enumerate_all", "enumerate_host"]
