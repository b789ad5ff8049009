"""Ratings as the API shows them."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session as DbSession
from sqlmodel import col, select

from storage.models import Complaint, Rating, RatingDimension, RatingRecording, ServiceRecord


def rating_views(
    db: DbSession, ratings: list[Rating] | Any, records: dict[int, ServiceRecord]
) -> list[dict[str, Any]]:
    """Ratings as the API shows them, with their dimensions and complaint, loaded in bulk."""
    ids = [r.id for r in ratings]
    dimensions: dict[int, dict[str, int]] = {}
    for d in db.exec(select(RatingDimension).where(col(RatingDimension.rating_id).in_(ids))):
        dimensions.setdefault(d.rating_id, {})[d.dimension] = d.level
    complaints = {
        c.rating_id: c for c in db.exec(select(Complaint).where(col(Complaint.rating_id).in_(ids)))
    }
    spoken: dict[int, dict[str, dict[str, str | None]]] = {}
    for v in db.exec(select(RatingRecording).where(col(RatingRecording.rating_id).in_(ids))):
        spoken.setdefault(v.rating_id, {})[v.field] = {
            "url": v.url,
            "transcription": v.transcription,
        }
    views = []
    for r in ratings:
        record = records.get(r.record_id) if r.record_id else None
        complaint = complaints.get(r.id) if r.id else None
        views.append(
            {
                "id": r.id,
                "record_no": record.record_no if record else None,
                "unsolicited": r.unsolicited,
                # out of the statistics, never deleted: an upheld appeal, a fraud flag
                "excluded": None
                if r.excluded_at is None
                else {"at": r.excluded_at, "reason": r.excluded_reason, "by": r.excluded_by},
                "flagged": r.flagged,
                "evaluation_count": r.evaluation_count,
                "channel": r.channel,
                "provider": r.provider,
                "status": r.status,
                "level": r.level,
                "bad_review": r.level <= 2,
                "dimensions": dimensions.get(r.id or 0, {}),
                "comment": r.comment,
                "complaint": None
                if complaint is None
                else {
                    "problems": complaint.problems,
                    "details": complaint.details,
                    "wants_callback": complaint.wants_callback,
                },
                "recordings": spoken.get(r.id or 0, {}),
                "department": record.department if record else None,
                "item_code": record.item_code if record else None,
                "item_name": record.item_name if record else None,
                "district": record.district if record else None,
                "hall": record.hall if record else None,
                "window": record.window if record else None,
                "locale": r.locale,
                "created_at": r.created_at,
                "submitted_at": r.submitted_at,
            }
        )
    return views


def record_public(record: ServiceRecord) -> dict[str, Any]:
    """A case as the API shows it: its contact masked."""
    return {
        "record_no": record.record_no,
        "item_code": record.item_code,
        "item_name": record.item_name,
        "department": record.department,
        "district": record.district,
        "hall": record.hall,
        "window": record.window,
        "clerk": record.clerk,
        "completed_at": record.completed_at,
        "locale": record.locale,
        "citizen": {
            "phone": record.phone_mask,
            "wechat": bool(record.wechat_hash),
            "telegram": bool(record.telegram_hash),
        },
        "created_at": record.created_at,
    }
