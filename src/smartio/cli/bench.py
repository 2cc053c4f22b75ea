"""``smartio bench``: benchmarks that report side-by-side ratios (never asserted in tests)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from smartio.cli import console, echo_json


def print_pingpong(res: dict[str, Any], column: str, title: str) -> None:
    """The local/remote ping-pong table and the remote/local ratios."""
    con = console()
    t = Table(column, "median µs", "p99 µs", "samples", title=title)
    for k in ("local", "remote"):
        t.add_row(k, f"{res[k]['median_us']:.2f}", f"{res[k]['p99_us']:.2f}", str(res[k]["n"]))
    con.print(t)
    con.print(f"remote/local median ratio: {res['remote_local_median_ratio']:.3f} "
              f"(p99 ratio {res['remote_local_p99_ratio']:.3f})")


@click.group()
def bench() -> None:
    """Measure the emulated fabric on this machine."""


@bench.command("fabric")
@click.option("--rounds", default=20000, show_default=True, help="Ping-pong round trips per run.")
@click.option("--reps", default=2, show_default=True, help="Interleaved local/remote runs.")
@click.option("--seconds", default=0.5, show_default=True, help="Time per translation test.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fabric_cmd(rounds: int, reps: int, seconds: float, as_json: bool) -> None:
    """Translation look-ups per second and remote- vs local-mapped 8-byte ping-pong."""
    from smartio.bench.fabric import run

    res = run(rounds=rounds, reps=reps, seconds=seconds)
    if as_json:
        echo_json(res)
        return
    con = console()
    t = Table("translation", "look-ups/s", title="fabric translation (back-to-back preset)")
    for k, v in res["translation"].items():
        t.add_row(k.removesuffix("_per_s"), f"{v:,.0f}")
    con.print(t)
    print_pingpong(res["pingpong"], "mapping", "8-byte ping-pong, 2 processes")


@bench.command("segment")
@click.option("--rounds", default=20000, show_default=True, help="Round trips per run.")
@click.option("--reps", default=2, show_default=True, help="Interleaved local/remote runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def segment_cmd(rounds: int, reps: int, as_json: bool) -> None:
    """Ping-pong between two programs through a local and a remote SISCI segment."""
    from smartio.bench.sisci import bench_segment

    res = bench_segment(rounds, reps)
    if as_json:
        echo_json(res)
        return
    print_pingpong(res, "segment", "8-byte ping-pong between two programs (SISCI segment)")


@bench.command("dma")
@click.option("--max-size", default="64MiB", show_default=True, help="Largest transfer.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def dma_cmd(max_size: str, as_json: bool) -> None:
    """DMA queue throughput, 4 KiB … 64 MiB, both directions."""
    from smartio.bench.sisci import SIZES, bench_dma
    from smartio.hw.units import format_size, parse_size

    limit = parse_size(max_size)
    res = bench_dma([s for s in SIZES if s <= limit] or [limit])
    if as_json:
        echo_json(res)
        return
    t = Table("size", "write GB/s", "read GB/s", "reps", title=f"DMA queue: {res['direction']}")
    for r in res["rows"]:
        t.add_row(format_size(r["size"]), f"{r['write_gbps']:.2f}", f"{r['read_gbps']:.2f}",
                  str(r["reps"]))
    console().print(t)


@bench.command("idle")
@click.option("--topology", default="back-to-back", show_default=True, metavar="FILE|PRESET")
@click.option("--seconds", default=5.0, show_default=True, help="Quiet interval measured.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def idle_cmd(topology: str, seconds: float, as_json: bool) -> None:
    """CPU used by an idle cluster's daemons and device engines (% of one core)."""
    from smartio.bench.idle import bench_idle

    res = bench_idle(topology, seconds)
    if as_json:
        echo_json(res)
        return
    t = Table("process", "% of one core", title=f"idle cluster ({res['topology']}, "
              f"{res['seconds']:.1f} s)")
    for k, v in res["percent_of_core"].items():
        t.add_row(k, f"{v:.2f}")
    console().print(t)
