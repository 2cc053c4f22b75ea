"""Typed, versioned control messages between programs and daemons, and between daemons.

Every message is a msgspec struct, tagged by its class name, carried in an
:class:`Envelope` with a request id and encoded as MessagePack. The first frame of every
ZeroMQ message is the protocol version (``PROTOCOL``); a daemon answers a message with a
wrong version, undecodable bytes or an unknown tag with an error reply and keeps serving.
Only set-up, tear-down and fault handling travel here — never data-path accesses
(DESIGN §2): interrupts and DMA submissions are the driver entry points (ioctl-like).
"""

from __future__ import annotations

from typing import Any

import msgspec

PROTOCOL = b"smartio/1"


class Msg(msgspec.Struct, tag=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every control message."""


# -- program -> daemon -------------------------------------------------------------------


class Hello(Msg):
    client: str
    pid: int
    name: str = ""


class Subscribe(Msg):
    client: str


class Goodbye(Msg):
    """The program closes its descriptor: release what it still holds."""

    client: str


class Ping(Msg):
    pass


class Status(Msg):
    pass


class Shutdown(Msg):
    pass


class CreateSegment(Msg):
    client: str
    segment: int | None
    size: int
    private: bool = False
    group: bool = False


class PrepareSegment(Msg):
    client: str
    segment: int
    adapter: int


class SetAvailable(Msg):
    client: str
    segment: int
    adapter: int


class SetUnavailable(Msg):
    client: str
    segment: int
    adapter: int
    force: bool = False


class RemoveSegment(Msg):
    client: str
    segment: int
    force: bool = False


class ConnectSegment(Msg):
    client: str
    node_id: int
    segment: int
    adapter: int
    timeout: float = 5.0
    group: bool = False


class DisconnectSegment(Msg):
    client: str
    conn: int


class MapRemote(Msg):
    client: str
    conn: int
    offset: int
    size: int


class Unmap(Msg):
    client: str
    conn: int
    map_id: int


class CreateInterrupt(Msg):
    client: str
    adapter: int
    intno: int | None
    data: bool = False


class RemoveInterrupt(Msg):
    client: str
    intno: int


class ConnectInterrupt(Msg):
    client: str
    node_id: int
    intno: int
    adapter: int
    data: bool = False
    timeout: float = 5.0


class DisconnectInterrupt(Msg):
    client: str
    conn: int


class TriggerInterrupt(Msg):
    client: str
    conn: int
    payload: bytes = b""


class DmaVec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    segment: int  # local segment id
    local_offset: int
    conn: int  # remote segment connection id
    remote_offset: int
    size: int
    read: bool = False  # remote -> local (SCI_FLAG_DMA_READ)


class CreateDmaQueue(Msg):
    client: str
    adapter: int
    max_entries: int = 16


class RemoveDmaQueue(Msg):
    client: str
    queue: int


class StartDma(Msg):
    client: str
    queue: int
    vecs: list[DmaVec]


class LinkSet(Msg):
    target: str  # HOST:ADAPTER, a port, or a link name
    up: bool


class DmaAlloc(Msg):
    """Host RAM for a function's DMA, mapped for it (dma_alloc_coherent)."""

    client: str
    device: str  # function name on this host
    size: int


class DmaFree(Msg):
    client: str
    buffer: int


class DmaAttach(Msg):
    """Share an existing DMA buffer of ``device`` (another program's) with this program."""

    client: str
    device: str
    ioaddr: int


class DmaMapPeer(Msg):
    """Let ``device`` reach ``[addr, addr+size)`` (another function's BAR) by DMA."""

    client: str
    device: str
    addr: int
    size: int


class MsiAlloc(Msg):
    """Interrupt-controller message slots for a function's MSI/MSI-X vectors."""

    client: str
    device: str
    count: int


class MsiFree(Msg):
    client: str
    device: str


class Borrow(Msg):
    """Borrow another host's function for this program (Device Lending, paper §4)."""

    client: str
    lender: str  # host
    device: str  # function name on the lender


class Return(Msg):
    client: str
    lender: str
    device: str


# -- daemon -> daemon ----------------------------------------------------------------------


class PeerConnect(Msg):
    host: str  # the connecting host
    conn: int  # its connection id
    node_id: int  # its adapter's node id
    via: str  # our adapter id the connection comes in through
    segment: int
    group: bool = False


class PeerDisconnect(Msg):
    host: str
    conn: int
    segment: int


class PeerSegmentGone(Msg):
    """The owner of a segment tells a connector's host that connections were dropped."""

    host: str  # the owner host
    conns: list[int]
    segment: int
    reason: str  # "lost" | "disconnect"


class PeerConnectInterrupt(Msg):
    intno: int
    data: bool


class PeerTrigger(Msg):
    intno: int
    data: bool
    payload: bytes = b""
    node_id: int = 0


class PeerBorrow(Msg):
    """A borrower's daemon asks the lender to set up DMA and MSI windows for a function."""

    host: str  # the borrower
    adapter: str  # the borrower's adapter id the windows point at
    device: str
    dma_base: int  # borrower address the DMA window starts at (its segment pool)
    dma_size: int


class PeerReturn(Msg):
    host: str
    device: str


class PeerGroupMembers(Msg):
    """Which of your segments with this id are multicast receivers, on which adapter."""

    segment: int
    host: str  # the asking host
    conn: int
    node_id: int


# -- daemon -> program: events ---------------------------------------------------------------


class SegmentEvent(Msg):
    local: bool  # about a local segment (else a remote-segment connection)
    id: int  # segment id (local) or connection id (remote)
    reason: str  # connect | disconnect | lost | operational | not-operational
    node_id: int = 0
    adapter: int = 0


class InterruptEvent(Msg):
    intno: int
    payload: bytes = b""


class DmaEvent(Msg):
    queue: int
    transfer: int
    ok: bool
    status: str = "ok"
    bytes: int = 0


Request = (Hello | Subscribe | Goodbye | Ping | Status | Shutdown | CreateSegment | PrepareSegment
           | SetAvailable | SetUnavailable | RemoveSegment | ConnectSegment | DisconnectSegment
           | MapRemote | Unmap | CreateInterrupt | RemoveInterrupt | ConnectInterrupt
           | DisconnectInterrupt | TriggerInterrupt | CreateDmaQueue | RemoveDmaQueue | StartDma
           | LinkSet | DmaAlloc | DmaFree | DmaAttach | DmaMapPeer | MsiAlloc | MsiFree
           | PeerConnect | PeerDisconnect | PeerSegmentGone | PeerConnectInterrupt | PeerTrigger
           | PeerGroupMembers | Borrow | Return | PeerBorrow | PeerReturn)
Event = SegmentEvent | InterruptEvent | DmaEvent


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    rid: int
    msg: Request


class EventEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    event: Event


class Reply(msgspec.Struct, forbid_unknown_fields=True):
    rid: int
    ok: bool
    code: str = ""
    error: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)


_enc = msgspec.msgpack.Encoder()
_req_dec = msgspec.msgpack.Decoder(Envelope)
_rep_dec = msgspec.msgpack.Decoder(Reply)
_evt_dec = msgspec.msgpack.Decoder(EventEnvelope)


def encode(obj: msgspec.Struct) -> bytes:
    return _enc.encode(obj)


def decode_request(data: bytes) -> Envelope:
    return _req_dec.decode(data)


def decode_reply(data: bytes) -> Reply:
    return _rep_dec.decode(data)


def decode_event(data: bytes) -> Event:
    return _evt_dec.decode(data).event


__all__ = [name for name in dir() if not name.startswith("_") and name[0].isupper()] + [
    "decode_event", "decode_reply", "decode_request", "encode"]
