"""The integrators' API: service records (办件) in, ratings out. Bearer API keys with roles."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session as DbSession
from sqlmodel import col, func, select
from starlette.concurrency import run_in_threadpool

from bot.calls import attempts_view
from bot.invitations import deliver_invitation, new_invitation
from bot.privacy import mask, normalize_phone
from bot.runtime import Runtime
from locales import normalize_locale
from storage.models import (
    ApiKey,
    ApiKeyHall,
    Complaint,
    Invitation,
    OutboundMessage,
    Rating,
    RatingDimension,
    RatingRecording,
    ServiceRecord,
)

ROLES = ("platform", "admin", "parking")  # parking: one hall's (or a few halls') gate system


# --- dependencies ---------------------------------------------------------------------------


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_db(rt: RuntimeDep):  # type: ignore[no-untyped-def]
    with DbSession(rt.db) as db:
        yield db


DbDep = Annotated[DbSession, Depends(get_db)]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    db: DbSession, *, role: str, name: str, now: datetime, halls: Sequence[str] = ()
) -> str:
    """A new API key (shown once); only its hash is stored. A ``parking`` key is good only for
    the vouchers of ``halls`` (hall codes; at least one)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == "parking") != bool(halls):
        raise ValueError("a parking key needs --hall (and only a parking key takes one)")
    key = "rbk_" + secrets.token_urlsafe(32)
    record = ApiKey(name=name, role=role, key_hash=hash_key(key), created_at=now)
    db.add(record)
    db.flush()
    assert record.id is not None
    db.add_all(ApiKeyHall(api_key_id=record.id, hall_code=code) for code in dict.fromkeys(halls))
    db.commit()
    return key


api_keys = ApiKey.__table__  # type: ignore[attr-defined]
KEY_BY_HASH = sa.select(api_keys).where(
    api_keys.c.key_hash == sa.bindparam("digest"), api_keys.c.revoked_at.is_(None)
)


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that admits a valid Bearer key whose role is one of ``roles`` (admin: any)."""

    def check(request: Request, rt: RuntimeDep) -> ApiKey:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = hash_key(key.strip())
        # One prepared query on a connection given back at once (before the handler opens its
        # own): every API call pays for this check, and the ORM session cost twice the query.
        with rt.db.connect() as conn:
            row = conn.execute(KEY_BY_HASH, {"digest": digest}).mappings().first()
        found = ApiKey.model_validate(dict(row)) if row is not None else None
        if found is None or not hmac.compare_digest(found.key_hash, digest):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if found.role != "admin" and found.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this key's role ({found.role}) may not do this"
            )
        return found

    return Depends(check)


# --- schemas --------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Line = Annotated[Text, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]+$")]  # no control characters


def _no_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: refuse it with a reason instead of failing to store it."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


class CitizenIn(BaseModel):
    _text_without_nul = field_validator("*")(_no_nul)

    phone: str | None = Field(default=None, max_length=32)
    wechat_openid: str | None = Field(default=None, max_length=128)
    telegram_chat_id: str | None = Field(default=None, max_length=32)
    locale: str | None = Field(default=None, max_length=16)

    @field_validator("telegram_chat_id", mode="before")
    @classmethod
    def _chat_id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None


class ServiceRecordCreate(BaseModel):
    """A finished case (办件办结) as the service platform reports it."""

    model_config = ConfigDict(extra="ignore")
    _text_without_nul = field_validator("*")(_no_nul)

    record_no: Annotated[Text, StringConstraints(max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
    item_code: Annotated[Text, StringConstraints(max_length=64)]
    item_name: Annotated[Text, StringConstraints(max_length=200)]
    department: Annotated[Text, StringConstraints(max_length=100)]
    district: Annotated[Text, StringConstraints(max_length=32)]
    hall: Annotated[Text, StringConstraints(max_length=64)]
    window: Annotated[Text, StringConstraints(max_length=32)]
    clerk: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    completed_at: AwareDatetime | None = None
    citizen: CitizenIn | None = None
    # default: sms with a phone, else wechat; voice: an outbound call
    channel: Literal["sms", "voice", "wechat"] | None = None


# --- the routes -----------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1")


@router.post("/service-records", status_code=201, dependencies=[require_role("platform")])
async def report_service_record(
    body: ServiceRecordCreate, rt: RuntimeDep, response: Response
) -> dict[str, Any]:
    """Report a finished case. The first report creates the record and its invitation (201);
    the same ``record_no`` again answers 200 with the record as it is, and invites nobody."""
    record_id, invitation_id, created = await run_in_threadpool(_register, rt, body)
    if invitation_id is not None:
        await deliver_invitation(rt, invitation_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return await run_in_threadpool(_record_view, rt, record_id)


def _register(rt: Runtime, body: ServiceRecordCreate) -> tuple[int, int | None, bool]:
    now = rt.clock()
    citizen = body.citizen or CitizenIn()
    with DbSession(rt.db) as db:
        existing = db.exec(
            select(ServiceRecord.id).where(ServiceRecord.record_no == body.record_no)
        ).first()
        if existing is not None:
            return existing, None, False
        record = ServiceRecord(
            **body.model_dump(exclude={"citizen", "channel"}),
            locale=normalize_locale(citizen.locale, rt.settings.default_locale),
            created_at=now,
        )
        if citizen.phone:
            record.phone_hash = rt.privacy.contact_hash(citizen.phone)
            record.phone_enc = rt.privacy.encrypt(citizen.phone)
            record.phone_mask = mask(citizen.phone)
        if citizen.wechat_openid:
            record.wechat_hash = rt.privacy.contact_hash(citizen.wechat_openid)
            record.wechat_enc = rt.privacy.encrypt(citizen.wechat_openid)
        if citizen.telegram_chat_id:
            record.telegram_hash = rt.privacy.contact_hash(citizen.telegram_chat_id)
            record.telegram_enc = rt.privacy.encrypt(citizen.telegram_chat_id)
        db.add(record)
        try:
            db.flush()
            channel = body.channel or (
                "wechat" if citizen.wechat_openid and not citizen.phone else "sms"
            )
            invitation = new_invitation(db, rt, record, channel, now)
            db.commit()
        except IntegrityError:  # the same record_no reported twice at the same instant
            db.rollback()
            existing = db.exec(
                select(ServiceRecord.id).where(ServiceRecord.record_no == body.record_no)
            ).one()
            assert existing is not None
            return existing, None, False
        assert record.id is not None
        # "sending": due now and claimed by this request (quiet hours leave it "scheduled")
        return record.id, invitation.id if invitation.status == "sending" else None, True


@router.get("/service-records/{record_no}", dependencies=[require_role("platform")])
def get_service_record(record_no: str, rt: RuntimeDep, db: DbDep) -> dict[str, Any]:
    """The record, its invitation(s) with delivery status, and its rating. Personal data masked."""
    record_id = db.exec(
        select(ServiceRecord.id).where(ServiceRecord.record_no == record_no)
    ).first()
    if record_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no service record {record_no!r}")
    return _record_view(rt, record_id)


def _record_view(rt: Runtime, record_id: int) -> dict[str, Any]:
    with DbSession(rt.db) as db:
        record = db.get_one(ServiceRecord, record_id)
        invitations = db.exec(
            select(Invitation).where(Invitation.record_id == record_id).order_by(col(Invitation.id))
        ).all()
        messages = db.exec(
            select(OutboundMessage)
            .where(col(OutboundMessage.invitation_id).in_([i.id for i in invitations]))
            .order_by(col(OutboundMessage.id))
        ).all()
        ratings = db.exec(
            select(Rating).where(Rating.record_id == record_id).order_by(col(Rating.id))
        ).all()
        return {
            "record": record_public(record),
            "invitations": [
                {
                    "id": i.id,
                    "channel": i.channel,
                    "status": i.status,
                    "reason": i.reason,
                    "scheduled_at": i.scheduled_at,
                    "sent_at": i.sent_at,
                    "reminded_at": i.reminded_at,
                    "messages": [
                        {
                            "purpose": m.purpose,
                            "to": m.to_mask,
                            "provider": m.provider,
                            "provider_id": m.provider_id,
                            "status": m.status,
                            "error": m.error,
                            "created_at": m.created_at,
                        }
                        for m in messages
                        if m.invitation_id == i.id
                    ],
                    "calls": attempts_view(db, i.id) if i.channel == "voice" and i.id else [],
                }
                for i in invitations
            ],
            "rating": rating_views(db, ratings, {record_id: record})[0] if ratings else None,
        }


def record_public(record: ServiceRecord) -> dict[str, Any]:
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


class WeChatQrCodeIn(BaseModel):
    """Optional: ``expire_seconds`` for a temporary code (WeChat allows up to 30 days)."""

    model_config = ConfigDict(extra="forbid")
    expire_seconds: int | None = Field(default=None, ge=60, le=2_592_000)


@router.post("/service-records/{record_no}/wechat-qrcode", dependencies=[require_role("platform")])
def create_wechat_qrcode(
    record_no: str, rt: RuntimeDep, db: DbDep, body: WeChatQrCodeIn | None = None
) -> dict[str, Any]:
    """A WeChat parametric QR code that opens this case's rating in the official account (scene =
    the record number): permanent, or temporary with ``expire_seconds``."""
    import requests
    from wechatpy.exceptions import WeChatClientException

    from channels.wechat import WeChatSender, case_qrcode

    found = db.exec(select(ServiceRecord.id).where(ServiceRecord.record_no == record_no)).first()
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no service record {record_no!r}")
    sender = rt.senders.get("wechat")
    if not isinstance(sender, WeChatSender):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "WeChat sending is not configured (RATEBOT_WECHAT_APPID and RATEBOT_WECHAT_SECRET)",
        )
    expire_seconds = body.expire_seconds if body is not None else None
    try:
        code = case_qrcode(sender.client, record_no, expire_seconds)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
    except WeChatClientException as exc:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"WeChat refused the QR code: {exc.errcode} {exc.errmsg}",
        ) from exc
    except (requests.RequestException, OSError) as exc:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"WeChat unreachable: {type(exc).__name__}"
        ) from exc
    return {
        "ticket": code.ticket,
        "url": code.url,
        "image_url": code.image_url,
        "expire_seconds": code.expire_seconds,
    }


@router.get("/ratings", dependencies=[require_role("admin")])
def list_ratings(
    db: DbDep,
    department: str | None = None,
    item_code: str | None = None,
    hall: str | None = None,
    district: str | None = None,
    channel: str | None = None,
    level: Annotated[int | None, Query(ge=1, le=5)] = None,
    status_: Annotated[
        Literal["in_progress", "complete", "incomplete"] | None, Query(alias="status")
    ] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Ratings, newest first, filtered; ``from``/``to`` bound the time the rating began."""
    query = select(Rating, ServiceRecord).join(ServiceRecord, isouter=True)
    for column, value in (
        (ServiceRecord.department, department),
        (ServiceRecord.item_code, item_code),
        (ServiceRecord.hall, hall),
        (ServiceRecord.district, district),
        (Rating.channel, channel),
        (Rating.level, level),
        (Rating.status, status_),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(col(Rating.created_at) >= since)
    if until is not None:
        query = query.where(col(Rating.created_at) < until)
    total = db.exec(select(func.count()).select_from(query.subquery())).one()
    rows = db.exec(
        query.order_by(col(Rating.created_at).desc(), col(Rating.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    records = {rec.id: rec for _, rec in rows if rec is not None and rec.id is not None}
    return {
        "total": total,
        "page": page,
        "page_size": page_size,
        "items": rating_views(db, [r for r, _ in rows], records),
    }
