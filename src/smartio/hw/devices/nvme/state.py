"""The controller's enable/reset/shutdown state machine (NVMe 1.4 §3.1.5, §7.3, §7.6.2).

========== ============================================ ===========================
State      Meaning                                      CSTS
========== ============================================ ===========================
DISABLED   CC.EN = 0; no queues exist                   RDY 0
READY      enabled; queues are processed                RDY 1
SHUTDOWN   CC.SHN was set: media flushed, no new fetch  RDY 1, SHST 10b
FAILED     enable was refused or a queue DMA failed     CFS 1 (RDY as it was)
========== ============================================ ===========================

Every state returns to DISABLED when the host clears CC.EN (a controller reset) or the
function is reset. :class:`StateMachine` refuses any other move and logs each one as
``nvme_state A -> B (why)`` so tests can follow bring-up.
"""

from __future__ import annotations

import logging
from enum import Enum

from smartio.errors import IllegalOperation

log = logging.getLogger(__name__)


class State(Enum):
    DISABLED = "disabled"
    READY = "ready"
    SHUTDOWN = "shutdown"
    FAILED = "failed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.DISABLED: frozenset({State.READY, State.FAILED}),
    State.READY: frozenset({State.DISABLED, State.SHUTDOWN, State.FAILED}),
    State.SHUTDOWN: frozenset({State.DISABLED, State.FAILED}),
    State.FAILED: frozenset({State.DISABLED}),
}


class StateMachine:
    """The current :class:`State` with a guarded, logged setter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = State.DISABLED

    def move(self, new: State, why: str) -> None:
        """Go to ``new``; staying put is a no-op.

        Raises:
            IllegalOperation: the transition is not in :data:`TRANSITIONS` (a model bug).
        """
        old = self.state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise IllegalOperation(f"{self.name}: no transition {old.name} -> {new.name}")
        self.state = new
        log.info("nvme_state: %s %s -> %s (%s)", self.name, old.name, new.name, why)

    def force_disabled(self, why: str) -> None:
        """Function-level reset: DISABLED from anywhere."""
        if self.state is not State.DISABLED:
            log.info("nvme_state: %s %s -> DISABLED (%s)", self.name, self.state.name, why)
        self.state = State.DISABLED


__all__ = ["TRANSITIONS", "State", "StateMachine"]
