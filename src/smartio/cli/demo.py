"""``smartio demo``: the main job on the built-in default topology (``make demo``).

Loads the default preset, prints its topology and address maps, the path between the two
hosts, maps a range of the lender's RAM through the borrower's NTB window, writes and
reads through it, takes the link down to show PCIe's 0xFF reads and dropped writes, brings
it back with the data intact, and removes everything it created.
"""

from __future__ import annotations

import os

import click
from rich.panel import Panel

from smartio.cli import console
from smartio.cli.topology import address_table, render_tree
from smartio.hw.fabric import Fabric
from smartio.hw.mapping import map_cpu
from smartio.hw.paths import PathFinder
from smartio.hw.topology import DEFAULT_PRESET, resolve_topology
from smartio.hw.units import MiB

LENDER_RAM_ADDR = 64 * MiB  # slice-aligned address in the lender's RAM


@click.command()
@click.option("--topology", "topology_ref", default=DEFAULT_PRESET, show_default=True,
              metavar="FILE|PRESET", help="A two-host topology with hosts lender and borrower.")
@click.option("--cluster", default=None, help="Cluster name (default demo-<pid>).")
def demo(topology_ref: str, cluster: str | None) -> None:
    """Walk through the emulated fabric: topology, mapping, link failure, recovery."""
    con = console()
    topo = resolve_topology(topology_ref)
    con.rule(f"[bold]1. Topology '{topo.name}'")
    con.print(topo.description)
    fab = Fabric.create(topo, cluster or f"demo-{os.getpid()}")
    try:
        for tree in render_tree(topo, fab.maps):
            con.print(tree)
        for hmap in fab.maps.values():
            con.print(address_table(hmap))

        con.rule("[bold]2. Path between the hosts")
        finder = PathFinder(topo, fab.maps, fab.nt)
        route = finder.path("borrower", "lender")
        for hop in finder.hops(route):
            con.print(f"  {hop.name:<16} {hop.kind:<8} {hop.chip}")
        chips = sum(1 for h in finder.hops(route) if h.kind in ("ntb", "switch"))
        con.print(f"  {len(route.hops) - 1} hops, {chips} switch chips, "
                  f"{len(route.links)} cable(s)")

        con.rule("[bold]3. Map lender RAM through the borrower's NTB window")
        ntb = fab.adapters["borrower:ntb0"]
        fab.reserve_cpu_requesters(ntb.id)
        index = ntb.lut_find_free()
        ntb.peer_mw_set_trans(index, "lender:ntb0", LENDER_RAM_ADDR)
        window_addr = ntb.slice_addr(index)
        con.print(f"  LUT entry {index} of {ntb.id}: window {window_addr:#x} "
                  f"(+{ntb.slice_size:#x}) -> lender {LENDER_RAM_ADDR:#x}")
        piece = fab.cpu("borrower").translate(window_addr, 8, True)[0]
        con.print(f"  translation: {piece.route} -> {piece.obj.path.name if piece.obj else '-'}"
                  f" @ {piece.offset:#x} \\[{piece.status}]")
        remote = map_cpu(fab, "borrower", window_addr, 1 * MiB)
        local = map_cpu(fab, "lender", LENDER_RAM_ADDR, 1 * MiB)
        message = b"hello from the borrower, across the NTB"
        remote.view[: len(message)] = message
        con.print(f"  borrower wrote : {message.decode()!r}")
        con.print(f"  lender reads   : {bytes(local.view[: len(message)]).decode()!r}")
        local.view[64:72] = b"lender!!"
        con.print(f"  lender wrote 8 bytes; borrower reads {bytes(remote.view[64:72])!r}")

        con.rule("[bold]4. Link down: reads return 0xFF, writes are dropped")
        fab.link_set(ntb.id, False)
        con.print(f"  link {ntb.id} up? {ntb.link_is_up()}")
        con.print(f"  borrower reads : {bytes(remote.view[:16]).hex(' ')}")
        remote.view[:5] = b"LOST!"
        con.print(f"  borrower wrote 'LOST!'; lender still reads "
                  f"{bytes(local.view[: len(message)]).decode()!r}")
        status = fab.cpu("borrower").translate(window_addr, 8, False)[0].status
        con.print(f"  translation status: {status}")

        con.rule("[bold]5. Link up: the same mapping works again, data intact")
        fab.link_set(ntb.id, True)
        con.print(f"  borrower reads : {bytes(remote.view[: len(message)]).decode()!r}")
        intact = bytes(remote.view[: len(message)]) == message
        con.print(f"  data written before the fault intact: {intact}")
        remote.unmap()
        local.unmap()
    finally:
        fab.destroy()
    con.rule("[bold]6. Clean up")
    con.print(Panel(f"cluster {fab.cluster!r}: {len(fab.objects())} shared-memory objects left"))
