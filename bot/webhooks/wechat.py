"""The WeChat official-account channel: the server URL's routes and the wiring.

``GET /channels/wechat`` is WeChat's server verification (echo ``echostr`` when the signature
is right). ``POST /channels/wechat`` is every push — messages and events, in plaintext or safe
mode (``encrypt_type=aes``) — answered in the HTTP response with a passive reply (encrypted when
the push was), or ``success`` for nothing to say.

A passive reply can only be text. When the reply asks a question with options (a level, a choice,
yes / no) and an AppID and AppSecret are configured, it goes as customer-service messages instead —
statements as text, the question as a message menu to tap (the typed "reply 1-5" line under it) —
and the push is answered ``success``; if WeChat refuses them (e.g. 45015, outside the 48-hour
window), the push is answered with the passive text after all. A tapped item comes back as text
with ``bizmsgmenuid``: the engine gets that id (the value), not the label. A re-delivered push whose
reply went as messages is answered ``success``: nothing is sent twice.

WeChat waits 5 seconds for the answer, then retries (three times). A turn not done within
``reply_budget`` seconds (a busy conversation) is answered ``success`` at once and finished in the
background; its reply then goes out as a customer-service message, when an AppID and AppSecret
are configured.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.messages import BaseMessage

from bot.cases.open_cases import finished_case
from bot.conversation.turn import Conversations, Reply
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.deps import get_runtime
from bot.webhooks.replies import Busy, reply_or_busy
from channels import wechat
from channels.base import BadRequest, Sender
from dialogs.events import InboundEvent, Say
from locales import ids
from storage.privacy import mask

log = logging.getLogger("ratebot.wechat")

REPLY_BUDGET = 4.0  # seconds to answer in the response before falling back to a CS message
SHUTDOWN_WAIT = 10.0  # seconds the app waits for turns finishing in the background


@dataclass
class WeChatChannel:
    """One app's WeChat wiring: safe-mode crypto, the API client, background turns."""

    settings: Settings
    crypto: WeChatCrypto | None = None
    sender: Sender | None = None  # the runtime's, when an AppID and AppSecret are set
    reply_budget: float = REPLY_BUDGET
    pending: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def from_runtime(cls, rt: Runtime) -> WeChatChannel:
        settings = rt.settings
        assert settings.wechat_token, "WeChat is not configured"
        crypto = None
        if settings.wechat_aes_key:
            crypto = WeChatCrypto(
                settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid
            )
        sender = rt.senders["wechat"] if settings.wechat_sending_enabled else None
        return cls(settings, crypto=crypto, sender=sender)

    async def close(self) -> None:
        """Let turns finishing in the background end (the runtime closes the sender after)."""
        if self.pending:
            await asyncio.wait(self.pending, timeout=SHUTDOWN_WAIT)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    rt: Runtime = app.state.runtime
    channel = WeChatChannel.from_runtime(rt) if rt.settings.wechat_enabled else None
    app.state.wechat = channel
    try:
        yield
    finally:
        app.state.wechat = None
        if channel is not None:
            await channel.close()


router = APIRouter(prefix="/channels", lifespan=lifespan)


def _channel(request: Request) -> tuple[Runtime, WeChatChannel, str]:
    rt = get_runtime(request)
    channel: WeChatChannel | None = getattr(request.app.state, "wechat", None)
    token = rt.settings.wechat_token
    if channel is None or not token:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "WeChat is not configured (RATEBOT_WECHAT_TOKEN)"
        )
    return rt, channel, token


@router.get("/wechat")
async def wechat_verify(request: Request) -> Response:
    """WeChat's server verification: echo ``echostr`` when ``signature`` is right."""
    _, _, token = _channel(request)
    query = request.query_params
    if not wechat.signature_is_valid(
        query.get("signature"), token, query.get("timestamp", ""), query.get("nonce", "")
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong signature")
    return PlainTextResponse(query.get("echostr", ""))


@router.post("/wechat")
async def wechat_push(request: Request) -> Response:
    """One push from WeChat: a passive reply (XML), or ``success``."""
    rt, channel, token = _channel(request)
    query = request.query_params
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    encrypt_type = (query.get("encrypt_type") or "raw").lower()
    body = await request.body()
    try:
        if encrypt_type == "aes":
            if channel.crypto is None:
                raise BadRequest(
                    "safe mode (encrypt_type=aes) is not configured (RATEBOT_WECHAT_AES_KEY)"
                )
            encrypted = wechat.encrypted_part(body)
            msg_signature = query.get("msg_signature")
            if not wechat.signature_is_valid(msg_signature, token, timestamp, nonce, encrypted):
                raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong msg_signature")
            assert msg_signature is not None
            body = wechat.decrypt(channel.crypto, encrypted, msg_signature, timestamp, nonce)
        elif encrypt_type == "raw":
            if not wechat.signature_is_valid(query.get("signature"), token, timestamp, nonce):
                raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong signature")
        else:
            raise BadRequest("encrypt_type must be raw or aes")
        message = wechat.parse(body)
    except InvalidSignatureException as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong msg_signature") from exc
    except BadRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc

    text = await _passive_text(rt, channel, message)
    reply = wechat.passive_reply(text, message)
    if encrypt_type == "aes" and reply != wechat.SUCCESS:
        assert channel.crypto is not None
        reply = wechat.encrypt(channel.crypto, reply, nonce or secrets.token_hex(8))
        return Response(reply, media_type="application/xml")
    if reply == wechat.SUCCESS:
        return PlainTextResponse(reply)
    return Response(reply, media_type="application/xml")


# --- one push's turn ------------------------------------------------------------------------------


@dataclass
class Push:
    rt: Runtime
    openid: str
    contact: str  # the keyed hash of the openid: the only form of it that is stored
    delivery: str
    action: wechat.Action

    @property
    def locale(self) -> str:
        return self.rt.settings.default_locale

    def event(self, text: str = "", button: str | None = None) -> InboundEvent:
        reply_to = self.rt.privacy.encrypt(self.openid)
        return wechat.inbound_event(
            self.contact, text, self.delivery, self.locale, button, reply_to
        )

    def busy_reply(self) -> str:
        return wechat.busy_reply(self.locale)

    @property
    def masked(self) -> str:
        return mask(self.openid)


async def _passive_text(rt: Runtime, channel: WeChatChannel, message: BaseMessage) -> str:
    """The text to answer ``message`` with in the response ("" for nothing)."""
    openid = str(message.source)
    contact = rt.privacy.contact_hash(openid)
    push = Push(rt, openid, contact, wechat.delivery_id(message, contact), wechat.action(message))
    if push.action.kind == "ignore":
        return ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + channel.reply_budget
    task = asyncio.create_task(reply_or_busy(_turn(push), push.busy_reply, wechat.CHANNEL))
    done, _ = await asyncio.wait({task}, timeout=channel.reply_budget)
    if done:
        outcome = task.result()
        if outcome is None:
            return ""
        reply = wechat.load_reply(outcome.text)
        if not reply.messages or not isinstance(channel.sender, wechat.WeChatSender):
            return reply.text  # a re-delivery: the same again
        if outcome.repeated:
            return ""  # the first delivery sent its messages (or answered the text)
        return await _send_now(channel, push, reply, deadline - loop.time())
    # Too slow for WeChat's 5 seconds: answer "success" now, send the reply when it is ready.
    log.warning(
        "wechat %s: the turn is slow; the reply goes as a customer-service message", push.masked
    )
    later = asyncio.create_task(_deliver_later(channel, push, task))
    channel.pending.add(later)
    later.add_done_callback(channel.pending.discard)
    return ""


async def _send_now(
    channel: WeChatChannel, push: Push, reply: wechat.WeChatReply, budget: float
) -> str:
    """Send ``reply``'s messages within ``budget`` seconds: "" when they went, else the passive
    text of what was not sent. Still sending at the deadline: "" (they finish in the background).
    """
    task = asyncio.create_task(_send_messages(channel, push, reply.messages))
    done, _ = await asyncio.wait({task}, timeout=max(budget, 0.5))
    if not done:
        log.warning("wechat %s: the reply's messages are slow; answered success", push.masked)
        channel.pending.add(task)
        task.add_done_callback(channel.pending.discard)
        return ""
    unsent = task.result()
    if not unsent:
        return ""
    if len(unsent) == len(reply.messages):
        return reply.text
    return "\n".join(m.plain for m in unsent if m.plain)


async def _send_messages(
    channel: WeChatChannel, push: Push, messages: tuple[wechat.Outgoing, ...]
) -> list[wechat.Outgoing]:
    """Send ``messages`` in order, stopping at the first refusal; the ones not sent."""
    sender = channel.sender
    assert isinstance(sender, wechat.WeChatSender)
    for index, message in enumerate(messages):
        delivery = await run_in_threadpool(sender.send, push.openid, message)
        if delivery.error:
            log.warning(
                "wechat %s: a customer-service message was refused (%s); answering with text",
                push.masked,
                delivery.error,
            )
            return list(messages[index:])
    return []


async def _turn(push: Push) -> Reply | None:
    """Run the push through the conversation glue. ``None``: nothing to say."""
    conversations = Conversations(push.rt)
    action = push.action
    if action.kind == "text":
        event = push.event(action.text, action.button)
        return await conversations.handle(event, wechat.render_reply)
    if action.kind == "case":
        assert action.record_no is not None and action.source is not None
        return await conversations.open_case(
            push.event(), action.record_no, wechat.render_reply, source=action.source
        )
    if action.kind == "rate":
        record_no = await run_in_threadpool(finished_case, push.rt, "wechat_hash", push.contact)
        if record_no is not None:
            return await conversations.open_case(
                push.event(), record_no, wechat.render_reply, source="menu"
            )
        return await conversations.ask(push.event(), wechat.render_reply)
    if action.kind == "welcome":
        welcome = [Say(ids.WECHAT_WELCOME)]
        return await conversations.ask(push.event(), wechat.render_reply, preface=welcome)
    if action.kind == "leave":
        await conversations.close(push.event())
    return None


async def _deliver_later(
    channel: WeChatChannel, push: Push, task: asyncio.Task[Reply | Busy | None]
) -> None:
    """Wait for a slow turn, then send its reply as a customer-service message."""
    try:
        outcome = await task
    except Exception:  # noqa: BLE001 - a background task has nobody else to tell
        log.exception("wechat %s: a slow turn failed", push.masked)
        return
    if outcome is None or outcome.repeated or not outcome.text:
        return  # nothing to say, or the first delivery of this push answers it
    if channel.sender is None:
        log.warning(
            "wechat %s: a slow reply was not sent (set RATEBOT_WECHAT_APPID and "
            "RATEBOT_WECHAT_SECRET for customer-service messages)",
            push.masked,
        )
        return
    reply = wechat.load_reply(outcome.text)
    if reply.messages and isinstance(channel.sender, wechat.WeChatSender):
        unsent = await _send_messages(channel, push, reply.messages)
        if unsent:
            log.warning("wechat %s: the slow reply was not all sent", push.masked)
        return
    delivery = await run_in_threadpool(channel.sender.send_text, push.openid, reply.text)
    if delivery.error:
        log.warning("wechat %s: the slow reply was refused: %s", push.masked, delivery.error)
