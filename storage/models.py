"""The records: SQLModel tables on SQLite (default) or PostgreSQL, migrated with Alembic.

Personal data never sits here in clear: a contact (phone number, openid, chat id) is stored as a
keyed hash for lookup, an encrypted copy for sending and a mask for display
(``storage.privacy``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no time zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: ratebot stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _time(*, index: bool = False, nullable: bool = True) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable)


class ServiceRecord(SQLModel, table=True):
    """A finished service case (办件) reported by the service platform."""

    __tablename__ = "service_records"

    id: int | None = Field(default=None, primary_key=True)
    record_no: str = Field(max_length=64, unique=True)  # 办件编号
    item_code: str = Field(max_length=64, index=True)  # 事项编码
    item_name: str = Field(max_length=200)
    department: str = Field(max_length=100, index=True)
    district: str = Field(max_length=32, index=True)  # administrative division code
    hall: str = Field(max_length=64, index=True)
    window: str = Field(max_length=32)
    clerk: str | None = Field(default=None, max_length=64)
    completed_at: datetime | None = _time()
    locale: str = Field(max_length=16)
    phone_hash: str | None = Field(default=None, max_length=64, index=True)
    phone_enc: str | None = Field(default=None, max_length=512)
    phone_mask: str | None = Field(default=None, max_length=32)
    wechat_hash: str | None = Field(default=None, max_length=64, index=True)
    wechat_enc: str | None = Field(default=None, max_length=512)
    telegram_hash: str | None = Field(default=None, max_length=64, index=True)
    telegram_enc: str | None = Field(default=None, max_length=512)
    created_at: datetime | None = _time()


class Invitation(SQLModel, table=True):
    """An invitation to rate one case, over one channel.

    ``status``: scheduled (``reason`` quiet_hours: waiting for them to end) → sending → sent
    | failed (``reason`` send_failed); or suppressed, with ``reason`` (opted_out, cooldown,
    no_contact).
    """

    __tablename__ = "invitations"
    __table_args__ = (sa.Index("ix_invitations_due", "status", "scheduled_at"),)

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="service_records.id", index=True)
    channel: str = Field(max_length=16)
    contact_hash: str | None = Field(default=None, max_length=64, index=True)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=32)
    scheduled_at: datetime | None = _time()
    sent_at: datetime | None = _time(index=True)
    remind_at: datetime | None = _time(index=True)
    reminded_at: datetime | None = _time()
    created_at: datetime | None = _time()


class OutboundMessage(SQLModel, table=True):
    """Every message ratebot sent on its own initiative, with the provider's delivery status."""

    __tablename__ = "outbound_messages"

    id: int | None = Field(default=None, primary_key=True)
    invitation_id: int | None = Field(default=None, foreign_key="invitations.id", index=True)
    purpose: str = Field(max_length=16)  # invitation | reminder
    channel: str = Field(max_length=16)
    to_mask: str = Field(max_length=32)
    provider: str = Field(max_length=16)  # twilio | console
    provider_id: str | None = Field(default=None, max_length=64, unique=True)
    status: str = Field(max_length=32)
    error: str | None = Field(default=None, max_length=255)
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()


class Rating(SQLModel, table=True):
    """One citizen's rating. ``level`` is 1–5 with 5 best (非常满意); 1–2 is a bad review (差评).

    ``status``: in_progress (an overall level is in, the conversation goes on), complete, or
    incomplete (ended before every step was answered). One rating per case and evaluation count.
    """

    __tablename__ = "ratings"
    __table_args__ = (
        sa.UniqueConstraint("record_id", "evaluation_count", name="uq_ratings_record_count"),
        sa.Index("ix_ratings_status_next_look", "status", "next_look_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(max_length=36, unique=True)
    conversation_key: str = Field(max_length=100)  # where its state lives (timers find it there)
    record_id: int | None = Field(default=None, foreign_key="service_records.id", index=True)
    invitation_id: int | None = Field(default=None, foreign_key="invitations.id")
    evaluation_count: int = 1  # 1 first rating, 2 re-rating after rectification
    # 评价渠道 from the national list (sms, phone, mobile, qr_code, hall_terminal, pc), and the
    # concrete provider it came through (twilio, wechat, telegram).
    channel: str = Field(max_length=16, index=True)
    provider: str = Field(max_length=16)
    citizen_hash: str | None = Field(default=None, max_length=64, index=True)
    locale: str = Field(max_length=16)
    level: int = Field(index=True)
    comment: str | None = Field(default=None, sa_type=sa.Text)
    status: str = Field(max_length=16)
    unsolicited: bool = False
    created_at: datetime | None = _time(index=True)
    submitted_at: datetime | None = _time(index=True)  # the day it counts on
    updated_at: datetime | None = _time()
    # While in progress: when the worker next looks whether its conversation expired or is done
    # (dialogs.engine.look_again_at); the conversation itself holds its expiry.
    next_look_at: datetime | None = _time()
    # An upheld appeal takes the rating out of the statistics (never deletes it): why, by whom.
    excluded_at: datetime | None = _time()
    excluded_reason: str | None = Field(default=None, max_length=255)
    excluded_by: str | None = Field(default=None, max_length=100)
    # A pending or confirmed fraud flag holds it out of the statistics and of vouchers.
    flagged: bool = False


class RatingDimension(SQLModel, table=True):
    """One dimension's level (服务态度, 工作效率, …): the dimension ids come from the survey."""

    __tablename__ = "rating_dimensions"

    rating_id: int = Field(foreign_key="ratings.id", primary_key=True)
    dimension: str = Field(max_length=32, primary_key=True)
    level: int


class Complaint(SQLModel, table=True):
    """What went wrong in a bad review, and whether the citizen wants a callback (回访)."""

    __tablename__ = "complaints"

    id: int | None = Field(default=None, primary_key=True)
    rating_id: int = Field(foreign_key="ratings.id", unique=True)
    problems: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    details: str | None = Field(default=None, sa_type=sa.Text)
    wants_callback: bool | None = None
    callback_at: datetime | None = _time()  # when its callback (回访) call was scheduled


class OptOut(SQLModel, table=True):
    """A contact that asked for no more invitations (STOP/TD/退订)."""

    __tablename__ = "opt_outs"

    id: int | None = Field(default=None, primary_key=True)
    contact_hash: str = Field(max_length=64, unique=True)
    channel: str = Field(max_length=16)
    created_at: datetime | None = _time()


class ApiKey(SQLModel, table=True):
    """An API key for an integrator. Only the SHA-256 of the key is kept."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    role: str = Field(
        max_length=16
    )  # platform | admin | parking | department | supervisor | reviewer
    key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime | None = _time()
    revoked_at: datetime | None = _time()


class RatingRecording(SQLModel, table=True):
    """A spoken answer to a free-text step (comment, complaint details) on the phone: Twilio's
    recording URL, and its transcript when Twilio sends one."""

    __tablename__ = "rating_recordings"

    rating_id: int = Field(foreign_key="ratings.id", primary_key=True)
    field: str = Field(max_length=32, primary_key=True)  # the step's field: comment, …
    url: str = Field(max_length=500, index=True)
    transcription: str | None = Field(default=None, sa_type=sa.Text)


class CallAttempt(SQLModel, table=True):
    """One outbound call placed (or to be placed): ``purpose`` invitation (rate the case by
    phone) or callback (回访: follow up a bad review and ask for the case's second rating).

    ``status``: scheduled → calling (claimed by a worker) → Twilio's call statuses (queued,
    ringing, in-progress, completed, busy, no-answer, failed, canceled), or ``machine`` when an
    answering machine picked up. A busy, unanswered or machine-answered attempt schedules the
    next one, up to the configured count, inside calling hours.
    """

    __tablename__ = "call_attempts"
    __table_args__ = (sa.Index("ix_call_attempts_due", "status", "scheduled_at"),)

    id: int | None = Field(default=None, primary_key=True)
    invitation_id: int = Field(foreign_key="invitations.id", index=True)
    purpose: str = Field(default="invitation", max_length=16)
    attempt: int = 1
    status: str = Field(max_length=16)
    call_sid: str | None = Field(default=None, max_length=64, unique=True)
    answered_by: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, max_length=255)
    scheduled_at: datetime | None = _time()
    started_at: datetime | None = _time(index=True)
    ended_at: datetime | None = _time()


# --- parking rewards ---------------------------------------------------------------------


class Hall(SQLModel, table=True):
    """A service hall (政务服务大厅) and whether a valid rating earns free parking there.

    A service record's ``hall`` names the hall by its ``code`` (or, for platforms that report
    names, by its ``name``).
    """

    __tablename__ = "halls"

    code: str = Field(max_length=64, primary_key=True)
    name: str = Field(max_length=100, index=True)
    timezone: str = Field(max_length=64)
    parking_enabled: bool = False
    free_minutes: int = 0
    valid_hours: int = 0  # how long after issue a voucher can be used
    updated_at: datetime | None = _time()


class Voucher(SQLModel, table=True):
    """Free parking earned by one valid rating: one per case, whatever the rating's level.

    The code is never stored in clear: ``code_hash`` (keyed HMAC) finds it, ``code_enc`` (an
    encrypted copy) lets a channel say it again. ``state``: issued → redeemed | expired |
    revoked; an issued voucher past ``expires_at`` counts as expired even before the worker marks
    it.
    """

    __tablename__ = "vouchers"
    __table_args__ = (sa.Index("ix_vouchers_state_expires", "state", "expires_at"),)

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    code_enc: str = Field(max_length=512)
    record_id: int = Field(foreign_key="service_records.id", unique=True)
    rating_id: int = Field(foreign_key="ratings.id", unique=True)
    hall_code: str = Field(max_length=64, foreign_key="halls.code", index=True)
    free_minutes: int
    state: str = Field(max_length=16)
    issued_at: datetime | None = _time(index=True)
    expires_at: datetime | None = _time()
    redeemed_at: datetime | None = _time()
    minutes_granted: int | None = None
    lot: str | None = Field(default=None, max_length=64)
    plate_hash: str | None = Field(default=None, max_length=64)  # keyed hash: a plate is personal
    entered_at: datetime | None = _time()
    exited_at: datetime | None = _time()
    redeemed_by: int | None = Field(default=None, foreign_key="api_keys.id")
    revoked_at: datetime | None = _time()
    revoke_reason: str | None = Field(default=None, max_length=255)
    closed_at: datetime | None = _time()  # when it left ``issued`` (redeemed, expired, revoked)


class Redemption(SQLModel, table=True):
    """The first answer to a redeem request with an ``Idempotency-Key``, per API key: a retry of
    the same request gets it again instead of 409."""

    __tablename__ = "redemptions"
    __table_args__ = (
        sa.UniqueConstraint("api_key_id", "idempotency_key", name="uq_redemptions_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    api_key_id: int = Field(foreign_key="api_keys.id")
    idempotency_key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)  # SHA-256 of the code and the body
    status_code: int
    response: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime | None = _time()


class ApiKeyHall(SQLModel, table=True):
    """A hall a ``parking`` key may check and redeem vouchers of."""

    __tablename__ = "api_key_halls"

    api_key_id: int = Field(foreign_key="api_keys.id", primary_key=True)
    hall_code: str = Field(max_length=64, primary_key=True)


class FlaggedCitizen(SQLModel, table=True):
    """A citizen (contact hash) whose ratings were found fraudulent: their ratings still count as
    ratings, but earn no parking voucher."""

    __tablename__ = "flagged_citizens"

    citizen_hash: str = Field(max_length=64, primary_key=True)
    reason: str = Field(max_length=255)
    created_at: datetime | None = _time()


# --- the closed loop on bad reviews --------------------------------------------------------


class Ticket(SQLModel, table=True):
    """The work a bad review (差评) makes for the department that handled its case (差评工单).

    ``state``: open → acknowledged → responded → closed, or appealed on the way
    (``bot.tickets.states``). ``due_at`` is the end of the tier's last working day, moved later
    by the time spent under appeal; ``paused_at`` is set while an appeal is pending.
    """

    __tablename__ = "tickets"
    __table_args__ = (sa.Index("ix_tickets_state_due", "state", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    rating_id: int = Field(foreign_key="ratings.id", unique=True)  # one ticket per bad review
    record_id: int | None = Field(default=None, foreign_key="service_records.id", index=True)
    department: str | None = Field(default=None, max_length=100, index=True)  # None: triage
    tier: str = Field(max_length=32)
    state: str = Field(max_length=16)
    opened_at: datetime | None = _time(index=True)
    due_at: datetime | None = _time(index=True)
    paused_at: datetime | None = _time()  # an appeal is pending since
    paused_seconds: int = 0  # time spent under appeals decided so far
    state_before_appeal: str | None = Field(default=None, max_length=16)
    escalated_at: datetime | None = _time()
    acknowledged_at: datetime | None = _time()
    acknowledge_note: str | None = Field(default=None, sa_type=sa.Text)
    responded_at: datetime | None = _time()
    outcome: str | None = Field(
        default=None, max_length=16
    )  # rectified | explained | appeal_upheld
    response: str | None = Field(default=None, sa_type=sa.Text)
    feedback_at: datetime | None = _time()  # the citizen was told (claimed once)
    rerate_until: datetime | None = _time()
    rerating_id: int | None = Field(default=None, foreign_key="ratings.id")
    rerating_level: int | None = None
    closed_at: datetime | None = _time()
    closed_reason: str | None = Field(default=None, max_length=16)  # rerated | window | appeal
    updated_at: datetime | None = _time()


class Appeal(SQLModel, table=True):
    """A department's appeal of a review it thinks malicious or untrue (申诉复核), decided by a
    reviewer. One per ticket."""

    __tablename__ = "appeals"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", unique=True)
    ground: str = Field(max_length=16)  # malicious | untrue | not_ours
    statement: str = Field(sa_type=sa.Text)
    state: str = Field(max_length=16, index=True)  # pending | upheld | rejected
    filed_by: str = Field(max_length=100)
    filed_at: datetime | None = _time()
    decided_by: str | None = Field(default=None, max_length=100)
    decided_at: datetime | None = _time()
    note: str | None = Field(default=None, sa_type=sa.Text)
    reassign_to: str | None = Field(default=None, max_length=100)
    warning_at: datetime | None = _time()  # the malicious reviewer's one warning (劝诫) went out


class Flag(SQLModel, table=True):
    """A rating a fraud rule caught (刷好评, 恶意差评): kept, held out of the statistics and of
    vouchers until a reviewer confirms or clears it."""

    __tablename__ = "flags"
    __table_args__ = (sa.UniqueConstraint("rating_id", "rule", name="uq_flags_rating_rule"),)

    id: int | None = Field(default=None, primary_key=True)
    rating_id: int = Field(foreign_key="ratings.id", index=True)
    rule: str = Field(max_length=32)  # contact_ratings | staff_contact | top_burst
    detail: str = Field(max_length=255)
    state: str = Field(max_length=16, index=True)  # pending | confirmed | cleared
    created_at: datetime | None = _time()
    decided_by: str | None = Field(default=None, max_length=100)
    decided_at: datetime | None = _time()
    note: str | None = Field(default=None, sa_type=sa.Text)
    released_at: datetime | None = _time()  # cleared: the withheld voucher was issued and sent


class StaffContact(SQLModel, table=True):
    """A registered staff member's phone number or openid, as its keyed hash: their ratings are
    flagged."""

    __tablename__ = "staff_contacts"

    contact_hash: str = Field(max_length=64, primary_key=True)
    created_at: datetime | None = _time()


class ApiKeyDepartment(SQLModel, table=True):
    """A department a ``department`` key acts for."""

    __tablename__ = "api_key_departments"

    api_key_id: int = Field(foreign_key="api_keys.id", primary_key=True)
    department: str = Field(max_length=100, primary_key=True)


class AuditEntry(SQLModel, table=True):
    """One act of a person (or of ratebot itself) on a ticket, an appeal, a flag, a rating, a
    voucher or a contact. Append-only: on PostgreSQL a trigger refuses UPDATE and DELETE."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_entity", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime | None = _time(index=True)
    actor_kind: str = Field(max_length=16)  # key | user | system
    actor_id: int | None = None
    actor_name: str = Field(max_length=100)
    actor_role: str = Field(max_length=16)
    action: str = Field(max_length=32)
    entity: str = Field(max_length=16)  # ticket | appeal | flag | rating | voucher | contact
    entity_id: int
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    reason: str | None = Field(default=None, sa_type=sa.Text)


# --- results: rollups, published rankings, the push upward ---------------------------------------


class ResultChange(SQLModel, table=True):
    """A moment whose day must be counted again (``bot.results.rollups``): written in the
    transaction of every change that moves a figure — a rating finished, excluded, flagged or
    cleared; a ticket answered or its deadline moved; an invitation sent; a callback placed. The
    worker recounts the day, then deletes the rows it read."""

    __tablename__ = "result_changes"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(nullable=False)


class ResultCount(SQLModel, table=True):
    """The counted figures of one group on one day (``grain`` day) or month (``grain`` month, on
    its first day), split by department and district so that either filters any grouping. Kept
    by the worker from the raw rows; ``ratebot stats rebuild`` recomputes them."""

    __tablename__ = "result_counts"
    # A kind's rows over a range of days (a year of totals by day) without walking every kind's.
    __table_args__ = (sa.Index("ix_result_counts_kind_day", "kind", "grain", "day"),)

    grain: str = Field(max_length=8, primary_key=True)  # day | month
    day: date = Field(sa_type=sa.Date, primary_key=True)
    kind: str = Field(max_length=16, primary_key=True)  # department … clerk | channel
    key: str = Field(max_length=200, primary_key=True)
    department: str = Field(max_length=100, primary_key=True)  # '' when the rating has no case
    district: str = Field(max_length=32, primary_key=True)
    name: str = Field(max_length=200)  # what people call the key (an item's name)
    counted: int = 0
    level_1: int = 0
    level_2: int = 0
    level_3: int = 0
    level_4: int = 0
    level_5: int = 0
    level_sum: int = 0
    rerated: int = 0  # counted re-ratings (evaluation count 2)
    rerated_good: int = 0  # … that turned good (level 3 or better)
    tickets_due: int = 0  # bad reviews whose ticket falls due this day
    tickets_on_time: int = 0  # … answered (responded) by their deadline
    callbacks: int = 0  # callback calls placed (回访)
    invitations: int = 0  # invitations sent


class ResultDimension(SQLModel, table=True):
    """Per-dimension sums beside ``ResultCount``: the same key, one row per dimension."""

    __tablename__ = "result_dimensions"
    __table_args__ = (sa.Index("ix_result_dimensions_kind_day", "kind", "grain", "day"),)

    grain: str = Field(max_length=8, primary_key=True)
    day: date = Field(sa_type=sa.Date, primary_key=True)
    kind: str = Field(max_length=16, primary_key=True)
    key: str = Field(max_length=200, primary_key=True)
    department: str = Field(max_length=100, primary_key=True)
    district: str = Field(max_length=32, primary_key=True)
    dimension: str = Field(max_length=32, primary_key=True)
    rated: int = 0
    level_sum: int = 0


class PublishedRanking(SQLModel, table=True):
    """A closed period's ranking as it was published (窗口排名通报): frozen, whatever later
    exclusions do to the live figures."""

    __tablename__ = "published_rankings"
    __table_args__ = (sa.UniqueConstraint("period", "by", name="uq_published_rankings"),)

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=16)  # 2026-11 | 2026Q4 | 2026
    by: str = Field(max_length=16)
    published_at: datetime | None = _time()
    published_by: str = Field(max_length=100)
    ranking: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class UpstreamItem(SQLModel, table=True):
    """One push to the provincial platform (上报), written in the transaction of the change it
    reports: a counted rating, a re-rating, or a change of whether a rating counts. Delivered by
    the worker, exactly once per (rating, version), with its idempotency key."""

    __tablename__ = "upstream_outbox"
    __table_args__ = (
        sa.UniqueConstraint("rating_id", "version", name="uq_upstream_rating_version"),
        sa.Index("ix_upstream_state_next", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    rating_id: int = Field(foreign_key="ratings.id", index=True)
    version: int
    reason: str = Field(max_length=16)  # rating | rerating | counts | excluded
    body: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    state: str = Field(max_length=16)  # pending | sending | sent | dead
    attempts: int = 0
    next_attempt_at: datetime | None = _time()
    last_error: str | None = Field(default=None, max_length=255)
    created_at: datetime | None = _time()
    sent_at: datetime | None = _time()


# --- staff accounts and the pages (bot/pages) ---------------------------------------------------


class User(SQLModel, table=True):
    """A person who signs in to the pages: the same roles and department scoping as the API
    keys (department, supervisor, reviewer, admin). Only the Argon2 hash of the password is
    kept; a disabled account can no longer sign in and its sessions are ended."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    role: str = Field(max_length=16)  # department | supervisor | reviewer | admin
    password_hash: str = Field(max_length=255)
    created_at: datetime | None = _time()
    disabled_at: datetime | None = _time()
    password_changed_at: datetime | None = _time()


class UserDepartment(SQLModel, table=True):
    """A department a ``department`` account acts for."""

    __tablename__ = "user_departments"

    user_id: int = Field(foreign_key="users.id", primary_key=True)
    department: str = Field(max_length=100, primary_key=True)


class StaffSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept here.
    ``last_seen_at`` moves at most once a minute; idle past ``RATEBOT_SESSION_HOURS`` or
    ``ended_at`` set (sign-out, account disabled), the session is over."""

    __tablename__ = "staff_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime | None = _time()
    last_seen_at: datetime | None = _time()
    ended_at: datetime | None = _time()


class PublishedCase(SQLModel, table=True):
    """A rectified case a supervisor chose to show on the public results page: only the public
    text they wrote (no names, numbers or case numbers). Withdrawn, it is no longer shown."""

    __tablename__ = "published_cases"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", unique=True)
    text: str = Field(sa_type=sa.Text)
    published_at: datetime | None = _time(index=True)
    published_by: str = Field(max_length=100)
    withdrawn_at: datetime | None = _time()
    withdrawn_by: str | None = Field(default=None, max_length=100)
