"""The smartio command, run as users run it: a real process per invocation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from smartio.hw.memory import list_cluster_objects
from smartio.hw.topology import preset_names


def smartio(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "smartio", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})
    if check and proc.returncode != 0:
        raise AssertionError(f"smartio {' '.join(args)} failed: {proc.stderr}")
    return proc


def test_presets_lists_every_preset() -> None:
    """`topology presets` lists every built-in preset and marks the default."""
    out = smartio("topology", "presets").stdout
    for name in preset_names():
        assert name in out
    assert "(default)" in out


def test_show_json_describes_hosts_links_functions() -> None:
    """`topology show --json` gives hosts, adapters, switches, links and functions."""
    doc = json.loads(smartio("topology", "show", "back-to-back", "--json").stdout)
    assert [h["name"] for h in doc["hosts"]] == ["lender", "borrower"]
    assert doc["hosts"][0]["adapters"][0]["model"] == "PXH830"
    assert len(doc["links"]) == 1
    names = {f["name"]: f for f in doc["functions"]}
    assert names["nvme0"]["bdf"] == "02:00.0" and names["nvme0"]["host"] == "lender"
    assert {r["kind"] for r in doc["address_maps"]["borrower"]} == {"ram", "bar", "ntb-window",
                                                                   "msi"}


def test_show_draws_tree_and_addresses() -> None:
    """`topology show --addresses` draws each host's tree and prints its address map."""
    out = smartio("topology", "show", "fig24-p2p", "--addresses").stdout
    assert "root complex" in out and "NTB fabric" in out
    assert "ntb-window" in out and "prefetchable" in out


def test_show_reads_a_file(tmp_path: Path) -> None:
    """`topology show FILE` loads a user's TOML file."""
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\n[[hosts]]\nname = "solo"\nram = "64MiB"\n')
    assert "solo" in smartio("topology", "show", str(f)).stdout


def test_bad_file_reports_file_line_and_field(tmp_path: Path) -> None:
    """A bad topology file fails with exit 2 and a message naming file, line and field."""
    f = tmp_path / "bad.toml"
    f.write_text('name = "bad"\n[[hosts]]\nname = "a"\nram = "lots"\n')
    proc = smartio("topology", "show", str(f), check=False)
    assert proc.returncode == 2
    assert f"{f}:4" in proc.stderr and "hosts[0].ram" in proc.stderr and "'lots'" in proc.stderr


def test_unknown_preset_lists_presets() -> None:
    """An unknown preset name fails and lists the presets that exist."""
    proc = smartio("topology", "show", "no-such-preset", check=False)
    assert proc.returncode == 2 and "back-to-back" in proc.stderr


def test_path_between_farthest_nodes_of_cascade_lists_every_chip() -> None:
    """In the 60-node cascade, the path between nodes on different sub-switches lists both
    PXH830s, both sub-switches and the top switch."""
    doc = json.loads(smartio("topology", "path", "node00", "node59", "--topology",
                             "cascade-60", "--json").stdout)
    hops = doc["hops"]
    kinds = [h["kind"] for h in hops]
    assert kinds[0] == "root" and kinds[-1] == "root"
    assert kinds.count("ntb") == 2 and kinds.count("switch") == 3
    assert all("PM8536" in h["chip"] for h in hops if h["kind"] == "switch")
    assert all("PEX8733" in h["chip"] for h in hops if h["kind"] == "ntb")
    assert len(doc["links"]) == 4


def test_path_table_counts_hops() -> None:
    """`topology path` prints each element with its chip and the hop summary."""
    out = smartio("topology", "path", "borrower", "lender", "--topology", "back-to-back").stdout
    assert "PEX8733 (PXH830)" in out and "2 switch chips" in out


def test_demo_fabric_part_runs_and_cleans_up() -> None:
    """`smartio demo --fabric-only` maps, writes, survives a link failure, leaves nothing."""
    cluster = f"clitest-{os.getpid()}"
    out = smartio("demo", "--topology", "back-to-back", "--cluster", cluster,
                  "--fabric-only").stdout
    assert "ff ff ff ff" in out
    assert "data written before the fault intact: True" in out
    assert "0 shared-memory objects left" in out
    assert list_cluster_objects(cluster) == []


def test_demo_default_runs_the_cluster_part() -> None:
    """`smartio demo` on the default preset shares a segment, an interrupt and a multicast
    write among hosts, and stops the cluster with nothing left."""
    cluster = f"clidemo-{os.getpid()}"
    out = smartio("demo", "--cluster", cluster).stdout
    assert "data written before the fault intact: True" in out
    assert out.count("reads 'one write, many hosts'") == 3
    assert "data interrupt" in out and "remote/local median ratio" in out
    assert "read it back: identical" in out  # the NVMe driver on node0's own NVMe
    assert "read the pattern back into node1's RAM" in out and out.count("identical") >= 2
    assert "0 shared-memory objects left, run directory gone" in out
    assert list_cluster_objects(cluster) == []


def test_demo_on_two_hosts_explains_part_two_needs_three() -> None:
    """On a two-host topology the demo runs the fabric part and says why it stops there."""
    out = smartio("demo", "--topology", "back-to-back").stdout
    assert "part 2 needs three NTB-connected hosts" in out


def test_bench_fabric_json_reports_ratios() -> None:
    """`bench fabric --json` reports look-up rates and the remote/local ping-pong ratio."""
    doc = json.loads(smartio("bench", "fabric", "--rounds", "300", "--reps", "1",
                             "--seconds", "0.05", "--json").stdout)
    assert doc["translation"]["cached_cpu_remote_per_s"] > 0
    pp = doc["pingpong"]
    assert pp["local"]["n"] > 0 and pp["remote"]["n"] > 0
    assert pp["remote_local_median_ratio"] > 0
