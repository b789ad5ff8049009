"""Engine properties that the case files cannot state well: prompt contents, verbatim text,
purity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dialogs import engine
from dialogs.events import Answered, InboundEvent, Prompt, RatingClosed
from dialogs.session import Session
from dialogs.survey import default_survey

NOW = datetime(2024, 5, 6, 1, 0, tzinfo=UTC)
PROBLEMS = ["attitude", "repeated_visits"]
DIMENSIONS = {"attitude": 5, "efficiency": 3}
DETAILED = {"problems": PROBLEMS, "details": "三次"}
RECORDINGS = {"details": "r1", "comment": "r2"}


def _say(session: Session | None, text: str) -> engine.Sprint:
    event = InboundEvent(channel="test", sender="h", text=text)
    return engine.resume(default_survey(), session, event, now=NOW, new_session_id="new")


def _at(step: str, answers: dict) -> Session:
    session = engine.start(default_survey(), session_id="s", now=NOW, locale="en").session
    assert session is not None
    return session.model_copy(update={"step": step, "answers": answers})


def test_prompts_carry_what_a_channel_needs_to_render_them() -> None:
    survey = default_survey()
    (overall,) = engine.start(survey, session_id="s", now=NOW, locale="en").events
    assert overall == Prompt(
        "overall",
        "survey.overall.prompt",
        "level",
        (("5", "level.5"), ("4", "level.4"), ("3", "level.3"), ("2", "level.2"), ("1", "level.1")),
    )
    problems = _say(_at("convenience", {"level": 1}), "1").events[-1]
    assert problems == Prompt(
        "problems",
        "survey.problems.prompt",
        "choice",
        (
            ("1", "problem.attitude"),
            ("2", "problem.efficiency"),
            ("3", "problem.repeated_visits"),
            ("4", "problem.fees"),
            ("5", "problem.unclear_process"),
            ("6", "problem.other"),
        ),
        multiple=True,
    )
    details = _say(_at("problems", {"level": 1}), "1").events[-1]
    assert details == Prompt("details", "survey.details.prompt", "text", optional=True)
    callback = _say(_at("details", {"level": 1}), "0").events[-1]
    assert callback == Prompt(
        "callback", "survey.callback.prompt", "yes_no", (("1", "answer.yes"), ("2", "answer.no"))
    )


def test_text_is_stored_verbatim_long_and_with_control_characters() -> None:
    # Regression guard: the citizen's words are evidence for the department; never trim or clean.
    text = "\x00\x07窗口\t\r\n" + "很" * 10_000 + "\u202e\U0001f621 "
    sprint = _say(_at("comment", {"level": 5}), text)
    assert sprint.events[0] == Answered("comment", "comment", text)
    assert sprint.session is not None
    assert sprint.session.answers["comment"] == text
    assert Session.model_validate_json(sprint.session.model_dump_json()) == sprint.session


@pytest.mark.parametrize(
    ("step", "answers", "text", "recording"),
    [
        ("problems", {"level": 2, "dimensions": {"attitude": 2}}, "13", None),
        ("efficiency", {"level": 4, "dimensions": {"attitude": 5}}, "4", None),
        ("overall", {"dimensions": {"attitude": 5}}, "5 4 5 5", None),
        ("details", {"level": 1, "complaint": {"problems": ["fees"]}}, "三次", None),
        ("comment", {"level": 5, "recordings": {"details": "https://r/1"}}, "", "https://r/2"),
        ("attitude", {"level": 4, "dimensions": {}}, "not a level", None),
        ("callback", {"level": 1, "complaint": {"problems": ["fees"]}}, "1", None),
    ],
    ids=["new-nested", "nested", "shortcut", "complaint", "recording", "retry", "closing"],
)
def test_resume_does_not_change_the_session_it_was_given(
    step: str, answers: dict[str, Any], text: str, recording: str | None
) -> None:
    # Regression guard: the engine copies only what changes (a deep copy was most of a step's
    # time); the caller still holds the session it passed, so no dict in it may change.
    before = _at(step, answers)
    copy = before.model_copy(deep=True)
    event = InboundEvent(channel="test", sender="h", text=text, recording=recording)
    after = engine.resume(default_survey(), before, event, now=NOW, new_session_id="new").session
    assert before == copy
    assert after is not None and after != before


@pytest.mark.parametrize(
    ("step", "answers", "text", "recording", "expected"),
    [
        ("problems", {"level": 2}, "13", None, {"complaint": {"problems": PROBLEMS}}),
        ("efficiency", {"dimensions": {"attitude": 5}}, "3", None, {"dimensions": DIMENSIONS}),
        ("details", {"complaint": {"problems": PROBLEMS}}, "三次", None, {"complaint": DETAILED}),
        (
            "comment",
            {"recordings": {"details": "r1"}},
            "",
            "r2",
            {"comment": None, "recordings": RECORDINGS},
        ),
    ],
    ids=["new-nested", "nested", "complaint", "recording"],
)
def test_an_answer_lands_beside_the_earlier_ones(
    step: str,
    answers: dict[str, Any],
    text: str,
    recording: str | None,
    expected: dict[str, Any],
) -> None:
    before = _at(step, {"level": 2, **answers})
    event = InboundEvent(channel="test", sender="h", text=text, recording=recording)
    after = engine.resume(default_survey(), before, event, now=NOW, new_session_id="new").session
    assert after is not None
    assert after.answers == {"level": 2, **expected}


def test_same_input_same_output() -> None:
    session = _at("overall", {})
    assert _say(session, "5455") == _say(session, "5455")


def test_all_five_levels_are_accepted_at_every_level_step() -> None:
    # The provincial app that refused 1-2 stars for 18 months: every level must always count.
    survey = default_survey()
    level_steps = [s.id for s in survey.steps if s.field.startswith(("level", "dimensions."))]
    for step in level_steps:
        for level in range(1, 6):
            answered = _say(_at(step, {"level": 3}), str(level)).events[0]
            assert isinstance(answered, Answered)
            assert answered.value == level


def test_a_conversation_with_only_optional_questions_left_is_done_sooner() -> None:
    """It waits ``expires_after_hours`` for a required answer, ``done_after_minutes`` for the
    optional comment: then it closes complete (and a voucher it earned goes out)."""
    survey = default_survey()
    at_dimension = _say(_at("efficiency", {"level": 5, "dimensions": {"attitude": 4}}), "5")
    assert at_dimension.session is not None and at_dimension.session.step == "convenience"
    assert at_dimension.session.expires_at == NOW + timedelta(hours=survey.expires_after_hours)
    at_comment = _say(at_dimension.session, "5").session
    assert at_comment is not None and at_comment.step == "comment"
    assert at_comment.expires_at == NOW + timedelta(minutes=survey.done_after_minutes)
    closed = engine.expire(survey, at_comment, now=at_comment.expires_at).session
    assert closed is not None and closed.outcome == "complete" and closed.left_at == "comment"
    assert closed.expires_at == at_comment.expires_at + timedelta(hours=survey.expires_after_hours)


def test_expiry_is_looked_at_again_after_as_long_as_the_citizen_was_away() -> None:
    survey = default_survey()
    half_hour = timedelta(minutes=survey.done_after_minutes)
    open_ = _say(None, "5").session  # at the first dimension, answered at NOW
    assert open_ is not None and open_.step == "attitude"
    assert engine.look_again_at(survey, open_, NOW) == NOW + half_hour
    later = NOW + timedelta(hours=2)
    assert engine.look_again_at(survey, open_, later) == later + timedelta(hours=2)
    near_the_end = open_.expires_at - timedelta(hours=1)
    assert engine.look_again_at(survey, open_, near_the_end) == open_.expires_at
    at_comment = _say(_at("convenience", {"level": 5, "dimensions": {}}), "5").session
    assert at_comment is not None and at_comment.step == "comment"
    assert engine.look_again_at(survey, at_comment, NOW) == at_comment.expires_at == NOW + half_hour


def _closed(sprint: engine.Sprint) -> RatingClosed:
    (closed,) = (e for e in sprint.events if isinstance(e, RatingClosed))
    return closed


def test_rating_closed_names_the_session_it_closed() -> None:
    """Whatever the engine keeps afterwards, the event carries the conversation as it closed:
    the rating to write, or the one to withdraw."""
    survey = default_survey()
    at_comment = _at("comment", {"level": 5, "dimensions": {"attitude": 4}})
    finished = _say(at_comment, "很好")  # kept, closed
    assert finished.session is not None and finished.session.step is None
    assert _closed(finished).session == finished.session
    assert _closed(finished).session.answers["comment"] == "很好"

    stopped = _say(at_comment, "TD")  # forgotten
    assert stopped.session is None
    assert _closed(stopped) == RatingClosed("complete", "opted_out", at_comment)

    restarted = _say(at_comment, "restart")  # replaced by a new one
    assert restarted.session is not None and restarted.session.id == "new"
    assert _closed(restarted) == RatingClosed("discarded", "restarted", at_comment)

    unrated = _at("overall", {})
    expired = engine.expire(survey, unrated, now=NOW + timedelta(days=3))  # forgotten
    assert expired.session is None
    assert _closed(expired) == RatingClosed("discarded", "expired", unrated)

    left = engine.expire(survey, at_comment, now=NOW + timedelta(days=3), reason="hung_up")
    assert left.session is not None and _closed(left).session == left.session
    assert _closed(left).session.outcome == "complete"


def test_an_event_marks_the_session_with_its_call_and_chat() -> None:
    session = _at("overall", {})
    assert InboundEvent("sms", "h", text="5").mark(session) is session  # nothing to keep
    on_call = InboundEvent("voice", "h", call_sid="CA1").mark(session)
    assert on_call.call_sid == "CA1"
    assert InboundEvent("voice", "h", call_sid="CA1").mark(on_call) is on_call
    assert InboundEvent("voice", "h", call_sid="CA2").mark(on_call).call_sid == "CA2"
    in_chat = InboundEvent("telegram", "h", reply_to="first").mark(session)
    assert in_chat.reply_to == "first"
    assert InboundEvent("telegram", "h", reply_to="again").mark(in_chat).reply_to == "first"
    assert session.call_sid is None and session.reply_to is None  # a copy, not a change
