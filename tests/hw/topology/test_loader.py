"""Validation rules of the topology loader: each error names file, line, field, value, expectation.

Every case marks the line the error must point at with a ``# <--`` comment, so the expected
line number is computed from the text rather than hard-coded.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from smartio.errors import TopologyError
from smartio.hw.topology import load_topology, loads_topology

SOURCE = "bad-topology.toml"

TWO_HOSTS = """
[[hosts]]
name = "h1"

[[hosts.adapters]]
name = "ntb0"
model = "PXH830"
slot = 0

[[hosts]]
name = "h2"

[[hosts.adapters]]
name = "ntb0"
model = "PXH830"
slot = 0
"""

B2B_LINK = """
[[links]]
a = "h1:ntb0/0"
b = "h2:ntb0/0"
"""


def _line(text: str, marker: str) -> int:
    """1-based line of the line containing ``marker``."""
    return next(n for n, line in enumerate(textwrap.dedent(text).splitlines(), start=1)
                if marker in line)


def _error(text: str) -> tuple[TopologyError, int | None]:
    """Load ``text``; return the TopologyError and the line marked with ``# <--``."""
    text = textwrap.dedent(text)
    marked = [n for n, line in enumerate(text.splitlines(), start=1) if "# <--" in line]
    assert len(marked) <= 1, "mark at most one line"
    with pytest.raises(TopologyError) as info:
        loads_topology(text, source=SOURCE)
    return info.value, (marked[0] if marked else None)


def check(text: str, *, field: str | None, value: object, expected: str,
          problem: str) -> TopologyError:
    """Assert the error's message has file:line, field, bad value, expectation and problem."""
    err, line = _error(text)
    msg = str(err)
    assert err.source == SOURCE
    assert line is not None
    assert err.line == line, msg
    assert msg.startswith(f"{SOURCE}:{line}: "), msg
    assert problem in msg, msg
    if field is not None:
        assert err.field == field, msg
        assert f"field {field}" in msg, msg
    if value is not None:
        assert f"got {value!r}" in msg, msg
    assert f"expected {expected}" in msg or expected in (err.expected or ""), msg
    assert expected in msg, msg
    return err


# -- a valid file first, so that the failures below are caused by the one change each makes.


def test_valid_base_topology_loads() -> None:
    """The two-host base used by the cases below is itself valid."""
    spec = loads_topology(TWO_HOSTS + B2B_LINK, source=SOURCE)
    assert [h.name for h in spec.hosts] == ["h1", "h2"]
    assert spec.links[0].name == "h1:ntb0/0<->h2:ntb0/0"
    assert spec.source == SOURCE


def test_load_topology_from_file(tmp_path: Path) -> None:
    """load_topology reads a file and records its path as the source."""
    p = tmp_path / "ok.toml"
    p.write_text(TWO_HOSTS + B2B_LINK)
    spec = load_topology(p)
    assert spec.source == str(p)
    assert len(spec.adapters) == 2


# -- unknown models -------------------------------------------------------------------------


def test_unknown_adapter_model() -> None:
    """An adapter model not in the catalogue is rejected, listing the known models."""
    check(TWO_HOSTS + """
        [[hosts]]
        name = "h3"

        [[hosts.adapters]]
        name = "ntb0"
        model = "PXH999"  # <--
        slot = 0
        """, field="hosts[2].adapters[0].model", value="PXH999",
          expected="one of PXH810, PXH830, PXH832", problem="unknown NTB adapter model")


def test_unknown_switch_model() -> None:
    """A switch model not in the catalogue is rejected, listing the known models."""
    check(TWO_HOSTS + """
        [[switches]]
        name = "sw"
        model = "MXS999"  # <--
        """, field="switches[0].model", value="MXS999", expected="one of HIB68, MXH832",
          problem="unknown switch model")


def test_unknown_endpoint_model() -> None:
    """An endpoint model not in the catalogue is rejected, listing the known models."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "dev"
        model = "fpga"  # <--
        at = "h1/1"
        """, field="endpoints[0].model", value="fpga", expected="one of generic, gpu, nic, nvme",
          problem="unknown device model")


# -- schema: fields and types ---------------------------------------------------------------


def test_unknown_field() -> None:
    """A field the format does not define is rejected (typos do not pass silently)."""
    check(TWO_HOSTS + """
        [[hosts.adapters]]
        name = "ntb1"
        slot = 1
        windw = "1GiB"  # <--
        """, field="hosts[1].adapters[1].windw", value="windw",
          expected="one of the fields in docs/topology.md", problem="unknown field")


def test_unknown_top_level_field() -> None:
    """An unknown top-level key is reported at its own line."""
    check('name = "x"\nversion = 2  # <--\n' + TWO_HOSTS, field="version", value="version",
          expected="one of the fields", problem="unknown field")


def test_wrong_type() -> None:
    """A value of the wrong TOML type names the expected type."""
    check("""
        [[hosts]]
        name = "h1"
        cpus = "two"  # <--
        """, field="hosts[0].cpus", value="two", expected="int", problem="wrong type")


def test_wrong_type_bool_for_int() -> None:
    """A boolean is not accepted where a number is expected."""
    check("""
        [[hosts]]
        name = "h1"
        ram = true  # <--
        """, field="hosts[0].ram", value=True, expected="int | str", problem="wrong type")


def test_wrong_type_in_endpoint_params() -> None:
    """A parameter value that is not a scalar is reported at the params table."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "nvme0"
        model = "nvme"
        at = "h1/1"
        params = { capacity = [1, 2] }  # <--
        """, field="endpoints[0].params", value={"capacity": [1, 2]},
          expected="bool | int | float | str", problem="wrong type")


def test_wrong_type_of_known_param() -> None:
    """A parameter of the wrong kind for the model (a string for an integer) is rejected."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "nvme0"
        model = "nvme"
        at = "h1/1"
        params = { io_queues = "many" }  # <--
        """, field="endpoints[0].params.io_queues", value="many", expected="integer",
          problem="wrong type")


# -- ports ------------------------------------------------------------------------------------


def test_port_used_twice_by_endpoints() -> None:
    """Two endpoints in the same host slot are rejected, naming the first user's line."""
    text = TWO_HOSTS + """
        [[endpoints]]  # first
        name = "nvme0"
        model = "nvme"
        at = "h1/1"

        [[endpoints]]  # <--
        name = "gpu0"
        model = "gpu"
        at = "h1/1"
        """
    err = check(text, field="endpoints[1]", value="h1/1", expected="each slot or port used by one",
                problem="port used twice (also at line")
    assert f"also at line {_line(text, '# first')}" in str(err)


def test_port_used_twice_by_links() -> None:
    """Two cables into one switch port are rejected."""
    check(TWO_HOSTS + """
        [[switches]]
        name = "mxs0"
        model = "MXS824"

        [[links]]
        a = "h1:ntb0/0"
        b = "mxs0/0"

        [[links]]
        a = "h2:ntb0/0"
        b = "mxs0/0"  # <--
        """, field="links[1].b", value="mxs0/0", expected="each slot or port used by one",
          problem="port used twice")


def test_link_to_missing_element() -> None:
    """A link naming a host, switch or adapter that does not exist is rejected."""
    check(TWO_HOSTS + """
        [[links]]
        a = "h1:ntb0/0"
        b = "h2:ntb7/0"  # <--
        """, field="links[0].b", value="h2:ntb7/0", expected="an element defined in this topology",
          problem="refers to a missing host, switch or adapter")


def test_bad_port_reference_syntax() -> None:
    """A port reference that is not HOST/SLOT, SWITCH/PORT or HOST:ADAPTER/PORT is rejected."""
    check(TWO_HOSTS + """
        [[links]]
        a = "h1:ntb0"  # <--
        b = "h2:ntb0/0"
        """, field="links[0].a", value="h1:ntb0",
          expected="HOST/SLOT, SWITCH/PORT or HOST:ADAPTER/PORT", problem="bad port reference")


def test_switch_port_out_of_range() -> None:
    """A switch port beyond the model's port count is rejected with the valid range."""
    check(TWO_HOSTS + """
        [[switches]]
        name = "mxs0"
        model = "MXS824"

        [[links]]
        a = "h1:ntb0/0"
        b = "mxs0/24"  # <--
        """, field="links[0].b", value="mxs0/24", expected="mxs0/0 .. mxs0/23",
          problem="switch port out of range")


def test_adapter_port_out_of_range() -> None:
    """A PXH830 has one external port; port 1 is out of range."""
    check(TWO_HOSTS + """
        [[links]]
        a = "h1:ntb0/1"  # <--
        b = "h2:ntb0/0"
        """, field="links[0].a", value="h1:ntb0/1", expected="h1:ntb0/0 .. h1:ntb0/0",
          problem="adapter port out of range")


def test_host_slot_out_of_range() -> None:
    """An endpoint in a slot the host does not have is rejected."""
    check("""
        [[hosts]]
        name = "h1"
        slots = 2

        [[endpoints]]
        name = "nvme0"
        model = "nvme"
        at = "h1/2"  # <--
        """, field="endpoints[0].at", value="h1/2", expected="h1/0 .. h1/1",
          problem="host slot out of range")


def test_cable_into_host_slot() -> None:
    """A cable cannot plug into a host slot; a card has to sit there."""
    check(TWO_HOSTS + """
        [[links]]
        a = "h1:ntb0/0"
        b = "h2/1"  # <--
        """, field="links[0].b", value="h2/1", expected="an adapter or switch port",
          problem="a cable cannot plug into a host slot")


def test_nt_to_transparent_link() -> None:
    """An NTB port cabled to a transparent switch port is rejected."""
    check(TWO_HOSTS + """
        [[switches]]
        name = "hib"
        model = "MXH832"
        host = "h1"
        slot = 1

        [[links]]  # <--
        a = "h2:ntb0/0"
        b = "hib/0"
        """, field="links[0]", value="h2:ntb0/0 <-> hib/0",
          expected="NTB/cluster ports on both ends, or transparent on both",
          problem="link joins a non-transparent port to a transparent one")


def test_endpoint_on_cluster_switch_port() -> None:
    """An endpoint cannot sit on a cluster-switch port (that port is non-transparent)."""
    check(TWO_HOSTS + """
        [[switches]]
        name = "mxs0"
        model = "MXS824"

        [[endpoints]]
        name = "nvme0"
        model = "nvme"
        at = "mxs0/3"  # <--
        """, field="endpoints[0].at", value="mxs0/3",
          expected="a host slot or a transparent switch port",
          problem="endpoint cannot sit on a cluster-switch port")


# -- structure ------------------------------------------------------------------------------


def test_loop_in_cluster_fabric() -> None:
    """Three MXS824s cabled in a triangle form a loop, which PCIe routing forbids."""
    err = check(TWO_HOSTS + """
        [[switches]]
        name = "s1"
        model = "MXS824"

        [[switches]]
        name = "s2"
        model = "MXS824"

        [[switches]]
        name = "s3"
        model = "MXS824"

        [[links]]
        a = "s1/0"
        b = "s2/0"

        [[links]]
        a = "s2/1"
        b = "s3/0"

        [[links]]  # <--
        a = "s3/1"
        b = "s1/1"
        """, field="links[2]", value=None, expected="a tree (PCIe routing forbids loops)",
          problem="loop in the cluster-switch fabric")
    for name in ("s1", "s2", "s3"):
        assert name in str(err)


def test_loop_in_transparent_tree() -> None:
    """Two cables between a host card and an expansion chassis make a loop in the PCIe tree."""
    err = check("""
        [[hosts]]
        name = "h1"

        [[switches]]
        name = "card"
        model = "MXH832"
        host = "h1"
        slot = 0

        [[switches]]
        name = "chassis"
        model = "PEX8796"

        [[links]]
        a = "card/0"
        b = "chassis/0"

        [[links]]  # <--
        a = "card/1"
        b = "chassis/1"
        """, field="links[1]", value=None, expected="a tree (PCIe routing forbids loops)",
          problem="loop in the transparent PCIe tree")
    assert "card" in str(err) and "chassis" in str(err)


def test_two_hosts_in_one_transparent_domain() -> None:
    """Two root complexes joined by transparent links are rejected at the joining link."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts]]
        name = "h2"

        [[switches]]
        name = "c1"
        model = "MXH832"
        host = "h1"
        slot = 0

        [[switches]]
        name = "c2"
        model = "MXH832"
        host = "h2"
        slot = 0

        [[switches]]
        name = "chassis"
        model = "PEX8796"

        [[links]]
        a = "c1/0"
        b = "chassis/0"

        [[links]]  # <--
        a = "c2/0"
        b = "chassis/1"
        """, field="links[1]", value=None, expected="hosts joined only through NTB adapters",
          problem="two root complexes in one PCIe domain: h1 and h2")


def test_switch_not_below_any_host() -> None:
    """A transparent switch that no host reaches is rejected."""
    err, _ = _error(TWO_HOSTS + """
        [[switches]]
        name = "chassis"
        model = "PEX8796"
        """)
    assert "elements not connected to any host: chassis" in str(err)
    assert str(err).startswith(f"{SOURCE}:")


def test_adapter_in_another_hosts_tree() -> None:
    """An adapter of one host placed in an expansion chassis of another host is rejected."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts.adapters]]
        name = "ntb0"
        at = "chassis/1"  # <--

        [[hosts]]
        name = "h2"

        [[switches]]
        name = "card"
        model = "MXH832"
        host = "h2"
        slot = 0

        [[switches]]
        name = "chassis"
        model = "PEX8796"

        [[links]]
        a = "card/0"
        b = "chassis/0"
        """, field="hosts[0].adapters[0].at", value="chassis/1",
          expected="a slot or transparent switch port below host h1",
          problem="adapter sits in another host's PCIe tree")


def test_cluster_switch_placed_as_card() -> None:
    """An MXS824 is a box; it cannot be placed in a host slot."""
    check(TWO_HOSTS + """
        [[switches]]  # <--
        name = "mxs0"
        model = "MXS824"
        host = "h1"
        slot = 1
        """, field="switches[0]", value="MXS824", expected="no host/slot/at for MXS824",
          problem="a cluster switch is a box, not a card")


# -- NTB adapter tables ---------------------------------------------------------------------


def test_window_not_power_of_two() -> None:
    """An NTB window (the adapter's BAR) must be a power of two."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts.adapters]]
        name = "ntb0"
        slot = 0
        window = "3GiB"  # <--
        """, field="hosts[0].adapters[0].window", value="3GiB",
          expected="a power of two of at least 1MiB", problem="NTB window size not a power of two")


def test_window_not_a_size() -> None:
    """A window that is not a size at all is rejected."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts.adapters]]
        name = "ntb0"
        slot = 0
        window = "big"  # <--
        """, field="hosts[0].adapters[0].window", value="big",
          expected="bytes or a string such as '1GiB'", problem="not a size")


def test_lut_entries_not_power_of_two() -> None:
    """The address LUT must have a power-of-two number of entries."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts.adapters]]
        name = "ntb0"
        slot = 0
        lut_entries = 48  # <--
        """, field="hosts[0].adapters[0].lut_entries", value=48,
          expected="a power of two with window/entries >= 4KiB (window is 1GiB)",
          problem="bad address LUT size")


def test_lut_slices_smaller_than_a_page() -> None:
    """LUT slices (window / entries) smaller than a 4KiB page are rejected."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts.adapters]]
        name = "ntb0"
        slot = 0
        window = "1MiB"
        lut_entries = 512  # <--
        """, field="hosts[0].adapters[0].lut_entries", value=512,
          expected="window/entries >= 4KiB (window is 1MiB)", problem="bad address LUT size")


def test_rid_entries_below_cpu_reservation() -> None:
    """The requester-ID LUT needs two entries per CPU (§8.6)."""
    check("""
        [[hosts]]
        name = "h1"
        cpus = 2

        [[hosts.adapters]]
        name = "ntb0"
        slot = 0
        rid_entries = 3  # <--
        """, field="hosts[0].adapters[0].rid_entries", value=3,
          expected="4..256 (two entries are reserved per CPU)",
          problem="bad requester-ID LUT size")


def test_rid_entries_too_many() -> None:
    """More than 256 requester-ID entries is rejected."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts.adapters]]
        name = "ntb0"
        slot = 0
        rid_entries = 1024  # <--
        """, field="hosts[0].adapters[0].rid_entries", value=1024, expected="2..256",
          problem="bad requester-ID LUT size")


# -- links: width and generation ------------------------------------------------------------


def test_bad_link_width() -> None:
    """A link width that PCIe does not have (x3) is rejected."""
    check(TWO_HOSTS + """
        [[links]]
        a = "h1:ntb0/0"
        b = "h2:ntb0/0"
        width = 3  # <--
        """, field="links[0].width", value=3, expected="one of 1, 2, 4, 8, 16",
          problem="bad link width")


def test_width_above_model_maximum() -> None:
    """An NVMe (x4 device) cannot be given an x8 link."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "nvme0"
        model = "nvme"
        at = "h1/1"
        width = 8  # <--
        """, field="endpoints[0].width", value=8, expected="a width of at most 4",
          problem="nvme supports at most x4")


def test_bad_link_gen() -> None:
    """A PCIe generation outside 1..5 is rejected."""
    check(TWO_HOSTS + """
        [[links]]
        a = "h1:ntb0/0"
        b = "h2:ntb0/0"
        gen = 7  # <--
        """, field="links[0].gen", value=7, expected="1..5", problem="bad PCIe generation")


def test_bad_adapter_gen() -> None:
    """An adapter's generation is checked too."""
    check("""
        [[hosts]]
        name = "h1"

        [[hosts.adapters]]
        name = "ntb0"
        slot = 0
        gen = 0  # <--
        """, field="hosts[0].adapters[0].gen", value=0, expected="1..5",
          problem="bad PCIe generation")


# -- names ----------------------------------------------------------------------------------


def test_duplicate_names() -> None:
    """Hosts, switches and endpoints share one namespace; a repeated name is rejected."""
    text = TWO_HOSTS + """
        [[switches]]
        name = "h2"  # <--
        model = "MXS824"
        """
    err = check(text, field="switches[0].name", value="h2",
                expected="names unique among hosts, switches and endpoints",
                problem="name used twice (first at line")
    first = _line(text, 'name = "h2"')  # h2's own name line, in TWO_HOSTS
    assert f"first at line {first}" in str(err)


def test_duplicate_adapter_name_in_host() -> None:
    """Two adapters of one host cannot share a name."""
    check(TWO_HOSTS + """
        [[hosts.adapters]]
        name = "ntb0"  # <--
        slot = 1
        """, field="hosts[1].adapters[1].name", value="ntb0",
          expected="adapter names unique within a host",
          problem="adapter name used twice in host")


def test_bad_name() -> None:
    """Names must start with a letter (they appear in port references)."""
    check("""
        [[hosts]]
        name = "1host"  # <--
        """, field="hosts[0].name", value="1host", expected="a letter followed by",
          problem="bad name")


# -- endpoint parameters --------------------------------------------------------------------


def test_endpoint_unknown_param() -> None:
    """A parameter the device model does not define is rejected, listing the known ones."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "gpu0"
        model = "gpu"
        at = "h1/1"
        params = { memroy = "256MiB" }  # <--
        """, field="endpoints[0].params.memroy", value="memroy",
          expected="one of dma_bits, memory", problem="unknown parameter for model gpu")


def test_endpoint_bar_size_not_power_of_two() -> None:
    """A parameter that sizes a BAR must be a power of two."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "gpu0"
        model = "gpu"
        at = "h1/1"
        params = { memory = "300MiB" }  # <--
        """, field="endpoints[0].params.memory", value="300MiB",
          expected="a power of two of at least 4KiB", problem="BAR size not a power of two")


def test_endpoint_bar_size_below_page() -> None:
    """A BAR smaller than a page is rejected."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "dev0"
        model = "generic"
        at = "h1/1"
        params = { bar_size = 1024 }  # <--
        """, field="endpoints[0].params.bar_size", value=1024,
          expected="a power of two of at least 4KiB", problem="BAR size not a power of two")


def test_empty_port_reference() -> None:
    """An empty placement is not a port reference."""
    check(TWO_HOSTS + """
        [[endpoints]]
        name = "nvme0"
        model = "nvme"
        at = ""  # <--
        """, field="endpoints[0].at", value="",
          expected="HOST/SLOT, SWITCH/PORT or HOST:ADAPTER/PORT", problem="bad port reference")


def test_missing_required_field() -> None:
    """An endpoint without 'at' is reported at its table, naming the missing field."""
    check(TWO_HOSTS + """
        [[endpoints]]  # <--
        name = "nvme0"
        model = "nvme"
        """, field="endpoints[0].at", value=None, expected="'at' in this table",
          problem="missing required field 'at'")


# -- hosts ----------------------------------------------------------------------------------


def test_bad_ram_size() -> None:
    """Host RAM must be at least 16MiB and a multiple of 2MiB (huge pages)."""
    check("""
        [[hosts]]
        name = "h1"
        ram = "15MiB"  # <--
        """, field="hosts[0].ram", value="15MiB", expected="at least 16MiB and a multiple of 2MiB",
          problem="bad RAM size")


def test_no_hosts() -> None:
    """A topology without hosts is rejected."""
    err, _ = _error('name = "empty"\n')
    assert "no hosts" in str(err)
    assert str(err).startswith(SOURCE)


# -- the file itself ------------------------------------------------------------------------


def test_invalid_toml_reports_line() -> None:
    """A TOML syntax error is reported with the line tomllib found it on."""
    err, line = _error("""
        [[hosts]]
        name = "h1"
        ram = "1GiB  # <--
        """)
    assert err.line == line == 4
    assert str(err).startswith(f"{SOURCE}:4: not valid TOML")


def test_invalid_toml_in_file_names_the_file(tmp_path: Path) -> None:
    """Errors from load_topology carry the file's path and the line."""
    p = tmp_path / "broken.toml"
    p.write_text("[[hosts]]\nname = 'h1'\n[[hosts.adapters]\n")
    with pytest.raises(TopologyError) as info:
        load_topology(p)
    assert str(info.value).startswith(f"{p}:3: not valid TOML")


def test_validation_error_in_file_names_the_file(tmp_path: Path) -> None:
    """A validation error from a file names the file path, line, field and value."""
    p = tmp_path / "models.toml"
    p.write_text('[[hosts]]\nname = "h1"\n\n[[endpoints]]\nname = "x"\nmodel = "tpu"\n'
                 'at = "h1/0"\n')
    with pytest.raises(TopologyError) as info:
        load_topology(p)
    msg = str(info.value)
    assert msg.startswith(f"{p}:6: unknown device model")
    assert "field endpoints[0].model" in msg and "got 'tpu'" in msg


def test_missing_file(tmp_path: Path) -> None:
    """A file that does not exist is a TopologyError naming the path, not an OSError."""
    p = tmp_path / "no-such-topology.toml"
    with pytest.raises(TopologyError) as info:
        load_topology(p)
    assert str(p) in str(info.value)
    assert "cannot read topology file" in str(info.value)
    assert info.value.line is None
