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

    code = "SCI_ERR_NO_SUCH_NODEID"


class Busy(SmartIOError):
    """The resource is in use."""

    code = "SCI_ERR_BUSY"


class Timeout(SmartIOError):
    """An operation did not finish before its deadline."""

    code = "SCI_ERR_TIMEOUT"


__all__ = [
    "Busy",
    "IllegalParameter",
    "MaxEntries",
    "NotFound",
    "OutOfRange",
    "SmartIOError",
    "Timeout",
    "TopologyError",
]
