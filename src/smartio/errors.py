"""Errors raised on misuse of smartio's APIs.

Modelled hardware errors (an IOMMU fault, a read of a dead link that returns 0xFF) are
*data*, reported in results and counters; they never raise. What raises is misuse of our
API or an invalid configuration, always as a subclass of :class:`SmartIOError` carrying a
``code`` (SISCI-style error names where SISCI has one).
"""

from __future__ import annotations


class SmartIOError(Exception):
    """Base class of every error smartio raises on purpose."""

    code = "SCI_ERR_GENERIC"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class TopologyError(SmartIOError):
    """A topology file or preset is invalid.

    The message names the file, the line, the field, the bad value and what was expected.
    """

    code = "SCI_ERR_ILLEGAL_PARAMETER"

    def __init__(
        self,
        problem: str,
        *,
        source: str = "<topology>",
        line: int | None = None,
        field: str | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.value = value
        self.expected = expected
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        parts = [f"{where}: {problem}"]
        if field is not None:
            parts.append(f"field {field}")
        if value is not None:
            parts.append(f"got {value!r}")
        if expected is not None:
            parts.append(f"expected {expected}")
        super().__init__("; ".join(parts))


class MaxEntries(SmartIOError):
    """A hardware table (NTB address LUT, requester-ID LUT, IOMMU domains) is full."""

    code = "SCI_ERR_MAX_ENTRIES"


class OutOfRange(SmartIOError):
    """An address, offset or size lies outside what the object covers."""

    code = "SCI_ERR_OUT_OF_RANGE"


class IllegalParameter(SmartIOError):
    """An argument has the wrong shape or value."""

    code = "SCI_ERR_ILLEGAL_PARAMETER"


class NotFound(SmartIOError):
    """A named host, adapter, link, function or preset does not exist."""

    code = "SMARTIO_ERR_NOT_FOUND"


class Busy(SmartIOError):
    """The resource is in use."""

    code = "SCI_ERR_BUSY"


class Timeout(SmartIOError):
    """An operation did not finish before its deadline."""

    code = "SCI_ERR_TIMEOUT"


class SegmentIdUsed(SmartIOError):
    """A segment with that id already exists on the host."""

    code = "SCI_ERR_SEGMENTID_USED"


class NoSuchSegment(SmartIOError):
    """No segment with that id exists (or it is not available on that adapter)."""

    code = "SCI_ERR_NO_SUCH_SEGMENT"


class NotConnected(SmartIOError):
    """The remote segment or interrupt is not connected (or was lost)."""

    code = "SCI_ERR_NOT_CONNECTED"


class NotPrepared(SmartIOError):
    """The local segment is not prepared on that adapter."""

    code = "SCI_ERR_SEGMENT_NOT_PREPARED"


class NotAvailable(SmartIOError):
    """The resource exists but is not available to others."""

    code = "SCI_ERR_NOT_AVAILABLE"


class ConnectionRefused(SmartIOError):
    """The remote side refused the connection."""

    code = "SCI_ERR_CONNECTION_REFUSED"


class NoSuchNodeId(SmartIOError):
    """No adapter in the cluster has that node id, or no path reaches it."""

    code = "SCI_ERR_NO_SUCH_NODEID"


class NoSuchAdapter(SmartIOError):
    """The host has no adapter with that number."""

    code = "SCI_ERR_NO_SUCH_ADAPTERNO"


class IllegalOperation(SmartIOError):
    """The operation is not allowed in the object's current state."""

    code = "SCI_ERR_ILLEGAL_OPERATION"


class IntNoUsed(SmartIOError):
    """An interrupt with that number already exists."""

    code = "SCI_ERR_INTNO_USED"


class NoSuchIntNo(SmartIOError):
    """No interrupt with that number exists on the node."""

    code = "SCI_ERR_NO_SUCH_INTNO"


class Cancelled(SmartIOError):
    """A wait was cancelled because the object went away."""

    code = "SCI_ERR_CANCELLED"


class NoLinkAccess(SmartIOError):
    """The link on the path is down."""

    code = "SCI_ERR_NO_LINK_ACCESS"


class NoSpace(SmartIOError):
    """Out of memory for segments."""

    code = "SCI_ERR_NOSPC"


class NotRunning(SmartIOError):
    """The cluster or host daemon is not running."""

    code = "SCI_ERR_NODE_NOT_RESPONDING"


class ProtocolError(SmartIOError):
    """A malformed or unexpected control message."""

    code = "SCI_ERR_ILLEGAL_PARAMETER"


def error_for_code(code: str, message: str) -> SmartIOError:
    """Rebuild the exception a daemon reported (by its code) on the client side."""
    for cls in _ALL_ERRORS:
        if cls.code == code and cls is not ProtocolError and cls is not TopologyError:
            return cls(message)
    return SmartIOError(message, code=code)


__all__ = [
    "Busy",
    "Cancelled",
    "ConnectionRefused",
    "IllegalOperation",
    "IllegalParameter",
    "IntNoUsed",
    "MaxEntries",
    "NoLinkAccess",
    "NoSpace",
    "NoSuchAdapter",
    "NoSuchIntNo",
    "NoSuchNodeId",
    "NoSuchSegment",
    "NotAvailable",
    "NotConnected",
    "NotFound",
    "NotPrepared",
    "NotRunning",
    "OutOfRange",
    "ProtocolError",
    "SegmentIdUsed",
    "SmartIOError",
    "Timeout",
    "TopologyError",
    "error_for_code",
]

_ALL_ERRORS: list[type[SmartIOError]] = [
    SegmentIdUsed, NoSuchSegment, NotConnected, NotPrepared, NotAvailable, ConnectionRefused,
    NoSuchNodeId, NoSuchAdapter, IllegalOperation, IntNoUsed, NoSuchIntNo, Cancelled,
    NoLinkAccess, NoSpace, NotRunning, MaxEntries, OutOfRange, Busy, Timeout, NotFound,
    IllegalParameter, ProtocolError, TopologyError,
]
