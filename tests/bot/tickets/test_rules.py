"""The tickets file: the shipped defaults, the tier of a new ticket, and readable refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.tickets.rules import BadRulesFile, load_rules


def test_the_shipped_defaults_are_the_pilots() -> None:
    rules = load_rules()
    assert rules.tiers == {"immediate": 1, "general": 5, "complex": 15}
    assert rules.default_tier == "general"
    assert rules.rerating_window_days == 7
    assert rules.fraud.contact_ratings is not None and rules.fraud.top_burst is not None
    assert rules.fraud.staff_contacts is True


@pytest.mark.parametrize(
    ("problems", "tier"),
    [
        (["attitude"], "immediate"),
        (["fees", "attitude"], "immediate"),  # the shortest tier any problem maps to
        (["fees"], "general"),
        ([], "general"),
        (None, "general"),  # a bad review with no complaint steps answered
    ],
)
def test_a_new_tickets_tier_comes_from_its_problems(problems: list[str] | None, tier: str) -> None:
    assert load_rules().tier_for(problems) == tier


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "tiers: {general: 5}\ndefault_tier: fast\n",
            "default_tier 'fast' is not one of the tiers",
        ),
        (
            "tiers: {general: 5}\ndefault_tier: general\nproblem_tiers: {fees: slow}\n",
            "problem_tiers: fees → 'slow'",
        ),
        ("tiers: {general: 0}\ndefault_tier: general\n", "tiers.general"),
        ("tiers: {general: 5}\ndefault_tier: general\nholidays: []\n", "holidays"),
        (
            "tiers: {general: 5}\ndefault_tier: general\n"
            "days_off: [2026-12-01]\nworking_days: [2026-12-01]\n",
            "2026-12-01",
        ),
        ("tiers: [\n", "tickets.yaml"),
    ],
)
def test_a_bad_file_is_refused_saying_where(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(BadRulesFile) as refused:
        load_rules(write(tmp_path, text))
    assert says in str(refused.value)


def test_a_missing_file_is_refused_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(BadRulesFile, match="nowhere.yaml"):
        load_rules(tmp_path / "nowhere.yaml")
