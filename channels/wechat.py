"""WeChat official accounts (wechatpy): the server's signed XML pushes → what the citizen did, the
engine's events → the text of a passive reply (and the customer-service messages that may go
instead), and the API client for messages ratebot sends on its own (customer-service messages
inside the 48-hour window, template messages outside it). The contract is in ``channels.base``.

Inbound XML is parsed only after two refusals: a body that is not UTF-8, and any ``<!DOCTYPE`` or
``<!ENTITY`` (no external entity, no billion laughs) — WeChat never sends either.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote
from xml.parsers.expat import ExpatError

import requests
import xmltodict
from wechatpy import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import EVENT_TYPES, BaseEvent
from wechatpy.exceptions import (
    InvalidAppIdException,
    InvalidSignatureException,
    WeChatClientException,
)
from wechatpy.messages import (
    MESSAGE_TYPES,
    BaseMessage,
    TextMessage,
    UnknownMessage,
    VoiceMessage,
)
from wechatpy.replies import TextReply
from wechatpy.session import SessionStorage
from wechatpy.session.memorystorage import MemoryStorage
from wechatpy.utils import WeChatSigner

from channels.base import BUSY, BadRequest, Delivery, chat_messages, checked_text
from channels.sms import how_to_answer, render_text
from channels.voucher import qr_png
from dialogs.events import Event, InboundEvent, Prompt
from locales import gettext

log = logging.getLogger("ratebot.wechat")

CHANNEL = "wechat"
PROVIDER = "wechat"
DEFAULT_API_URL = "https://api.weixin.qq.com"
REQUEST_TIMEOUT = 10  # seconds for one API call
SUCCESS = "success"  # the passive reply that says "nothing to answer" (WeChat does not retry)
REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
RATE_MENU_KEY = "RATE"  # the custom menu's CLICK key that asks to rate
QR_SCENE_PREFIX = "qrscene_"  # EventKey of a subscribe by scanning a parametric QR code
MAX_SCENE_STR = 64  # WeChat's limit for a QR code's scene_str
_FORBIDDEN_MARKUP = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# errcodes that mean the citizen cannot be messaged now (not a fault of ours)
OUT_OF_WINDOW = 45015  # no interaction in the last 48 hours: only template messages go through
NOT_SUBSCRIBED = 43004  # the citizen does not follow the account

# The passive reply's text is the SMS text: typed chat, with the same "reply 1–5" instructions.
# ``ratebot chat --channel wechat`` shows it.
render = render_text
MENU_KINDS = ("level", "choice", "yes_no")  # prompts offered as a message menu (msgmenu)
MENU_ID_FIELDS = ("bizmsgmenuid", "BizMsgMenuId")  # the tapped item of a message menu


# --- signatures and safe mode ------------------------------------------------------------------


def signature(token: str, *parts: str) -> str:
    """WeChat's signature: SHA-1 of the token and the parts, sorted and joined (wechatpy's)."""
    signer = WeChatSigner()
    signer.add_data(token, *parts)
    return str(signer.signature)


def signature_is_valid(given: str | None, token: str, *parts: str) -> bool:
    """``given`` is the signature of ``parts`` with ``token``, compared in constant time."""
    if not given:
        return False
    expected = signature(token, *parts)
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def decrypt(
    crypto: WeChatCrypto, encrypted: str, msg_signature: str, timestamp: str, nonce: str
) -> bytes:
    """The inner XML of a safe-mode push (its ``msg_signature`` checked in constant time by the
    caller first; wechatpy checks it again)."""
    try:
        plain = crypto.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
    except InvalidSignatureException:
        raise
    except InvalidAppIdException as exc:
        raise BadRequest("the encrypted message is for another AppID") from exc
    except Exception as exc:  # noqa: BLE001 - bad base64, padding, length: all "undecryptable"
        raise BadRequest("the encrypted message cannot be decrypted") from exc
    return plain.encode("utf-8") if isinstance(plain, str) else bytes(plain)


def encrypt(crypto: WeChatCrypto, xml: str, nonce: str) -> str:
    """A passive reply in safe mode: WeChat's envelope (``Encrypt``, ``MsgSignature``…)."""
    return str(crypto.encrypt_message(xml, nonce))


# --- parsing -----------------------------------------------------------------------------------


def parse_xml(body: bytes) -> dict[str, Any]:
    """The children of the ``<xml>`` root, refusing what WeChat never sends."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("body is not UTF-8") from exc
    if _FORBIDDEN_MARKUP.search(text):
        raise BadRequest("DOCTYPE and ENTITY declarations are not accepted")
    checked_text("body", text)
    try:
        # str input is encoded to UTF-8 and parsed as such, whatever the XML declaration says
        parsed = xmltodict.parse(text, disable_entities=True)
    except (ExpatError, ValueError, RecursionError) as exc:
        raise BadRequest("body is not well-formed XML") from exc
    root = parsed.get("xml") if isinstance(parsed, dict) else None
    if not isinstance(root, dict):
        raise BadRequest("expected an <xml> root element with fields")
    return root


def encrypted_part(body: bytes) -> str:
    """The ``Encrypt`` field of a safe-mode push."""
    encrypted = parse_xml(body).get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise BadRequest("missing field: Encrypt")
    return encrypted


def parse(body: bytes) -> BaseMessage:
    """The push as a wechatpy message or event, once every field we read is present and text."""
    fields = parse_xml(body)
    missing = [name for name in REQUIRED_FIELDS if not _text_field(fields, name)]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}")
    if not str(fields["CreateTime"]).isdigit():
        raise BadRequest("CreateTime is not a number")
    msg_type = str(fields["MsgType"]).lower()
    if msg_type == "event" and not _text_field(fields, "Event"):
        raise BadRequest("missing field: Event")
    msg_id = fields.get("MsgId")
    if msg_id is not None and not (isinstance(msg_id, str) and msg_id.isdigit()):
        raise BadRequest("MsgId is not a number")
    for name in ("Content", "Recognition", "EventKey"):
        if name in fields and fields[name] is not None and not isinstance(fields[name], str):
            raise BadRequest(f"{name} is not text")
    return _message(fields)


def _message(fields: dict[str, Any]) -> BaseMessage:
    """wechatpy's ``parse_message`` on fields already parsed (and checked) — the same classes,
    including its subscribe-by-scan rule (``qrscene_<scene>`` → ``subscribe_scan``)."""
    fields = dict(fields)
    msg_type = str(fields["MsgType"]).lower()
    if msg_type != "event":
        return MESSAGE_TYPES.get(msg_type, UnknownMessage)(fields)
    event = str(fields["Event"]).lower()
    key = fields.get("EventKey") or ""
    if event == "subscribe" and key.startswith(QR_SCENE_PREFIX):
        event = fields["Event"] = "subscribe_scan"
        fields["EventKey"] = key[len(QR_SCENE_PREFIX) :]
    return EVENT_TYPES.get(event, BaseEvent)(fields)  # an event all the same: never an answer


def _text_field(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name)
    return isinstance(value, str) and bool(value.strip())


# --- what the citizen did ----------------------------------------------------------------------

Kind = Literal["text", "case", "welcome", "rate", "leave", "ignore"]


@dataclass(frozen=True, slots=True)
class Action:
    """What one push asks for.

    ``text``: an answer (typed, or transcribed voice; "" for a picture or a sticker, which the
    engine asks again for); ``case``: rate case ``record_no`` (a scanned parametric QR code);
    ``welcome``: a new follower; ``rate``: the menu's "rate" button; ``leave``: unsubscribed;
    ``ignore``: nothing to do (other events).
    """

    kind: Kind
    text: str = ""
    record_no: str | None = None
    source: str | None = None
    button: str | None = None  # the id (the value) of a tapped message-menu item


def action(message: BaseMessage) -> Action:
    if isinstance(message, TextMessage):
        return Action("text", text=str(message.content or ""), button=menu_choice(message))
    if isinstance(message, VoiceMessage):
        return Action("text", text=str(message.recognition or ""))
    if message.type != "event":
        return Action("text")  # image, video, location, link…: not an answer
    event = str(getattr(message, "event", "")).lower()
    key = str(getattr(message, "scene_id", None) or getattr(message, "key", None) or "").strip()
    if event in {"subscribe_scan", "scan"} and key:
        return Action("case", record_no=key, source="qr_code")
    if event in {"subscribe", "subscribe_scan"}:  # a code with an empty scene: a follower
        return Action("welcome")
    if event == "unsubscribe":
        return Action("leave")
    if event == "click" and key == RATE_MENU_KEY:
        return Action("rate")
    return Action("ignore")


def menu_choice(message: BaseMessage) -> str | None:
    """The id of the message-menu item a text message is the tap of (``<bizmsgmenuid>``), which
    wechatpy does not expose: read from the parsed fields. ``None`` for typed text."""
    fields = getattr(message, "_data", None) or {}
    for name in MENU_ID_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def delivery_id(message: BaseMessage, sender_hash: str) -> str:
    """The idempotency key: ``MsgId`` for a message; sender, ``CreateTime`` and event for an event
    (WeChat's own rule). Never the clear openid."""
    if message.type != "event" and message.id:
        return f"wechat:{message.id}"
    kind = getattr(message, "event", None) or message.type
    return f"wechat:{sender_hash}:{message.time}:{kind}"


def inbound_event(
    sender_hash: str,
    text: str,
    delivery: str,
    locale: str,
    button: str | None = None,
    reply_to: str | None = None,
) -> InboundEvent:
    """WeChat pushes carry no language: a new conversation gets the deployment's default.
    ``reply_to``: the openid, encrypted."""
    return InboundEvent(
        channel=CHANNEL,
        sender=sender_hash,
        text=text,
        button=button,
        delivery_id=delivery,
        locale=locale,
        reply_to=reply_to,
    )


def passive_reply(text: str, message: BaseMessage) -> str:
    """The XML answering ``message`` with ``text``, or ``success`` for nothing to say."""
    if not text:
        return SUCCESS
    # CDATA cannot hold "]]>": split it across two sections.
    safe = text.replace("]]>", "]]]]><![CDATA[>")
    return str(TextReply(message=message, content=safe).render())


# --- replies with message menus -----------------------------------------------------------------

MenuItem = tuple[str, str]  # (id = the value the engine gets, content = what the citizen sees)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One customer-service message: ``text``, or a message menu when ``menu`` has items
    (``text`` its head, ``tail`` the typed fallback), or when ``image`` is set the picture of that
    data's QR code (a parking voucher's, for the gate to scan). ``plain`` is the same as
    passive-reply text.
    """

    text: str
    menu: tuple[MenuItem, ...] = ()
    tail: str = ""
    image: str = ""

    @property
    def plain(self) -> str:
        if not self.menu:
            return self.text
        return "\n".join(line for line in (self.text, self.tail) if line)


@dataclass(frozen=True, slots=True)
class WeChatReply:
    """A rendered reply: the passive-reply ``text``; ``messages`` when it asks a question with
    options, to send as customer-service messages (a message menu to tap) instead."""

    text: str
    messages: tuple[Outgoing, ...] = ()


def render_reply(events: Sequence[Event], locale: str) -> str:
    """The reply as the string the glue remembers: the passive text when no question has options
    and no voucher's QR code is to be shown; else JSON ``{"text": <passive text>, "messages":
    [{"text", "menu": [[id, content]...], "tail", "image"}...]}``. A re-delivery is answered from
    it (and sends nothing again)."""
    text = render_text(events, locale)
    messages = render_messages(events, locale)
    if not any(m.menu or m.image for m in messages):
        return text
    return json.dumps(
        {
            "text": text,
            "messages": [
                {
                    "text": m.text,
                    "menu": [list(item) for item in m.menu],
                    "tail": m.tail,
                    "image": m.image,
                }
                for m in messages
            ],
        },
        ensure_ascii=False,
    )


def busy_reply(locale: str) -> str:
    return render_reply(BUSY, locale)


def load_reply(rendered: str) -> WeChatReply:
    """The reply remembered by :func:`render_reply` (or plain text from elsewhere)."""
    if rendered.startswith("{"):
        try:
            data = json.loads(rendered)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            return WeChatReply(
                str(data.get("text", "")),
                tuple(
                    Outgoing(
                        str(m.get("text", "")),
                        tuple((str(i), str(c)) for i, c in m.get("menu", ())),
                        str(m.get("tail", "")),
                        str(m.get("image", "")),
                    )
                    for m in data["messages"]
                ),
            )
    return WeChatReply(rendered)


def render_messages(events: Sequence[Event], locale: str) -> list[Outgoing]:
    """Statements together in a text message; each question a message of its own; a voucher as
    text, then its QR code as a picture."""
    messages = []
    for message in chat_messages(events, locale):
        if message.prompt is not None:
            messages.append(_question(message.prompt, message.lines, locale))
        elif message.voucher is not None:
            messages.append(Outgoing("\n".join(message.lines)))
            messages.append(Outgoing("", image=message.voucher.scan_data))
        else:
            messages.append(Outgoing("\n".join(message.lines)))
    return [m for m in messages if m.text or m.menu or m.image]


def _question(prompt: Prompt, head: list[str], locale: str) -> Outgoing:
    """The question's message: a message menu of its options, with the typed "reply 1-5" line
    under it; a question with nothing to tap as text."""
    tail = how_to_answer(prompt, locale)
    if prompt.kind not in MENU_KINDS or not prompt.options:
        return Outgoing("\n".join(line for line in head + tail if line))
    menu = tuple((value, f"{value} {gettext(locale, label)}") for value, label in prompt.options)
    return Outgoing(
        "\n".join(line for line in head if line), menu, "\n".join(line for line in tail if line)
    )


# --- the API client ----------------------------------------------------------------------------


class RatebotWeChatClient(WeChatClient):  # type: ignore[misc]
    """wechatpy's client on a chosen API host: ``API_BASE_URL`` per instance, and the token
    fetched from the same host (wechatpy's ``fetch_access_token`` names api.weixin.qq.com)."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_url: str | None = None,
        session: SessionStorage | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        super().__init__(appid, secret, session=session or MemoryStorage(), timeout=timeout)
        self.API_BASE_URL = f"{(api_url or DEFAULT_API_URL).rstrip('/')}/cgi-bin/"
        self.own_host = api_url is not None

    def fetch_access_token(self) -> dict[str, Any]:
        result: dict[str, Any] = self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
        return result

    def qrcode_image_url(self, ticket: str) -> str:
        """Where the code's image is: WeChat's showqrcode, or the configured host's."""
        if not self.own_host:
            return str(self.qrcode.get_url(ticket))
        return f"{self.API_BASE_URL}showqrcode?ticket={quote(ticket, safe='')}"

    def close(self) -> None:
        self._http.close()
        token_redis = getattr(self.session, "redis", None)  # RedisStorage's client
        if token_redis is not None:
            token_redis.close()


def make_client(
    appid: str, secret: str, *, api_url: str | None = None, redis_url: str | None = None
) -> RatebotWeChatClient:
    """wechatpy's client for an official account; its access token in Redis when ``redis_url``
    is given (shared by every worker), else in this process's memory. ``close()`` closes both."""
    redis_client = None
    if redis_url:
        import redis

        redis_client = redis.Redis.from_url(redis_url)
    return RatebotWeChatClient(appid, secret, api_url=api_url, session=token_storage(redis_client))


def token_storage(redis_client: Any | None) -> SessionStorage:
    """Where the access token lives: Redis (shared by every worker) or this process's memory."""
    if redis_client is None:
        return MemoryStorage()
    from wechatpy.session.redisstorage import RedisStorage

    return RedisStorage(redis_client, prefix="ratebot:wechatpy")


@dataclass
class WeChatSender:
    """Sends to one openid: customer-service text (48-hour window) or a template message."""

    client: RatebotWeChatClient

    def send_text(self, to: str, body: str) -> Delivery:
        return self._send("custom", lambda: self.client.message.send_text(to, body))

    def send_menu(self, to: str, head: str, items: Sequence[MenuItem], tail: str = "") -> Delivery:
        """A customer-service message menu: ``head``, the items to tap, ``tail``."""
        menu = {
            "head_content": head,
            "list": [{"id": item_id, "content": content} for item_id, content in items],
            "tail_content": tail,
        }
        return self._send("menu", lambda: self.client.message.send_msg_menu(to, menu))

    def send_qr_image(self, to: str, data: str) -> Delivery:
        """A picture of ``data``'s QR code: uploaded as temporary media (kept 3 days by WeChat),
        then sent as a customer-service image message."""

        def upload_and_send() -> Any:
            media = ("voucher.png", qr_png(data), "image/png")
            uploaded = self.client.media.upload("image", media)
            media_id = uploaded.get("media_id") if isinstance(uploaded, dict) else None
            if not media_id:
                raise ValueError("the upload's answer has no media_id")
            return self.client.message.send_image(to, media_id)

        return self._send("image", upload_and_send)

    def send(self, to: str, message: Outgoing) -> Delivery:
        """One message of a rendered reply: a message menu, a QR code picture, or text."""
        if message.menu:
            return self.send_menu(to, message.text, message.menu, message.tail)
        if message.image:
            return self.send_qr_image(to, message.image)
        return self.send_text(to, message.text)

    def close(self) -> None:
        self.client.close()

    def send_template(
        self, to: str, template_id: str, data: dict[str, Any], url: str | None = None
    ) -> Delivery:
        return self._send(
            "template", lambda: self.client.message.send_template(to, template_id, data, url=url)
        )

    def _send(self, what: str, call: Any) -> Delivery:
        try:
            result = call()
        except WeChatClientException as exc:
            log.warning("WeChat refused a %s message: %s %s", what, exc.errcode, exc.errmsg)
            error = f"{exc.errcode}: {exc.errmsg}" if exc.errcode else f"HTTP error: {exc}"
            return Delivery(PROVIDER, None, "failed", error[:255])
        except (requests.RequestException, OSError, ValueError) as exc:
            log.warning("WeChat unreachable for a %s message: %s", what, type(exc).__name__)
            return Delivery(PROVIDER, None, "failed", f"unreachable: {type(exc).__name__}")
        msg_id = result.get("msgid") if isinstance(result, dict) else None
        return Delivery(PROVIDER, str(msg_id) if msg_id else None, "sent")


# --- parametric QR codes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseQrCode:
    """A parametric QR code that opens a case's rating in the official account's chat."""

    ticket: str
    url: str  # what the code encodes (weixin.qq.com/q/…)
    image_url: str  # the code's image (showqrcode)
    expire_seconds: int | None  # None: permanent


def case_qrcode(
    client: RatebotWeChatClient, record_no: str, expire_seconds: int | None = None
) -> CaseQrCode:
    """Create the code of case ``record_no`` (scene_str = the record number): permanent, or
    temporary for ``expire_seconds``. ``ValueError`` for a number WeChat cannot take as a scene;
    WeChat's refusal raises ``WeChatClientException``."""
    if not 0 < len(record_no) <= MAX_SCENE_STR:
        raise ValueError(f"a QR code's scene is 1-{MAX_SCENE_STR} characters")
    data: dict[str, object] = {
        "action_name": "QR_STR_SCENE" if expire_seconds else "QR_LIMIT_STR_SCENE",
        "action_info": {"scene": {"scene_str": record_no}},
    }
    if expire_seconds:
        data["expire_seconds"] = expire_seconds
    result = client.qrcode.create(data)
    ticket = str(result["ticket"])
    expires = result.get("expire_seconds", expire_seconds) if expire_seconds else None
    return CaseQrCode(
        ticket=ticket,
        url=str(result.get("url", "")),
        image_url=client.qrcode_image_url(ticket),
        expire_seconds=int(expires) if expires else None,
    )
