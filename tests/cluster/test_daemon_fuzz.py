"""Robustness of a host daemon's ROUTER socket against malformed and hostile messages.

messages.py: a daemon answers a message with a wrong version, undecodable bytes or an
unknown tag with an error reply and keeps serving. Each test here sends one kind of bad
input from a raw zmq DEALER (as a misbehaving program or a stranger would) and accepts an
error Reply with a SISCI code, or no reply — never an internal error; the last test checks
that the daemon still answers, serves real programs and logged no traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
import zmq
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from smartio import errors, sisci
from smartio.cluster import messages as m
from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir, pid_alive

GetCluster = Callable[[str], RunDir]
HOST = "lender"
ILLEGAL = "SCI_ERR_ILLEGAL_PARAMETER"
#: Every code a SmartIOError subclass carries, except the one for internal errors.
SCI_CODES = {getattr(errors, name).code for name in errors.__all__
             if isinstance(getattr(errors, name), type)
             and issubclass(getattr(errors, name), errors.SmartIOError)} - {"SCI_ERR_GENERIC"}
REQUESTS: tuple[type[m.Msg], ...] = m.Request.__args__
#: Never sent valid: Shutdown stops the daemon, Subscribe redirects a client's events.
SENDABLE = tuple(c for c in REQUESTS if c not in (m.Shutdown, m.Subscribe))
PEER_WITH_HOST = (m.PeerConnect, m.PeerDisconnect, m.PeerSegmentGone, m.PeerGroupMembers)
HUGE = [-1, -(2**63), 2**31, 2**32, 2**63 - 1, 2**64 - 1]
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def cluster(module_cluster: GetCluster) -> RunDir:
    return module_cluster("back-to-back")


@pytest.fixture(scope="module")
def daemon_pid(cluster: RunDir) -> int:
    pid = cluster.pid(HOST)
    assert pid is not None
    return pid


def exchange(rd: RunDir, frames: list[bytes], host: str = HOST,
             timeout: float = 1.0) -> m.Reply | None:
    """Send one multipart message from a fresh DEALER; the decoded reply, or None."""
    s: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(rd.endpoint(host))
        s.send_multipart(frames)
        if not s.poll(int(timeout * 1000)):
            return None
        return m.decode_reply(s.recv_multipart()[-1])
    finally:
        s.close(0)


def send_body(rd: RunDir, body: bytes, host: str = HOST) -> m.Reply | None:
    return exchange(rd, [m.PROTOCOL, body], host)


def envelope(rid: int, tag: str, fields: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode({"rid": rid, "msg": {**fields, "type": tag}})


def assert_refused(rep: m.Reply | None, code: str | None = ILLEGAL) -> None:
    """An error reply with a SISCI code (``code`` when given), or no reply at all."""
    if rep is None:
        return
    assert not rep.ok, f"accepted: {rep}"
    assert rep.code in SCI_CODES, f"internal error: {rep}"
    if code is not None:
        assert rep.code == code, rep


def assert_alive(rd: RunDir, pid: int) -> None:
    assert pid_alive(pid) and rd.pid(HOST) == pid
    rep = send_body(rd, m.encode(m.Envelope(424242, m.Ping())))
    assert rep is not None and rep.ok and rep.rid == 424242 and rep.data == {"host": HOST}


# -- strategies -------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False), st.text(max_size=12), st.binary(max_size=12))
msgpack_values = st.recursive(scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
    max_leaves=12)
msgpack_ints = st.integers(-(2**63), 2**64 - 1)
small_or_huge = st.one_of(st.sampled_from([0, 1, 2, 4, 8]), st.sampled_from(HUGE))


def value_for(t: mi.Type, ints: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """Values of the right type for a msgspec field type."""
    if isinstance(t, mi.IntType):
        return ints
    if isinstance(t, mi.FloatType):
        return st.just(0.0)  # timeouts: never make the daemon wait
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.StrType):
        return st.text(max_size=12)
    if isinstance(t, mi.BytesType):
        return st.binary(max_size=8)
    if isinstance(t, mi.ListType):
        return st.lists(value_for(t.item_type, ints), max_size=2)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(value_for(u, ints) for u in t.types))
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.StructType):
        return st.fixed_dictionaries({f.encode_name: value_for(f.type, ints) for f in t.fields})
    raise AssertionError(f"no strategy for {t}")


def wrong_value_for(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values msgspec must reject for a field of type ``t``."""
    lists = st.lists(st.integers(0, 3), max_size=2)
    maps = st.dictionaries(st.text(max_size=3), msgpack_ints, max_size=2)
    if isinstance(t, (mi.IntType, mi.UnionType)):
        return st.one_of(st.text(max_size=4), st.just(0.5), lists, maps, st.booleans())
    if isinstance(t, mi.FloatType):
        return st.one_of(st.text(max_size=4), lists, st.none(), maps)
    if isinstance(t, mi.BoolType):
        return st.one_of(msgpack_ints, st.text(max_size=4), st.none())
    if isinstance(t, mi.StrType):
        return st.one_of(msgpack_ints, lists, st.binary(max_size=4), st.none())
    if isinstance(t, mi.BytesType):
        return st.one_of(msgpack_ints, lists, st.none(), maps)
    return st.one_of(msgpack_ints, st.text(max_size=4), maps)


def fields_of(cls: type[m.Msg]) -> tuple[mi.Field, ...]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info.fields


@st.composite
def valid_bodies(draw: st.DrawFn, classes: tuple[type[m.Msg], ...],
                 ints: st.SearchStrategy[int], **fixed: Any) -> tuple[int, type[m.Msg], bytes]:
    """(rid, class, body) of a well-typed request; ``fixed`` pins fields by name."""
    cls = draw(st.sampled_from(classes))
    fields = {f.encode_name: fixed[f.name] if f.name in fixed else draw(value_for(f.type, ints))
              for f in fields_of(cls)}
    rid = draw(st.integers(1, 2**32))
    return rid, cls, envelope(rid, cls.__name__, fields)


@pytest.fixture(scope="module")
def registered_client(cluster: RunDir) -> Iterator[str]:
    """A client id that said Hello with the pid of a helper process (killed afterwards, so
    the daemon releases whatever the fuzzing made it hold)."""
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    rep = send_body(cluster, m.encode(m.Envelope(1, m.Hello(client="fuzz-client",
                                                            pid=helper.pid, name="fuzz"))))
    assert rep is not None and rep.ok
    yield "fuzz-client"
    helper.kill()
    helper.wait()
    deadline = time.monotonic() + 3
    while any(c["id"] == "fuzz-client" for h in cluster_status(cluster.cluster)["hosts"]
              for c in h.get("clients", [])):
        assert time.monotonic() < deadline, "the fuzz client was never released"
        time.sleep(0.05)


# -- framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [
    [b""], [m.PROTOCOL], [b"garbage"],
    [m.PROTOCOL, m.encode(m.Envelope(1, m.Ping())), b"extra"],
    [m.PROTOCOL, b"", m.encode(m.Envelope(1, m.Ping()))],
    [b"", m.PROTOCOL, m.encode(m.Envelope(1, m.Ping()))],
], ids=["empty", "version-only", "one-frame", "extra-frame", "empty-body-first", "req-style"])
def test_wrong_frame_counts_get_an_error_reply(cluster: RunDir, daemon_pid: int,
                                               frames: list[bytes]) -> None:
    """A message without exactly [version, body] gets SCI_ERR_ILLEGAL_PARAMETER."""
    rep = exchange(cluster, frames)
    assert rep is not None and not rep.ok and rep.code == ILLEGAL and rep.rid == 0
    assert_alive(cluster, daemon_pid)


@FUZZ
@given(frames=st.lists(st.binary(max_size=48), min_size=1, max_size=5))
def test_random_frames_are_refused(cluster: RunDir, daemon_pid: int,
                                   frames: list[bytes]) -> None:
    """Random frames get an error reply (or none), never an internal error."""
    assert_refused(exchange(cluster, frames))


@FUZZ
@given(version=st.binary(max_size=16).filter(lambda v: v != m.PROTOCOL))
def test_wrong_protocol_version_is_refused(cluster: RunDir, daemon_pid: int,
                                           version: bytes) -> None:
    """A well-formed Ping under another protocol version is refused, naming the version."""
    rep = exchange(cluster, [version, m.encode(m.Envelope(9, m.Ping()))])
    assert rep is not None and not rep.ok and rep.code == ILLEGAL
    assert m.PROTOCOL.decode() in rep.error


@FUZZ
@given(obj=msgpack_values)
def test_random_msgpack_is_refused(cluster: RunDir, daemon_pid: int, obj: Any) -> None:
    """Arbitrary MessagePack that is not an Envelope gets SCI_ERR_ILLEGAL_PARAMETER."""
    assert_refused(send_body(cluster, msgspec.msgpack.encode(obj)))


@FUZZ
@given(rid=st.integers(0, 2**64 - 1),
       tag=st.text(max_size=20).filter(lambda t: t not in {c.__name__ for c in REQUESTS}),
       fields=st.dictionaries(st.text(max_size=8), scalars, max_size=4))
def test_unknown_tags_are_refused(cluster: RunDir, daemon_pid: int, rid: int, tag: str,
                                  fields: dict[str, Any]) -> None:
    """A valid Envelope around an unknown message tag gets SCI_ERR_ILLEGAL_PARAMETER."""
    assert_refused(send_body(cluster, envelope(rid, tag, fields)))


@FUZZ
@given(data=st.data())
def test_wrong_field_types_are_refused(cluster: RunDir, daemon_pid: int,
                                       data: st.DataObject) -> None:
    """A known message with a mistyped, missing or unknown field is refused before use."""
    cls = data.draw(st.sampled_from(REQUESTS))
    fields = {f.encode_name: data.draw(value_for(f.type, st.integers(0, 8)))
              for f in fields_of(cls)}
    how = data.draw(st.sampled_from(["mistyped", "missing", "unknown"]))
    if how == "mistyped" and fields:
        f = data.draw(st.sampled_from(fields_of(cls)))
        fields[f.encode_name] = data.draw(wrong_value_for(f.type))
    elif how == "missing" and any(f.required for f in fields_of(cls)):
        f = data.draw(st.sampled_from([f for f in fields_of(cls) if f.required]))
        del fields[f.encode_name]
    else:
        fields["bogus_" + data.draw(st.text(max_size=4))] = data.draw(scalars)
    body = envelope(1, cls.__name__, fields)
    try:
        m.decode_request(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    else:
        assume(False)  # the "wrong" value happened to be acceptable
    rep = send_body(cluster, body)
    assert rep is not None and rep.rid == 0  # refused before the request id was read
    assert_refused(rep)


# -- well-formed but hostile ------------------------------------------------------------------


@FUZZ
@given(req=valid_bodies(tuple(c for c in SENDABLE if c is not m.Hello), small_or_huge,
                        client="fuzz-client", host="borrower"))
def test_huge_ints_never_cause_internal_errors(cluster: RunDir, daemon_pid: int,
                                               registered_client: str,
                                               req: tuple[int, type[m.Msg], bytes]) -> None:
    """Well-typed requests with huge or odd ints get a reply, and never an internal error."""
    rid, _, body = req
    rep = send_body(cluster, body)
    assert rep is not None and rep.rid == rid
    if not rep.ok:
        assert_refused(rep, code=None)


@pytest.mark.parametrize("pid", HUGE)
def test_hello_with_a_bogus_pid_is_released(cluster: RunDir, pid: int) -> None:
    """A Hello with a pid that does not run registers a client the daemon soon releases."""
    client = f"bogus-{pid}"
    rep = send_body(cluster, m.encode(m.Envelope(3, m.Hello(client=client, pid=pid))))
    assert rep is not None and rep.ok and rep.data["host"] == HOST
    deadline = time.monotonic() + 3
    while any(c["id"] == client for c in next(
            h for h in cluster_status(cluster.cluster)["hosts"] if h["host"] == HOST)["clients"]):
        assert time.monotonic() < deadline, "a client with a dead pid was never released"
        time.sleep(0.05)


@FUZZ
@given(req=valid_bodies(tuple(c for c in SENDABLE if "client" in c.__struct_fields__
                              and c is not m.Hello), small_or_huge,
                        client="stranger-client"))
def test_requests_from_a_client_that_never_said_hello_are_refused(
        cluster: RunDir, daemon_pid: int, req: tuple[int, type[m.Msg], bytes]) -> None:
    """A request naming a client that never said Hello is refused (it would leak objects)."""
    rid, _, body = req
    rep = send_body(cluster, body)
    assert rep is not None and rep.rid == rid
    assert_refused(rep)


@FUZZ
@given(data=st.data())
def test_peer_messages_from_a_stranger_are_refused(cluster: RunDir, daemon_pid: int,
                                                   data: st.DataObject) -> None:
    """A peer message from a host that is not in the cluster is refused."""
    stranger = data.draw(st.text(max_size=12).filter(lambda h: h not in ("lender",
                                                                          "borrower")))
    rid, _, body = data.draw(valid_bodies(PEER_WITH_HOST, small_or_huge, host=stranger))
    rep = send_body(cluster, body)
    assert rep is not None and rep.rid == rid
    assert_refused(rep)


def test_stranger_cannot_drop_a_real_connection(cluster: RunDir) -> None:
    """A forged PeerSegmentGone from a stranger leaves a live connection and its map alone."""
    with sisci.open("lender", cluster.cluster) as a, sisci.open("borrower",
                                                                cluster.cluster) as b:
        seg = a.create_segment(4096, 777)
        seg.prepare().set_available()
        seg.map().view[:4] = b"LIVE"
        rs = b.connect_segment(a.local_node_id(), 777)
        mp = rs.map()
        forged = m.PeerSegmentGone(host="mallory", conns=[rs.conn], segment=777, reason="lost")
        rep = send_body(cluster, m.encode(m.Envelope(5, forged)), host="borrower")
        assert rep is not None and not rep.ok and rep.code == ILLEGAL
        with pytest.raises(errors.Timeout):
            rs.wait_for_event(timeout=0.3)
        assert not rs.lost and bytes(mp.view[:4]) == b"LIVE"


def test_daemon_still_serves_after_fuzzing(cluster: RunDir, daemon_pid: int) -> None:
    """After all the above the same daemon answers Ping, serves programs, logged no crash."""
    assert_alive(cluster, daemon_pid)
    st_lender = next(h for h in cluster_status(cluster.cluster)["hosts"] if h["host"] == HOST)
    assert st_lender["state"] == "running" and st_lender["errors"] > 100
    with sisci.open("lender", cluster.cluster) as a, sisci.open("borrower",
                                                                cluster.cluster) as b:
        seg = a.create_segment(64 << 10)
        seg.prepare().set_available()
        local = seg.map()
        mp = b.connect_segment(a.local_node_id(), seg.id).map()
        mp.view[:5] = b"hello"
        assert bytes(local.view[:5]) == b"hello"
    log = cluster.log(HOST).read_text()
    assert "Traceback" not in log and "err_handler" not in log
