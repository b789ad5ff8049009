"""A survey is data: steps in a small graph, loaded from YAML (or JSON) and checked at load time.

A step asks one question and says where its answer goes in ``Session.answers`` and which step
comes next. ``next`` is a step id, ``end``, or a list of cases tried in order, the last without
``when``::

    next:
      - {when: {level_in: [1, 2]}, goto: problems}   # conditions read the overall level
      - {goto: comment}

Loading checks the graph (unique ids, ``start`` exists, every exit leads to a step or ``end``,
every step reachable) and that every message id has a translation in every shipped locale, so a
broken survey fails when the application starts, not in a citizen's conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import locales
from locales import N_

END = "end"
SURVEYS_DIR = Path(__file__).resolve().parent / "surveys"
LEVELS = range(1, 6)


class SurveyError(ValueError):
    """The survey file is not a usable survey; the message names the step at fault."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Model):
    """When the overall level is one of ``level_in``."""

    level_in: list[int] = Field(min_length=1)


class Case(_Model):
    """Go to ``goto`` when ``when`` holds (or always, without ``when``)."""

    when: Condition | None = None
    goto: str


class _Step(_Model):
    id: str = Field(min_length=1)
    prompt: str  # catalog message id of the question
    next: str | list[Case]
    hint: str | None = None  # catalog message id shown when re-asking; a default per type

    @property
    def field(self) -> str:
        """Where the answer goes in ``Session.answers``, as a dotted path."""
        raise NotImplementedError

    def message_ids(self) -> list[str]:
        """Every catalog id this step shows."""
        return [self.prompt, self.hint_id]

    @property
    def hint_id(self) -> str:
        raise NotImplementedError


class LevelStep(_Step):
    """A level 1–5: the overall level, or a dimension's (``dimension: attitude``).

    ``shortcut`` (overall step only) lists the dimension steps that may be answered in the same
    message ("5 4 5 5" = overall, then those dimensions in order); they are then skipped.
    """

    type: Literal["level"]
    dimension: str | None = None
    label: str | None = None  # catalog message id naming the dimension (for pages and reports)
    shortcut: list[str] = []

    @property
    def field(self) -> str:
        return f"dimensions.{self.dimension}" if self.dimension else "level"

    @property
    def hint_id(self) -> str:
        return self.hint or N_("hint.level")

    def message_ids(self) -> list[str]:
        return super().message_ids() + ([self.label] if self.label else [])


class Option(_Model):
    """One numbered option of a choice: ``value`` is stored, ``label`` is a catalog id."""

    value: str = Field(min_length=1)
    label: str


class ChoiceStep(_Step):
    """Numbered options; ``multiple`` takes several at once ("13", "1 3", "1,3")."""

    type: Literal["choice"]
    field_: Literal["complaint.problems"] = Field(alias="field")
    options: list[Option] = Field(min_length=2)
    multiple: bool = False

    @property
    def field(self) -> str:
        return self.field_

    @property
    def hint_id(self) -> str:
        return self.hint or (N_("hint.choice_many") if self.multiple else N_("hint.choice"))

    def message_ids(self) -> list[str]:
        return super().message_ids() + [option.label for option in self.options]


class TextStep(_Step):
    """Free text, stored verbatim; ``optional`` lets ``0`` skip it (stored as ``None``)."""

    type: Literal["text"]
    field_: Literal["comment", "complaint.details"] = Field(alias="field")
    optional: bool = False

    @property
    def field(self) -> str:
        return self.field_

    @property
    def hint_id(self) -> str:
        return self.hint or N_("hint.text")


class YesNoStep(_Step):
    """1 yes, 2 no (also 是/否, yes/no, y/n)."""

    type: Literal["yes_no"]
    field_: Literal["complaint.callback"] = Field(alias="field")

    @property
    def field(self) -> str:
        return self.field_

    @property
    def hint_id(self) -> str:
        return self.hint or N_("hint.yes_no")


Step = Annotated[LevelStep | ChoiceStep | TextStep | YesNoStep, Field(discriminator="type")]


class Survey(_Model):
    """A whole survey. ``steps`` keep file order; :meth:`step` finds one by id."""

    id: str = Field(min_length=1)
    start: str
    max_retries: int = Field(default=3, ge=1)
    expires_after_hours: float = Field(default=72, gt=0)
    # A conversation with only optional questions left (the comment) is done this long after the
    # last answer: it closes complete, and a voucher it earned goes out, without the 72 hours.
    done_after_minutes: float = Field(default=30, gt=0)
    reminder_after_hours: float | None = Field(default=4, gt=0)
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> LevelStep | ChoiceStep | TextStep | YesNoStep:
        """The step called ``step_id`` (``KeyError`` if none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def message_ids(self) -> list[str]:
        """Every catalog id the survey shows, in file order, without repeats."""
        return list(dict.fromkeys(mid for step in self.steps for mid in step.message_ids()))

    @model_validator(mode="after")
    def _check(self) -> Survey:
        ids = [step.id for step in self.steps]
        for step_id in ids:
            if ids.count(step_id) > 1:
                raise ValueError(f"step {step_id!r}: duplicate step id")
        if END in ids:
            raise ValueError(f"step {END!r}: {END!r} is reserved for the end of the survey")
        if self.start not in ids:
            raise ValueError(f"start: no step {self.start!r}")
        by_id = {step.id: step for step in self.steps}
        for step in self.steps:
            _check_next(step, by_id)
            if isinstance(step, LevelStep):
                _check_shortcut(step, by_id)
            if isinstance(step, ChoiceStep):
                values = [option.value for option in step.options]
                if len(set(values)) != len(values):
                    raise ValueError(f"step {step.id!r}: duplicate option values")
        unreachable = set(ids) - _reachable(self.start, by_id)
        if unreachable:
            raise ValueError(f"step {sorted(unreachable)[0]!r}: unreachable from {self.start!r}")
        for step in self.steps:
            for message_id in step.message_ids():
                missing = [
                    loc for loc in locales.LOCALES if not locales.has_message(loc, message_id)
                ]
                if missing:
                    raise ValueError(
                        f"step {step.id!r}: message {message_id!r} has no translation in "
                        + ", ".join(missing)
                    )
        return self


def exits(step: _Step) -> list[str]:
    """Every step id (or ``end``) that ``step`` may lead to."""
    if isinstance(step.next, str):
        return [step.next]
    return [case.goto for case in step.next]


def _check_next(step: _Step, by_id: dict[str, Any]) -> None:
    for target in exits(step):
        if target != END and target not in by_id:
            raise ValueError(f"step {step.id!r}: exit to unknown step {target!r}")
    if isinstance(step.next, list):
        if not step.next or step.next[-1].when is not None:
            # Without a last "otherwise" case some answers would lead nowhere.
            raise ValueError(f"step {step.id!r}: the last case of 'next' must have no 'when'")
        for case in step.next:
            if case.when and not set(case.when.level_in) <= set(LEVELS):
                raise ValueError(f"step {step.id!r}: level_in must be within 1-5")


def _check_shortcut(step: LevelStep, by_id: dict[str, Any]) -> None:
    if not step.shortcut:
        return
    if step.dimension:
        raise ValueError(f"step {step.id!r}: only the overall level step may have a shortcut")
    previous: _Step = step
    for step_id in step.shortcut:
        target = by_id.get(step_id)
        if not (isinstance(target, LevelStep) and target.dimension):
            raise ValueError(f"step {step.id!r}: shortcut {step_id!r} is not a dimension step")
        # The shortcut skips exactly the chain it answers, so the route stays the survey's.
        if previous.next != step_id:
            raise ValueError(
                f"step {step.id!r}: shortcut {step_id!r} must directly follow {previous.id!r}"
            )
        previous = target


def _reachable(start: str, by_id: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        step_id = todo.pop()
        if step_id in seen or step_id == END:
            continue
        seen.add(step_id)
        todo.extend(exits(by_id[step_id]))
    return seen


def parse_survey(data: Any, *, source: str = "survey") -> Survey:
    """A :class:`Survey` from already-parsed YAML/JSON data; ``SurveyError`` if it is not one."""
    try:
        return Survey.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            _describe(error["loc"], data) + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise SurveyError(f"{source}: {problems}") from None


def _describe(loc: tuple[Any, ...], data: Any) -> str:
    """Name the step of a pydantic error location (``steps.2.next`` → ``step 'details' next: ``)."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        try:
            name = f"step {data['steps'][loc[1]].get('id', loc[1])!r}"
        except (KeyError, IndexError, TypeError, AttributeError):
            name = f"step #{loc[1]}"
        rest = ".".join(
            str(part) for part in loc[2:] if part not in {"level", "choice", "text", "yes_no"}
        )
        return f"{name} {rest}: " if rest else f"{name}: "
    return f"{'.'.join(str(part) for part in loc)}: " if loc else ""


def load_survey(path: str | Path) -> Survey:
    """Load and check the survey in ``path`` (``.yaml``/``.yml`` or ``.json``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SurveyError(f"{path}: cannot read survey: {exc}") from None
    return parse_survey(data, source=str(path))


@cache
def default_survey() -> Survey:
    """The survey shipped as ``dialogs/surveys/default.yaml``."""
    return load_survey(SURVEYS_DIR / "default.yaml")


def extract_messages(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """Babel extractor for survey files: yields every catalog id the survey shows.

    Used from ``babel.cfg`` as ``[dialogs.survey.extract_messages: dialogs/surveys/**.yaml]``.
    Reads the raw data rather than validating it: extraction must work before translations exist.
    """
    text = fileobj.read().decode("utf-8")
    data = yaml.safe_load(text) or {}
    lines = text.splitlines()
    for message_id in _raw_message_ids(data):
        lineno = next((n for n, line in enumerate(lines, 1) if message_id in line), 0)
        yield lineno, None, message_id, []


def _raw_message_ids(data: dict[str, Any]) -> Iterable[str]:
    for step in data.get("steps", []):
        for key in ("prompt", "hint", "label"):
            if step.get(key):
                yield step[key]
        for option in step.get("options", []):
            yield option["label"]
