"""Who may do what to which ticket: one rule for the API and the pages alike.

- a ``department`` actor sees and acts on the tickets of its own departments (谁办理、谁负责):
  acknowledges, responds, appeals, asks for the citizen's number for the callback;
- a ``supervisor`` reads every ticket, triages (assigns, reassigns), changes tiers, may ask for
  the number for the callback;
- a ``reviewer`` reads every ticket to decide appeals and flags, but never acts as a department;
- ``admin`` may do everything.
"""

from __future__ import annotations

from bot.tickets.states import Act
from bot.web.audit import Actor

READ = "read"

DEPARTMENT_ACTS = frozenset({READ, Act.ACKNOWLEDGE, Act.RESPOND, Act.APPEAL, Act.REVEAL_CONTACT})
SUPERVISOR_ACTS = frozenset({READ, Act.ASSIGN, Act.CHANGE_TIER, Act.REVEAL_CONTACT})
REVIEWER_ACTS = frozenset({READ})


class Refused(Exception):
    """The actor may not do this (403); the message says why."""


def check(actor: Actor, act: str, department: str | None) -> None:
    """Nothing when ``actor`` may do ``act`` (an :class:`Act` or ``read``) to a ticket of
    ``department`` (``None``: not yet assigned); else :class:`Refused`."""
    if actor.role == "admin":
        return
    allowed = {
        "department": DEPARTMENT_ACTS,
        "supervisor": SUPERVISOR_ACTS,
        "reviewer": REVIEWER_ACTS,
    }.get(actor.role, frozenset())
    if act not in allowed:
        raise Refused(f"a {actor.role} may not {act} a ticket")
    if actor.role == "department" and department not in actor.departments:
        raise Refused("this ticket belongs to another department")
