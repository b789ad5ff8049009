"""The glue between a channel, the engine and the stores.

One turn: take the conversation's lock, answer a re-delivered message with the reply it already
got, run the pure engine, carry out its events in one database transaction, remember the new
session together with the reply — then release the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from bot import metrics
from bot.optouts import opt_in, opt_out
from bot.ratings import save_rating
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
)
from dialogs.session import Session

log = logging.getLogger("ratebot.conversation")

Render = Callable[[Sequence[Event], str], str]

# An open session outlives its expiry by this much, so the worker can still finalize it.
EXPIRY_GRACE = timedelta(days=1)
PROVIDERS = {"sms": "twilio"}


def conversation_key(channel: str, contact_hash: str) -> str:
    return f"{channel}:{contact_hash}"


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

    async def handle(self, event: InboundEvent, render: Render) -> str:
        """The reply to one inbound message, rendered for its channel. A re-delivered message
        (same delivery id) gets the first reply again and changes nothing."""
        key = conversation_key(event.channel, event.sender)
        async with self.rt.store.turn(key, event.delivery_id) as turn:
            if turn.previous_reply is not None:
                metrics.DUPLICATE_DELIVERIES.labels(event.channel).inc()
                return turn.previous_reply
            before = load_session(turn.session)
            now = self.rt.clock()
            sprint = engine.resume(
                self.rt.survey, before, event, now=now, new_session_id=str(uuid4())
            )
            if _touches_records(sprint):
                sprint = await run_in_threadpool(
                    self.apply, sprint, before, event.channel, event.sender, now
                )
            after = sprint.session
            known = after or before
            locale = known.locale if known else (event.locale or self.rt.settings.default_locale)
            reply = render(sprint.events, locale)
            turn.save(
                after.model_dump(mode="json") if after else None,
                ttl=session_ttl(after, now) if after else 1,
                reply=reply,
            )
        metrics.TURNS.labels(event.channel).inc()
        return reply

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
        if current is not None and current.step is not None and any(_is_level(e) for e in events):
            # An overall level makes it a rating, kept even if the citizen leaves it unfinished.
            writes.append((current, None))
        session = closing or current
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
                        channel=channel,
                        provider=PROVIDERS.get(channel, channel),
                        citizen_hash=contact_hash,
                        now=now,
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
        return Sprint(sprint.session, events)


def _is_level(event: Event) -> bool:
    return isinstance(event, Answered) and event.field == "level"


def _touches_records(sprint: Sprint) -> bool:
    return any(
        isinstance(e, RatingClosed | OptedOut | OptedIn) or _is_level(e) for e in sprint.events
    )
