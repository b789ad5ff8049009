"""One guard decides who may do what to which ticket."""

from __future__ import annotations

import pytest

from bot.tickets.guard import READ, Refused, check
from bot.tickets.states import Act
from bot.web.audit import Actor

OURS, THEIRS = "市自然资源局", "市市场监督管理局"


def actor(role: str, *departments: str) -> Actor:
    return Actor(
        kind="key", id=1, name=f"{role} key", role=role, departments=frozenset(departments)
    )


EVERY = [READ, *Act]
MAY = {
    "department": {READ, Act.ACKNOWLEDGE, Act.RESPOND, Act.APPEAL, Act.REVEAL_CONTACT},
    "supervisor": {READ, Act.ASSIGN, Act.CHANGE_TIER, Act.REVEAL_CONTACT},
    "reviewer": {READ},
    "admin": set(EVERY),
    "platform": set(),
    "parking": set(),
}


@pytest.mark.parametrize("role", list(MAY))
@pytest.mark.parametrize("act", EVERY)
def test_each_role_on_its_own_departments_ticket(role: str, act: str) -> None:
    who = actor(role, OURS)
    if act in MAY[role]:
        check(who, act, OURS)
    else:
        with pytest.raises(Refused, match=f"a {role} may not"):
            check(who, act, OURS)


@pytest.mark.parametrize("act", sorted(MAY["department"]))
def test_a_department_may_not_touch_another_departments_ticket(act: str) -> None:
    with pytest.raises(Refused, match="another department"):
        check(actor("department", OURS), act, THEIRS)
    with pytest.raises(Refused, match="another department"):
        check(actor("department", OURS), act, None)  # the triage queue is the supervisors'


def test_a_key_of_two_departments_acts_for_both() -> None:
    both = actor("department", OURS, THEIRS)
    check(both, Act.RESPOND, OURS)
    check(both, Act.RESPOND, THEIRS)


def test_who_lists_which_departments() -> None:
    assert actor("department", OURS).departments_seen == frozenset({OURS})
    for role in ("supervisor", "reviewer", "admin"):
        assert actor(role).departments_seen is None
