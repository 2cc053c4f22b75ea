"""PCIe multicast groups in the cluster fabric (paper §3.2, §6.5).

Switch chips such as the PM8536 can replicate a posted memory write to several ports in
one operation. Here a group is a list of members, each an NTB adapter and an address in
that adapter's host; an address-LUT entry that points at a group (``peer_mw_set_multicast``)
makes every posted write through that slice land at every member. Reads of a multicast
window complete with 0xFF (multicast is write-only in PCIe). The group table lives in the
cluster's shared fabric state, like every other table.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartio.errors import IllegalParameter, MaxEntries, OutOfRange
from smartio.hw.state import MC_GROUP_WORDS, MC_GROUPS, MC_MEMBERS, VALID, FabricState


@dataclass(frozen=True)
class Member:
    adapter: str  # ingress adapter id "host:adapter"
    addr: int  # address in that adapter's host domain (slice base for the group)


class MulticastTable:
    """The fabric's multicast group table."""

    def __init__(self, state: FabricState, adapter_ids: list[str]) -> None:
        self.state = state
        self._ids = adapter_ids

    def _base(self, group: int) -> int:
        if not 0 <= group < MC_GROUPS:
            raise OutOfRange(f"multicast group {group} out of range 0..{MC_GROUPS - 1}")
        return self.state.multicast + group * MC_GROUP_WORDS

    def group_alloc(self) -> int:
        """Allocate a free group; MaxEntries when all are in use."""
        q = self.state.q
        with self.state.locked():
            for g in range(MC_GROUPS):
                w = self.state.multicast + g * MC_GROUP_WORDS
                if not q[w] & VALID:
                    for i in range(MC_GROUP_WORDS):
                        q[w + i] = 0
                    q[w] = VALID
                    self.state.bump()
                    return g
        raise MaxEntries(f"fabric multicast table full ({MC_GROUPS} groups)")

    def group_free(self, group: int) -> None:
        w = self._base(group)
        with self.state.locked():
            for i in range(MC_GROUP_WORDS):
                self.state.q[w + i] = 0
            self.state.bump()

    def set_members(self, group: int, members: list[Member]) -> None:
        if len(members) > MC_MEMBERS:
            raise MaxEntries(f"multicast group {group}: {len(members)} members, at most "
                             f"{MC_MEMBERS}")
        w = self._base(group)
        q = self.state.q
        if not q[w] & VALID:
            raise IllegalParameter(f"multicast group {group} is not allocated")
        with self.state.locked():
            for i in range(MC_MEMBERS):
                q[w + 1 + 2 * i] = 0
            for i, m in enumerate(members):
                if m.adapter not in self._ids:
                    raise IllegalParameter(f"multicast member: no adapter {m.adapter!r}")
                q[w + 2 + 2 * i] = m.addr
                q[w + 1 + 2 * i] = VALID | self._ids.index(m.adapter)
            self.state.bump()

    def members(self, group: int) -> list[Member]:
        w = self._base(group)
        q = self.state.q
        out = []
        for i in range(MC_MEMBERS):
            e = q[w + 1 + 2 * i]
            if e & VALID:
                out.append(Member(self._ids[e & 0xFFFF], q[w + 2 + 2 * i]))
        return out


__all__ = ["Member", "MulticastTable"]
