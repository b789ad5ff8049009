"""How an act's refusal is answered, for the API (an HTTP error) and the pages (the page again with
the reason) alike: another department's ticket or a role that may not 403, unknown id 404, a
state the act cannot start from 409, a bad field 422."""

from __future__ import annotations

from bot.tickets import acts, appeals, guard, publishing
from bot.tickets.states import WrongState

CONFLICTS = (  # 409
    WrongState,
    acts.AppealedBefore,
    appeals.NotPending,
    publishing.NotPublishable,
    publishing.PublishedBefore,
    publishing.WithdrawnBefore,
)
REFUSALS = (guard.Refused, appeals.NotADecider, LookupError, *CONFLICTS, ValueError)


def status_of(refusal: Exception) -> int:
    """The HTTP status that says why ``refusal`` (one of :data:`REFUSALS`) was refused."""
    if isinstance(refusal, guard.Refused | appeals.NotADecider):
        return 403
    if isinstance(refusal, LookupError):
        return 404
    if isinstance(refusal, CONFLICTS):
        return 409
    return 422
