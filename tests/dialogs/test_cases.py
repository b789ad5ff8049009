"""Runs the dialog cases in ``cases/*.yaml``: turns in, events out, with a fixed clock and ids.

A case file names its survey (``survey: default.yaml``, in ``dialogs/surveys/`` or
``tests/dialogs/``) and lists cases; each case is a list of turns. A turn is one of::

    {start: {record_no: R1}}        # engine.start(): an invitation opens a session
    {text: "5"} / {button: "5"}     # engine.resume() with an InboundEvent (optional locale:)
    {expire: true}                  # engine.expire(); {expire: replaced} for a new invitation

with ``at`` (ISO time; default: one minute after the previous turn), ``expect`` (the events,
in the compact form of :func:`compact`) and optionally ``session``: ``null`` for "forgotten",
or the fields the returned session must have. New session ids are ``s<turn number>``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dialogs import engine
from dialogs.events import (
    Answered,
    Event,
    InboundEvent,
    OptedIn,
    OptedOut,
    Prompt,
    RatingClosed,
    Say,
)
from dialogs.survey import SURVEYS_DIR, load_survey

HERE = Path(__file__).resolve().parent
FIRST_TURN_AT = datetime.fromisoformat("2024-05-06T09:00:00+08:00")


def compact(event: Event) -> Any:
    """An event as the case files write it."""
    match event:
        case Prompt(step_id=step_id, hint=None):
            return {"prompt": step_id}
        case Prompt(step_id=step_id, hint=hint):
            return {"prompt": [step_id, hint]}
        case Say(message=message):
            return {"say": message}
        case Answered(step_id=step_id, field=field, value=value):
            return {"answered": [step_id, field, value]}
        case RatingClosed(outcome=outcome, reason=reason):
            return {"closed": [outcome, reason]}
        case OptedOut():
            return "opted_out"
        case OptedIn():
            return "opted_in"
    raise AssertionError(f"unknown event {event!r}")


def _cases() -> list[Any]:
    params = []
    for path in sorted((HERE / "cases").glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in document["cases"]:
            params.append(pytest.param(document["survey"], case, id=f"{path.stem}: {case['name']}"))
    return params


@pytest.mark.parametrize(("survey_file", "case"), _cases())
def test_dialog_case(survey_file: str, case: dict[str, Any]) -> None:
    local = HERE / survey_file
    survey = load_survey(local if local.exists() else SURVEYS_DIR / survey_file)
    session = None
    at = FIRST_TURN_AT - timedelta(minutes=1)
    for number, turn in enumerate(case["turns"], 1):
        at = turn.get("at") or at + timedelta(minutes=1)
        if "start" in turn:
            options = turn["start"] or {}
            sprint = engine.start(
                survey,
                session_id=f"s{number}",
                now=at,
                locale=options.get("locale", "zh_Hans_CN"),
                record_no=options.get("record_no"),
                invitation_id=options.get("invitation_id"),
            )
        elif turn.get("expire"):
            assert session is not None, f"turn {number}: nothing to expire"
            reason = "expired" if turn["expire"] is True else turn["expire"]
            sprint = engine.expire(survey, session, now=at, reason=reason)
        else:
            event = InboundEvent(
                channel="test",
                sender="citizen-hash",
                text=turn.get("text", ""),
                button=turn.get("button"),
                locale=turn.get("locale"),
            )
            sprint = engine.resume(survey, session, event, now=at, new_session_id=f"s{number}")
        assert [compact(e) for e in sprint.events] == turn.get("expect", []), f"turn {number}"
        if "session" in turn:
            expected = turn["session"]
            if expected is None:
                assert sprint.session is None, f"turn {number}: session should be forgotten"
            else:
                assert sprint.session is not None, f"turn {number}: session forgotten"
                actual = {key: getattr(sprint.session, key) for key in expected}
                assert actual == expected, f"turn {number}"
        session = sprint.session
