"""The citizen's open case: their latest case that no channel has a rating of yet (一事一评), for a
conversation that begins without naming one.

What counts as theirs depends on what the channel knows of the citizen:

* :func:`invited_case` — a phone number: the case its latest invitation asked about, while that
  invitation is within the survey's expiry (a caller is asked about what they were invited to);
* :func:`finished_case` — a chat contact, as a service record keeps it (``wechat_hash``…): the
  case most recently finished, invited or not (the chat menu's "rate").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from bot.runtime import Runtime
from storage.models import UTCDateTime
from storage.tables import invitations, ratings, records

CONTACT_COLUMNS = ("phone_hash", "wechat_hash", "telegram_hash")


def _latest_unrated(query: sa.Select[Any], *order_by: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """``query``'s latest case (by ``order_by``) that has no rating in any channel."""
    rated = sa.select(ratings.c.id).where(ratings.c.record_id == records.c.id).exists()
    return query.where(~rated).order_by(*order_by).limit(1)


# Built once: every call start asks it, and building it costs more than running it.
INVITED = _latest_unrated(
    sa.select(records.c.record_no)
    .join(invitations, invitations.c.record_id == records.c.id)
    .where(
        invitations.c.contact_hash == sa.bindparam("contact_hash"),
        invitations.c.status == "sent",
        invitations.c.sent_at >= sa.bindparam("since", type_=UTCDateTime),
    ),
    invitations.c.sent_at.desc(),
)
FINISHED = {
    column: _latest_unrated(
        sa.select(records.c.record_no).where(records.c[column] == sa.bindparam("contact_hash")),
        records.c.completed_at.desc(),
        records.c.id.desc(),
    )
    for column in CONTACT_COLUMNS
}


def invited_case(rt: Runtime, contact_hash: str) -> str | None:
    """The case of the contact's latest invitation that is still open: sent within the survey's
    expiry and not rated in any channel."""
    since = rt.clock() - timedelta(hours=rt.survey.expires_after_hours)
    with rt.db.connect() as db:
        return db.execute(INVITED, {"contact_hash": contact_hash, "since": since}).scalar()


def finished_case(rt: Runtime, contact_column: str, contact_hash: str) -> str | None:
    """The number of the contact's most recently finished case that has no rating (in any
    channel), found by the record's contact hash column (``wechat_hash``, ``telegram_hash``…)."""
    with rt.db.connect() as db:
        return db.execute(FINISHED[contact_column], {"contact_hash": contact_hash}).scalar()
