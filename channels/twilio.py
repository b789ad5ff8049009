"""Twilio: the REST client (SMS and calls) and webhook signature checks."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

from twilio.base import values
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import Delivery
from storage.privacy import mask

log = logging.getLogger("ratebot.twilio")


def signature_is_valid(
    auth_token: str, url: str, params: Mapping[str, Any], signature: str
) -> bool:
    """Whether ``X-Twilio-Signature`` signs ``url`` (exactly as Twilio called it) and ``params``.

    One HMAC for the URL as given, the one Twilio signs; only when that does not match, the
    validator's own check, which also tries the URL with and without its port (two more)."""
    if not signature:
        return False
    validator = RequestValidator(auth_token)
    expected = validator.compute_signature(url, params)
    return hmac.compare_digest(expected.encode(), signature.encode()) or validator.validate(
        url, params, signature
    )


class TwilioSender:
    """Sends SMS and places calls through Twilio's REST API with the official client.

    ``api_url`` points the client at a Twilio-compatible API (tests, emulators) instead of
    api.twilio.com.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        api_url: str | None = None,
        status_callback: str | None = None,
    ) -> None:
        self.client = Client(account_sid, auth_token)
        if api_url:
            self.client.api.base_url = api_url.rstrip("/")
        self.from_number = from_number
        self.status_callback = status_callback

    def send_text(self, to: str, body: str) -> Delivery:
        return _deliver(
            "an SMS",
            to,
            lambda: self.client.messages.create(
                to=to,
                from_=self.from_number,
                body=body,
                status_callback=self.status_callback or values.unset,
            ),
        )

    def place_call(self, to: str, *, answer_url: str, status_url: str) -> Delivery:
        """Call ``to``; when answered, Twilio fetches the call's TwiML from ``answer_url``.
        Answering-machine detection tells the answer URL who picked up (``AnsweredBy``)."""
        return _deliver(
            "a call",
            to,
            lambda: self.client.calls.create(
                to=to,
                from_=self.from_number,
                url=answer_url,
                method="POST",
                status_callback=status_url,
                status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                machine_detection="Enable",
            ),
        )

    def close(self) -> None:
        pass  # the twilio client opens a connection per request


def _deliver(what: str, to: str, create: Callable[[], Any]) -> Delivery:
    """Ask Twilio to create a message or a call: what it answered, or why it did not happen
    (refused with Twilio's code, or unreachable) — never an exception."""
    try:
        created = create()
    except TwilioRestException as exc:
        log.warning("twilio refused %s to %s: %s %s", what, mask(to), exc.code, exc.msg)
        return Delivery("twilio", None, "failed", f"{exc.code or exc.status}: {exc.msg}"[:255])
    except (TwilioException, OSError) as exc:
        log.warning("twilio unreachable for %s to %s: %s", what, mask(to), type(exc).__name__)
        return Delivery("twilio", None, "failed", f"unreachable: {type(exc).__name__}")
    return Delivery("twilio", created.sid, str(created.status or "queued"))
