"""The service platform's API: finished cases (办件) in, each with its invitation, and what became
of them (invitations, messages, calls, the rating) out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session as DbSession
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from bot.cases.calls import attempts_view
from bot.cases.invitations import deliver_invitation, new_invitation
from bot.results.views import rating_views, record_public
from bot.runtime import Runtime
from bot.web.auth import require_role
from bot.web.deps import DbDep, RuntimeDep
from bot.web.limits import Moment, Text, refuse_nul
from bot.web.problems import API_ERRORS, errors
from locales import normalize_locale
from storage.models import Invitation, OutboundMessage, Rating, ServiceRecord
from storage.privacy import mask, normalize_phone


class CitizenIn(BaseModel):
    _text_without_nul = field_validator("*")(refuse_nul)

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
    _text_without_nul = field_validator("*")(refuse_nul)

    record_no: Annotated[Text, StringConstraints(max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
    item_code: Annotated[Text, StringConstraints(max_length=64)]
    item_name: Annotated[Text, StringConstraints(max_length=200)]
    department: Annotated[Text, StringConstraints(max_length=100)]
    district: Annotated[Text, StringConstraints(max_length=32)]
    hall: Annotated[Text, StringConstraints(max_length=64)]
    window: Annotated[Text, StringConstraints(max_length=32)]
    clerk: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    completed_at: Moment | None = None
    citizen: CitizenIn | None = None
    # default: sms with a phone, else wechat with an openid, else telegram with a chat;
    # voice: an outbound call
    channel: Literal["sms", "voice", "wechat", "telegram"] | None = None


router = APIRouter(prefix="/api/v1", responses=API_ERRORS)


@router.post(
    "/service-records",
    status_code=201,
    dependencies=[require_role("platform")],
    responses={200: {"description": "Reported before: the record as it is"}},
)
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
            channel = body.channel or _default_channel(citizen)
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


def _default_channel(citizen: CitizenIn) -> str:
    """Where a case is invited when the platform does not say: by SMS when the phone is known
    (no phone: suppressed, ``no_contact``), else in the chat app the citizen is known in."""
    if citizen.phone:
        return "sms"
    if citizen.wechat_openid:
        return "wechat"
    return "telegram" if citizen.telegram_chat_id else "sms"


@router.get(
    "/service-records/{record_no}", dependencies=[require_role("platform")], responses=errors(404)
)
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


class WeChatQrCodeIn(BaseModel):
    """Optional: ``expire_seconds`` for a temporary code (WeChat allows up to 30 days)."""

    model_config = ConfigDict(extra="forbid")
    expire_seconds: int | None = Field(default=None, ge=60, le=2_592_000)


@router.post(
    "/service-records/{record_no}/wechat-qrcode",
    dependencies=[require_role("platform")],
    responses=errors(404, 409, 502),
)
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
