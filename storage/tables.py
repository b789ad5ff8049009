"""The models' tables, for Core queries (``sa.select(ratings.c.level)``): one handle each.

SQLModel builds ``__table__`` at class creation but does not declare it to type checkers; it is
read here once, typed, instead of in every module that writes SQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage.models import (
    ApiKey,
    ApiKeyDepartment,
    ApiKeyHall,
    Appeal,
    AuditEntry,
    CallAttempt,
    Complaint,
    Flag,
    FlaggedCitizen,
    Hall,
    Invitation,
    OptOut,
    OutboundMessage,
    PublishedCase,
    PublishedRanking,
    Rating,
    RatingDimension,
    RatingRecording,
    Redemption,
    ResultChange,
    ResultCount,
    ResultDimension,
    ServiceRecord,
    StaffContact,
    StaffSession,
    Ticket,
    UpstreamItem,
    User,
    UserDepartment,
    Voucher,
)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The table of a ``table=True`` model."""
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    return table


records = table_of(ServiceRecord)
invitations = table_of(Invitation)
outbound_messages = table_of(OutboundMessage)
ratings = table_of(Rating)
dimensions = table_of(RatingDimension)
complaints = table_of(Complaint)
recordings = table_of(RatingRecording)
opt_outs = table_of(OptOut)
api_keys = table_of(ApiKey)
key_halls = table_of(ApiKeyHall)
call_attempts = table_of(CallAttempt)
halls = table_of(Hall)
vouchers = table_of(Voucher)
redemptions = table_of(Redemption)
flagged = table_of(FlaggedCitizen)
tickets = table_of(Ticket)
appeals = table_of(Appeal)
flags = table_of(Flag)
staff_contacts = table_of(StaffContact)
key_departments = table_of(ApiKeyDepartment)
audit_log = table_of(AuditEntry)
result_changes = table_of(ResultChange)
result_counts = table_of(ResultCount)
result_dimensions = table_of(ResultDimension)
published_rankings = table_of(PublishedRanking)
upstream_outbox = table_of(UpstreamItem)
users = table_of(User)
user_departments = table_of(UserDepartment)
staff_sessions = table_of(StaffSession)
published_cases = table_of(PublishedCase)
