"""The message catalogs: complete in every locale, consistent placeholders, compiled, extracted."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import locales
from dialogs.survey import SURVEYS_DIR, default_survey, load_survey

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = ROOT / "locales"
REFERENCE = locales.DEFAULT_LOCALE  # ids are symbolic: the primary language is the reference


def _po(locale: str) -> Catalog:
    with open(LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f, locale=locale)


def _pot_ids() -> set[str]:
    with open(LOCALE_DIR / "messages.pot", "rb") as f:
        return {message.id for message in read_po(f) if message.id}


def _texts(catalog: Catalog) -> dict[str, str]:
    """What gettext will serve: translated, non-fuzzy messages."""
    return {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("locale", locales.LOCALES)
def test_every_message_is_translated(locale: str) -> None:
    catalog = _po(locale)
    assert {m.id for m in catalog if m.id} == _pot_ids(), "run pybabel update"
    untranslated = sorted(m.id for m in catalog if m.id and (not m.string or m.fuzzy))
    assert not untranslated


@pytest.mark.parametrize("locale", locales.LOCALES)
def test_placeholders_match_the_reference(locale: str) -> None:
    reference = _texts(_po(REFERENCE))
    for message_id, text in _texts(_po(locale)).items():
        expected = _placeholders(reference[message_id])
        assert _placeholders(text) == expected, message_id
        text.format(**{name: "x" for name in expected})  # no stray braces


@pytest.mark.parametrize("locale", locales.LOCALES)
def test_mo_files_are_compiled_from_the_current_po(locale: str) -> None:
    with open(LOCALE_DIR / locale / "LC_MESSAGES" / "messages.mo", "rb") as f:
        compiled = read_mo(f)
    assert _texts(compiled) == _texts(_po(locale)), (
        "run: .venv/bin/pybabel compile -d locales -D messages"
    )


def test_bot_and_channel_messages_exist_with_their_placeholders() -> None:
    expected = {
        "invitation.intro": {"date", "hall", "item"},
        "invitation.optout": set(),
        "reminder.intro": {"date", "hall", "item"},
        "sms.reply.level": {"options"},
        "sms.reply.choice_many": {"options"},
        "sms.reply.choice_one": {"options"},
        "sms.reply.yes_no": set(),
        "sms.reply.skip": set(),
        "list.separator": set(),
        "error.busy": set(),
    }
    reference = _texts(_po(REFERENCE))
    assert {mid: _placeholders(reference[mid]) for mid in expected} == expected
    assert locales.gettext("zh_Hans_CN", "list.separator") == "，"
    assert locales.gettext("en", "list.separator") == ", "


@pytest.mark.parametrize("survey_file", sorted(p.name for p in SURVEYS_DIR.glob("*.yaml")))
def test_every_message_of_the_shipped_surveys_exists(survey_file: str) -> None:
    survey = load_survey(SURVEYS_DIR / survey_file)
    ids = survey.message_ids()
    assert ids
    assert set(ids) <= _pot_ids()
    for locale in locales.LOCALES:
        assert all(locales.has_message(locale, message_id) for message_id in ids)


def test_level_labels_follow_the_national_scheme() -> None:
    labels = [locales.gettext("zh_Hans_CN", f"level.{level}") for level in range(1, 6)]
    assert labels == ["非常不满意", "不满意", "基本满意", "满意", "非常满意"]
    assert default_survey().step("overall").prompt == "survey.overall.prompt"


def test_unknown_message_and_locale() -> None:
    assert not locales.has_message("en", "no.such.message")
    assert locales.gettext("fr", "thanks") == locales.gettext(locales.DEFAULT_LOCALE, "thanks")


def test_extraction_finds_exactly_the_ids_in_the_pot() -> None:
    # Regression guard: an id marked in code (N_) or named in a survey but never added to the
    # catalogs shows up to citizens as "survey.foo.prompt".
    with open(ROOT / "babel.cfg", encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    extracted = {
        message
        for _, _, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map)
        if isinstance(message, str)
    }
    pot = _pot_ids()
    assert not extracted - pot, "run pybabel extract, then update and translate"
    assert not pot - extracted, "stale ids in the .pot: run pybabel extract"
