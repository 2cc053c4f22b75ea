"""``smartio model`` (link, path, dma) run through click, tables, JSON and the plot option."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from smartio.cli.model import model, parse_sizes
from smartio.errors import NotFound
from smartio.hw.units import KiB, MiB


def run(*args: str) -> Result:
    return CliRunner().invoke(model, list(args), terminal_width=160)


def test_link_json_gives_rates() -> None:
    """`model link --gen 3 --width 16 --json` gives raw 15.75 and usable 14.21 GB/s."""
    doc = json.loads(run("link", "--gen", "3", "--width", "16", "--json").output)
    assert doc["encoding"] == "128b/130b" and doc["mps"] == 256
    assert doc["raw_gb_s"] == pytest.approx(15.754, abs=1e-3)
    assert doc["usable_gb_s"] == pytest.approx(14.21, abs=0.01)
    assert doc["write_gb_s"] < doc["read_gb_s"] < doc["usable_gb_s"]


def test_link_table_and_mps_option() -> None:
    """The link table shows the plateaus; a larger MPS raises the write plateau."""
    out = run("link", "--gen", "3", "--width", "16").output
    assert "usable by TLPs" in out and "14.213 GB/s" in out
    w256 = json.loads(run("link", "--gen", "3", "--width", "8", "--json").output)
    w512 = json.loads(run("link", "--gen", "3", "--width", "8", "--mps", "512",
                          "--json").output)
    assert w512["write_gb_s"] > w256["write_gb_s"]
    assert run("link", "--gen", "3", "--width", "3").exit_code == 2


def test_path_json_lists_hops_and_operations() -> None:
    """`model path` names each hop's chip and models reads and writes over the route."""
    r = run("path", "gpu0", "borrower", "--topology", "fig23-longer-path", "--json")
    doc = json.loads(r.output)
    assert doc["route"] == ["gpu0", "lender-chassis", "lender:ntb0", "mxs0", "borrower:ntb0",
                            "borrower"]
    assert [h["hop_ns"] for h in doc["hops"]] == [0, 150, 132, 170, 132, 0]
    ops = doc["operations"]
    assert ops["read_64MiB"]["rate_gb_s"] < ops["write_64MiB"]["rate_gb_s"]


def test_path_table_for_cpu_access() -> None:
    """From a host, `model path` shows CPU loads and stores instead of DMA."""
    out = run("path", "borrower", "nvme0", "--topology", "back-to-back").output
    assert "PEX8733 (PXH830)" in out and "load 8B" in out and "store 64B" in out


def test_dma_table_has_both_directions_by_default() -> None:
    """`model dma` prints write and read latency and throughput per size."""
    out = run("dma", "--from", "gpu0", "--to", "borrower", "--topology", "fig22-chassis",
              "--sizes", "4K..64K").output
    assert "write GB/s" in out and "read GB/s" in out
    assert "4KiB" in out and "64KiB" in out and "128KiB" not in out


def test_dma_json_read_only_with_lender_iommu() -> None:
    """`--iommu lender --read --json` routes through the lender's root and shows the collapse."""
    doc = json.loads(run("dma", "--from", "gpu0", "--to", "borrower", "--topology",
                         "fig22-chassis", "--iommu", "lender", "--sizes", "1M,128M", "--read",
                         "--json").output)
    assert "write" not in doc and "lender" in doc["route"]
    assert [t["bytes"] for t in doc["read"]] == [1 * MiB, 128 * MiB]
    assert doc["read"][-1]["throughput_gb_s"] == pytest.approx(1.5, abs=0.3)


def test_dma_errors() -> None:
    """Bad sizes are a usage error (exit 2); an unknown device raises NotFound."""
    assert run("dma", "--from", "gpu0", "--to", "borrower", "--sizes", "64K..4K").exit_code == 2
    r = run("dma", "--from", "gpu9", "--to", "borrower", "--topology", "back-to-back")
    assert isinstance(r.exception, NotFound)


def test_parse_sizes() -> None:
    """Ranges double from the low end; lists keep their order."""
    assert parse_sizes("4K..32K") == [4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB]
    assert parse_sizes("4096,1M") == [4096, 1 * MiB]


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """Without the optional matplotlib, --plot fails with a message naming the extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = run("dma", "--from", "gpu0", "--to", "lender", "--topology", "back-to-back",
            "--plot", str(tmp_path / "x.png"))
    assert r.exit_code == 1
    assert "smartio[plot]" in r.output
    assert not (tmp_path / "x.png").exists()


def test_plot_writes_a_png(tmp_path: Path) -> None:
    """With matplotlib installed, --plot draws throughput against size into a PNG."""
    pytest.importorskip("matplotlib")
    png = tmp_path / "fig22.png"
    r = run("dma", "--from", "gpu0", "--to", "borrower", "--topology", "fig22-chassis",
            "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
