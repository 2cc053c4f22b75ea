"""`smartio lspci`, `smartio nvme` and `smartio bench idle`, run as users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from smartio.cluster.rundir import RunDir


def smartio(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "smartio", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})
    if check and proc.returncode != 0:
        raise AssertionError(f"smartio {' '.join(args)} failed: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def cluster(module_cluster: Callable[[str], RunDir]) -> str:
    return module_cluster("back-to-back").cluster


def test_lspci_lists_functions_with_bars_and_capabilities(cluster: str) -> None:
    """`lspci -v` shows the lender's NVMe, GPU and NTB with regions and capabilities."""
    out = smartio("lspci", "--host", "lender", "--cluster", cluster, "-v").stdout
    assert "02:00.0 Non-Volatile memory controller: [8086:2701] nvme0" in out
    assert "VGA compatible controller" in out and "lender:ntb0" in out
    assert "Region 0: Memory at" in out and "MSI-X" in out and "Express" in out


def test_nvme_identify_write_read(cluster: str) -> None:
    """`nvme identify --json` reports the controller; `write` then `read` round-trips text."""
    doc = json.loads(smartio("nvme", "identify", "--host", "lender", "--cluster", cluster,
                             "--json").stdout)
    assert doc["vid"] == 0x8086 and doc["sqes"] == 0x66 and doc["namespaces"]["1"]["nsze"] > 0
    smartio("nvme", "write", "--host", "lender", "--cluster", cluster, "--lba", "42",
            "--data", "hello nvme")
    out = smartio("nvme", "read", "--host", "lender", "--cluster", cluster, "--lba", "42").stdout
    assert "hello nvme" in out


def test_nvme_bench_json(cluster: str) -> None:
    """`nvme bench --json` reports QD1 latency and QD32 IOPS (no speed is asserted)."""
    doc = json.loads(smartio("nvme", "bench", "--host", "lender", "--cluster", cluster,
                             "--seconds", "0.2", "--json").stdout)
    assert doc["ours"]["qd1"]["n"] > 0 and doc["ours"]["qd32_iops"] > 0


def test_nvme_on_a_host_without_the_device_names_the_devices(cluster: str) -> None:
    """Asking for a device the host does not have fails with the list of its devices."""
    proc = smartio("nvme", "identify", "--host", "borrower", "--cluster", cluster, check=False)
    assert proc.returncode == 2 and "has no device 'nvme0'" in proc.stderr


def test_bench_idle_reports_every_daemon_and_engine() -> None:
    """`bench idle --json` lists each daemon and device engine with its CPU share."""
    doc = json.loads(smartio("bench", "idle", "--seconds", "0.5", "--json").stdout)
    names = set(doc["percent_of_core"])
    assert {"daemon lender", "daemon borrower", "engine lender.nvme0",
            "engine lender.gpu0"} <= names
    assert all(v >= 0 for v in doc["percent_of_core"].values())
