"""``smartio bench``: benchmarks that report side-by-side ratios (never asserted in tests)."""

from __future__ import annotations

import click
import msgspec
from rich.table import Table

from smartio.cli import console


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
        click.echo(msgspec.json.format(msgspec.json.encode(res), indent=2).decode())
        return
    con = console()
    t = Table("translation", "look-ups/s", title="fabric translation (back-to-back preset)")
    for k, v in res["translation"].items():
        t.add_row(k.removesuffix("_per_s"), f"{v:,.0f}")
    con.print(t)
    pp = res["pingpong"]
    t = Table("mapping", "median µs", "p99 µs", "samples", title="8-byte ping-pong, 2 processes")
    for k in ("local", "remote"):
        t.add_row(k, f"{pp[k]['median_us']:.2f}", f"{pp[k]['p99_us']:.2f}", str(pp[k]["n"]))
    con.print(t)
    con.print(f"remote/local median ratio: {pp['remote_local_median_ratio']:.3f} "
                  f"(p99 ratio {pp['remote_local_p99_ratio']:.3f})")
