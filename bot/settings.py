"""Configuration, from ``RATEBOT_*`` environment variables and a ``.env`` file.

Built in the app factory (never at import time), so tests can make as many apps as they like.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from locales import LOCALES

TEMPLATE_VALUES = {"intro", "item", "hall", "date", "question", "optout"}
DEFAULT_TEMPLATE_FIELDS = {
    "first": "intro",
    "keyword1": "item",
    "keyword2": "hall",
    "keyword3": "date",
    "remark": "question",
}
# Twilio text-to-speech voices that speak each shipped locale (RATEBOT_VOICE_VOICES overrides).
DEFAULT_VOICES = {
    "zh_Hans_CN": "Polly.Zhiyu",
    "zh_Hant_TW": "Google.cmn-TW-Standard-A",
    "en": "Polly.Joanna",
}
PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "development-only-secret"}
# Telegram's rules: a bot token is "<bot id>:<secret>"; a webhook secret_token is 1-256 characters
# of A-Z, a-z, 0-9, _ and -.
TELEGRAM_TOKEN = re.compile(r"^[0-9]+:[A-Za-z0-9_-]+$")
TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# WeChat's rules: the server Token is 3-32 letters or digits; the EncodingAESKey is 43 letters or
# digits (base64 of 32 bytes without its "="). AppID and AppSecret are kept to a safe alphabet.
WECHAT_TOKEN = re.compile(r"^[A-Za-z0-9]{3,32}$")
WECHAT_AES_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
WECHAT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_SURVEY = Path(__file__).resolve().parent.parent / "dialogs" / "surveys" / "default.yaml"


def known_zone(value: str) -> str:
    """``value`` if it names a time zone the system knows (``Asia/Shanghai``)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


TimeZoneName = Annotated[str, AfterValidator(known_zone)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RATEBOT_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///./ratebot.db"
    redis_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = "development-only-secret"  # noqa: S105 - refused outside development
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_url: str | None = None
    telegram_token: str | None = None
    telegram_secret: str | None = None
    telegram_api_url: str | None = None  # a local Bot API server (tests, self-hosted)
    wechat_token: str | None = None  # the official account's server Token (signatures)
    wechat_aes_key: str | None = None  # EncodingAESKey: safe mode (encrypt_type=aes)
    wechat_appid: str | None = None
    wechat_secret: str | None = None  # AppSecret: outbound messages (access token)
    wechat_api_url: str | None = None  # a WeChat-compatible API (tests, emulators)
    wechat_template_id: str | None = None  # the invitation's template message
    # template field → what fills it: intro, item, hall, date, question, optout
    wechat_template_fields: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TEMPLATE_FIELDS)
    )
    # The phone channel (Twilio Voice): a Twilio voice per locale, recorded prompts, speech.
    voice_voices: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_VOICES))
    voice_audio_dir: Path | None = None  # <dir>/<locale>/<message id>.mp3|.wav, played as-is
    voice_min_confidence: float = Field(default=0.4, ge=0, le=1)
    voice_record_seconds: int = Field(default=60, ge=5, le=600)
    calling_hours: str = "09:00-20:00"  # outbound calls only inside (local time)
    call_attempts: int = Field(default=3, ge=1, le=10)  # per invitation, counting the first
    call_retry_minutes: float = Field(default=60, gt=0)
    default_locale: str = "zh_Hans_CN"
    timezone: TimeZoneName = "Asia/Shanghai"
    quiet_hours: str = "21:00-08:00"
    invite_cooldown_hours: float = Field(default=24, ge=0)
    survey_path: Path = DEFAULT_SURVEY
    halls_file: Path | None = None  # halls (parking rewards) to create or update at start
    # The closed loop's rules (tiers, holidays, re-rating window, fraud rules); None: the
    # defaults shipped in bot/tickets/tickets.yaml.
    tickets_file: Path | None = None
    # The results: which evaluation of a case rated twice counts, and the ranking's file
    # (weights, minimum sample, bottom N; bot/results/results.yaml when unset).
    results_evaluation: Literal["latest", "first"] = "latest"
    results_file: Path | None = None
    results_codes: Literal["provincial", "gbt39046"] = "provincial"  # bot/results/codes/
    # The push upward (上报, bot/results/upstream.py): no URL, nothing is written or sent.
    upstream_url: str | None = None
    upstream_secret: str | None = None  # the HMAC-SHA256 key every body is signed with
    upstream_profile: Literal["national", "provincial"] = "national"  # the body's field names
    upstream_attempts: int = Field(default=8, ge=1, le=30)  # counting the first
    upstream_backoff_seconds: float = Field(default=60, gt=0)  # before the first retry; doubles
    upstream_timeout_seconds: float = Field(default=10, gt=0, le=120)  # a whole request
    # The staff pages (bot/pages): a session ends after this many hours without a request.
    session_hours: float = Field(default=8, gt=0, le=24 * 30)
    worker_interval_seconds: float = Field(default=5, gt=0)
    run_worker: bool = (
        True  # run the timer loop inside `serve` (turn off when `ratebot worker` runs it)
    )
    log_level: str = "INFO"
    # One line per request (uvicorn's access log): a twentieth of a turn's CPU, and the proxy in
    # front logs requests anyway. Errors are logged either way.
    access_log: bool = False

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator(
        "telegram_token",
        "telegram_secret",
        "telegram_api_url",
        "wechat_token",
        "wechat_aes_key",
        "wechat_appid",
        "wechat_secret",
        "wechat_api_url",
        "wechat_template_id",
        "upstream_url",
        "upstream_secret",
    )
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        """An empty variable (``RATEBOT_TELEGRAM_TOKEN=``) means unset, as no variable does."""
        if value is None:
            return None
        return value.strip() or None

    @field_validator("default_locale")
    @classmethod
    def _shipped_locale(cls, value: str) -> str:
        if value not in LOCALES:
            raise ValueError(f"must be one of {', '.join(LOCALES)}")
        return value

    @field_validator("voice_voices")
    @classmethod
    def _voices_of_shipped_locales(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(LOCALES))
        if unknown:
            raise ValueError(f"unknown locale(s) {', '.join(unknown)}; use {', '.join(LOCALES)}")
        return value

    @field_validator("voice_audio_dir")
    @classmethod
    def _audio_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"no such directory: {value}")
        return value

    @field_validator("quiet_hours", "calling_hours")
    @classmethod
    def _hours_window_format(cls, value: str) -> str:
        if value.strip():
            parse_hours_window(value)
        return value.strip()

    @model_validator(mode="after")
    def _real_secret_outside_development(self) -> Settings:
        if self.environment != "development" and (
            self.secret_key.lower() in PLACEHOLDER_SECRETS or len(self.secret_key) < 32
        ):
            raise ValueError(
                "RATEBOT_SECRET_KEY is a placeholder or shorter than 32 characters; "
                "set a random one, e.g. "
                'python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        return self

    @model_validator(mode="after")
    def _telegram_secret_with_token(self) -> Settings:
        # Messages name the variables, never their values: they are secrets.
        if self.telegram_token is not None and not TELEGRAM_TOKEN.match(self.telegram_token):
            raise ValueError(
                "RATEBOT_TELEGRAM_TOKEN does not look like a bot token from @BotFather "
                "(<digits>:<letters, digits, _ or ->)"
            )
        if self.telegram_token and not self.telegram_secret:
            raise ValueError(
                "RATEBOT_TELEGRAM_SECRET is required with RATEBOT_TELEGRAM_TOKEN (the webhook's "
                "secret_token), e.g. "
                'python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        if self.telegram_secret is not None and not TELEGRAM_SECRET.match(self.telegram_secret):
            raise ValueError(
                "RATEBOT_TELEGRAM_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and - "
                "(Telegram's rule for a webhook secret_token)"
            )
        return self

    @model_validator(mode="after")
    def _wechat_shapes(self) -> Settings:
        # Messages name the variables, never their values: they are secrets.
        if self.wechat_token is not None and not WECHAT_TOKEN.match(self.wechat_token):
            raise ValueError(
                "RATEBOT_WECHAT_TOKEN must be 3-32 letters or digits (WeChat's rule for the "
                "server Token)"
            )
        if self.wechat_aes_key is not None:
            if not WECHAT_AES_KEY.match(self.wechat_aes_key):
                raise ValueError(
                    "RATEBOT_WECHAT_AES_KEY must be the 43 letters or digits of the official "
                    "account's EncodingAESKey"
                )
            if not self.wechat_token or not self.wechat_appid:
                raise ValueError(
                    "RATEBOT_WECHAT_AES_KEY (safe mode) needs RATEBOT_WECHAT_TOKEN and "
                    "RATEBOT_WECHAT_APPID"
                )
        for name, value in (
            ("RATEBOT_WECHAT_APPID", self.wechat_appid),
            ("RATEBOT_WECHAT_SECRET", self.wechat_secret),
            ("RATEBOT_WECHAT_TEMPLATE_ID", self.wechat_template_id),
        ):
            if value is not None and not WECHAT_ID.match(value):
                raise ValueError(f"{name} must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
        if self.wechat_secret and not self.wechat_appid:
            raise ValueError("RATEBOT_WECHAT_SECRET needs RATEBOT_WECHAT_APPID")
        return self

    @model_validator(mode="after")
    def _upstream_signed(self) -> Settings:
        if self.upstream_url is None:
            return self
        if not self.upstream_url.startswith(("http://", "https://")):
            raise ValueError("RATEBOT_UPSTREAM_URL must be an http:// or https:// URL")
        if not self.upstream_secret:
            raise ValueError(
                "RATEBOT_UPSTREAM_SECRET is required with RATEBOT_UPSTREAM_URL (every push is "
                "signed with it, HMAC-SHA256), e.g. "
                'python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        return self

    @property
    def wechat_enabled(self) -> bool:
        """``/channels/wechat`` answers (the server Token is what WeChat signs with)."""
        return bool(self.wechat_token)

    @property
    def wechat_sending_enabled(self) -> bool:
        """Customer-service and template messages can be sent (they need an access token)."""
        return bool(self.wechat_appid and self.wechat_secret)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_token)

    @field_validator("wechat_template_fields")
    @classmethod
    def _known_template_values(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value.values()) - TEMPLATE_VALUES)
        if unknown:
            raise ValueError(
                f"unknown value(s) {', '.join(unknown)}; use {', '.join(sorted(TEMPLATE_VALUES))}"
            )
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def quiet_window(self) -> tuple[time, time] | None:
        return parse_hours_window(self.quiet_hours) if self.quiet_hours else None

    @property
    def calling_window(self) -> tuple[time, time] | None:
        """When outbound calls may be placed (local time); None: any time."""
        return parse_hours_window(self.calling_hours) if self.calling_hours else None

    @property
    def sms_sending_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)


def parse_hours_window(value: str) -> tuple[time, time]:
    """A window of local hours (quiet hours, calling hours): ``"21:00-08:00"`` → (21:00, 08:00).
    The window may wrap past midnight."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError as exc:
        raise ValueError(f"hours must look like 21:00-08:00, got {value!r}") from exc
    return start, end
