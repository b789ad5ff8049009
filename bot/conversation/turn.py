"""The glue between a channel, the engine and the stores.

One turn: take the conversation's lock, answer a re-delivered message with the reply it already
got, run the pure engine, carry out its events in one database transaction, remember the new
session together with the reply — then release the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from bot import metrics
from bot.conversation.optouts import opt_in, opt_out
from bot.conversation.ratings import follow_up_due, save_late_recording, save_rating
from bot.rewards.vouchers import issue_voucher, voucher_for_case
from bot.runtime import Runtime
from dialogs import engine
from dialogs.events import (
    Answered,
    Event,
    InboundEvent,
    OptedIn,
    OptedOut,
    RatingClosed,
    Say,
    Sprint,
    VoucherIssued,
)
from dialogs.session import Session
from dialogs.survey import TextStep
from locales import ids
from storage.tables import invitations, ratings, records

log = logging.getLogger("ratebot.conversation")

Render = Callable[[Sequence[Event], str], str]

# An open session outlives its expiry by this much, so the worker can still finalize it.
EXPIRY_GRACE = timedelta(days=1)
# Each conversation channel (the adapter) with the provider it runs on and its 评价渠道 in the
# national channel list; a chat opened by scanning a case's QR code counts as qr_code.
PROVIDERS = {"sms": "twilio", "voice": "twilio", "telegram": "telegram", "wechat": "wechat"}
NATIONAL_CHANNELS = {"sms": "sms", "voice": "phone", "telegram": "mobile", "wechat": "mobile"}


def national_channel(channel: str, session: Session) -> str:
    """The national 评价渠道 of a rating made in ``channel``."""
    return "qr_code" if session.source == "qr_code" else NATIONAL_CHANNELS.get(channel, "mobile")


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer one inbound message with, rendered for its channel.

    ``repeated``: the provider delivered this message before and this is the first answer again.
    A channel that answers in the HTTP response (SMS, WeChat's passive reply) answers the same; a
    channel that sends through an API (Telegram) must not send it a second time.
    """

    text: str
    repeated: bool = False


def conversation_key(channel: str, contact_hash: str) -> str:
    return f"{channel}:{contact_hash}"


def split_key(key: str) -> tuple[str, str]:
    """(channel, contact hash) of a conversation key."""
    channel, _, contact_hash = key.partition(":")
    return channel, contact_hash


def load_session(data: dict[str, Any] | None) -> Session | None:
    return Session.model_validate(data) if data else None


def session_ttl(session: Session, now: datetime) -> float:
    """Seconds to keep ``session``: a closed one until its expiry (late messages hear "already
    rated"), an open one a grace period longer (the worker finalizes it)."""
    keep_until = session.expires_at + (EXPIRY_GRACE if session.step is not None else timedelta(0))
    return max(1.0, (keep_until - now).total_seconds())


class Conversations:
    """Runs citizens' conversations for every channel."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def handle(self, event: InboundEvent, render: Render) -> Reply:
        """The reply to one inbound message. A re-delivered message (same delivery id) gets the
        first reply again and changes nothing."""

        async def step(before: Session | None, now: datetime) -> Sprint:
            if _late_recording(event, before):
                assert before is not None
                return await run_in_threadpool(self._keep_late_recording, before, event)
            sprint = engine.resume(
                self.rt.survey, before, event, now=now, new_session_id=str(uuid4())
            )
            if _touches_records(sprint):
                sprint = await run_in_threadpool(
                    self.apply, sprint, before, event.channel, event.sender, now
                )
            elif before is not None and before.record_no is not None:
                sprint = await self._reminding(sprint, before.record_no)
            return sprint

        reply = await self._turn(event, step, render)
        metrics.TURNS.labels(event.channel).inc()
        return reply

    async def open_case(
        self, event: InboundEvent, record_no: str, render: Render, *, source: str
    ) -> Reply:
        """The citizen asked to rate case ``record_no`` (scanned its QR code, followed its link),
        or answered a follow-up call about it (``source`` callback: its second rating).

        An unknown case, or one rated already (一事一评: from any channel, even still in
        progress there), is answered so; the same case again asks the current question again;
        otherwise the rating of that case begins, closing a conversation about another case.
        """
        evaluation_count = 2 if source == "callback" else 1

        async def step(before: Session | None, now: datetime) -> Sprint:
            case = await run_in_threadpool(_case, self.rt, record_no)
            if case is None:
                return Sprint(before, [Say(ids.CASE_UNKNOWN)])
            # A callback's re-rating is open only while the follow-up is due (then once).
            rated = case.rated if evaluation_count == 1 else not case.follow_up_due
            if rated:
                told = Sprint(before, [Say(engine.ALREADY_RATED)])
                return await self._reminding(told, record_no)
            if before is not None and before.step is not None:
                if before.record_no == record_no:  # the same case: its current question again
                    return engine.ask(self.rt.survey, before)
                await self._close(event, before, now, reason="replaced")
            sprint = engine.start(
                self.rt.survey,
                session_id=str(uuid4()),
                now=now,
                locale=event.locale or case.locale,
                record_no=record_no,
                invitation_id=case.invitation_id,
            )
            assert sprint.session is not None
            opened = {"source": source, "evaluation_count": evaluation_count}
            return Sprint(sprint.session.model_copy(update=opened), sprint.events)

        return await self._turn(event, step, render)

    async def ask(
        self, event: InboundEvent, render: Render, *, preface: Sequence[Event] = ()
    ) -> Reply:
        """The question the conversation is at — the first one, opening an unsolicited rating,
        when none is open; "already rated" for a closed one — after ``preface`` (a welcome).
        For a chat's /start, /rate, a new follower, a menu's "rate"."""

        async def step(before: Session | None, now: datetime) -> Sprint:
            if before is None:
                locale = event.locale or self.rt.settings.default_locale
                sprint = engine.start(
                    self.rt.survey, session_id=str(uuid4()), now=now, locale=locale
                )
            else:
                sprint = engine.ask(self.rt.survey, before)
            return Sprint(sprint.session, [*preface, *sprint.events])

        return await self._turn(event, step, render)

    async def close(self, event: InboundEvent) -> None:
        """The citizen left the channel (WeChat's ``unsubscribe``): end an open conversation
        quietly, as its expiry would (a rating with an overall level is kept, ``incomplete``), and
        forget it. Nothing is said; a re-delivered event changes nothing."""

        async def step(before: Session | None, now: datetime) -> Sprint:
            if before is not None and before.step is not None:
                await self._close(event, before, now, reason="expired")
            return Sprint(None, [])

        await self._turn(event, step, lambda events, locale: "")

    async def hang_up(self, event: InboundEvent) -> list[tuple[VoucherIssued, str]]:
        """The call ended: an open conversation is closed as its expiry would close it (a rating
        with an overall level is kept; ``complete`` if only optional questions were left). A
        closed one stays until it expires, so a caller who calls straight back is told the case
        is rated, as a texter would be. Returns the voucher the closing earned (with the
        conversation's locale) for the caller to send, once: a re-delivery returns none.
        The end of an earlier call, reported after the citizen called again, changes nothing."""
        earned: list[tuple[VoucherIssued, str]] = []

        async def step(before: Session | None, now: datetime) -> Sprint:
            if before is None or before.step is None:
                return Sprint(before, [])
            if before.call_sid not in (None, event.call_sid):
                log.info("the end of an earlier call; conversation %s is on another", before.id)
                return Sprint(before, [])
            closing = await self._close(event, before, now, reason="hung_up")
            earned.extend(
                (e, before.locale) for e in closing.events if isinstance(e, VoucherIssued)
            )
            return Sprint(closing.session, [])

        await self._turn(event, step, lambda events, locale: "", call_ended=True)
        return earned

    def _keep_late_recording(self, session: Session, event: InboundEvent) -> Sprint:
        """The recording answers the question the call ended at: kept with the rating, the
        conversation stays closed, nothing is said (the caller is gone)."""
        assert session.left_at is not None and event.recording is not None
        step = self.rt.survey.step(session.left_at)
        if not isinstance(step, TextStep):
            return Sprint(session, [])
        with self.rt.db.begin() as db:
            kept = save_late_recording(db, session.id, step.field, event.recording)
        if not kept:
            return Sprint(session, [])
        answers = {**session.answers}
        answers["recordings"] = {**answers.get("recordings", {}), step.field: event.recording}
        return Sprint(session.model_copy(update={"answers": answers}), [])

    async def _reminding(self, sprint: Sprint, record_no: str) -> Sprint:
        """Telling a citizen their case is rated also tells its voucher again, if it earned one:
        the way back to a lost code."""
        if Say(engine.ALREADY_RATED) not in sprint.events:
            return sprint
        rt = self.rt
        voucher = await run_in_threadpool(
            voucher_for_case, rt.db, rt.privacy, rt.settings.public_url, record_no
        )
        return sprint if voucher is None else Sprint(sprint.session, [*sprint.events, voucher])

    async def _close(
        self,
        event: InboundEvent,
        session: Session,
        now: datetime,
        *,
        reason: Literal["expired", "replaced", "hung_up"],
    ) -> Sprint:
        """Close an open conversation that is being left or replaced, keeping its answers."""
        closing = engine.expire(self.rt.survey, session, now=now, reason=reason)
        return await run_in_threadpool(
            self.apply, closing, session, event.channel, event.sender, now
        )

    async def _turn(
        self,
        event: InboundEvent,
        step: Callable[[Session | None, datetime], Awaitable[Sprint]],
        render: Render,
        *,
        call_ended: bool = False,
    ) -> Reply:
        """One turn of ``event``'s conversation: under its lock, answer a re-delivery with the
        first reply; else run ``step`` on the session and keep what it returns, together with
        the rendered reply. An event of a phone call that goes on puts the session on that call;
        an event from a chat app keeps the chat's (encrypted) address on it, for the worker."""
        key = conversation_key(event.channel, event.sender)
        async with self.rt.store.turn(key, event.delivery_id) as turn:
            if turn.previous_reply is not None:
                metrics.DUPLICATE_DELIVERIES.labels(event.channel).inc()
                return Reply(turn.previous_reply, repeated=True)
            before = load_session(turn.session)
            now = self.rt.clock()
            sprint = await step(before, now)
            after = sprint.session
            if after is not None and event.call_sid is not None and not call_ended:
                after = after.model_copy(update={"call_sid": event.call_sid})  # goes on in it
            if after is not None and after.reply_to is None and event.reply_to is not None:
                after = after.model_copy(update={"reply_to": event.reply_to})  # the same chat
            known = after or before
            locale = known.locale if known else (event.locale or self.rt.settings.default_locale)
            reply = render(sprint.events, locale)
            turn.save(
                after.model_dump(mode="json") if after else None,
                ttl=session_ttl(after, now) if after else None,
                reply=reply,
            )
        return Reply(reply)

    def apply(
        self, sprint: Sprint, before: Session | None, channel: str, contact_hash: str, now: datetime
    ) -> Sprint:
        """Carry out the engine's events that touch the records, in one transaction. Returns the
        sprint as it should be told to the citizen."""
        events = list(sprint.events)
        closed = next((e for e in events if isinstance(e, RatingClosed)), None)
        current = sprint.session
        # What RatingClosed closes: the session of this turn, unless the engine replaced it
        # (a restart opens a new one) or forgot it (STOP) — then the one before the turn.
        replaced = before is not None and (current is None or current.id != before.id)
        closing = before if replaced else current
        writes: list[tuple[Session, str | None]] = []
        if closed is not None and closing is not None:
            writes.append((closing, closed.outcome))
        if current is not None and current.step is not None and _saves_progress(events, current):
            # An overall level makes it a rating, kept even if the citizen leaves it unfinished.
            writes.append((current, None))
        session = closing or current
        voucher: VoucherIssued | None = None
        try:
            with self.rt.db.begin() as db:
                for event in sprint.events:
                    if isinstance(event, OptedOut) and not opt_out(db, contact_hash, channel, now):
                        # Confirmed once: a repeated STOP gets no second confirmation.
                        events = [e for e in events if not isinstance(e, Say)]
                    elif isinstance(event, OptedIn):
                        opt_in(db, contact_hash)
                for target, outcome in writes:
                    save_rating(
                        db,
                        target,
                        outcome=outcome,
                        conversation_key=conversation_key(channel, contact_hash),
                        channel=national_channel(channel, target),
                        provider=PROVIDERS.get(channel, channel),
                        citizen_hash=contact_hash,
                        now=now,
                        look_at=engine.look_again_at(self.rt.survey, target, now),
                    )
                    if outcome == "complete" and target.record_no is not None:
                        # In the rating's transaction: committed with it, or not at all.
                        voucher = issue_voucher(
                            db, self.rt.privacy, self.rt.settings.public_url, target.id, now
                        )
        except IntegrityError:  # the case was rated in another conversation (一事一评)
            log.info(
                "case %s already rated; conversation %s closed",
                session and session.record_no,
                session and session.id,
            )
            assert session is not None  # only rating writes raise it, and they have a session
            done = session.model_copy(update={"step": None, "outcome": "discarded"})
            return Sprint(done, [Say(engine.ALREADY_RATED)])
        if closed is not None:
            metrics.RATINGS_CLOSED.labels(channel, closed.outcome).inc()
        if voucher is not None:
            events.append(voucher)  # told after the thanks
        return Sprint(sprint.session, events)


def _late_recording(event: InboundEvent, before: Session | None) -> bool:
    """A recording posted after its own call's end closed the conversation: Twilio may report
    the end of a call whose caller hung up while recording before it posts the recording."""
    return (
        event.recording is not None
        and before is not None
        and before.step is None
        and before.left_at is not None
        and before.call_sid is not None
        and before.call_sid == event.call_sid
    )


def _is_level(event: Event) -> bool:
    return isinstance(event, Answered) and event.field == "level"


def _saves_progress(events: Sequence[Event], session: Session) -> bool:
    """Whether an open conversation's answers so far must be written now: an overall level makes
    it a rating, and a spoken answer's recording must be there when its transcript comes."""
    spoken = session.answers.get("recordings") or {}
    return any(_is_level(e) or (isinstance(e, Answered) and e.field in spoken) for e in events)


def _touches_records(sprint: Sprint) -> bool:
    return any(isinstance(e, RatingClosed | OptedOut | OptedIn) for e in sprint.events) or (
        sprint.session is not None and _saves_progress(sprint.events, sprint.session)
    )


@dataclass(frozen=True, slots=True)
class Case:
    locale: str
    invitation_id: int | None
    rated: bool  # a rating exists, finished or still in progress in some conversation
    follow_up_due: bool  # a bad review waits for its callback's re-rating (回访)


def _case(rt: Runtime, record_no: str) -> Case | None:
    with rt.db.connect() as db:
        record = db.execute(
            sa.select(records.c.id, records.c.locale).where(records.c.record_no == record_no)
        ).first()
        if record is None:
            return None
        invitation_id = db.execute(
            sa.select(sa.func.max(invitations.c.id)).where(invitations.c.record_id == record.id)
        ).scalar()
        rated = db.execute(sa.select(ratings.c.id).where(ratings.c.record_id == record.id)).first()
        follow_up = follow_up_due(db, record.id)
    return Case(
        locale=record.locale,
        invitation_id=invitation_id,
        rated=rated is not None,
        follow_up_due=follow_up,
    )


def latest_unrated_case(rt: Runtime, contact_column: str, contact_hash: str) -> str | None:
    """The number of the contact's most recently finished case that has no rating (in any
    channel), found by the record's contact hash column (``wechat_hash``, ``telegram_hash``…)."""
    column = records.c[contact_column]
    rated = sa.select(ratings.c.id).where(ratings.c.record_id == records.c.id).exists()
    with rt.db.connect() as db:
        return db.execute(
            sa.select(records.c.record_no)
            .where(column == contact_hash, ~rated)
            .order_by(records.c.completed_at.desc(), records.c.id.desc())
            .limit(1)
        ).scalar()
