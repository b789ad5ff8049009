"""The turn's second step: what the citizen is told, and the session kept, once the engine's
events are written. Pure, so checked here without stores."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.conversation.turn import Written, compose
from dialogs import engine
from dialogs.events import (
    InboundEvent,
    OptedOut,
    Prompt,
    RatingClosed,
    Say,
    Sprint,
    VoucherIssued,
)
from dialogs.survey import default_survey

NOW = datetime(2024, 5, 6, 1, 0, tzinfo=UTC)
VOUCHER = VoucherIssued("ABCD-EFGH-JKM", "Hall", 120, NOW, "https://example.test/v/1")


def _finished() -> Sprint:
    survey = default_survey()
    opened = engine.start(survey, session_id="s", now=NOW, locale="en").session
    assert opened is not None
    at_comment = opened.model_copy(update={"step": "comment", "answers": {"level": 5}})
    event = InboundEvent("sms", "h", text="ok")
    return engine.resume(survey, at_comment, event, now=NOW, new_session_id="n")


def test_nothing_to_add_tells_the_engine_s_sprint_as_it_is() -> None:
    sprint = _finished()
    assert compose(sprint, Written()) is sprint


def test_a_voucher_is_told_after_the_thanks() -> None:
    sprint = _finished()
    told = compose(sprint, Written(voucher=VOUCHER))
    assert told.session is sprint.session
    assert told.events == [*sprint.events, VOUCHER]
    assert Say(engine.THANKS) in told.events[:-1]


def test_a_repeated_stop_is_not_confirmed_again() -> None:
    sprint = Sprint(None, [OptedOut(), Say(engine.OPTOUT_CONFIRMED)])
    assert compose(sprint, Written(opted_out_again=True)).events == [OptedOut()]
    assert compose(sprint, Written()).events == sprint.events


def test_a_case_rated_elsewhere_ends_the_conversation_as_already_rated() -> None:
    sprint = _finished()
    (closed,) = (e for e in sprint.events if isinstance(e, RatingClosed))
    told = compose(sprint, Written(rated_elsewhere=closed.session))
    assert told.events == [Say(engine.ALREADY_RATED)]
    assert told.session is not None and told.session.id == closed.session.id
    assert told.session.step is None and told.session.outcome == "discarded"
    assert not any(isinstance(e, Prompt) for e in told.events)
