"""``smartio lspci`` and ``smartio nvme``: a host's device tree and the userspace NVMe driver."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from smartio.cli import console, echo_json

host_opt = click.option("--host", required=True, envvar="SMARTIO_HOST",
                        help="The host whose devices to use (SMARTIO_HOST).")
cluster_opt = click.option("--cluster", default=None, envvar="SMARTIO_CLUSTER",
                           help="Cluster name (SMARTIO_CLUSTER).")
device_opt = click.option("--device", default="nvme0", show_default=True,
                          help="BDF (02:00.0) or name of the NVMe function.")

CAP_NAMES = {0x01: "Power Management", 0x05: "MSI", 0x10: "Express", 0x11: "MSI-X"}
CLASS_NAMES = {0x0108: "Non-Volatile memory controller", 0x0300: "VGA compatible controller",
               0x0200: "Ethernet controller", 0x0680: "Bridge", 0x0500: "RAM memory"}


@click.command("lspci")
@host_opt
@cluster_opt
@click.option("-v", "verbose", is_flag=True, help="BARs and capabilities too.")
def lspci(host: str, cluster: str | None, verbose: bool) -> None:
    """List a host's PCIe functions, lspci style."""
    from smartio.lending import DeviceTree

    with DeviceTree(host, cluster, "lspci") as tree:
        for f in tree.functions():
            klass = CLASS_NAMES.get(f.class_code >> 8, f"Class {f.class_code >> 8:04x}")
            click.echo(f"{f.bdf} {klass}: [{f.vendor_id:04x}:{f.device_id:04x}] {f.name} "
                       f"({f.model})")
            if verbose:
                for b in f.bars:
                    kind = ("64-bit" if b.is64 else "32-bit") + (
                        ", prefetchable" if b.prefetchable else ", non-prefetchable")
                    click.echo(f"\tRegion {b.index}: Memory at {b.addr:x} ({kind}) "
                               f"[size={b.size >> 10}K]")
                for cid, off in f.capabilities:
                    click.echo(f"\tCapabilities: [{off:02x}] {CAP_NAMES.get(cid, hex(cid))}")


@click.group()
def nvme() -> None:
    """Drive a host's NVMe controller with the userspace driver."""


def _open(host: str, cluster: str | None, device: str, name: str) -> tuple[Any, Any]:
    from smartio.drivers.nvme import Controller
    from smartio.lending import DeviceTree

    tree = DeviceTree(host, cluster, name)
    try:
        return tree, Controller(tree.open(device), io_queues=2)
    except BaseException:
        tree.close()
        raise


@nvme.command("identify")
@host_opt
@cluster_opt
@device_opt
@click.option("--json", "as_json", is_flag=True)
def identify_cmd(host: str, cluster: str | None, device: str, as_json: bool) -> None:
    """Identify Controller and each namespace (like nvme id-ctrl / id-ns)."""
    tree, ctrl = _open(host, cluster, device, "nvme-identify")
    try:
        i = ctrl.info
        nss = {nsid: {"nsze": n.nsze, "ncap": n.ncap, "nuse": n.nuse, "lba_size": n.lba_size}
               for nsid, n in ctrl.namespaces.items()}
        doc = {"vid": i.vid, "ssvid": i.ssvid, "sn": i.serial, "mn": i.model, "fr": i.firmware,
               "mdts": i.mdts, "cntlid": i.cntlid, "ver": i.version, "oacs": i.oacs,
               "aerl": i.aerl, "sqes": i.sqes, "cqes": i.cqes, "nn": i.nn, "oncs": i.oncs,
               "vwc": i.vwc, "io_queues": ctrl.io_queues, "mqes": ctrl.mqes, "namespaces": nss}
        if as_json:
            echo_json(doc)
            return
        click.echo(f"NVME Identify Controller ({host} {device}):")
        for k in ("vid", "ssvid", "sn", "mn", "fr", "mdts", "cntlid", "ver", "oacs", "aerl",
                  "sqes", "cqes", "nn", "oncs", "vwc"):
            v = doc[k]
            click.echo(f"{k:<9} : {v:#x}" if isinstance(v, int) and k not in ("mdts", "nn")
                       else f"{k:<9} : {v}")
        for nsid, n in nss.items():
            click.echo(f"\nNVME Identify Namespace {nsid}:\nnsze      : {n['nsze']:#x}\n"
                       f"ncap      : {n['ncap']:#x}\nnuse      : {n['nuse']:#x}\n"
                       f"lbaf  0 : lbads:{(n['lba_size']).bit_length() - 1} (in use)")
    finally:
        ctrl.close(shutdown=False)
        tree.close()


@nvme.command("write")
@host_opt
@cluster_opt
@device_opt
@click.option("--lba", type=int, default=0, show_default=True)
@click.option("--data", "data", required=True, help="Text to write (padded to whole blocks).")
def write_cmd(host: str, cluster: str | None, device: str, lba: int, data: str) -> None:
    """Write data at an LBA of namespace 1."""
    from smartio.drivers.nvme import Namespace, QueuePair

    tree, ctrl = _open(host, cluster, device, "nvme-write")
    try:
        ns = Namespace(ctrl, 1)
        raw = data.encode()
        count = max(1, -(-len(raw) // ns.lba_size))
        with QueuePair(ctrl, 8) as qp:
            buf = ctrl.device.dma_alloc(count * ns.lba_size)
            buf.view[: len(raw)] = raw
            ns.write(qp, buf, lba, count)
            buf.free()
        console().print(f"wrote {len(raw)} bytes ({count} blocks) at LBA {lba}")
    finally:
        ctrl.close(shutdown=False)
        tree.close()


@nvme.command("read")
@host_opt
@cluster_opt
@device_opt
@click.option("--lba", type=int, default=0, show_default=True)
@click.option("--count", type=int, default=1, show_default=True, help="Blocks to read.")
def read_cmd(host: str, cluster: str | None, device: str, lba: int, count: int) -> None:
    """Read blocks of namespace 1 and hex-dump them."""
    from smartio.drivers.nvme import Namespace, QueuePair

    tree, ctrl = _open(host, cluster, device, "nvme-read")
    try:
        ns = Namespace(ctrl, 1)
        with QueuePair(ctrl, 8) as qp:
            buf = ctrl.device.dma_alloc(count * ns.lba_size)
            ns.read(qp, buf, lba, count)
            data = bytes(buf.view[: count * ns.lba_size])
            buf.free()
        for off in range(0, len(data), 16):
            chunk = data[off: off + 16]
            text = "".join(chr(c) if 32 <= c < 127 else "." for c in chunk)
            click.echo(f"{lba * ns.lba_size + off:08x}  {chunk.hex(' ')}  {text}")
    finally:
        ctrl.close(shutdown=False)
        tree.close()


@nvme.command("bench")
@host_opt
@cluster_opt
@device_opt
@click.option("--seconds", default=2.0, show_default=True, help="Per queue depth.")
@click.option("--peer", type=click.Choice(["nbdkit"]), default=None,
              help="Also run fio's nbd engine against nbdkit and compare.")
@click.option("--json", "as_json", is_flag=True)
def bench_cmd(host: str, cluster: str | None, device: str, seconds: float, peer: str | None,
              as_json: bool) -> None:
    """4 KiB random reads: QD1 latency and QD32 IOPS (and the same against a peer)."""
    from smartio.bench.nvme import run_nbdkit, run_ours

    res: dict[str, object] = {"ours": run_ours(host, device, cluster, seconds)}
    ours = res["ours"]
    assert isinstance(ours, dict)
    if peer == "nbdkit":
        res["nbdkit"] = run_nbdkit(ours["namespace_bytes"], seconds)
    if as_json:
        echo_json(res)
        return
    t = Table("path", "QD1 median µs", "QD1 p99 µs", "QD32 IOPS",
              title=f"4 KiB random read, {host} {device}")
    t.add_row("smartio driver -> NVMe model", f"{ours['qd1']['median_us']:.1f}",
              f"{ours['qd1']['p99_us']:.1f}", f"{ours['qd32_iops']:,.0f}")
    if "nbdkit" in res:
        nb = res["nbdkit"]
        assert isinstance(nb, dict)
        t.add_row("fio nbd -> nbdkit (UNIX socket)", f"{nb['qd1']['median_us']:.1f}",
                  f"{nb['qd1']['p99_us']:.1f}", f"{nb['qd32']['iops']:,.0f}")
    con = console()
    con.print(t)
    if "nbdkit" in res:
        nb = res["nbdkit"]
        assert isinstance(nb, dict)
        ratio = nb["qd1"]["median_us"] / ours["qd1"]["median_us"]
        con.print(f"QD1 median: nbdkit/ours = {ratio:.2f}x")
