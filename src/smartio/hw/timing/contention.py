"""Several transfers on the same links at once: max-min fair shares of each direction.

The paper's experiments mostly run one transfer at a time; where several share a link
(two GPUs behind one NTB cable, 30 NVMe clients of §7.4.2) each link direction carries
at most its usable rate, divided max-min fairly by progressive filling: all flows rise
together, a flow stops at its own uncontended rate (tags, a slower link elsewhere) or when
a direction it uses is full, and the others go on. Flows are compared in payload rate;
what they put on the wire per payload byte (TLP overheads, read requests travelling
against their completions) comes from each :class:`~smartio.hw.timing.model.Transfer`'s
``usage``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smartio.hw.timing.model import Transfer

#: (link name, from element, to element): one direction of one link.
LinkDir = tuple[str, str, str]


def max_min_share(solo: Sequence[Transfer],
                  caps: Mapping[str, float]) -> list[tuple[float, str]]:
    """Max-min fair payload rates (progressive filling) and what bounds each.

    ``usage`` gives each flow's wire bytes per link direction; a direction carries at most
    its link's usable rate. All unfrozen flows rise together; a flow freezes at its own
    rate or when a direction it uses fills up.
    """
    coef = [{k: w / t.nbytes for k, w in t.usage.items()} for t in solo]
    out = [(0.0, "")] * len(solo)
    active = set(range(len(solo)))
    used: dict[LinkDir, float] = {}
    while active:
        level = min(solo[i].rate_gb_s for i in active)
        demand: dict[LinkDir, float] = {}
        for i in active:
            for k, c in coef[i].items():
                demand[k] = demand.get(k, 0.0) + c
        for k, d in demand.items():
            if d > 0:
                level = min(level, (caps[k[0]] - used.get(k, 0.0)) / d)
        done = {i: solo[i].limit for i in active if solo[i].rate_gb_s <= level * (1 + 1e-9)}
        for k, d in demand.items():
            if d > 0 and used.get(k, 0.0) + d * level >= caps[k[0]] * (1 - 1e-9):
                for i in active:
                    if coef[i].get(k, 0.0) > 0 and i not in done:
                        done[i] = f"fair share of link {k[0]} ({k[1]} -> {k[2]})"
        for i, why in done.items():
            out[i] = (level, why)
            for k, c in coef[i].items():
                used[k] = used.get(k, 0.0) + c * level
        active -= done.keys()
    return out


__all__ = ["LinkDir", "max_min_share"]
