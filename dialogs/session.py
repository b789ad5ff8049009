"""The state of one conversation, as the engine sees it. Plain data, JSON-serialisable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Session(BaseModel):
    """One citizen's rating conversation.

    ``answers`` always has this shape (the application persists it as-is)::

        {"level": 1-5,                                # overall level, 5 best
         "dimensions": {"attitude": 1-5, ...},        # per-dimension levels, ids from the survey
         "comment": str | None,                       # optional comment (good and middling levels)
         "complaint": {"problems": [str, ...],        # chosen problem-category values
                       "details": str | None,
                       "callback": bool},             # present only for bad reviews (levels 1-2)
         "recordings": {"comment": url, ...}}         # spoken answers to text steps (phone)

    Keys appear only once answered.
    """

    id: str  # conversation id, made by the caller (the engine has no randomness)
    survey_id: str
    record_no: str | None = None  # 办件编号; None for an unsolicited rating
    invitation_id: int | None = None
    locale: str
    step: str | None  # the question being asked; None once the conversation is closed
    retries: int = 0  # unusable answers to the current question so far
    answers: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    updated_at: datetime
    expires_at: datetime
    outcome: str | None = None  # set once closed: complete | incomplete | discarded
    left_at: str | None = None  # the question open when it was closed unfinished (expired…)
    # How the conversation began, set by the application (the engine does not read it):
    # invitation, qr_code (a scanned case code), link (a deep link), transfer (a hotline call
    # put through), callback (a follow-up call, 回访), or None (unsolicited).
    source: str | None = None
    # 1: the case's rating; 2: the re-rating after a bad review was followed up (回访).
    evaluation_count: int = 1
    # The phone call the conversation is on (voice), set by the application: the end of an
    # earlier call, reported late, leaves the conversation of the next one alone.
    call_sid: str | None = None
    # The citizen's address in a chat app (a Telegram chat id, a WeChat openid), encrypted, set
    # by the application: a voucher earned when the conversation expires is told there.
    reply_to: str | None = None
