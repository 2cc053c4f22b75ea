"""Load and validate a topology file (TOML) into a :class:`TopologySpec`.

Every problem raises :class:`~smartio.errors.TopologyError` naming the file, the line, the
field, the bad value and what was expected. Checks follow what PCIe allows (paper §3): each
host's transparent tree is a tree with one root complex; cluster-switch fabrics have no
loops; a port carries at most one link or card; NTB windows are powers of two divided into
equal LUT slices of at least a page.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path as FsPath
from typing import Any, NoReturn

import msgspec
import networkx as nx

from smartio.errors import TopologyError
from smartio.hw.models import ADAPTERS, ENDPOINTS, SWITCHES, ParamKind, SwitchMode
from smartio.hw.topology.locate import LineIndex, Path, format_path, parse_msgspec_path
from smartio.hw.topology.schema import (
    AdapterSpec,
    EndpointSpec,
    HostSpec,
    LinkSpec,
    ParamValue,
    PortRef,
    RawTopology,
    SwitchSpec,
    TopologySpec,
)
from smartio.hw.units import PAGE_SIZE, MiB, format_size, is_power_of_two, parse_size

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
_PORT_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_\-]*(?::[A-Za-z][A-Za-z0-9_\-]*)?)/(\d+)$")
_WIDTHS = (1, 2, 4, 8, 16)


class _Ctx:
    """Carries the source name and line index while validating."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.index = LineIndex(text)

    def fail(self, path: Path, problem: str, value: object = None,
             expected: str | None = None) -> NoReturn:
        raise TopologyError(problem, source=self.source, line=self.index.line_of(path),
                            field=format_path(path) or None, value=value, expected=expected)


def load_topology(path: str | FsPath) -> TopologySpec:
    """Load a topology file; raises TopologyError with file and line on any problem."""
    p = FsPath(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise TopologyError(f"cannot read topology file: {e.strerror}", source=str(p)) from e
    return loads_topology(text, source=str(p))


def loads_topology(text: str, source: str = "<topology>") -> TopologySpec:
    """Parse and validate topology TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise TopologyError(f"not valid TOML: {e}", source=source,
                            line=int(m.group(1)) if m else None) from e
    ctx = _Ctx(source, text)
    try:
        raw = msgspec.convert(data, RawTopology)
    except msgspec.ValidationError as e:
        msg = str(e)
        path: Path = ()
        if " - at `" in msg:
            msg, _, where = msg.partition(" - at `")
            path = parse_msgspec_path(where.rstrip("`"))
        m = re.match(r"Object contains unknown field `(.+)`", msg)
        if m:
            path = (*path, m.group(1))
            ctx.fail(path, "unknown field", m.group(1), "one of the fields in docs/topology.md")
        m = re.match(r"Object missing required field `(.+)`", msg)
        if m:
            ctx.fail((*path, m.group(1)), f"missing required field '{m.group(1)}'", None,
                     f"'{m.group(1)}' in this table")
        m = re.match(r"Expected `(.+)`, got `(.+)`", msg)
        if m:
            ctx.fail(path, "wrong type", _lookup(data, path), m.group(1))
        ctx.fail(path, msg)
    return _Validator(ctx, raw).run()


def _lookup(data: Any, path: Path) -> Any:
    for seg in path:
        try:
            data = data[seg]
        except (KeyError, IndexError, TypeError):
            return None
    return data


class _Validator:
    def __init__(self, ctx: _Ctx, raw: RawTopology) -> None:
        self.ctx = ctx
        self.raw = raw
        self.names: dict[str, Path] = {}  # host, switch and endpoint names
        self.port_users: dict[tuple[str, int], Path] = {}
        self.host_slots: dict[str, int] = {}
        self.adapter_ports: dict[str, int] = {}
        self.switch_ports: dict[str, int] = {}
        self.switch_modes: dict[str, SwitchMode] = {}

    # -- helpers ------------------------------------------------------------------------

    def _name(self, path: Path, name: str) -> None:
        if not _NAME_RE.match(name):
            self.ctx.fail(path, "bad name", name,
                          "a letter followed by letters, digits, '-' or '_'")
        if name in self.names:
            other = self.ctx.index.line_of(self.names[name])
            self.ctx.fail(path, f"name used twice (first at line {other})", name,
                          "names unique among hosts, switches and endpoints")
        self.names[name] = path

    def _size(self, path: Path, value: int | str) -> int:
        try:
            return parse_size(value)
        except ValueError:
            self.ctx.fail(path, "not a size", value, "bytes or a string such as '1GiB'")

    def _gen_width(self, path: Path, gen: int, width: int, max_width: int, what: str) -> None:
        if not 1 <= gen <= 5:
            self.ctx.fail((*path, "gen"), "bad PCIe generation", gen, "1..5")
        if width not in _WIDTHS:
            self.ctx.fail((*path, "width"), "bad link width", width, "one of 1, 2, 4, 8, 16")
        if width > max_width:
            self.ctx.fail((*path, "width"), f"{what} supports at most x{max_width}", width,
                          f"a width of at most {max_width}")

    def _port(self, path: Path, text: str) -> PortRef:
        m = _PORT_RE.match(text)
        if not m:
            self.ctx.fail(path, "bad port reference", text,
                          "HOST/SLOT, SWITCH/PORT or HOST:ADAPTER/PORT")
        elem, port = m.group(1), int(m.group(2))
        if elem in self.host_slots:
            limit, kind = self.host_slots[elem], "host slot"
        elif elem in self.adapter_ports:
            limit, kind = self.adapter_ports[elem], "adapter port"
        elif elem in self.switch_ports:
            limit, kind = self.switch_ports[elem], "switch port"
        else:
            self.ctx.fail(path, "refers to a missing host, switch or adapter", text,
                          "an element defined in this topology")
        if port >= limit:
            self.ctx.fail(path, f"{kind} out of range", text, f"{elem}/0 .. {elem}/{limit - 1}")
        return PortRef(elem, port)

    def _use_port(self, path: Path, ref: PortRef) -> None:
        key = (ref.element, ref.port)
        if key in self.port_users:
            other = self.ctx.index.line_of(self.port_users[key])
            self.ctx.fail(path, f"port used twice (also at line {other})", str(ref),
                          "each slot or port used by one link, card or endpoint")
        self.port_users[key] = path

    # -- passes ---------------------------------------------------------------------------

    def run(self) -> TopologySpec:
        raw = self.raw
        if not raw.hosts:
            self.ctx.fail(("hosts",), "no hosts", None, "at least one [[hosts]] table")
        # Pass 1: names and port counts, so that references can be resolved in any order.
        for i, h in enumerate(raw.hosts):
            self._name(("hosts", i, "name"), h.name)
            if not 1 <= h.slots <= 32:
                self.ctx.fail(("hosts", i, "slots"), "bad slot count", h.slots, "1..32")
            self.host_slots[h.name] = h.slots
            seen: set[str] = set()
            for j, a in enumerate(h.adapters):
                p = ("hosts", i, "adapters", j)
                if not _NAME_RE.match(a.name):
                    self.ctx.fail((*p, "name"), "bad name", a.name, "a letter, then letters/digits")
                if a.name in seen:
                    self.ctx.fail((*p, "name"), "adapter name used twice in host", a.name,
                                  "adapter names unique within a host")
                seen.add(a.name)
                if a.model not in ADAPTERS:
                    self.ctx.fail((*p, "model"), "unknown NTB adapter model", a.model,
                                  "one of " + ", ".join(sorted(ADAPTERS)))
                self.adapter_ports[f"{h.name}:{a.name}"] = ADAPTERS[a.model].ports
        for i, s in enumerate(raw.switches):
            self._name(("switches", i, "name"), s.name)
            if s.model not in SWITCHES:
                self.ctx.fail(("switches", i, "model"), "unknown switch model", s.model,
                              "one of " + ", ".join(sorted(SWITCHES)))
            model = SWITCHES[s.model]
            ports = model.ports if s.ports is None else s.ports
            if not 1 <= ports <= 96:
                self.ctx.fail(("switches", i, "ports"), "bad port count", s.ports, "1..96")
            self.switch_ports[s.name] = ports
            self.switch_modes[s.name] = model.mode
        for i, e in enumerate(raw.endpoints):
            self._name(("endpoints", i, "name"), e.name)
        hosts = tuple(self._host(i) for i in range(len(raw.hosts)))
        switches = tuple(self._switch(i) for i in range(len(raw.switches)))
        endpoints = tuple(self._endpoint(i) for i in range(len(raw.endpoints)))
        links = tuple(self._link(i) for i in range(len(raw.links)))
        spec = TopologySpec(raw.name, raw.description, self.ctx.source, hosts, switches, links,
                            endpoints)
        self._check_structure(spec)
        return spec

    def _placement(self, path: Path, host: str | None, slot: int | None, at: str | None,
                   what: str) -> PortRef:
        if at is not None and slot is not None:
            self.ctx.fail((*path, "at"), f"{what} has both 'slot' and 'at'", at,
                          "either slot = N (a host slot) or at = 'SWITCH/PORT'")
        if at is not None:
            ref = self._port((*path, "at"), at)
            if ref.element in self.adapter_ports:
                self.ctx.fail((*path, "at"), f"{what} cannot sit on an NTB port", at,
                              "a host slot or a transparent switch port")
            if self.switch_modes.get(ref.element) == SwitchMode.CLUSTER:
                self.ctx.fail((*path, "at"), f"{what} cannot sit on a cluster-switch port", at,
                              "a host slot or a transparent switch port")
        elif slot is not None and host is not None:
            ref = self._port((*path, "slot"), f"{host}/{slot}")
        else:
            self.ctx.fail(path, f"{what} has no placement", None,
                          "slot = N (in a host) or at = 'HOST/SLOT' or 'SWITCH/PORT'")
        self._use_port(path, ref)
        return ref

    def _host(self, i: int) -> HostSpec:
        h = self.raw.hosts[i]
        p: Path = ("hosts", i)
        ram = self._size((*p, "ram"), h.ram)
        if ram < 16 * MiB or ram % (2 * MiB):
            self.ctx.fail((*p, "ram"), "bad RAM size", h.ram,
                          "at least 16MiB and a multiple of 2MiB")
        if not 1 <= h.cpus <= 4:
            self.ctx.fail((*p, "cpus"), "bad CPU count", h.cpus, "1..4 CPU sockets")
        adapters = []
        for j, a in enumerate(h.adapters):
            ap = (*p, "adapters", j)
            model = ADAPTERS[a.model]
            upstream = self._placement(ap, h.name, a.slot, a.at, "adapter")
            window = model.default_window if a.window is None else self._size((*ap, "window"),
                                                                              a.window)
            if not is_power_of_two(window) or window < MiB:
                self.ctx.fail((*ap, "window"), "NTB window size not a power of two", a.window,
                              "a power of two of at least 1MiB, such as '1GiB'")
            lut = model.default_lut_entries if a.lut_entries is None else a.lut_entries
            if not is_power_of_two(lut) or window // lut < PAGE_SIZE:
                self.ctx.fail((*ap, "lut_entries"), "bad address LUT size", lut,
                              f"a power of two with window/entries >= 4KiB "
                              f"(window is {format_size(window)})")
            rid = model.default_rid_entries if a.rid_entries is None else a.rid_entries
            if not 2 * h.cpus <= rid <= 256:
                self.ctx.fail((*ap, "rid_entries"), "bad requester-ID LUT size", rid,
                              f"{2 * h.cpus}..256 (two entries are reserved per CPU)")
            gen = a.gen if a.gen is not None else model.max_gen
            width = a.width if a.width is not None else model.max_width
            self._gen_width(ap, gen, width, model.max_width, a.model)
            adapters.append(AdapterSpec(h.name, a.name, a.model, model.chip, model.ports,
                                        upstream, window, lut, rid, gen, width))
        return HostSpec(h.name, ram, h.iommu, h.cpus, h.slots, tuple(adapters))

    def _switch(self, i: int) -> SwitchSpec:
        s = self.raw.switches[i]
        p: Path = ("switches", i)
        model = SWITCHES[s.model]
        upstream = None
        if model.card or s.host is not None or s.at is not None or s.slot is not None:
            if model.mode == SwitchMode.CLUSTER:
                self.ctx.fail(p, "a cluster switch is a box, not a card", s.model,
                              "no host/slot/at for MXS824 or PM8536")
            if s.host is not None and s.host not in self.host_slots:
                self.ctx.fail((*p, "host"), "unknown host", s.host, "a host of this topology")
            upstream = self._placement(p, s.host, s.slot, s.at, "switch card")
        gen = s.gen if s.gen is not None else model.max_gen
        width = s.width if s.width is not None else model.max_width
        self._gen_width(p, gen, width, model.max_width, s.model)
        return SwitchSpec(s.name, s.model, model.chip, self.switch_ports[s.name],
                          model.mode.value, upstream, gen, width)

    def _endpoint(self, i: int) -> EndpointSpec:
        e = self.raw.endpoints[i]
        p: Path = ("endpoints", i)
        if e.model not in ENDPOINTS:
            self.ctx.fail((*p, "model"), "unknown device model", e.model,
                          "one of " + ", ".join(sorted(ENDPOINTS)))
        model = ENDPOINTS[e.model]
        upstream = self._placement(p, None, None, e.at, "endpoint")
        params: dict[str, ParamValue] = {}
        for key, (_kind, default) in model.params.items():
            params[key] = default  # type: ignore[assignment]
        for key, value in e.params.items():
            kp = (*p, "params", key)
            if key not in model.params:
                self.ctx.fail(kp, f"unknown parameter for model {e.model}", key,
                              "one of " + ", ".join(sorted(model.params)))
            kind = model.params[key][0]
            if kind is ParamKind.SIZE:
                params[key] = self._size(kp, value)  # type: ignore[arg-type]
            elif kind is ParamKind.INT and (isinstance(value, bool) or not isinstance(value, int)):
                self.ctx.fail(kp, "wrong type", value, kind.value)
            elif kind is ParamKind.STR and not isinstance(value, str):
                self.ctx.fail(kp, "wrong type", value, kind.value)
            elif kind is ParamKind.BOOL and not isinstance(value, bool):
                self.ctx.fail(kp, "wrong type", value, kind.value)
            else:
                params[key] = value
        for bar in model.bars:
            if bar.size_param:
                size = int(params[bar.size_param])
                if not is_power_of_two(size) or size < PAGE_SIZE:
                    self.ctx.fail((*p, "params", bar.size_param), "BAR size not a power of two",
                                  e.params.get(bar.size_param), "a power of two of at least 4KiB")
        gen = e.gen if e.gen is not None else model.max_gen
        width = e.width if e.width is not None else model.max_width
        self._gen_width(p, gen, width, model.max_width, e.model)
        return EndpointSpec(e.name, e.model, upstream, gen, width, params)

    def _is_nt(self, ref: PortRef) -> bool:
        return ref.element in self.adapter_ports or (
            self.switch_modes.get(ref.element) == SwitchMode.CLUSTER)

    def _link(self, i: int) -> LinkSpec:
        lk = self.raw.links[i]
        p: Path = ("links", i)
        a = self._port((*p, "a"), lk.a)
        b = self._port((*p, "b"), lk.b)
        for ref, key in ((a, "a"), (b, "b")):
            if ref.element in self.host_slots:
                self.ctx.fail((*p, key), "a cable cannot plug into a host slot", str(ref),
                              "an adapter or switch port (put a card in the slot)")
        if a.element == b.element:
            self.ctx.fail(p, "link joins an element to itself", f"{a} <-> {b}",
                          "two different elements")
        if self._is_nt(a) != self._is_nt(b):
            self.ctx.fail(p, "link joins a non-transparent port to a transparent one",
                          f"{a} <-> {b}", "NTB/cluster ports on both ends, or transparent on both")
        self._use_port((*p, "a"), a)
        self._use_port((*p, "b"), b)
        width = lk.width if lk.width is not None else 16
        self._gen_width(p, lk.gen, width, 16, "a link")
        if lk.length_m <= 0 or lk.length_m > 100:
            self.ctx.fail((*p, "length_m"), "bad cable length", lk.length_m, "0 < length <= 100")
        return LinkSpec(f"{a}<->{b}", a, b, lk.gen, width, lk.length_m)

    def _check_structure(self, spec: TopologySpec) -> None:
        """PCIe forbids loops: transparent trees and cluster fabrics must be forests."""
        tree: nx.MultiGraph = nx.MultiGraph()
        nt: nx.MultiGraph = nx.MultiGraph()
        where: dict[tuple[str, str], Path] = {}
        for h in spec.hosts:
            tree.add_node(h.name, root=True)
            for a in h.adapters:
                tree.add_edge(a.upstream.element, a.id)
                nt.add_node(a.id)
        for i, s in enumerate(spec.switches):
            (nt if s.mode == "cluster" else tree).add_node(s.name)
            if s.upstream is not None:
                tree.add_edge(s.upstream.element, s.name)
                where[(s.upstream.element, s.name)] = ("switches", i)
        for e in spec.endpoints:
            tree.add_edge(e.upstream.element, e.name)
        for i, lk in enumerate(spec.links):
            g = nt if self._is_nt(lk.a) else tree
            g.add_edge(lk.a.element, lk.b.element)
            where[(lk.a.element, lk.b.element)] = ("links", i)
        for g, kind in ((tree, "transparent PCIe tree"), (nt, "cluster-switch fabric")):
            try:
                cycle = nx.find_cycle(g)
            except nx.NetworkXNoCycle:
                continue
            names = " -> ".join(str(u) for u, *_ in cycle)
            u, v = cycle[-1][0], cycle[-1][1]
            path = where.get((u, v)) or where.get((v, u)) or ("links",)
            self.ctx.fail(path, f"loop in the {kind}: {names}", None,
                          "a tree (PCIe routing forbids loops)")
        for comp in nx.connected_components(tree):
            roots = [n for n in comp if tree.nodes[n].get("root")]
            if len(roots) > 1:
                self.ctx.fail(self._joining_link(spec, tree), "two root complexes in one PCIe "
                              "domain: " + " and ".join(sorted(roots)), None,
                              "hosts joined only through NTB adapters")
            if not roots:
                self.ctx.fail(("switches",), "elements not connected to any host: "
                              + ", ".join(sorted(str(n) for n in comp)), None,
                              "every transparent switch and endpoint below a host")
        for i, h in enumerate(spec.hosts):
            for j, a in enumerate(h.adapters):
                if not nx.has_path(tree, a.id, h.name):
                    self.ctx.fail(("hosts", i, "adapters", j, "at"),
                                  "adapter sits in another host's PCIe tree", str(a.upstream),
                                  f"a slot or transparent switch port below host {h.name}")

    def _joining_link(self, spec: TopologySpec, tree: nx.MultiGraph) -> Path:
        """The first transparent link (in file order) that joins two hosts' trees."""
        parent = {n: n for n in tree.nodes}

        def find(n: object) -> object:
            while parent[n] != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        def union(u: object, v: object) -> bool:
            ru, rv = find(u), find(v)
            if ru == rv:
                return False
            if tree.nodes[ru].get("root") and tree.nodes[rv].get("root"):
                return True
            if tree.nodes[rv].get("root"):
                ru, rv = rv, ru
            parent[rv] = ru  # keep a host as the representative of its tree
            return False

        links = {i for i, lk in enumerate(spec.links) if not self._is_nt(lk.a)}
        for u, v in [(e.upstream.element, e.name) for e in spec.endpoints] + [
            (a.upstream.element, a.id) for a in spec.adapters
        ] + [(s.upstream.element, s.name) for s in spec.switches if s.upstream is not None]:
            union(u, v)
        for i in sorted(links):
            if union(spec.links[i].a.element, spec.links[i].b.element):
                return ("links", i)
        return ("links",)


__all__ = ["load_topology", "loads_topology"]
