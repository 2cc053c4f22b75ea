"""Link rates, encodings and TLP splitting (formulas 1-5) against pcie-timing.md's figures."""

from __future__ import annotations

import pytest

from smartio.errors import IllegalParameter
from smartio.hw.timing import Params, link_rates, tlp_count
from smartio.hw.timing.link import encoding, raw_gb_s, usable_gb_s


def _within(value: float, target: float, rel: float = 0.05) -> bool:
    return abs(value - target) <= rel * target


def test_gen3_x16_raw_rate_is_15_754_gb_s() -> None:
    """Gen3 x16 carries 8 GT/s x 16 x 128/130 / 8 = 15.754 GB/s per direction."""
    assert raw_gb_s(3, 16) == pytest.approx(15.754, abs=1e-3)


def test_gen3_x16_usable_rate_matches_pcie_model_and_paper() -> None:
    """Usable Gen3 x16 rate at MPS 256 is 14.21 GB/s, within 5% of pcie-model and the paper."""
    r = link_rates(3, 16, 256)
    assert r.usable_gb_s == pytest.approx(14.21, abs=0.01)  # formula 2 worked example
    assert _within(r.usable_gb_s, 14.2)  # pcie-model, Gen3 x16 MPS 256
    assert _within(r.usable_gb_s, 13.8)  # paper §3.1: "approximately 13.8 GB/s usable"


def test_gen3_x16_write_and_read_plateaus_within_5_percent() -> None:
    """Large-transfer plateaus: writes 13.0 GB/s and reads 13.2 GB/s (pcie-model, MPS 256)."""
    r = link_rates(3, 16, 256)
    assert _within(r.write_gb_s, 13.0)
    assert _within(r.read_gb_s, 13.2)
    assert r.write_gb_s < r.read_gb_s < r.usable_gb_s < r.raw_gb_s


@pytest.mark.parametrize(("gen", "width", "mps", "gbit"), [
    (3, 8, 128, 56.7), (3, 8, 256, 57.9), (3, 8, 512, 57.3),
    (3, 16, 128, 111.7), (3, 16, 512, 114.6), (4, 16, 128, 223.4), (4, 16, 256, 227.4),
])
def test_usable_rate_matches_pcie_model_table(gen: int, width: int, mps: int,
                                              gbit: float) -> None:
    """The usable rate reproduces pcie-model's table (Gb/s) for other widths and MPS."""
    assert usable_gb_s(gen, width, mps) * 8 == pytest.approx(gbit, rel=0.005)


def test_encodings_by_generation() -> None:
    """Gen1/2 use 8b/10b, Gen3-5 128b/130b, Gen6 242b/256b."""
    assert [encoding(g) for g in (1, 2, 3, 4, 5, 6)] == [
        0.8, 0.8, 128 / 130, 128 / 130, 128 / 130, 242 / 256]
    assert link_rates(2, 8).encoding == "8b/10b"
    assert link_rates(4, 4).encoding == "128b/130b"
    assert raw_gb_s(2, 16) == pytest.approx(8.0)  # 5 GT/s x 16 x 0.8 / 8


def test_plateaus_track_64_bit_header_overheads() -> None:
    """Write TLPs cost 24 B (64-bit MWr) and completions 20 B, so MPS 128 loses more."""
    r = link_rates(3, 16, 128)
    assert r.write_gb_s == pytest.approx(r.usable_gb_s * 128 / 152)
    assert r.read_gb_s == pytest.approx(r.usable_gb_s * 128 / 148)


def test_tlp_count_splits_at_size_and_4k_boundaries() -> None:
    """Requests split at naturally aligned MPS/MRRS and never cross 4 KiB boundaries."""
    assert tlp_count(0, 4096, 256) == 16
    assert tlp_count(0, 4097, 256) == 17
    assert tlp_count(128, 4096, 256) == 17  # unaligned start: one more TLP
    assert tlp_count(4000, 200, 4096) == 2  # crosses the 4 KiB boundary at 4096
    assert tlp_count(0, 64, 512) == 1
    assert tlp_count(0, 0, 256) == 0


@pytest.mark.parametrize(("gen", "width", "mps"), [(7, 16, 256), (3, 12, 256), (3, 16, 100)])
def test_bad_link_parameters_raise(gen: int, width: int, mps: int) -> None:
    """An unknown generation, width or MPS is misuse and raises IllegalParameter."""
    with pytest.raises(IllegalParameter):
        link_rates(gen, width, mps)


def test_params_override_changes_overheads() -> None:
    """Overriding a protocol constant changes the computed plateaus."""
    base = link_rates(3, 16, 256)
    no_dllp = link_rates(3, 16, 256, Params({"tlp.dllp_b": 0}))
    assert no_dllp.write_gb_s > base.write_gb_s
