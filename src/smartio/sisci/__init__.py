"""smartio.sisci — the SISCI shared-memory API (Dolphin's, Python-shaped).

Open a descriptor on a host of a running cluster, create and connect segments, map them
(real memory mappings: loads and stores cross no software), check PIO with sequences, move
data with DMA queues, signal with (data) interrupts, and multicast writes to many hosts.
Errors are the SISCI errors, as exceptions (``SegmentIdUsed``, ``NoSuchSegment``, …).
See docs/sisci.md.
"""

from smartio.errors import (
    Busy,
    Cancelled,
    ConnectionRefused,
    IllegalOperation,
    IntNoUsed,
    MaxEntries,
    NoLinkAccess,
    NoSpace,
    NoSuchAdapter,
    NoSuchIntNo,
    NoSuchNodeId,
    NoSuchSegment,
    NotConnected,
    NotPrepared,
    NotRunning,
    OutOfRange,
    SegmentIdUsed,
    SmartIOError,
    Timeout,
)
from smartio.sisci.descriptor import BROADCAST_NODE_ID, Descriptor, open
from smartio.sisci.dma import DmaCompletion, DmaQueue
from smartio.sisci.interrupt import MAX_PAYLOAD, LocalInterrupt, RemoteInterrupt
from smartio.sisci.map import Map, MulticastMap, SeqStatus, Sequence
from smartio.sisci.segment import LocalSegment, RemoteSegment, SegmentEvent

__all__ = [
    "BROADCAST_NODE_ID",
    "MAX_PAYLOAD",
    "Busy",
    "Cancelled",
    "ConnectionRefused",
    "Descriptor",
    "DmaCompletion",
    "DmaQueue",
    "IllegalOperation",
    "IntNoUsed",
    "LocalInterrupt",
    "LocalSegment",
    "Map",
    "MaxEntries",
    "MulticastMap",
    "NoLinkAccess",
    "NoSpace",
    "NoSuchAdapter",
    "NoSuchIntNo",
    "NoSuchNodeId",
    "NoSuchSegment",
    "NotConnected",
    "NotPrepared",
    "NotRunning",
    "OutOfRange",
    "RemoteInterrupt",
    "RemoteSegment",
    "SegmentEvent",
    "SegmentIdUsed",
    "SeqStatus",
    "Sequence",
    "SmartIOError",
    "Timeout",
    "open",
]
