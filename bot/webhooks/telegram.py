"""The Telegram channel: the webhook route and the aiogram wiring.

``POST /channels/telegram`` checks Telegram's secret token, validates the body as an aiogram
``Update`` and feeds it to an aiogram ``Dispatcher``; the router's handlers turn each message or
button press into an InboundEvent for the conversation glue and send the replies through the Bot
API. The route answers 200 with an empty body once the update is handled.

Every update of one chat runs inside a *chat turn* of the conversation store (key
``telegram-chat:<contact hash>``, delivery id ``telegram:<update_id>``):

* a re-delivered update (same ``update_id``) is recognised there and does nothing at all — no
  message, no callback answer, no keyboard change;
* updates of one chat are handled one at a time, across workers, so a button's "is this still
  the current question?" check and the answer it feeds cannot interleave with another press or
  typed answer (a double tap must not answer two questions);
* the chat's language choice (``/language``) is kept there, as ``{"locale": ...}``, for a year
  after the chat's last update (in Redis when configured, else in this process's memory).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message, Update
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status

from bot import metrics
from bot.conversation.turn import Conversations, Reply, conversation_key, load_session
from bot.runtime import Runtime
from bot.web.deps import get_runtime
from bot.webhooks.replies import Busy, reply_or_busy
from channels import telegram
from channels.base import BadRequest
from dialogs import engine
from dialogs.events import Event, InboundEvent
from locales import gettext, ids
from storage.base import ConversationLockLost
from storage.privacy import mask

log = logging.getLogger("ratebot.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
CHAT_TTL = 365 * 24 * 3600.0  # seconds a chat's language choice is kept after its last update


def chat_key(contact_hash: str) -> str:
    return f"telegram-chat:{contact_hash}"


@dataclass
class TelegramChannel:
    """One app's bot (the runtime's: the worker sends through it too) and dispatcher."""

    bot: Bot
    dispatcher: Dispatcher

    @classmethod
    def from_runtime(cls, rt: Runtime) -> TelegramChannel:
        assert rt.telegram is not None, "Telegram is not configured"
        dispatcher = Dispatcher(disable_fsm=True)  # conversation state lives in ratebot's store
        dispatcher.include_router(build_router())
        return cls(rt.telegram, dispatcher)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's own lifespan (FastAPI merges an included router's), so the runtime
    exists; the runtime closes the bot's HTTP session."""
    rt: Runtime = app.state.runtime
    app.state.telegram = TelegramChannel.from_runtime(rt) if rt.telegram is not None else None
    try:
        yield
    finally:
        app.state.telegram = None


router = APIRouter(prefix="/channels", lifespan=lifespan)


@router.post("/telegram")
async def telegram_webhook(request: Request) -> Response:
    """Telegram's webhook: one Update, handled before the 200 (replies go out through the API)."""
    rt = get_runtime(request)
    channel: TelegramChannel | None = getattr(request.app.state, "telegram", None)
    secret = rt.settings.telegram_secret
    if channel is None or not secret:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "Telegram is not configured (RATEBOT_TELEGRAM_TOKEN)"
        )
    given = request.headers.get(SECRET_HEADER)
    if given is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-Telegram-Bot-Api-Secret-Token")
    # Header values arrive as latin-1 text; compare bytes so any value is compared, in constant
    # time, rather than raising on a non-ASCII one.
    if not hmac.compare_digest(given.encode("latin-1"), secret.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong X-Telegram-Bot-Api-Secret-Token")
    try:
        update = telegram.parse_update(await request.body(), channel.bot)
    except telegram.NotAnUpdate as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except BadRequest as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    if not telegram.carries_event(update):
        # No message and no button press (the only kinds the webhook is set to receive): nothing
        # to do. aiogram would warn that it must be outdated, for every such update.
        return Response(status_code=status.HTTP_200_OK)
    await channel.dispatcher.feed_update(channel.bot, update, rt=rt)
    return Response(status_code=status.HTTP_200_OK)


# --- one chat's turn -------------------------------------------------------------------------


@dataclass
class Chat:
    """One update of one private chat, inside its chat turn."""

    rt: Runtime
    bot: Bot
    chat_id: int
    contact: str  # the keyed hash of the chat id: the only form of it that is stored
    update_id: int
    language_code: str | None
    prefs: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen_locale(self) -> str | None:
        """The chat's language: its /language choice, else its Telegram client's language."""
        chosen = self.prefs.get("locale")
        return chosen if isinstance(chosen, str) else telegram.locale_of(self.language_code)

    @property
    def locale(self) -> str:
        return self.chosen_locale or self.rt.settings.default_locale

    @property
    def conversation(self) -> str:
        return conversation_key(telegram.CHANNEL, self.contact)

    def event(self, text: str = "", button: str | None = None) -> InboundEvent:
        reply_to = self.rt.privacy.encrypt(str(self.chat_id))
        return telegram.inbound_event(
            self.contact, self.update_id, self.locale, text=text, button=button, reply_to=reply_to
        )

    def render(self, events: Sequence[Event], locale: str) -> str:
        """The glue's renderer: in the chat's language when it has one (a /language choice
        outranks the language the conversation began in), else the conversation's."""
        return telegram.render_reply(events, self.chosen_locale or locale)

    def busy_reply(self) -> str:
        return telegram.busy_reply(self.locale)

    async def send(self, rendered: str) -> None:
        """Send a rendered reply, message by message. A failure is logged, not raised: the turn
        is already remembered, so a retry of this update would send nothing anyway."""
        delivery = await telegram.send(self.bot, self.chat_id, telegram.load(rendered))
        if delivery.error:
            log.warning("sending to chat %s failed: %s", self.masked, delivery.error)

    async def reply(self, answer: Reply) -> None:
        if not answer.repeated:  # re-delivered: the first delivery sent it already
            await self.send(answer.text)

    @property
    def masked(self) -> str:
        return mask(str(self.chat_id))


async def in_chat(
    rt: Runtime,
    bot: Bot,
    chat_id: int,
    update_id: int,
    language_code: str | None,
    work: Callable[[Chat], Awaitable[None]],
) -> None:
    """Run ``work`` for one update inside the chat's turn (see the module docstring). A stuck
    turn holding the chat or its conversation gets the busy reply."""
    contact = rt.privacy.contact_hash(str(chat_id))
    chat = Chat(rt, bot, chat_id, contact, update_id, language_code)
    busy = await reply_or_busy(_chat_turn(chat, work), chat.busy_reply, telegram.CHANNEL)
    if isinstance(busy, Busy):
        await chat.send(busy.text)


async def _chat_turn(chat: Chat, work: Callable[[Chat], Awaitable[None]]) -> None:
    try:
        async with chat.rt.store.turn(chat_key(chat.contact), f"telegram:{chat.update_id}") as turn:
            if turn.previous_reply is not None:
                metrics.DUPLICATE_DELIVERIES.labels(telegram.CHANNEL).inc()
                return
            chat.prefs = dict(turn.session or {})
            await work(chat)
            # "" marks the update handled; the prefs live on while the chat is in use.
            turn.save(chat.prefs or None, ttl=CHAT_TTL, reply="")
    except ConversationLockLost:
        log.warning("chat %s: the update took longer than the lock; replies were sent", chat.masked)


# --- the aiogram router ----------------------------------------------------------------------


def build_router() -> Router:
    """The handlers, for private chats only (a group is not one citizen)."""
    tg = Router(name="ratebot")
    tg.message.filter(F.chat.type == "private")
    tg.callback_query.filter(F.message.chat.type == "private")

    @tg.message(CommandStart())
    async def on_start(
        message: Message, command: CommandObject, event_update: Update, bot: Bot, rt: Runtime
    ) -> None:
        case = telegram.case_payload(command.args)

        async def work(chat: Chat) -> None:
            if case is None:
                await _opening(chat)
                return
            record_no, source = case
            answer = await Conversations(rt).open_case(
                chat.event(), record_no, chat.render, source=source
            )
            await chat.reply(answer)

        await _run(message, event_update, bot, rt, work)

    @tg.message(Command("rate", ignore_mention=True))
    async def on_rate(message: Message, event_update: Update, bot: Bot, rt: Runtime) -> None:
        await _run(message, event_update, bot, rt, _opening)

    @tg.message(Command("help", ignore_mention=True))
    async def on_help(message: Message, event_update: Update, bot: Bot, rt: Runtime) -> None:
        await _run(message, event_update, bot, rt, _typed("HELP"))

    @tg.message(Command("stop", ignore_mention=True))
    async def on_stop(message: Message, event_update: Update, bot: Bot, rt: Runtime) -> None:
        await _run(message, event_update, bot, rt, _typed("STOP"))

    @tg.message(Command("language", ignore_mention=True))
    async def on_language(message: Message, event_update: Update, bot: Bot, rt: Runtime) -> None:
        async def work(chat: Chat) -> None:
            await chat.send(telegram.language_menu(chat.locale))

        await _run(message, event_update, bot, rt, work)

    @tg.message()
    async def on_message(message: Message, event_update: Update, bot: Bot, rt: Runtime) -> None:
        # A sticker or a photo has no text: the engine hears "" and asks its question again.
        await _run(message, event_update, bot, rt, _typed(message.text or message.caption or ""))

    @tg.callback_query()
    async def on_button(query: CallbackQuery, event_update: Update, bot: Bot, rt: Runtime) -> None:
        assert query.message is not None  # the router's filter needs a message
        pressed = telegram.parse_callback(query.data)

        async def work(chat: Chat) -> None:
            if pressed is None:  # not one of ours (an old bot's keyboard): stop the spinner
                await _answer_query(chat, query)
            elif pressed[0] == telegram.LANGUAGE:
                await _choose_language(chat, query, pressed[1])
            else:
                await _press(chat, query, step_id=pressed[1], value=pressed[2])

        chat_id, language = query.message.chat.id, query.from_user.language_code
        await in_chat(rt, bot, chat_id, event_update.update_id, language, work)

    return tg


async def _run(
    message: Message,
    update: Update,
    bot: Bot,
    rt: Runtime,
    work: Callable[[Chat], Awaitable[None]],
) -> None:
    language = message.from_user.language_code if message.from_user else None
    await in_chat(rt, bot, message.chat.id, update.update_id, language, work)


def _typed(text: str) -> Callable[[Chat], Awaitable[None]]:
    async def work(chat: Chat) -> None:
        await chat.reply(await Conversations(chat.rt).handle(chat.event(text), chat.render))

    return work


async def _opening(chat: Chat) -> None:
    """/start, /rate: the current question of an open conversation, else the first question."""
    await chat.reply(await Conversations(chat.rt).ask(chat.event(), chat.render))


async def _press(chat: Chat, query: CallbackQuery, *, step_id: str, value: str) -> None:
    """An answer button: only for the question being asked now; then its keyboard goes."""
    session = load_session(await chat.rt.store.get_json(chat.conversation))
    if session is None or session.step != step_id:
        await _answer_query(chat, query, gettext(chat.locale, ids.TELEGRAM_ALREADY_ANSWERED))
        return
    await _answer_query(chat, query)
    await _remove_keyboard(chat, query)
    answer = await Conversations(chat.rt).handle(chat.event(button=value), chat.render)
    await chat.reply(answer)


async def _choose_language(chat: Chat, query: CallbackQuery, locale: str) -> None:
    chat.prefs["locale"] = locale
    await _answer_query(chat, query)
    await _remove_keyboard(chat, query)
    await chat.send(telegram.say(locale, ids.TELEGRAM_LANGUAGE_SET))
    session = load_session(await chat.rt.store.get_json(chat.conversation))
    if session is not None and session.step is not None:  # ask again, in the new language
        await chat.send(chat.render(engine.ask(chat.rt.survey, session).events, locale))


async def _answer_query(chat: Chat, query: CallbackQuery, text: str | None = None) -> None:
    try:
        await chat.bot.answer_callback_query(query.id, text=text)
    except TelegramAPIError as exc:  # e.g. too old to answer: nothing the citizen would see
        log.info("answerCallbackQuery for chat %s failed: %s", chat.masked, type(exc).__name__)


async def _remove_keyboard(chat: Chat, query: CallbackQuery) -> None:
    """Take the keyboard off the pressed message, so it cannot be pressed twice."""
    if not isinstance(query.message, Message):  # inaccessible (too old): nothing to edit
        return
    try:
        await chat.bot.edit_message_reply_markup(
            chat_id=chat.chat_id, message_id=query.message.message_id, reply_markup=None
        )
    except TelegramAPIError as exc:
        log.info("editMessageReplyMarkup for chat %s failed: %s", chat.masked, type(exc).__name__)
