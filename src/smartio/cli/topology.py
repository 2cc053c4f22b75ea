"""``smartio topology``: list presets, draw a topology, print address maps and paths."""

from __future__ import annotations

from typing import Any

import click
import msgspec
from rich.table import Table
from rich.tree import Tree

from smartio.cli import console, echo_json
from smartio.hw.enumeration import HostMap, enumerate_all
from smartio.hw.models import ADAPTERS, SWITCHES
from smartio.hw.paths import PathFinder
from smartio.hw.topology import (
    DEFAULT_PRESET,
    TopologySpec,
    load_preset,
    preset_names,
    resolve_topology,
)
from smartio.hw.units import format_size


@click.group()
def topology() -> None:
    """Inspect topologies: presets, trees, address maps and paths."""


@topology.command("presets")
def presets_cmd() -> None:
    """List the built-in topology presets."""
    table = Table("preset", "hosts", "switches", "endpoints", "description")
    for name in preset_names():
        t = load_preset(name)
        label = f"{name} (default)" if name == DEFAULT_PRESET else name
        table.add_row(label, str(len(t.hosts)), str(len(t.switches)), str(len(t.endpoints)),
                      t.description)
    console().print(table)


def _function_label(hmap: HostMap, name: str) -> str:
    fn = hmap.functions[name]
    bars = ", ".join(f"BAR{b.index} {format_size(b.size)}" for b in fn.bars)
    return f"[bold]{fn.bdf}[/] {name} ({fn.model}) {bars}"


def render_tree(topo: TopologySpec, maps: dict[str, HostMap]) -> list[Tree]:
    """One rich tree per host (its PCIe tree), plus one for the NTB fabric."""
    trees = []
    children: dict[str, list[tuple[int, str]]] = {}
    for h in topo.hosts:
        for a in h.adapters:
            children.setdefault(a.upstream.element, []).append((a.upstream.port, a.id))
    for s in topo.switches:
        if s.upstream is not None:
            children.setdefault(s.upstream.element, []).append((s.upstream.port, s.name))
    for e in topo.endpoints:
        children.setdefault(e.upstream.element, []).append((e.upstream.port, e.name))
    transparent = {s.name: s for s in topo.switches if s.mode == "transparent"}
    for lk in topo.links:
        if lk.a.element in transparent and lk.b.element in transparent:
            children.setdefault(lk.a.element, []).append((lk.a.port, lk.b.element))

    for h in topo.hosts:
        hmap = maps[h.name]
        iommu = "IOMMU on" if h.iommu else "IOMMU off"
        root = Tree(f"[bold cyan]{h.name}[/] root complex — RAM {format_size(h.ram)}, "
                    f"{h.cpus} CPU(s), {iommu}")
        seen: set[str] = set()

        def add(node: Tree, elem: str, hmap: HostMap = hmap, seen: set[str] = seen) -> None:
            for port, child in sorted(children.get(elem, [])):
                if child in seen:
                    continue
                seen.add(child)
                if child in hmap.functions:
                    fn = hmap.functions[child]
                    label = _function_label(hmap, child)
                    if fn.kind == "ntb":
                        label += f" [magenta]NTB {ADAPTERS[fn.model].chip}[/]"
                    node.add(f"port {port}: {label}")
                elif child in transparent:
                    sw = transparent[child]
                    sub = node.add(f"port {port}: [yellow]{child}[/] {sw.model} "
                                   f"({SWITCHES[sw.model].chip}, {sw.ports} ports)")
                    add(sub, child)

        add(root, h.name)
        trees.append(root)
    fabric = Tree("[bold magenta]NTB fabric[/] (non-transparent links)")
    for lk in topo.links:
        if lk.a.element in transparent:
            continue
        fabric.add(f"{lk.a} <-> {lk.b}  Gen{lk.gen} x{lk.width}, {lk.length_m:g} m")
    for s in topo.switches:
        if s.mode == "cluster":
            fabric.add(f"[yellow]{s.name}[/] {s.model} ({SWITCHES[s.model].chip}, "
                       f"{s.ports} ports)")
    trees.append(fabric)
    return trees


def address_table(hmap: HostMap) -> Table:
    """A host's address map, like the ranges ``lspci -v`` prints."""
    table = Table("start", "end", "size", "kind", "owner", "flags", title=f"{hmap.host}")
    for r in hmap.regions:
        flags = []
        if r.kind == "msi":
            table.add_row(f"{r.start:#014x}", f"{r.end - 1:#014x}", format_size(r.size), r.kind,
                          "interrupt controller", "message window")
            continue
        if r.kind != "ram":
            flags.append("64-bit" if r.is64 else "32-bit")
            flags.append("prefetchable" if r.prefetchable else "non-prefetchable")
        owner = r.owner if r.kind == "ram" else f"{hmap.functions[r.owner].bdf} {r.owner} " \
                                                  f"BAR{r.bar}"
        table.add_row(f"{r.start:#014x}", f"{r.end - 1:#014x}", format_size(r.size), r.kind,
                      owner, ", ".join(flags))
    return table


def topology_doc(topo: TopologySpec, maps: dict[str, HostMap]) -> dict[str, Any]:
    functions = []
    for hmap in maps.values():
        for fn in hmap.functions.values():
            functions.append({
                "name": fn.name, "host": fn.host, "bdf": str(fn.bdf), "kind": fn.kind,
                "model": fn.model, "path_to_root": list(fn.chain),
                "bars": [{"index": b.index, "base": b.base, "size": b.size, "is64": b.is64,
                          "prefetchable": b.prefetchable} for b in fn.bars],
            })
    doc = {
        "name": topo.name, "description": topo.description, "source": topo.source,
        "hosts": topo.hosts, "switches": topo.switches, "links": topo.links,
        "endpoints": topo.endpoints, "functions": functions,
        "address_maps": {h: [{"start": r.start, "size": r.size, "kind": r.kind,
                              "owner": r.owner, "bar": r.bar} for r in m.regions]
                         for h, m in maps.items()},
    }
    return doc


@topology.command("show")
@click.argument("topology_ref", metavar="[FILE|PRESET]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--addresses", is_flag=True, help="Print each host's address map.")
def show_cmd(topology_ref: str | None, as_json: bool, addresses: bool) -> None:
    """Draw the PCIe tree of each host and the NTB fabric between them."""
    topo = resolve_topology(topology_ref)
    maps = enumerate_all(topo)
    if as_json:
        echo_json(topology_doc(topo, maps))
        return
    con = console()
    con.print(f"[bold]{topo.name}[/] — {topo.description}")
    for tree in render_tree(topo, maps):
        con.print(tree)
    if addresses:
        for hmap in maps.values():
            con.print(address_table(hmap))


@topology.command("path")
@click.argument("a")
@click.argument("b")
@click.option("--topology", "topology_ref", metavar="FILE|PRESET", default=None,
              help=f"Topology file or preset (default {DEFAULT_PRESET}).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def path_cmd(a: str, b: str, topology_ref: str | None, as_json: bool) -> None:
    """Print the hops between two hosts or functions, with each chip's name."""
    topo = resolve_topology(topology_ref)
    finder = PathFinder(topo, enumerate_all(topo))
    route = finder.path(a, b)
    hops = finder.hops(route)
    if as_json:
        click.echo(msgspec.json.encode({"from": a, "to": b, "hops": hops,
                                        "links": [topo.links[i].name for i in route.links]}))
        return
    table = Table("#", "element", "kind", "chip", title=f"{a} -> {b}")
    for i, h in enumerate(hops):
        table.add_row(str(i), h.name, h.kind, h.chip)
    con = console()
    con.print(table)
    switches = sum(1 for h in hops if h.kind in ("switch", "ntb"))
    con.print(f"{len(hops)} elements, {switches} switch chips, "
                  f"{len(route.links)} cables")
