"""``smartio cluster``, ``smartio node`` and ``smartio link``: run and inspect clusters."""

from __future__ import annotations

import logging

import click
from rich.table import Table

from smartio.cli import console, echo_json
from smartio.hw.topology import DEFAULT_PRESET

cluster_opt = click.option("--cluster", default=None, envvar="SMARTIO_CLUSTER",
                           help="Cluster name (SMARTIO_CLUSTER; default 'default').")


@click.group()
def cluster() -> None:
    """Start, inspect and stop a cluster of host daemons on this machine."""


@cluster.command("up")
@click.option("--topology", "topology_ref", default=DEFAULT_PRESET, show_default=True,
              metavar="FILE|PRESET", help="Topology file or preset.")
@cluster_opt
def up_cmd(topology_ref: str, cluster: str | None) -> None:
    """Start every host of a topology in the background; returns when all are ready."""
    from smartio.cluster.launcher import cluster_up

    rundir = cluster_up(topology_ref, cluster)
    hosts = ", ".join(h.name for h in rundir.topology().hosts)
    console().print(f"cluster [bold]{rundir.cluster}[/] up: {hosts} (run dir {rundir.path})")


@cluster.command("status")
@cluster_opt
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(cluster: str | None, as_json: bool) -> None:
    """List hosts, adapters (LUT usage), links, segments and clients."""
    from smartio.cluster.launcher import cluster_status

    st = cluster_status(cluster)
    if as_json:
        echo_json(st)
        return
    con = console()
    con.print(f"cluster [bold]{st['cluster']}[/] topology {st['topology']} — run dir "
              f"{st['run_dir']}, {st['shm_objects']} shared-memory objects")
    t = Table("host", "pid", "state", "clients", "segments", "connections", "pool used",
              title="hosts")
    for h in st["hosts"]:
        t.add_row(h["host"], str(h["pid"]), h["state"], str(len(h.get("clients", []))),
                  str(len(h.get("segments", []))), str(len(h.get("connections", []))),
                  f"{h.get('pool_used', 0) >> 10} KiB" if "pool_used" in h else "-")
    con.print(t)
    t = Table("adapter", "node id", "link", "address LUT", "requester-ID LUT", title="adapters")
    for h in st["hosts"]:
        for a in h.get("adapters", []):
            t.add_row(a["id"], str(a["node_id"]), "up" if a["link_up"] else "[red]down[/]",
                      f"{a['lut_used']}/{a['lut_total']}", f"{a['rid_used']}/{a['rid_total']}")
    con.print(t)
    t = Table("link", "state", "gen/width", "times down", title="links")
    for lk in st["links"]:
        t.add_row(lk["name"], "up" if lk["up"] else "[red]down[/]",
                  f"Gen{lk['gen']} x{lk['width']}", str(lk["downs"]))
    con.print(t)
    t = Table("host", "segment", "size", "owner", "available on", "connections",
              title="segments")
    for h in st["hosts"]:
        for s in h.get("segments", []):
            t.add_row(h["host"], str(s["id"]), str(s["size"]), s["owner"],
                      ",".join(map(str, s["available"])) or "-", str(s["connections"]))
    con.print(t)
    t = Table("host", "pid", "name", title="clients")
    for h in st["hosts"]:
        for c in h.get("clients", []):
            t.add_row(h["host"], str(c["pid"]), c["name"])
    con.print(t)


@cluster.command("down")
@cluster_opt
def down_cmd(cluster: str | None) -> None:
    """Stop every daemon and remove everything the cluster created."""
    from smartio.cluster.launcher import cluster_down

    removed = cluster_down(cluster)
    console().print(f"cluster down; removed {len(removed)} shared-memory objects")


@click.group()
def node() -> None:
    """Run one host of a cluster."""


@node.command("run")
@click.option("--topology", "topology_ref", default=None, metavar="FILE|PRESET",
              help="Topology (needed when the cluster's run directory does not exist yet).")
@click.option("--host", required=True, envvar="SMARTIO_HOST", help="The host to run.")
@cluster_opt
def node_run_cmd(topology_ref: str | None, host: str, cluster: str | None) -> None:
    """Run one host's daemon in the foreground (for hand-built and multi-machine set-ups)."""
    from smartio.cluster.daemon import run_node
    from smartio.cluster.rundir import RunDir
    from smartio.hw.fabric import Fabric
    from smartio.hw.memory import object_path
    from smartio.hw.topology import loads_topology, topology_text

    logging.getLogger().setLevel(logging.INFO)
    rundir = RunDir(cluster)
    if not rundir.exists():
        if topology_ref is None:
            raise click.UsageError(f"cluster {rundir.cluster!r} has no run directory; "
                                   "pass --topology")
        text, source = topology_text(topology_ref)
        rundir.create(text)
        if not object_path(rundir.cluster, "fabric").exists():
            Fabric.create(loads_topology(text, source), rundir.cluster).close()
    run_node(rundir.cluster, host)


@click.group()
def link() -> None:
    """Fault injection: take links down and bring them back."""


def _link_set(target: str, up: bool, cluster: str | None) -> None:
    from smartio.cluster import messages as m
    from smartio.cluster.launcher import _request
    from smartio.cluster.rundir import RunDir

    rundir = RunDir(cluster)
    topo = rundir.topology()
    host = target.split(":", 1)[0] if ":" in target else None
    hosts = [h.name for h in topo.hosts]
    owner = host if host in hosts else next((h for h in hosts if rundir.alive(h)), None)
    if owner is None:
        raise click.ClickException(f"no running host in cluster {rundir.cluster!r}")
    _request(rundir, owner, m.LinkSet(target=target, up=up), timeout=10)
    console().print(f"link {target} {'up' if up else 'down'}")


@link.command("down")
@click.argument("target", metavar="HOST:ADAPTER")
@cluster_opt
def link_down_cmd(target: str, cluster: str | None) -> None:
    """Take the link(s) of an adapter down."""
    _link_set(target, False, cluster)


@link.command("up")
@click.argument("target", metavar="HOST:ADAPTER")
@cluster_opt
def link_up_cmd(target: str, cluster: str | None) -> None:
    """Bring the link(s) of an adapter back up."""
    _link_set(target, True, cluster)
