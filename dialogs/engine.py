"""The dialog engine: pure functions from (survey, session, input, now) to a :class:`Sprint`.

No I/O, no clock, no randomness: the caller passes ``now`` and any new session id, and carries
out the events (persist answers, send replies, schedule the expiry timer at ``expires_at``).

Rules the tests pin down (``tests/dialogs/cases``):

- Global commands are read first, whole message only. ``stop`` opts out and forgets the session
  (closing an open one as ``opted_out``); ``start`` opts in and leaves the session alone;
  ``help`` explains, then asks the current question again (or the first one, in a new session);
  ``restart`` abandons the open session's answers (closed as ``discarded``/``restarted``, so
  the case never gets two ratings) and asks the first question again for the same case.
- No session: a message that answers the first question (a level, or the shortcut "5455")
  starts an *unsolicited* rating (``record_no`` None) and counts; anything else gets the first
  question in a new session.
- A closed session (``step`` None) is kept only while it holds a rating (outcome complete or
  incomplete): every later message except stop/start/help gets ``session.already_rated`` and
  leaves it unchanged — one rating per case, and a repeated "5" must not rate twice. A session
  closed without a level (``discarded``) is forgotten (``Sprint.session`` None).
- An unusable answer re-asks with a hint; the ``max_retries``-th one ends the conversation.
- Every change to an open session moves ``expires_at`` to ``now + expires_after_hours`` — or
  ``done_after_minutes`` once only optional questions are left; the caller then calls
  :func:`expire`, which closes an open session silently (the citizen is not messaged; with only
  optional questions left the rating is complete) and forgets a closed one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from dialogs.events import (
    Answered,
    Event,
    InboundEvent,
    OptedIn,
    OptedOut,
    Prompt,
    RatingClosed,
    Say,
    Sprint,
)
from dialogs.parser import (
    is_skip,
    parse_choices,
    parse_command,
    parse_level,
    parse_levels,
    parse_yes_no,
)
from dialogs.session import Session
from dialogs.survey import END, ChoiceStep, LevelStep, Survey, TextStep, YesNoStep
from locales import N_, normalize_locale

HELP = N_("help")
THANKS = N_("thanks")
GOODBYE_RETRIES = N_("goodbye.retries")
OPTOUT_CONFIRMED = N_("optout.confirmed")
OPTIN_CONFIRMED = N_("optin.confirmed")
ALREADY_RATED = N_("session.already_rated")
RESUMED = N_("session.resumed")

# Best first, as the 好差评 scheme lists them; the value is what the citizen replies.
LEVEL_OPTIONS = (
    ("5", N_("level.5")),
    ("4", N_("level.4")),
    ("3", N_("level.3")),
    ("2", N_("level.2")),
    ("1", N_("level.1")),
)
YES_NO_OPTIONS = (("1", N_("answer.yes")), ("2", N_("answer.no")))

Outcome = Literal["complete", "incomplete", "discarded"]
_UNUSABLE = object()  # parse result for an answer we cannot use (None is a skipped answer)


def start(
    survey: Survey,
    *,
    session_id: str,
    now: datetime,
    locale: str,
    record_no: str | None = None,
    invitation_id: int | None = None,
) -> Sprint:
    """Open a conversation (an invitation) and ask the first question."""
    session = _new_session(survey, session_id, now, locale, record_no, invitation_id)
    return Sprint(session, [_prompt(survey, session)])


def resume(
    survey: Survey,
    session: Session | None,
    event: InboundEvent,
    *,
    now: datetime,
    new_session_id: str,
) -> Sprint:
    """Handle one message from the citizen whose conversation is ``session`` (``None``: none).

    ``new_session_id`` is used only if a new session has to be opened.
    """
    text = event.button if event.button is not None else event.text
    command = parse_command(text)
    is_open = session is not None and session.step is not None

    if command == "stop":
        events: list[Event] = [OptedOut(), Say(OPTOUT_CONFIRMED)]
        if session is not None and is_open:
            events.append(RatingClosed(_outcome(survey, session), "opted_out", session))
        return Sprint(None, events)
    if command == "start":
        return Sprint(session, [OptedIn(), Say(OPTIN_CONFIRMED)])

    if session is not None and not is_open:
        return Sprint(session, [Say(HELP if command == "help" else ALREADY_RATED)])

    locale = session.locale if session is not None else normalize_locale(event.locale)
    if command == "help":
        if session is None:
            session = _new_session(survey, new_session_id, now, locale)
        else:
            session = _touch(survey, session, now)
        return Sprint(session, [Say(HELP), _prompt(survey, session)])
    if command == "restart":
        if session is None:
            return _opening(survey, new_session_id, now, locale)
        fresh = _new_session(
            survey, new_session_id, now, locale, session.record_no, session.invitation_id
        ).model_copy(
            update={"source": session.source, "evaluation_count": session.evaluation_count}
        )
        # "discarded": the citizen withdrew these answers; the new ones will be the rating.
        withdrawn = RatingClosed("discarded", "restarted", session)
        return Sprint(fresh, [withdrawn, _prompt(survey, fresh)])

    if session is None:
        first = survey.step(survey.start)
        session = _new_session(survey, new_session_id, now, locale)
        if not (isinstance(first, LevelStep) and _parse(survey, first, text) is not _UNUSABLE):
            return Sprint(session, [_prompt(survey, session)])
    return _take_answer(survey, session, text, now, event.recording)


def expire(
    survey: Survey,
    session: Session,
    *,
    now: datetime,
    reason: Literal["expired", "replaced", "hung_up"] = "expired",
) -> Sprint:
    """The session's time is up (or a new invitation ``replaced`` it, or the caller hung up):
    close an open one without messaging the citizen; forget a closed one."""
    if session.step is None:
        return Sprint(None, [])
    return _close(survey, session, now, reason, [])


def look_again_at(survey: Survey, session: Session, now: datetime) -> datetime:
    """When whoever runs :func:`expire` should next look at ``session`` (nobody tells it when
    the citizen answers): at its expiry, once only optional questions are left or it is closed.
    While a required question is open, sooner: the citizen may yet reach the optional ones, and
    the session is then done ``done_after_minutes`` later. So after as long again as it has been
    idle (at least ``done_after_minutes``): one left for days is looked at a few times, not every
    half hour, and one taken up again is done at most that long late."""
    if session.step is None or only_optional_left(survey, session):
        return session.expires_at
    idle = max(now - session.updated_at, timedelta(minutes=survey.done_after_minutes))
    return min(session.expires_at, now + idle)


def ask(survey: Survey, session: Session) -> Sprint:
    """The current question again, nothing changed (the citizen came back to the same case)."""
    if session.step is None:
        return Sprint(session, [Say(ALREADY_RATED)])
    return Sprint(session, [_prompt(survey, session)])


def recover(
    survey: Survey, session: Session, event: InboundEvent | None = None, *, now: datetime
) -> Sprint:
    """A conversation whose state was lost (a state store restarted without its data), rebuilt
    by the caller from the answers its records keep (``session.step`` is not read).

    A message (``event``) that gives exactly those answers to the first question is the
    provider's retry of the message that gave them (its reply was lost with the state): it is
    answered as it was then. Otherwise the conversation's question is the first one the answers
    leave open, asked after an apology, and the message is not taken as its answer — it may
    answer a later question whose answer was lost with the state — so every answer the records
    miss is asked again, never guessed."""
    if event is not None:
        first = session.model_copy(update={"step": survey.start, "answers": {}, "retries": 0})
        again = resume(survey, first, event, now=now, new_session_id=session.id)
        if again.session is not None and again.session.answers == session.answers:
            return again
    step_id = survey.start
    while step_id != END and _answered(session.answers, survey.step(step_id).field):
        step_id = _next(survey.step(step_id).next, session.answers)
    if step_id == END:
        done = _touch(survey, session, now, step=None, retries=0)
        return _close(survey, done, now, "finished", [Say(THANKS)])
    resumed = _touch(survey, session, now, step=step_id, retries=0)
    return Sprint(resumed, [Say(RESUMED), _prompt(survey, resumed)])


def _answered(answers: dict[str, Any], field: str) -> bool:
    """Whether ``answers`` has a value at the dotted ``field``."""
    *parents, key = field.split(".")
    for parent in parents:
        answers = answers.get(parent) or {}
    return answers.get(key) is not None


def _opening(survey: Survey, session_id: str, now: datetime, locale: str) -> Sprint:
    session = _new_session(survey, session_id, now, locale)
    return Sprint(session, [_prompt(survey, session)])


def _new_session(
    survey: Survey,
    session_id: str,
    now: datetime,
    locale: str,
    record_no: str | None = None,
    invitation_id: int | None = None,
) -> Session:
    return Session(
        id=session_id,
        survey_id=survey.id,
        record_no=record_no,
        invitation_id=invitation_id,
        locale=locale,
        step=survey.start,
        started_at=now,
        updated_at=now,
        expires_at=now + timedelta(hours=survey.expires_after_hours),
    )


def _touch(survey: Survey, session: Session, now: datetime, **changes: Any) -> Session:
    """``session`` with ``changes`` and its expiry moved on from ``now``. A shallow copy (a deep
    one was most of a step's time): nothing in a session may be changed in place, as the caller
    still holds the old one."""
    touched = session.model_copy(
        update={
            "updated_at": now,
            "expires_at": now + timedelta(hours=survey.expires_after_hours),
            **changes,
        }
    )
    if touched.step is not None and only_optional_left(survey, touched):
        touched.expires_at = now + timedelta(minutes=survey.done_after_minutes)
    return touched


def _prompt(survey: Survey, session: Session, hint: str | None = None) -> Prompt:
    assert session.step is not None
    step = survey.step(session.step)
    if isinstance(step, LevelStep):
        return Prompt(step.id, step.prompt, "level", LEVEL_OPTIONS, hint=hint)
    if isinstance(step, ChoiceStep):
        options = tuple((str(n), option.label) for n, option in enumerate(step.options, 1))
        return Prompt(step.id, step.prompt, "choice", options, multiple=step.multiple, hint=hint)
    if isinstance(step, TextStep):
        return Prompt(step.id, step.prompt, "text", optional=step.optional, hint=hint)
    return Prompt(step.id, step.prompt, "yes_no", YES_NO_OPTIONS, hint=hint)


def _level_run(survey: Survey, step: LevelStep) -> list[LevelStep]:
    """The level steps one message may answer at once from ``step``: the overall step and its
    shortcut dimensions ("5 4 5 5"), or — from a dimension in the middle of that shortcut — the
    dimensions left ("4 5 5" when asked about attitude)."""
    for owner in survey.steps:
        if isinstance(owner, LevelStep) and owner.shortcut:
            run = [owner.id, *owner.shortcut]
            if step.id in run:
                later = run[run.index(step.id) + 1 :]
                # the survey validator makes every shortcut entry a level step
                return [step, *(s for i in later if isinstance(s := survey.step(i), LevelStep))]
    return [step]


def _parse(survey: Survey, step: LevelStep | ChoiceStep | TextStep | YesNoStep, text: str) -> Any:
    """The answer ``text`` gives to ``step``, or ``_UNUSABLE``.

    Several levels at once (see :func:`_level_run`) give a list, in step order.
    """
    value: Any
    if isinstance(step, LevelStep):
        run = _level_run(survey, step)
        if len(run) > 1:
            levels = parse_levels(text, len(run))
            if levels is not None:
                return levels
        value = parse_level(text)
    elif isinstance(step, ChoiceStep):
        value = parse_choices(text, [option.value for option in step.options], step.multiple)
    elif isinstance(step, YesNoStep):
        value = parse_yes_no(text)
    else:
        if step.optional and is_skip(text):
            return None
        # Verbatim, control characters and all: the citizen's words are evidence.
        value = text if text.strip() else None
    return _UNUSABLE if value is None else value


def _take_answer(
    survey: Survey, session: Session, text: str, now: datetime, recording: str | None = None
) -> Sprint:
    """The citizen's reply to the question ``session`` is at: kept, and the next question asked
    (or the conversation closed); re-asked with a hint if unusable, until the retry limit."""
    assert session.step is not None
    step = survey.step(session.step)
    if recording is not None and isinstance(step, TextStep):
        # A spoken answer: the recording is the answer; its transcript, if any, the text.
        value: Any = text if text.strip() else None
    else:
        value = _parse(survey, step, text)
        recording = None  # a recording answers only a free-text question
    if value is _UNUSABLE:
        retries = session.retries + 1
        if retries >= survey.max_retries:
            return _close(survey, session, now, "retries_exhausted", [Say(GOODBYE_RETRIES)])
        session = _touch(survey, session, now, retries=retries)
        return Sprint(session, [_prompt(survey, session, hint=step.hint_id)])

    answers = dict(session.answers)  # a new dict: the caller still holds the old session
    events: list[Event] = []
    if isinstance(step, LevelStep) and isinstance(value, list):  # several levels at once
        answered: list[Any] = _level_run(survey, step)
        values: list[Any] = value
    else:
        answered, values = [step], [value]
    for each, each_value in zip(answered, values, strict=True):
        _set_answer(answers, each.field, each_value)
        events.append(Answered(each.id, each.field, each_value))
    if recording is not None:
        answers["recordings"] = {**answers.get("recordings", {}), step.field: recording}

    next_id = _next(answered[-1].next, answers)
    if next_id == END:
        closed = _touch(survey, session, now, answers=answers, step=None, retries=0)
        return _close(survey, closed, now, "finished", [*events, Say(THANKS)])
    session = _touch(survey, session, now, answers=answers, step=next_id, retries=0)
    return Sprint(session, [*events, _prompt(survey, session)])


def _set_answer(answers: dict[str, Any], field: str, value: Any) -> None:
    """Put ``value`` at ``field`` of ``answers``, a dotted field (``dimensions.attitude``) in its
    nested dict. ``answers`` is the new session's own dict; each nested dict on the way is
    copied before it is changed, as the old session still holds it."""
    *parents, key = field.split(".")
    for parent in parents:
        nested = {**answers.get(parent, {})}
        answers[parent] = nested
        answers = nested
    answers[key] = value


def _next(exit_: Any, answers: dict[str, Any]) -> str:
    if isinstance(exit_, str):
        return exit_
    level = answers.get("level")
    for case in exit_:
        if case.when is None or level in case.when.level_in:
            return str(case.goto)
    raise AssertionError("unreachable: the survey validator requires a last case without 'when'")


def _outcome(survey: Survey, session: Session) -> Outcome:
    """What a conversation closed before its end amounts to: ``complete`` when only optional
    questions were left (every required step is answered: a citizen who hangs up at "any
    comment?" finished), ``incomplete`` with an overall level, else ``discarded``."""
    if "level" not in session.answers:
        return "discarded"
    return "complete" if only_optional_left(survey, session) else "incomplete"


def only_optional_left(survey: Survey, session: Session) -> bool:
    """Whether every question still ahead of ``session`` may be skipped (it has answered all it
    must: closed now, it is complete)."""
    step_id = session.step
    while step_id is not None and step_id != END:
        step = survey.step(step_id)
        if not (isinstance(step, TextStep) and step.optional):
            return False
        step_id = _next(step.next, session.answers)
    return True


def _close(
    survey: Survey,
    session: Session,
    now: datetime,
    reason: Literal["finished", "retries_exhausted", "expired", "replaced", "hung_up"],
    events: list[Event],
) -> Sprint:
    """End the conversation. A session that holds a rating is kept, closed, until it expires so
    late messages get "already rated"; one without is forgotten."""
    outcome: Outcome = "complete" if reason == "finished" else _outcome(survey, session)
    if outcome == "discarded":
        return Sprint(None, [*events, RatingClosed(outcome, reason, session)])
    left_at = None if reason == "finished" else session.step
    closed = _touch(survey, session, now, step=None, retries=0, outcome=outcome, left_at=left_at)
    return Sprint(closed, [*events, RatingClosed(outcome, reason, closed)])
