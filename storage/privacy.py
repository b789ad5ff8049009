"""Personal data: a keyed hash to look a contact up, an encrypted copy to send to it, a mask.

Phone numbers, WeChat openids and Telegram chat ids never reach a table, a log line or an API
answer in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NON_DIGITS = re.compile(r"[\s\-().]")


class InvalidPhone(ValueError):
    pass


def normalize_phone(value: str) -> str:
    """E.164. A mainland mobile number written without its country code gets +86."""
    raw = _NON_DIGITS.sub("", value.strip())
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        raw = "+86" + raw if len(raw) == 11 and raw.startswith("1") else "+" + raw
    if not (raw[1:].isdigit() and 8 <= len(raw) - 1 <= 15):
        raise InvalidPhone(f"not a phone number: {mask(value)}")
    return raw


def mask(value: str) -> str:
    """``+8613812341234`` → ``+86 138****1234``; other ids keep their first 3 and last 4."""
    if value.startswith("+86") and len(value) == 14:
        national = value[3:]
        return f"+86 {national[:3]}****{national[-4:]}"
    if len(value) <= 8:
        return value[:1] + "*" * (len(value) - 1)
    return f"{value[:3]}****{value[-4:]}"


class Privacy:
    """Hashing and encryption with keys derived from ``RATEBOT_SECRET_KEY``."""

    def __init__(self, secret_key: str) -> None:
        def derive(purpose: bytes) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
                secret_key.encode()
            )

        self._hash_key = derive(b"ratebot contact hash")
        self._fernet = Fernet(base64.urlsafe_b64encode(derive(b"ratebot contact encryption")))

    def contact_hash(self, value: str) -> str:
        """A stable keyed hash (HMAC-SHA256, hex) to find a contact without storing it."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("cannot decrypt: was RATEBOT_SECRET_KEY changed?") from exc
