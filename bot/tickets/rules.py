"""The closed loop's rules, read from one YAML file (``RATEBOT_TICKETS_FILE``; the defaults ship
as ``bot/tickets/tickets.yaml``) and validated when ratebot starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.tickets.calendar import WorkingCalendar

DEFAULT_FILE = Path(__file__).resolve().parent / "tickets.yaml"

WorkingDays = Annotated[int, Field(ge=1, le=60)]


class ContactRatings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratings: int = Field(ge=1)
    days: int = Field(ge=1, le=366)


class TopBurst(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratings: int = Field(ge=1)
    minutes: int = Field(ge=1, le=7 * 24 * 60)


class FraudRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_ratings: ContactRatings | None = None
    top_burst: TopBurst | None = None
    staff_contacts: bool = True


class TicketRules(BaseModel):
    """Deadline tiers, the problem → tier map, the local calendar, the re-rating window and the
    fraud rules."""

    model_config = ConfigDict(extra="forbid")

    tiers: dict[str, WorkingDays] = Field(min_length=1)
    problem_tiers: dict[str, str] = {}
    default_tier: str
    days_off: list[date] = []
    working_days: list[date] = []
    rerating_window_days: int = Field(default=7, ge=1, le=90)
    fraud: FraudRules = FraudRules()

    @model_validator(mode="after")
    def _tiers_named(self) -> TicketRules:
        known = set(self.tiers)
        if self.default_tier not in known:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of the tiers")
        for problem, tier in self.problem_tiers.items():
            if tier not in known:
                raise ValueError(f"problem_tiers: {problem} → {tier!r} is not one of the tiers")
        both = set(self.days_off) & set(self.working_days)
        if both:
            listed = ", ".join(sorted(day.isoformat() for day in both))
            raise ValueError(f"listed both as a day off and as a working day: {listed}")
        return self

    def tier_for(self, problems: list[str] | None) -> str:
        """The tier of a new ticket: the shortest one its problems map to, else the default."""
        mapped = [self.problem_tiers[p] for p in problems or () if p in self.problem_tiers]
        return min(mapped, key=lambda tier: self.tiers[tier]) if mapped else self.default_tier


class BadRulesFile(ValueError):
    """The tickets file cannot be used; the message says where and why."""


def load_rules(path: Path | None = None) -> TicketRules:
    """The rules in ``path`` (default: the shipped file)."""
    path = path or DEFAULT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BadRulesFile(f"{path}: {exc}") from exc
    try:
        return TicketRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()
        )
        raise BadRulesFile(f"{path}: {problems}") from exc


@dataclass(frozen=True, slots=True)
class Rules:
    """The deployment's rules and the working calendar they make, built once per process."""

    rules: TicketRules
    calendar: WorkingCalendar


@lru_cache(maxsize=4)
def rules_for(path: Path | None, zone: str) -> Rules:
    """The rules of ``RATEBOT_TICKETS_FILE`` (``None``: the shipped defaults) with their calendar
    in the deployment's time zone. Raises :class:`BadRulesFile` for a file that cannot be used."""
    rules = load_rules(path)
    calendar = WorkingCalendar(
        ZoneInfo(zone), days_off=rules.days_off, working_days=rules.working_days
    )
    return Rules(rules, calendar)
