"""Everything a request or the worker needs, built once per app from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from aiogram import Bot

from bot.settings import Settings
from channels import telegram
from channels.base import Caller, Sender
from channels.console import ConsoleSender
from channels.twilio import TwilioSender
from channels.voice import VoiceStyle
from channels.wechat import RatebotWeChatClient, WeChatSender, make_client
from dialogs.survey import Survey, load_survey
from storage.base import ConversationStore
from storage.db import create_async_db_engine, create_db_engine
from storage.models import utcnow
from storage.privacy import Privacy
from storage.state import conversation_store_from_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# An execution option on every connection of a deployment that pushes its ratings upward
# (RATEBOT_UPSTREAM_URL set): its settings, so that bot.results.upstream.enqueue can write the
# outbox row inside any act's transaction; absent, enqueue returns before any query.
UPSTREAM = "ratebot_upstream"


def wechat_client(settings: Settings) -> RatebotWeChatClient:
    """The official account's API client (needs the AppID and AppSecret)."""
    assert settings.wechat_appid and settings.wechat_secret, "WeChat sending is not configured"
    return make_client(
        settings.wechat_appid,
        settings.wechat_secret,
        api_url=settings.wechat_api_url,
        redis_url=settings.redis_url,
    )


def telegram_bot(settings: Settings) -> Bot:
    """The bot of ``RATEBOT_TELEGRAM_TOKEN``, on ``RATEBOT_TELEGRAM_API_URL`` when set (a local
    Bot API server). Close it with ``await bot.session.close()``."""
    assert settings.telegram_token, "Telegram is not configured"
    return telegram.make_bot(settings.telegram_token, api_url=settings.telegram_api_url)


@dataclass
class Runtime:
    settings: Settings
    db: sa.Engine  # the records, for the worker, the API and the pages
    async_db: AsyncEngine  # the same database, for a conversation's turn (on the event loop)
    store: ConversationStore
    survey: Survey
    privacy: Privacy
    senders: dict[str, Sender]  # channel → how ratebot sends on its own initiative
    caller: Caller  # places outbound calls
    voice: VoiceStyle  # how calls sound
    telegram: Bot | None  # sends to Telegram chats (replies, and the worker's late vouchers)
    clock: Callable[[], datetime] = field(default=utcnow)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], datetime] = utcnow
    ) -> Runtime:
        if settings.sms_sending_enabled:
            assert (
                settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from
            )
            sms: TwilioSender | ConsoleSender = TwilioSender(
                settings.twilio_account_sid,
                settings.twilio_auth_token,
                settings.twilio_from,
                api_url=settings.twilio_api_url,
                status_callback=f"{settings.public_url}/channels/sms/status",
            )
        else:
            sms = ConsoleSender("sms")
        senders: dict[str, Sender] = {"sms": sms}
        if settings.wechat_sending_enabled:
            senders["wechat"] = WeChatSender(wechat_client(settings))
        else:
            senders["wechat"] = ConsoleSender("wechat")
        db = create_db_engine(settings.database_url)
        async_db = create_async_db_engine(settings.database_url)
        if settings.upstream_url:
            for engine in (db, async_db.sync_engine):
                engine.update_execution_options(**{UPSTREAM: settings})
        return cls(
            settings=settings,
            db=db,
            async_db=async_db,
            store=conversation_store_from_url(settings.redis_url),
            survey=load_survey(settings.survey_path),
            privacy=Privacy(settings.secret_key),
            senders=senders,
            caller=sms if isinstance(sms, TwilioSender) else ConsoleSender("voice"),
            voice=VoiceStyle.from_directory(
                settings.voice_audio_dir,
                f"{settings.public_url}/channels/voice/audio",
                voices=settings.voice_voices,
                record_seconds=settings.voice_record_seconds,
                transcribe_url=f"{settings.public_url}/channels/voice/transcription",
            ),
            telegram=telegram_bot(settings) if settings.telegram_enabled else None,
            clock=clock,
        )

    async def close(self) -> None:
        for sender in self.senders.values():
            sender.close()
        if self.telegram is not None:
            await self.telegram.session.close()
        await self.store.close()
        self.db.dispose()
        await self.async_db.dispose()
