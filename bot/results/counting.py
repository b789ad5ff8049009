"""The counting rules (统计口径), in one place.

- Levels 5 非常满意, 4 满意 and 3 基本满意 are good (好评); 2 不满意 and 1 非常不满意 are bad
  (差评).
- A rating counts when it finished (complete or incomplete), is tied to a case, and is neither
  excluded (an upheld appeal) nor flagged (a pending or confirmed fraud flag). A rating with no
  case (unsolicited) counts only in the totals by channel.
- A case rated again (evaluation count 2) counts once: the latest evaluation that counts stands
  (``RATEBOT_RESULTS_EVALUATION=latest``, the default) or the first (``first``). Re-ratings that
  count are a figure of their own, whichever stands: how many, and how many turned good
  (整改满意率).
- A rating belongs to the local day (``RATEBOT_TIMEZONE``) of its ``submitted_at``, the time it
  finished; a ticket to the day it falls due; an invitation to the day it was sent; a callback to
  the day it was placed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from storage.tables import ratings

Evaluation = Literal["latest", "first"]
GOOD = 3  # levels 3, 4, 5 are 好评
BAD = 2  # levels 1, 2 are 差评
LEVELS = (1, 2, 3, 4, 5)
FINISHED = ("complete", "incomplete")


def is_good(level: int) -> bool:
    return level >= GOOD


def countable() -> sa.ColumnElement[bool]:
    """A rating that may count: finished, not excluded, not flagged (its case aside)."""
    return sa.and_(
        ratings.c.status.in_(FINISHED),
        ratings.c.excluded_at.is_(None),
        ratings.c.flagged.is_(sa.false()),
    )


def stands(evaluation: Evaluation) -> sa.ColumnElement[bool]:
    """The rating is the one evaluation of its case that counts: no other countable evaluation
    of the same case is later (``latest``) or earlier (``first``)."""
    other = ratings.alias("other_evaluation")
    beyond = (
        other.c.evaluation_count > ratings.c.evaluation_count
        if evaluation == "latest"
        else other.c.evaluation_count < ratings.c.evaluation_count
    )
    return ~sa.exists().where(
        other.c.record_id == ratings.c.record_id,
        beyond,
        other.c.status.in_(FINISHED),
        other.c.excluded_at.is_(None),
        other.c.flagged.is_(sa.false()),
    )


def local_day(moment: datetime, zone: str) -> date:
    """The deployment's calendar day of ``moment``."""
    return moment.astimezone(ZoneInfo(zone)).date()


def day_bounds(day: date, zone: str) -> tuple[datetime, datetime]:
    """The UTC instants a local day begins and ends (DST-safe)."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    return start, end
