"""``smartio demo``: the main job on the built-in default topology (``make demo``).

Part 1, the emulated fabric (in this process): load the topology, print each host's tree
and address map, the path between two hosts, map one host's RAM through another's NTB
window, write and read through it, take the link down (0xFF reads, dropped writes) and
bring it back with the data intact.

Part 2, the cluster: start one daemon per host, create a SISCI segment on one host, map it
from two others, exchange data and a data interrupt, multicast one write to every other
host, show LUT usage in ``cluster status``, run a short local-vs-remote ping-pong between
two programs, and stop the cluster with nothing left behind.
"""

from __future__ import annotations

import os

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from smartio.cli import console
from smartio.cli.topology import address_table, render_tree
from smartio.errors import IllegalParameter
from smartio.hw.fabric import Fabric
from smartio.hw.mapping import map_cpu
from smartio.hw.memory import list_cluster_objects
from smartio.hw.paths import PathFinder
from smartio.hw.topology import DEFAULT_PRESET, TopologySpec, resolve_topology
from smartio.hw.units import MiB

RAM_ADDR = 64 * MiB  # slice-aligned address in the first host's RAM


def _hosts_with_adapters(topo: TopologySpec) -> list[str]:
    return [h.name for h in topo.hosts if h.adapters]


def fabric_part(con: Console, topo: TopologySpec, cluster: str) -> None:
    hosts = _hosts_with_adapters(topo)
    if len(hosts) < 2:
        raise IllegalParameter(f"topology {topo.name!r} needs two hosts with NTB adapters")
    a, b = hosts[0], hosts[1]
    fab = Fabric.create(topo, cluster)
    try:
        con.rule(f"[bold]1. Topology '{topo.name}'")
        con.print(topo.description)
        for tree in render_tree(topo, fab.maps):
            con.print(tree)
        for hmap in fab.maps.values():
            con.print(address_table(hmap))

        con.rule(f"[bold]2. Path between {b} and {a}")
        finder = PathFinder(topo, fab.maps, fab.nt)
        route = finder.path(b, a)
        for hop in finder.hops(route):
            con.print(f"  {hop.name:<16} {hop.kind:<8} {hop.chip}")
        chips = sum(1 for h in finder.hops(route) if h.kind in ("ntb", "switch"))
        con.print(f"  {len(route.hops) - 1} hops, {chips} switch chips, "
                  f"{len(route.links)} cable(s)")

        con.rule(f"[bold]3. Map {a}'s RAM through {b}'s NTB window")
        ntb = fab.adapters[topo.host(b).adapters[0].id]
        peer = topo.host(a).adapters[0].id
        fab.reserve_cpu_requesters(ntb.id)
        index = ntb.lut_find_free()
        ntb.peer_mw_set_trans(index, peer, RAM_ADDR)
        window_addr = ntb.slice_addr(index)
        con.print(f"  LUT entry {index} of {ntb.id}: window {window_addr:#x} "
                  f"(+{ntb.slice_size:#x}) -> {a} {RAM_ADDR:#x}")
        piece = fab.cpu(b).translate(window_addr, 8, True)[0]
        con.print(f"  translation: {piece.route} -> {piece.obj.path.name if piece.obj else '-'}"
                  f" @ {piece.offset:#x} \\[{piece.status}]")
        remote = map_cpu(fab, b, window_addr, 1 * MiB)
        local = map_cpu(fab, a, RAM_ADDR, 1 * MiB)
        message = f"hello from {b}, across the NTB".encode()
        remote.view[: len(message)] = message
        con.print(f"  {b} wrote : {message.decode()!r}")
        con.print(f"  {a} reads : {bytes(local.view[: len(message)]).decode()!r}")

        con.rule("[bold]4. Link down: reads return 0xFF, writes are dropped")
        fab.link_set(ntb.id, False)
        con.print(f"  link {ntb.id} up? {ntb.link_is_up()}")
        con.print(f"  {b} reads : {bytes(remote.view[:16]).hex(' ')}")
        remote.view[:5] = b"LOST!"
        con.print(f"  {b} wrote 'LOST!'; {a} still reads "
                  f"{bytes(local.view[: len(message)]).decode()!r}")
        status = fab.cpu(b).translate(window_addr, 8, False)[0].status
        con.print(f"  translation status: {status}")

        con.rule("[bold]5. Link up: the same mapping works again, data intact")
        fab.link_set(ntb.id, True)
        con.print(f"  {b} reads : {bytes(remote.view[: len(message)]).decode()!r}")
        intact = bytes(remote.view[: len(message)]) == message
        con.print(f"  data written before the fault intact: {intact}")
        remote.unmap()
        local.unmap()
    finally:
        fab.destroy()


def cluster_part(con: Console, topo_ref: str, cluster: str) -> None:
    from smartio import sisci
    from smartio.bench.pingpong import stats
    from smartio.bench.sisci import pingpong
    from smartio.cluster.launcher import cluster_down, cluster_status, cluster_up

    con.rule("[bold]6. Start the cluster: one daemon per host")
    rundir = cluster_up(topo_ref, cluster)
    topo = rundir.topology()
    hosts = _hosts_with_adapters(topo)
    try:
        con.print(f"  cluster {cluster!r} up: {', '.join(h.name for h in topo.hosts)}")
        owner_host, others = hosts[0], hosts[1:3]
        with sisci.open(owner_host, cluster, "demo-owner") as owner:
            con.rule(f"[bold]7. A segment on {owner_host}, mapped from {' and '.join(others)}")
            seg = owner.create_segment(64 * 1024, 0xD3)
            seg.prepare(0)
            seg.set_available(0)
            node = owner.local_node_id(0)
            local = seg.map()
            users = [sisci.open(h, cluster, f"demo-{h}") for h in others]
            try:
                maps = []
                for sd in users:
                    rs = sd.connect_segment(node, 0xD3, 0)
                    maps.append(rs.map())
                    ev = seg.wait_for_event(5)
                    con.print(f"  {owner_host}: segment event {ev.reason} from node {ev.node_id}")
                note = f"from {others[0]}".encode()
                maps[0].view[: len(note)] = note
                got = bytes(maps[-1].view[: len(note)]).decode()
                mine = bytes(local.view[: len(note)]).decode()
                con.print(f"  {others[0]} wrote through its NTB; {others[-1]} reads {got!r}; "
                          f"{owner_host} reads {mine!r}")

                irq = owner.create_data_interrupt()
                ri = users[-1].connect_data_interrupt(node, irq.intno)
                ri.trigger(b"data interrupt payload " + bytes(range(10)))
                payload = irq.wait(5)
                con.print(f"  {others[-1]} -> {owner_host} data interrupt {irq.intno}: "
                          f"{len(payload)} bytes, {payload[:22].decode()!r}")

                con.rule("[bold]8. Multicast: one write lands in the other hosts")
                # A multicast group has at most 32 members; the demo uses up to 8.
                receivers = [sisci.open(h, cluster, f"demo-mc-{h}") for h in hosts[1:9]]
                try:
                    rsegs = []
                    for sd in receivers:
                        s = sd.create_segment(4096, 0x3C, broadcast=True)
                        s.prepare(0)
                        s.set_available(0)
                        rsegs.append(s)
                    group = owner.connect_segment(sisci.BROADCAST_NODE_ID, 0x3C, 0,
                                                  broadcast=True)
                    mc = group.map_multicast()
                    mc.write(0, b"one write, many hosts")
                    for sd, s in zip(receivers, rsegs, strict=True):
                        m = s.map()
                        con.print(f"  {sd.host} reads {bytes(m.view[:21]).decode()!r}")
                        m.unmap()

                    con.rule("[bold]9. cluster status: LUT usage while everything is mapped")
                    st = cluster_status(cluster)
                    t = Table("adapter", "node id", "address LUT used", "requester-ID LUT used")
                    for h in st["hosts"]:
                        for ad in h.get("adapters", []):
                            t.add_row(ad["id"], str(ad["node_id"]),
                                      f"{ad['lut_used']}/{ad['lut_total']}",
                                      f"{ad['rid_used']}/{ad['rid_total']}")
                    con.print(t)
                    mc.unmap()
                    group.disconnect()
                finally:
                    for sd in receivers:
                        sd.close()
            finally:
                for mp in maps:
                    mp.unmap()
                for sd in users:
                    sd.close()

            con.rule("[bold]10. Ping-pong between two programs: local vs remote segment")
            seg.remove(force=True)
            rounds = 3000
            loc = stats(pingpong(cluster, owner_host, owner_host, node, rounds))
            rem = stats(pingpong(cluster, owner_host, others[0], node, rounds))
            con.print(f"  local  (both on {owner_host}): median {loc['median_us']:.2f} µs, "
                      f"p99 {loc['p99_us']:.2f} µs")
            con.print(f"  remote ({others[0]} through its NTB): median {rem['median_us']:.2f} µs"
                      f", p99 {rem['p99_us']:.2f} µs")
            con.print(f"  remote/local median ratio {rem['median_us'] / loc['median_us']:.2f}")
        nvme_part(con, cluster, topo)
    finally:
        con.rule("[bold]13. Stop the cluster")
        removed = cluster_down(cluster)
        con.print(f"  removed {len(removed)} shared-memory objects")
    left = list_cluster_objects(cluster)
    con.print(Panel(f"cluster {cluster!r}: {len(left)} shared-memory objects left, run "
                    f"directory {'gone' if not rundir.path.exists() else 'still there'}"))


def nvme_part(con: Console, cluster: str, topo: TopologySpec) -> None:
    """Identify an NVMe with the userspace driver, write and read back, and benchmark it."""
    from smartio.bench.nvme import run_ours
    from smartio.drivers.nvme import Controller, Namespace, QueuePair
    from smartio.lending import DeviceTree

    nvme = next((e for e in topo.endpoints if e.model == "nvme"), None)
    if nvme is None:
        con.print("[yellow]no NVMe in this topology: skipping the driver part[/]")
        return
    host = nvme.upstream.element
    if host not in {h.name for h in topo.hosts}:
        host = next(h.name for h in topo.hosts if nvme.name in
                    {f for f in _functions(topo, h.name)})
    con.rule(f"[bold]11. The userspace NVMe driver on {host}'s {nvme.name}")
    with DeviceTree(host, cluster, "demo-nvme") as tree:
        ctrl = Controller(tree.open(nvme.name), io_queues=2)
        try:
            i = ctrl.info
            con.print(f"  Identify: mn {i.model!r} sn {i.serial!r} fr {i.firmware!r} "
                      f"mdts {i.mdts} nn {i.nn}; {ctrl.io_queues} I/O queue pairs, "
                      f"MQES {ctrl.mqes}")
            ns = Namespace(ctrl, 1)
            con.print(f"  namespace 1: {ns.blocks} blocks of {ns.lba_size} B "
                      f"({ns.size >> 20} MiB)")
            with QueuePair(ctrl, 16) as qp:
                buf = ctrl.device.dma_alloc(64 * 1024)
                pattern = bytes(range(256)) * 256
                buf.view[:] = pattern
                ns.write(qp, buf, 2048, len(pattern) // ns.lba_size)
                buf.view[:] = bytes(len(pattern))
                ns.read(qp, buf, 2048, len(pattern) // ns.lba_size)
                ok = bytes(buf.view) == pattern
                buf.free()
            con.print(f"  wrote a 64 KiB pattern at LBA 2048 and read it back: "
                      f"{'identical' if ok else 'DIFFERENT'}")
        finally:
            ctrl.close(shutdown=False)
    borrower = next((h.name for h in topo.hosts if h.name != host and h.adapters), None)
    if borrower is not None:
        con.rule(f"[bold]11b. The same driver on {borrower}, with {host}'s {nvme.name} borrowed")
        with DeviceTree(borrower, cluster, "demo-borrower") as tree:
            dev = tree.borrow(host, nvme.name)
            ctrl = Controller(dev, io_queues=1)
            try:
                ns = Namespace(ctrl, 1)
                with QueuePair(ctrl, 8) as qp:
                    buf = dev.dma_alloc(64 * 1024)
                    ns.read(qp, buf, 2048, len(buf.view) // ns.lba_size)
                    ok = bytes(buf.view) == bytes(range(256)) * 256
                    con.print(f"  shadow device {dev.bdf} ({dev.name} of {host}); its BAR0 at "
                              f"{dev.bars()[0].addr:#x} in {borrower}'s NTB window")
                    con.print(f"  read the pattern back into {borrower}'s RAM "
                              f"(device-side address {buf.ioaddr:#x}): "
                              f"{'identical' if ok else 'DIFFERENT'}")
                    buf.free()
            finally:
                ctrl.close(shutdown=False)
    con.rule("[bold]12. 4 KiB random reads (short run)")
    res = run_ours(host, nvme.name, cluster, seconds=0.5)
    con.print(f"  QD1 median {res['qd1']['median_us']:.1f} µs (p99 {res['qd1']['p99_us']:.1f}), "
              f"QD32 {res['qd32_iops']:,.0f} IOPS — `smartio nvme bench` for a full run")


def _functions(topo: TopologySpec, host: str) -> list[str]:
    from smartio.hw.enumeration import enumerate_host

    return list(enumerate_host(topo, host).functions)


@click.command()
@click.option("--topology", "topology_ref", default=DEFAULT_PRESET, show_default=True,
              metavar="FILE|PRESET", help="A topology with at least two NTB-connected hosts.")
@click.option("--cluster", default=None, help="Cluster name (default demo-<pid>).")
@click.option("--fabric-only", is_flag=True, help="Only part 1 (no daemons).")
def demo(topology_ref: str, cluster: str | None, fabric_only: bool) -> None:
    """Walk through the fabric, then a running cluster with the SISCI API."""
    con = console()
    topo = resolve_topology(topology_ref)
    name = cluster or f"demo-{os.getpid()}"
    fabric_part(con, topo, name)
    if not fabric_only:
        if len(_hosts_with_adapters(topo)) < 3:
            con.print("[yellow]part 2 needs three NTB-connected hosts; "
                      f"{topo.name!r} has fewer — try the default preset[/]")
            return
        cluster_part(con, topology_ref, name)
    else:
        con.print(Panel(f"cluster {name!r}: {len(list_cluster_objects(name))} shared-memory "
                        "objects left"))
