"""SISCI multicast on the cluster-switch preset: one posted write lands at every receiver.

node1..node3 each create a broadcast segment with the same id, prepare it and set it
available; node0 connects with ``broadcast=True`` to node id ``BROADCAST_NODE_ID`` and maps
the group (reference §2.2, SCI_FLAG_BROADCAST on connect and map). The MXS824 replicates the
write to every member whose path is up (paper §6.5); a multicast window is write-only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import pytest

from smartio import sisci
from smartio.cluster.rundir import RunDir

PRESET = "cluster-switch"
RECEIVERS = ("node1", "node2", "node3")
SIZE = 1 << 20
TIMEOUT = 5.0


@dataclass
class Group:
    sender: sisci.Descriptor
    receivers: dict[str, sisci.Descriptor]
    segments: dict[str, sisci.LocalSegment]
    maps: dict[str, sisci.Map]  # each receiver's local map of its segment


@pytest.fixture
def cluster(module_cluster: Callable[[str], RunDir]) -> RunDir:
    return module_cluster(PRESET)


@pytest.fixture
def group(cluster: RunDir) -> Iterator[Group]:
    """Broadcast segment 0x300 on node1..node3 and a descriptor on node0."""
    with ExitStack() as stack:
        sender = stack.enter_context(sisci.open("node0", cluster.cluster, "sender"))
        sds, segs, maps = {}, {}, {}
        for h in RECEIVERS:
            sds[h] = stack.enter_context(sisci.open(h, cluster.cluster, f"recv-{h}"))
            segs[h] = sds[h].create_segment(SIZE, 0x300, broadcast=True).prepare(0)
            segs[h].set_available(0)
            maps[h] = segs[h].map()
        yield Group(sender, sds, segs, maps)


def _rand(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _connect(g: Group, seg_id: int = 0x300) -> sisci.RemoteSegment:
    return g.sender.connect_segment(sisci.BROADCAST_NODE_ID, seg_id, 0, broadcast=True,
                                    timeout=1.0)


def test_connect_and_map_group(group: Group) -> None:
    """A broadcast connect covers the receivers' segments; its map is a MulticastMap."""
    rs = _connect(group)
    assert rs.multicast and rs.node_id == sisci.BROADCAST_NODE_ID
    assert rs.size == SIZE
    mm = rs.map_multicast()
    assert isinstance(mm, sisci.MulticastMap)
    assert mm.size == SIZE
    with pytest.raises(sisci.IllegalOperation):
        rs.map()  # a group has no readable (plain) map


def test_plain_connection_has_no_multicast_map(group: Group) -> None:
    """map_multicast on an ordinary connection raises IllegalOperation."""
    group.receivers["node1"].create_segment(SIZE, 0x304).prepare(0).set_available(0)
    rs = group.sender.connect_segment(group.receivers["node1"].local_node_id(0), 0x304)
    with pytest.raises(sisci.IllegalOperation):
        rs.map_multicast()
    assert isinstance(rs.map(), sisci.Map)


def test_one_write_reaches_every_receiver(group: Group) -> None:
    """A single multicast write lands in all three receivers' segments, and nowhere else."""
    mm = _connect(group).map_multicast()
    data = _rand(8192, 1)
    assert mm.write(100, data) == 3 * len(data)
    for h in RECEIVERS:
        view = group.maps[h].view
        assert bytes(view[100: 100 + len(data)]) == data, h
        assert not any(view[:100]) and not any(view[100 + len(data):]), h


def test_write_at_map_offset(group: Group) -> None:
    """A map at an offset writes at that offset of every receiver's segment."""
    mm = _connect(group).map_multicast(4096, 8192)
    assert mm.size == 8192
    mm.write(8192 - 3, b"end")
    for h in RECEIVERS:
        assert bytes(group.maps[h].view[4096 + 8192 - 3: 4096 + 8192]) == b"end", h


def test_link_down_loses_only_that_copy(group: Group) -> None:
    """With node2's link down a write reaches node1 and node3 only; node2 gets later ones."""
    mm = _connect(group).map_multicast()
    first = _rand(4096, 2)
    try:
        group.sender.link_set("node2:ntb0", False)
        assert mm.write(0, first) == 2 * len(first)
    finally:
        group.sender.link_set("node2:ntb0", True)
    assert bytes(group.maps["node1"].view[:4096]) == first
    assert bytes(group.maps["node3"].view[:4096]) == first
    assert not any(group.maps["node2"].view[:4096])
    second = _rand(4096, 3)
    assert mm.write(4096, second) == 3 * len(second)
    for h in RECEIVERS:
        assert bytes(group.maps[h].view[4096:8192]) == second, h


def test_multicast_map_is_write_only(group: Group) -> None:
    """A MulticastMap has no view, array, read or sequence: there is no read path."""
    mm = _connect(group).map_multicast()
    for name in ("view", "array", "read", "create_sequence", "links"):
        assert not hasattr(mm, name), name
    assert not [n for n in dir(sisci.MulticastMap) if "read" in n.lower()]
    assert not hasattr(sisci.MulticastMap, "__getitem__")
    with pytest.raises(TypeError):
        memoryview(mm)


def test_multicast_write_bounds(group: Group) -> None:
    """Writes beyond the map raise OutOfRange; writes after unmap IllegalOperation."""
    rs = _connect(group)
    mm = rs.map_multicast(0, 4096)
    with pytest.raises(sisci.OutOfRange):
        mm.write(4095, b"xy")
    with pytest.raises(sisci.OutOfRange):
        mm.write(-1, b"x")
    with pytest.raises(sisci.OutOfRange):
        rs.map_multicast(0, SIZE + 1)
    mm.unmap()
    with pytest.raises(sisci.IllegalOperation):
        mm.write(0, b"x")
    with pytest.raises(sisci.IllegalOperation):
        mm.unmap()
    assert all(not any(group.maps[h].view) for h in RECEIVERS)


def test_no_receivers_is_no_such_segment(group: Group) -> None:
    """A broadcast connect to an id no host offers raises NoSuchSegment."""
    with pytest.raises(sisci.NoSuchSegment):
        _connect(group, 0x301)
    plain = group.receivers["node1"].create_segment(SIZE, 0x302).prepare(0).set_available(0)
    with pytest.raises(sisci.NoSuchSegment):
        _connect(group, 0x302)  # a plain segment is not a multicast receive segment
    plain.remove()


def test_receivers_see_connect_and_disconnect(group: Group) -> None:
    """Receivers are busy while the sender is connected and get connect/disconnect events."""
    rs = _connect(group)
    sender_node = group.sender.local_node_id(0)
    for h in RECEIVERS:
        ev = group.segments[h].wait_for_event(TIMEOUT)
        assert (ev.reason, ev.node_id) == ("connect", sender_node), h
        with pytest.raises(sisci.Busy):
            group.segments[h].remove()
    rs.disconnect()
    for h in RECEIVERS:
        ev = group.segments[h].wait_for_event(TIMEOUT)
        assert (ev.reason, ev.node_id) == ("disconnect", sender_node), h
        group.segments[h].remove()


def test_lost_receiver_releases_the_others(group: Group) -> None:
    """When one receiver removes its segment, the sender sees 'lost'; after disconnect the
    other receivers are free again."""
    rs = _connect(group)
    mm = rs.map_multicast()
    group.segments["node2"].remove(force=True)
    assert rs.wait_for_event(TIMEOUT).reason == "lost"
    assert mm.write(0, b"gone") == 0  # the group's window is torn down
    rs.disconnect()
    for h in ("node1", "node3"):
        group.segments[h].remove()  # not Busy: the sender's connection was dropped


def test_oversized_group_leaves_receivers_free(group: Group) -> None:
    """A group larger than one LUT slice is OutOfRange and leaves no receiver Busy."""
    big = {h: group.receivers[h].create_segment(64 << 20, 0x303, broadcast=True).prepare(0)
           for h in RECEIVERS}
    for seg in big.values():
        seg.set_available(0)
    with pytest.raises(sisci.OutOfRange):
        _connect(group, 0x303)
    for h, seg in big.items():
        seg.remove()  # not Busy: the failed connect let go of every receiver
        assert seg.removed, h
