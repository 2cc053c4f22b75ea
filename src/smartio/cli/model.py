"""``smartio model``: modeled PCIe timing of links, paths and DMA transfers.

The commands only parse arguments, resolve paths with :class:`~smartio.hw.paths.PathFinder`
and ask :class:`~smartio.hw.timing.TimingModel`; see docs/timing.md for the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from smartio.cli import console
from smartio.hw.timing import REQUESTERS, TimingModel, Transfer, link_rates
from smartio.hw.timing.link import GT_PER_S, PAYLOAD_SIZES, WIDTHS
from smartio.hw.timing.path import ROOT, dma_route, with_iommu
from smartio.hw.topology import DEFAULT_PRESET, resolve_topology
from smartio.hw.units import format_size, parse_size

_TOPOLOGY_HELP = f"Topology file or preset (default {DEFAULT_PRESET})."
_IOMMU_HELP = "Model HOST with its IOMMU on (repeatable), e.g. the lender of §7.3.1."
_VIA_ROOT_HELP = ("Route DMA through the device's root complex (as its IOMMU forces) or "
                  "the shortest way; default: through the root when the device's host has "
                  "its IOMMU on.")


@click.group()
def model() -> None:
    """Modeled PCIe timing on the paper's hardware: links, paths, DMA transfers."""


@model.command("link")
@click.option("--gen", type=click.IntRange(1, 6), required=True, help="PCIe generation.")
@click.option("--width", type=click.Choice([str(w) for w in WIDTHS]), required=True,
              help="Lanes.")
@click.option("--mps", type=click.Choice([str(m) for m in PAYLOAD_SIZES]), default="256",
              show_default=True, help="Maximum Payload Size, bytes.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def link_cmd(gen: int, width: str, mps: str, as_json: bool) -> None:
    """Raw and usable rates of a link and its write and read plateaus."""
    r = link_rates(gen, int(width), int(mps))
    doc = {"gen": r.gen, "width": r.width, "mps": r.mps, "encoding": r.encoding,
           "gt_per_s": GT_PER_S[gen], "raw_gb_s": r.raw_gb_s, "usable_gb_s": r.usable_gb_s,
           "write_gb_s": r.write_gb_s, "read_gb_s": r.read_gb_s}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    table = Table("quantity", "value", title=f"Gen{gen} x{width}, MPS {mps} B")
    table.add_row("line rate", f"{GT_PER_S[gen]:g} GT/s per lane, {r.encoding}")
    table.add_row("raw (per direction)", f"{r.raw_gb_s:.3f} GB/s")
    table.add_row("usable by TLPs (after Ack/FC/SKIP)", f"{r.usable_gb_s:.3f} GB/s")
    table.add_row("write plateau (MPS-sized MWr)", f"{r.write_gb_s:.3f} GB/s")
    table.add_row("read plateau (MPS-sized CplD)", f"{r.read_gb_s:.3f} GB/s")
    console().print(table)


@model.command("path")
@click.argument("a")
@click.argument("b")
@click.option("--topology", "topology_ref", metavar="FILE|PRESET", default=None,
              help=_TOPOLOGY_HELP)
@click.option("--via-root/--shortest", "via_root", default=None, help=_VIA_ROOT_HELP)
@click.option("--iommu", "iommu_hosts", multiple=True, metavar="HOST", help=_IOMMU_HELP)
@click.option("--requester", type=click.Choice(REQUESTERS), default=None,
              help="Requester profile of A (default: A's device model).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def path_cmd(a: str, b: str, topology_ref: str | None, via_root: bool | None,
             iommu_hosts: tuple[str, ...], requester: str | None, as_json: bool) -> None:
    """Hops, links and modeled latency and plateaus from A (requester) to B (completer)."""
    topo = with_iommu(resolve_topology(topology_ref), iommu_hosts)
    tm = TimingModel(topo)
    route = dma_route(topo, a, b, via_root)
    path = tm.resolve(route)
    n = len(path.elements)
    hop_ns = [tm.hop_ns(el) if 0 < i < n - 1 else 0.0 for i, el in enumerate(path.elements)]
    big = 64 << 20
    if path.requester.kind == ROOT:
        ops = {"load_8B": tm.cpu_load(route, 8), "store_64B": tm.cpu_store(route, 64),
               "store_64MiB": tm.cpu_store(route, big)}
    else:
        ops = {"read_64B": tm.dma(route, 64, True, requester=requester),
               "write_64B": tm.dma(route, 64, False),
               "read_64MiB": tm.dma(route, big, True, requester=requester),
               "write_64MiB": tm.dma(route, big, False)}
    if as_json:
        hops = [{"element": el.name, "kind": el.kind, "chip": el.label, "hop_ns": hop_ns[i],
                 "iommu": el.iommu,
                 "link": None if i >= len(path.links) else {
                     "name": path.links[i].name, "gen": path.links[i].gen,
                     "width": path.links[i].width, "length_m": path.links[i].length_m,
                     "usable_gb_s": path.links[i].rates.usable_gb_s}}
                for i, el in enumerate(path.elements)]
        click.echo(json.dumps({"from": a, "to": b, "route": list(route.hops), "hops": hops,
                               "bottleneck": path.bottleneck().name,
                               "operations": {k: _transfer_doc(t) for k, t in ops.items()}},
                              indent=2))
        return
    table = Table("#", "element", "kind", "chip", "hop", "link to next", title=f"{a} -> {b}")
    for i, el in enumerate(path.elements):
        link = ""
        if i < len(path.links):
            lk = path.links[i]
            link = (f"Gen{lk.gen} x{lk.width}" + (f", {lk.length_m:g} m" if lk.length_m else "")
                    + f", {lk.rates.usable_gb_s:.2f} GB/s usable")
        table.add_row(str(i), el.name, el.kind, el.label,
                      f"{hop_ns[i]:.0f} ns" if hop_ns[i] else "", link)
    ops_table = Table("operation", "latency", "throughput", "steady rate", "limited by")
    for name, t in ops.items():
        ops_table.add_row(name.replace("_", " "), _ns(t.latency_ns),
                          f"{t.throughput_gb_s:.3f} GB/s", f"{t.rate_gb_s:.3f} GB/s", t.limit)
    con = console()
    con.print(table)
    con.print(ops_table)


@model.command("dma")
@click.option("--from", "src", required=True, metavar="DEV", help="The requester (a device).")
@click.option("--to", "dst", required=True, metavar="MEM",
              help="The completer: a host (its RAM) or a device (its BAR).")
@click.option("--sizes", default="4K..128M", show_default=True,
              help="Transfer sizes: A..B (doubling) or a comma-separated list.")
@click.option("--read", "do_read", is_flag=True, help="Only DMA reads (MEM -> DEV).")
@click.option("--write", "do_write", is_flag=True, help="Only DMA writes (DEV -> MEM).")
@click.option("--topology", "topology_ref", metavar="FILE|PRESET", default=None,
              help=_TOPOLOGY_HELP)
@click.option("--via-root/--shortest", "via_root", default=None, help=_VIA_ROOT_HELP)
@click.option("--iommu", "iommu_hosts", multiple=True, metavar="HOST", help=_IOMMU_HELP)
@click.option("--requester", type=click.Choice(REQUESTERS), default=None,
              help="Requester profile of DEV (default: its device model).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Draw throughput against size into a PNG (needs matplotlib).")
def dma_cmd(src: str, dst: str, sizes: str, do_read: bool, do_write: bool,
            topology_ref: str | None, via_root: bool | None, iommu_hosts: tuple[str, ...],
            requester: str | None, as_json: bool, plot_file: Path | None) -> None:
    """Modeled latency and throughput of DMA transfers of each size, like bandwidthTest."""
    size_list = parse_sizes(sizes)
    topo = with_iommu(resolve_topology(topology_ref), iommu_hosts)
    tm = TimingModel(topo)
    route = dma_route(topo, src, dst, via_root)
    kinds = [k for k, on in (("write", do_write), ("read", do_read)) if on] or ["write", "read"]
    rows = {k: [tm.dma(route, s, k == "read", requester=requester) for s in size_list]
            for k in kinds}
    if plot_file is not None:
        plot_throughput(plot_file, size_list, rows, f"{src} -> {dst} ({topo.name})")
    if as_json:
        click.echo(json.dumps({"from": src, "to": dst, "topology": topo.name,
                               "route": list(route.hops),
                               **{k: [_transfer_doc(t) for t in ts] for k, ts in rows.items()}},
                              indent=2))
        return
    cols = ["size"]
    for k in kinds:
        cols += [f"{k} latency", f"{k} GB/s"]
    table = Table(*cols, title=f"{src} -> {dst}: {route}")
    for i, s in enumerate(size_list):
        cells = [format_size(s)]
        for k in kinds:
            t = rows[k][i]
            cells += [_ns(t.latency_ns), f"{t.throughput_gb_s:.3f}"]
        table.add_row(*cells)
    con = console()
    con.print(table)
    for k in kinds:
        t = rows[k][-1]
        con.print(f"{k}: steady rate {t.rate_gb_s:.3f} GB/s, limited by {t.limit}")
    if plot_file is not None:
        con.print(f"plot written to {plot_file}")


def parse_sizes(spec: str) -> list[int]:
    """Sizes from ``A..B`` (A, 2A, 4A, ... up to B) or ``A,B,C``.

    Raises:
        click.BadParameter: a size is malformed, zero, or the range is empty.
    """
    try:
        if ".." in spec:
            lo_s, hi_s = spec.split("..", 1)
            lo, hi = parse_size(lo_s), parse_size(hi_s)
            if lo <= 0 or hi < lo:
                raise ValueError(f"empty range {spec!r}")
            out = []
            while lo <= hi:
                out.append(lo)
                lo *= 2
            return out
        out = [parse_size(x) for x in spec.split(",") if x.strip()]
        if not out or min(out) <= 0:
            raise ValueError(f"no positive sizes in {spec!r}")
        return out
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--sizes") from None


def plot_throughput(path: Path, sizes: list[int], rows: dict[str, list[Transfer]],
                    title: str) -> None:
    """Throughput against transfer size, one panel per direction (paper Figs. 22-24).

    Raises:
        click.ClickException: matplotlib (the ``plot`` extra) is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise click.ClickException("--plot needs matplotlib, an optional extra: "
                                   "pip install 'smartio[plot]'") from None
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 3.2 * len(rows)), squeeze=False)
    for ax, (kind, ts) in zip(axes[:, 0], rows.items(), strict=True):
        ax.plot(sizes, [t.throughput_gb_s for t in ts], marker="o", markersize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes[:: max(1, len(sizes) // 8)])
        ax.set_xticklabels([format_size(s) for s in sizes[:: max(1, len(sizes) // 8)]])
        ax.set_ylabel(f"DMA {kind} GB/s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("transfer size")
    fig.suptitle(f"modeled: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _transfer_doc(t: Transfer) -> dict[str, Any]:
    return {"op": t.op, "bytes": t.nbytes, "latency_ns": t.latency_ns,
            "throughput_gb_s": t.throughput_gb_s, "rate_gb_s": t.rate_gb_s,
            "first_ns": t.first_ns, "limit": t.limit, "requests": t.requests}


def _ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.3f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


__all__ = ["model", "parse_sizes", "plot_throughput"]
