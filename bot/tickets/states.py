"""A ticket's states and which act may move it from which (anything else is refused, naming the
state the ticket is in)::

    open ──acknowledge──► acknowledged ──respond──► responded ──(re-rating, or its window)──► closed
      │                        │
      └────────appeal──────────┴──► appealed ──rejected──► back where it was
                                        ├──upheld (malicious, untrue)──► closed
                                        └──upheld (not_ours)──► open, reassigned, deadline anew
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESPONDED = "responded"
    APPEALED = "appealed"
    CLOSED = "closed"


class Act(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESPOND = "respond"
    APPEAL = "appeal"
    ASSIGN = "assign"
    CHANGE_TIER = "tier"
    REVEAL_CONTACT = "contact"


NOT_CLOSED = frozenset(State) - {State.CLOSED}

# The states each act may start from.
ALLOWED: dict[Act, frozenset[State]] = {
    Act.ACKNOWLEDGE: frozenset({State.OPEN}),
    Act.RESPOND: frozenset({State.ACKNOWLEDGED}),
    Act.APPEAL: frozenset({State.OPEN, State.ACKNOWLEDGED}),
    Act.ASSIGN: frozenset({State.OPEN, State.ACKNOWLEDGED, State.APPEALED}),
    Act.CHANGE_TIER: frozenset({State.OPEN, State.ACKNOWLEDGED, State.APPEALED}),
    Act.REVEAL_CONTACT: NOT_CLOSED,
}

# Where an act leaves the ticket (acts missing here leave its state as it is).
AFTER: dict[Act, State] = {
    Act.ACKNOWLEDGE: State.ACKNOWLEDGED,
    Act.RESPOND: State.RESPONDED,
    Act.APPEAL: State.APPEALED,
}

# A ticket still waiting for its department's answer: the deadline runs (paused while appealed).
AWAITING_ANSWER = frozenset({State.OPEN, State.ACKNOWLEDGED})


class WrongState(Exception):
    """The act cannot be done in the ticket's state (409)."""

    def __init__(self, act: Act, state: State) -> None:
        allowed = ", ".join(sorted(ALLOWED[act]))
        super().__init__(f"the ticket is {state}: {act} is possible only when it is {allowed}")
        self.act, self.state = act, state


def check(act: Act, state: State) -> State:
    """The state ``act`` leaves a ticket in ``state`` in, or :class:`WrongState`."""
    if state not in ALLOWED[act]:
        raise WrongState(act, state)
    return AFTER.get(act, state)
