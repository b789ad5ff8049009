"""The glue between a channel, the engine and the stores.

One turn: take the conversation's lock, answer a re-delivered message with the reply it already
got, run the pure engine, then

1. *persist*: carry out the events that touch the records in one database transaction
   (:meth:`Conversations.persist`, which says what happened: :class:`Written`);
2. *compose*: what the citizen is told, and the session kept, follows from the engine's sprint
   and what was written (:func:`compose`);

remember the new session, with the channel's marks on it, together with the rendered reply —
then release the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Concatenate, Literal, ParamSpec, TypeVar
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot import metrics
from bot.conversation.optouts import opt_in, opt_out
from bot.conversation.ratings import follow_up_due, save_late_recording, save_rating
from bot.conversation.recovery import lost_session
from bot.rewards.vouchers import issue_voucher, voucher_for_case
from bot.runtime import Runtime
from bot.tickets.opening import rating_finished
from bot.tickets.rules import rules_for
from channels import sms, telegram, voice, wechat
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
from dialogs.parser import parse_command
from dialogs.session import Session
from dialogs.survey import TextStep
from locales import ids
from storage.tables import invitations, ratings, records

log = logging.getLogger("ratebot.conversation")

Render = Callable[[Sequence[Event], str], str]
P = ParamSpec("P")
T = TypeVar("T")

# An open session outlives its expiry by this much, so the worker can still finalize it.
EXPIRY_GRACE = timedelta(days=1)
FINISHED = ("complete", "incomplete")  # the outcomes that leave a rating
# Each conversation channel with the provider it runs on, as its adapter names it, and with its
# 评价渠道 in the national channel list; a chat opened by scanning a case's QR code counts as
# qr_code.
PROVIDERS = {
    sms.CHANNEL: sms.PROVIDER,
    voice.CHANNEL: voice.PROVIDER,
    telegram.CHANNEL: telegram.PROVIDER,
    wechat.CHANNEL: wechat.PROVIDER,
}
NATIONAL_CHANNELS = {
    sms.CHANNEL: "sms",
    voice.CHANNEL: "phone",
    telegram.CHANNEL: "mobile",
    wechat.CHANNEL: "mobile",
}


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


def load_session(session_json: str | bytes | None) -> Session | None:
    """The session a store keeps as JSON text (``Turn.session_json``, ``get_json``)."""
    return Session.model_validate_json(session_json) if session_json else None


def session_ttl(session: Session, now: datetime) -> float:
    """Seconds to keep ``session``: a closed one until its expiry (late messages hear "already
    rated"), an open one a grace period longer (the worker finalizes it)."""
    keep_until = session.expires_at + (EXPIRY_GRACE if session.step is not None else timedelta(0))
    return max(1.0, (keep_until - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Written:
    """What carrying out a sprint's events did to the records (:meth:`Conversations.persist`)."""

    voucher: VoucherIssued | None = None  # the rating it completed earned free parking
    opted_out_again: bool = False  # a STOP from a contact that had opted out already
    # The conversation whose rating found its case rated by another conversation first (一事一评):
    # nothing was written.
    rated_elsewhere: Session | None = None


def compose(sprint: Sprint, written: Written) -> Sprint:
    """The sprint as it is kept and told once its events are written."""
    if written.rated_elsewhere is not None:
        done = written.rated_elsewhere.model_copy(update={"step": None, "outcome": "discarded"})
        return Sprint(done, [Say(engine.ALREADY_RATED)])
    events = sprint.events
    if written.opted_out_again:  # confirmed once: a repeated STOP gets no second confirmation
        events = [e for e in events if not isinstance(e, Say)]
    if written.voucher is not None:
        events = [*events, written.voucher]  # told after the thanks
    return sprint if events is sprint.events else Sprint(sprint.session, events)


class Conversations:
    """Runs citizens' conversations for every channel."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.ticket_rules = rules_for(runtime.settings.tickets_file, runtime.settings.timezone)

    async def handle(self, event: InboundEvent, render: Render) -> Reply:
        """The reply to one inbound message. A re-delivered message (same delivery id) gets the
        first reply again and changes nothing."""

        async def act(before: Session | None, now: datetime) -> Sprint:
            sprint = None
            if before is None:
                before = await self._lost(event, now)
                if _answered_before(before) and parse_command(event.button or event.text) is None:
                    assert before is not None
                    sprint = engine.recover(self.rt.survey, before, event, now=now)
            if sprint is None:
                if _late_recording(event, before):
                    assert before is not None
                    return await self._keep_late_recording(before, event)
                sprint = engine.resume(
                    self.rt.survey, before, event, now=now, new_session_id=str(uuid4())
                )
            if _touches_records(sprint):  # persist, then compose
                channel, contact = event.channel, event.sender
                return compose(sprint, await self.persist(sprint, channel, contact, now))
            if before is not None and before.record_no is not None:
                return await self._reminding(sprint, before.record_no)
            return sprint

        reply = await self._turn(event, act, render)
        metrics.TURNS.labels(event.channel).inc()
        return reply

    async def open_case(
        self, event: InboundEvent, record_no: str, render: Render, *, source: str
    ) -> Reply:
        """The citizen asked to rate case ``record_no`` (scanned its QR code, followed its link),
        or answered a follow-up call about it (``source`` callback: its second rating).

        An unknown case, or one rated already (一事一评: from any channel, even still in
        progress there), is answered so; the same case again in its open conversation asks the
        current question again (its rating in progress: a Telegram invitation's link tapped
        after the first answer); otherwise the rating of that case begins, closing a
        conversation about another case.
        """
        evaluation_count = 2 if source == "callback" else 1

        async def act(before: Session | None, now: datetime) -> Sprint:
            case = await _reading(self.rt, _case, record_no)
            if case is None:
                return Sprint(before, [Say(ids.CASE_UNKNOWN)])
            if (
                before is not None
                and before.step is not None
                and (before.record_no, before.evaluation_count) == (record_no, evaluation_count)
            ):  # the same case: its current question again
                return engine.ask(self.rt.survey, before)
            # A callback's re-rating is open only while the follow-up is due (then once).
            rated = case.rated if evaluation_count == 1 else not case.follow_up_due
            if rated:
                told = Sprint(before, [Say(engine.ALREADY_RATED)])
                return await self._reminding(told, record_no)
            if before is not None and before.step is not None:
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

        return await self._turn(event, act, render, joining=True)

    async def ask(
        self,
        event: InboundEvent,
        render: Render,
        *,
        preface: Sequence[Event] = (),
        joining: bool = True,
    ) -> Reply:
        """The question the conversation is at — the first one, opening an unsolicited rating,
        when none is open; "already rated" for a closed one — after ``preface`` (a welcome).
        For a chat's /start, /rate, a new follower, a menu's "rate", a call's start; a call's
        "say it again" (``*``) is not ``joining`` its conversation: it asks again only on the
        call the conversation is on."""

        async def act(before: Session | None, now: datetime) -> Sprint:
            if before is None:
                before = await self._lost(event, now)
                if _answered_before(before):
                    assert before is not None
                    sprint = engine.recover(self.rt.survey, before, now=now)
                    return Sprint(sprint.session, [*preface, *sprint.events])
            if before is None:
                locale = event.locale or self.rt.settings.default_locale
                sprint = engine.start(
                    self.rt.survey, session_id=str(uuid4()), now=now, locale=locale
                )
            else:
                sprint = engine.ask(self.rt.survey, before)
            return Sprint(sprint.session, [*preface, *sprint.events])

        return await self._turn(event, act, render, joining=joining)

    async def close(self, event: InboundEvent) -> None:
        """The citizen left the channel (WeChat's ``unsubscribe``): end an open conversation
        quietly, as its expiry would (a rating with an overall level is kept, ``incomplete``), and
        forget it. Nothing is said; a re-delivered event changes nothing."""

        async def act(before: Session | None, now: datetime) -> Sprint:
            if before is not None and before.step is not None:
                await self._close(event, before, now, reason="expired")
            return Sprint(None, [])

        await self._turn(event, act, _say_nothing, leaving=True)

    async def hang_up(self, event: InboundEvent) -> list[tuple[VoucherIssued, str]]:
        """The call ended: an open conversation is closed as its expiry would close it (a rating
        with an overall level is kept; ``complete`` if only optional questions were left). A
        closed one stays until it expires, so a caller who calls straight back is told the case
        is rated, as a texter would be. Returns the voucher the closing earned (with the
        conversation's locale) for the caller to send, once: a re-delivery returns none.
        The end of an earlier call, reported after the citizen called again, changes nothing."""
        earned: list[tuple[VoucherIssued, str]] = []

        async def act(before: Session | None, now: datetime) -> Sprint:
            if before is None or before.step is None:
                return Sprint(before, [])
            closing = await self._close(event, before, now, reason="hung_up")
            earned.extend(
                (e, before.locale) for e in closing.events if isinstance(e, VoucherIssued)
            )
            return Sprint(closing.session, [])

        await self._turn(event, act, _say_nothing, leaving=True)
        return earned

    def apply(self, sprint: Sprint, channel: str, contact_hash: str, now: datetime) -> Sprint:
        """Both steps, for a caller that holds the conversation's turn itself (the worker, an
        invitation) off the event loop: carry out the engine's events that touch the records of
        ``contact_hash``'s conversation in ``channel`` (:meth:`write`), and return the sprint as
        it is then kept and told (:func:`compose`)."""
        try:
            with self.rt.db.begin() as db:
                written = self.write(db, sprint, channel, contact_hash, now)
        except IntegrityError:
            written = _rated_elsewhere(sprint)
        return compose(sprint, _counted(written, sprint, channel))

    async def persist(
        self, sprint: Sprint, channel: str, contact_hash: str, now: datetime
    ) -> Written:
        """:meth:`write` in its own transaction, on the event loop (a turn's writes)."""
        try:
            async with self.rt.async_db.begin() as db:
                written = await db.run_sync(self.write, sprint, channel, contact_hash, now)
        except IntegrityError:
            written = _rated_elsewhere(sprint)
        return _counted(written, sprint, channel)

    def write(
        self, db: sa.Connection, sprint: Sprint, channel: str, contact_hash: str, now: datetime
    ) -> Written:
        """Write what the engine's events say, in ``db``'s transaction: opt-outs and opt-ins, the
        rating each ``RatingClosed`` closed, an open conversation's progress that must be kept
        now, the voucher a completed rating earned. A case rated by another conversation first
        raises IntegrityError (一事一评): the caller rolls back and tells so."""
        writes = _rating_writes(sprint)
        opted_out_again = False
        voucher: VoucherIssued | None = None
        for event in sprint.events:
            if isinstance(event, OptedOut) and not opt_out(db, contact_hash, channel, now):
                opted_out_again = True
            elif isinstance(event, OptedIn):
                opt_in(db, contact_hash)
        for target, outcome in writes:
            rating_id = save_rating(
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
            if rating_id is not None and outcome in FINISHED:
                # A bad review's ticket, a re-rating's close, the fraud rules: committed with
                # the rating, or not at all.
                rating_finished(db, self.ticket_rules, rating_id, now)
            if outcome == "complete" and target.record_no is not None:
                # In the rating's transaction: committed with it, or not at all.
                voucher = issue_voucher(
                    db, self.rt.privacy, self.rt.settings.public_url, target.id, now
                )
        return Written(voucher=voucher, opted_out_again=opted_out_again)

    async def _lost(self, event: InboundEvent, now: datetime) -> Session | None:
        """The conversation the state store lost, found in the records (``recovery``) — asked
        only of a store that began holding its data within a conversation's life: a store
        that has kept its data longer lost nothing, and a new conversation costs no look-up (a
        thread hop and two queries, a quarter of an SMS turn's CPU)."""
        lived = self.rt.survey.expires_after_hours * 3600
        if await self.rt.store.data_since() < now.timestamp() - lived:
            return None
        key = conversation_key(event.channel, event.sender)
        return await _reading(self.rt, lost_session, self.rt, key, event.channel, event.sender, now)

    async def _keep_late_recording(self, session: Session, event: InboundEvent) -> Sprint:
        """The recording answers the question the call ended at: kept with the rating, the
        conversation stays closed, nothing is said (the caller is gone)."""
        assert session.left_at is not None and event.recording is not None
        step = self.rt.survey.step(session.left_at)
        if not isinstance(step, TextStep):
            return Sprint(session, [])
        async with self.rt.async_db.begin() as db:
            kept = await db.run_sync(save_late_recording, session.id, step.field, event.recording)
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
        voucher = await _reading(
            rt, voucher_for_case, rt.privacy, rt.settings.public_url, record_no
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
        channel, contact = event.channel, event.sender
        return compose(closing, await self.persist(closing, channel, contact, now))

    async def _turn(
        self,
        event: InboundEvent,
        act: Callable[[Session | None, datetime], Awaitable[Sprint]],
        render: Render,
        *,
        leaving: bool = False,
        joining: bool = False,
    ) -> Reply:
        """One turn of ``event``'s conversation: under its lock, answer a re-delivery with the
        first reply; else ``act`` on the session and keep the session it returns — with the
        channel's marks of ``event`` on it (:meth:`InboundEvent.mark`) unless the citizen is
        ``leaving`` the channel — together with the rendered reply.

        A phone call's request about a conversation that another call has since taken over
        changes nothing and is answered with nothing (a hang-up), unless the event is a call
        ``joining`` the conversation (its start): a late answer, recording or status of an
        earlier call never lands in, or closes, the newer call's conversation."""
        key = conversation_key(event.channel, event.sender)
        async with self.rt.store.turn(key, event.delivery_id) as turn:
            if turn.previous_reply is not None:
                metrics.DUPLICATE_DELIVERIES.labels(event.channel).inc()
                return Reply(turn.previous_reply, repeated=True)
            before = load_session(turn.session_json)
            now = self.rt.clock()
            stale = not joining and _on_another_call(event, before)
            if stale:
                assert before is not None
                log.info(
                    "a late request of an earlier call; conversation %s is on another", before.id
                )
            sprint = Sprint(before, []) if stale else await act(before, now)
            after = sprint.session
            if after is not None and not leaving and not stale:
                after = event.mark(after)
            known = after or before
            locale = known.locale if known else (event.locale or self.rt.settings.default_locale)
            reply = render(sprint.events, locale)
            if after is None:
                turn.save_json(None, reply=reply)
            else:
                turn.save_json(after.model_dump_json(), ttl=session_ttl(after, now), reply=reply)
        return Reply(reply)


def _answered_before(session: Session | None) -> bool:
    """An open conversation found in the records with answers in it (a rating in progress)."""
    return session is not None and session.step is not None and bool(session.answers)


def _say_nothing(events: Sequence[Event], locale: str) -> str:
    return ""


def _on_another_call(event: InboundEvent, before: Session | None) -> bool:
    """``event`` came on a phone call, and the conversation is on another one."""
    return (
        event.call_sid is not None
        and before is not None
        and before.call_sid not in (None, event.call_sid)
    )


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


def _case(db: sa.Connection, record_no: str) -> Case | None:
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


async def _reading(
    rt: Runtime, read: Callable[Concatenate[sa.Connection, P], T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``read(connection, *args)`` on the event loop (the turn's reads, as its writes)."""
    async with rt.async_db.connect() as db:
        return await db.run_sync(read, *args, **kwargs)


def _rating_writes(sprint: Sprint) -> list[tuple[Session, str | None]]:
    """The ratings a sprint writes, with their outcomes: each conversation its events closed,
    then the open one's progress if it must be kept now (an overall level makes it a rating,
    kept even if the citizen leaves it unfinished)."""
    writes: list[tuple[Session, str | None]] = [
        (e.session, e.outcome) for e in sprint.events if isinstance(e, RatingClosed)
    ]
    current = sprint.session
    if current is not None and current.step is not None and _saves_progress(sprint.events, current):
        writes.append((current, None))
    return writes


def _rated_elsewhere(sprint: Sprint) -> Written:
    """What a sprint wrote when its case was rated in another conversation first: nothing."""
    subject = _rating_writes(sprint)[0][0]  # the closed conversation's, if any
    log.info("case %s already rated; conversation %s closed", subject.record_no, subject.id)
    return Written(rated_elsewhere=subject)


def _counted(written: Written, sprint: Sprint, channel: str) -> Written:
    """``written``, committed: the ratings it closed are counted."""
    if written.rated_elsewhere is None:
        for closed in sprint.events:
            if isinstance(closed, RatingClosed):
                metrics.RATINGS_CLOSED.labels(channel, closed.outcome).inc()
    return written
