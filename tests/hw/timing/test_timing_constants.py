"""The constants table: complete, sourced, in step with the model catalogue and the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smartio.errors import IllegalParameter
from smartio.hw.models import CHIPS, ENDPOINTS
from smartio.hw.timing import CONSTANTS, MEDIA, REQUESTERS, TABLE, Params
from smartio.hw.timing.constants import KINDS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "timing.md"


def test_every_constant_is_sourced() -> None:
    """Each constant has a known kind, a unit and a source, and names are unique."""
    assert len(CONSTANTS) == len(TABLE)
    for c in TABLE:
        assert c.kind in KINDS, c.name
        assert c.unit and c.source, c.name
        assert c.value >= 0, c.name


def test_chip_hops_agree_with_the_model_catalogue() -> None:
    """Every chip in hw.models has a hop latency here, equal to the catalogue's figure."""
    for chip in CHIPS.values():
        assert Params().chip_hop_ns(chip.name) == chip.hop_ns


def test_paper_hop_latencies() -> None:
    """PEX8733 132 ns, PEX8796 150 ns and PM8536 170 ns, as §7.1.5 reports."""
    p = Params()
    assert (p.chip_hop_ns("PEX8733"), p.chip_hop_ns("PEX8796"),
            p.chip_hop_ns("PM8536")) == (132, 150, 170)


def test_profiles_cover_device_models_and_media() -> None:
    """Every endpoint model except plain ones has a requester profile; three media exist."""
    assert set(ENDPOINTS) <= set(REQUESTERS)
    assert {"ntb", "generic"} <= set(REQUESTERS)
    assert set(MEDIA) == {"ram", "optane", "nand"}
    for m in MEDIA:
        read, write = Params().media(m)
        assert read > 0 and write > 0


def test_overrides_and_unknown_names() -> None:
    """Params takes overrides by name; unknown names and profiles raise IllegalParameter."""
    assert Params({"chip.PM8536.hop_ns": 200}).chip_hop_ns("PM8536") == 200
    with pytest.raises(IllegalParameter):
        Params({"chip.PM9999.hop_ns": 1})
    with pytest.raises(IllegalParameter):
        Params().requester("fpga")
    with pytest.raises(IllegalParameter):
        Params().media("tape")


def test_docs_list_every_constant_with_its_value() -> None:
    """docs/timing.md has a row per constant giving the table's value."""
    text = DOCS.read_text()
    for c in TABLE:
        row = re.search(rf"^\| `{re.escape(c.name)}` \| ([^|]+) \|", text, re.MULTILINE)
        assert row, f"{c.name} missing from docs/timing.md"
        assert float(row.group(1).split()[0]) == c.value, c.name
