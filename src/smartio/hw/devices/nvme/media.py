"""Media latency profiles: compute, then hold (FEMU timing model, nvme-reference §2).

A command's data is copied at once; its completion is held until the namespace's media
would have finished. Each namespace keeps a busy-until timeline per parallel unit
(``lanes``); a transfer starts on the unit that frees first, no earlier than now, and
costs ``ns_per_4k`` for every 4 KiB it moves. The controller keeps the finished commands
in a min-heap on that time and posts each CQE once ``ctx.now_ns()`` reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaProfile:
    name: str
    read_ns_per_4k: int
    write_ns_per_4k: int
    lanes: int = 1  # independent units, each with its own busy-until time

    @property
    def instant(self) -> bool:
        return self.read_ns_per_4k == 0 and self.write_ns_per_4k == 0


#: Profiles by the ``media`` parameter. Optane: ~9/10 µs per 4 KiB (P4800X-like, several
#: units in parallel); NAND: ~80 µs read, ~20 µs write (buffered program) on one timeline.
PROFILES: dict[str, MediaProfile] = {
    "ram": MediaProfile("ram", 0, 0),
    "optane": MediaProfile("optane", 9_000, 10_000, lanes=8),
    "nand": MediaProfile("nand", 80_000, 20_000, lanes=1),
}


class Timeline:
    """Busy-until times of one namespace's media units."""

    def __init__(self, profile: MediaProfile) -> None:
        self.profile = profile
        self._busy = [0] * max(1, profile.lanes)

    def schedule(self, now_ns: int, write: bool, nbytes: int) -> int:
        """Book a transfer that may start at ``now_ns``; returns when it completes."""
        p = self.profile
        per = p.write_ns_per_4k if write else p.read_ns_per_4k
        cost = per * max(1, -(-nbytes // 4096))
        busy = self._busy
        lane = min(range(len(busy)), key=busy.__getitem__)
        start = busy[lane] if busy[lane] > now_ns else now_ns
        busy[lane] = start + cost
        return start + cost

    def reset(self) -> None:
        self._busy = [0] * len(self._busy)


__all__ = ["PROFILES", "MediaProfile", "Timeline"]
