"""Every act from every state: the allowed ones move the ticket where the diagram says, the rest
are refused naming the state."""

from __future__ import annotations

import pytest

from bot.tickets.states import Act, State, WrongState, check

MOVES = {
    (Act.ACKNOWLEDGE, State.OPEN): State.ACKNOWLEDGED,
    (Act.RESPOND, State.ACKNOWLEDGED): State.RESPONDED,
    (Act.APPEAL, State.OPEN): State.APPEALED,
    (Act.APPEAL, State.ACKNOWLEDGED): State.APPEALED,
    (Act.ASSIGN, State.OPEN): State.OPEN,
    (Act.ASSIGN, State.ACKNOWLEDGED): State.ACKNOWLEDGED,
    (Act.ASSIGN, State.APPEALED): State.APPEALED,
    (Act.CHANGE_TIER, State.OPEN): State.OPEN,
    (Act.CHANGE_TIER, State.ACKNOWLEDGED): State.ACKNOWLEDGED,
    (Act.CHANGE_TIER, State.APPEALED): State.APPEALED,
    (Act.REVEAL_CONTACT, State.OPEN): State.OPEN,
    (Act.REVEAL_CONTACT, State.ACKNOWLEDGED): State.ACKNOWLEDGED,
    (Act.REVEAL_CONTACT, State.RESPONDED): State.RESPONDED,
    (Act.REVEAL_CONTACT, State.APPEALED): State.APPEALED,
}


@pytest.mark.parametrize("act", list(Act))
@pytest.mark.parametrize("state", list(State))
def test_each_act_from_each_state(act: Act, state: State) -> None:
    if (act, state) in MOVES:
        assert check(act, state) == MOVES[act, state]
        return
    with pytest.raises(WrongState) as refused:
        check(act, state)
    assert f"the ticket is {state}" in str(refused.value)


def test_a_closed_ticket_takes_no_act() -> None:
    for act in Act:
        with pytest.raises(WrongState):
            check(act, State.CLOSED)
