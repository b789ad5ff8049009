"""A fake of the Telegram Bot API on 127.0.0.1, so aiogram's real Bot and HTTP session run in
tests (point ``RATEBOT_TELEGRAM_API_URL`` at it).

It serves ``/bot<token>/<method>`` in a thread of its own (an aiohttp app on its own event loop),
records every call with its parameters (JSON, form or multipart bodies, as aiogram sends them; an
uploaded file as its bytes) and answers as Telegram does: ``{"ok": true, "result": ...}`` — a
plausible ``Message`` for ``sendMessage`` and ``sendPhoto``, ``true`` for
``answerCallbackQuery``, ``editMessageReplyMarkup`` and ``setWebhook``, the bot's ``User`` for
``getMe`` — or Telegram's error body for an unknown method, a wrong token, or a method listed in
``fail``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from aiohttp import web

TOKEN = "123456789:TEST-token_for-ratebot"


@dataclass
class Call:
    method: str
    params: dict[str, Any]  # JSON-encoded fields (reply_markup…) already decoded
    result: Any = None  # what the fake answered ("result" of the Bot API's answer)

    @property
    def message_id(self) -> int:
        """The id Telegram gave the message this sendMessage sent."""
        return int(self.result["message_id"])

    @property
    def keyboard(self) -> list[list[dict[str, Any]]]:
        markup = self.params.get("reply_markup") or {}
        return list(markup.get("inline_keyboard", []))

    @property
    def button_data(self) -> list[str]:
        return [b["callback_data"] for row in self.keyboard for b in row if "callback_data" in b]

    @property
    def links(self) -> list[tuple[str, str]]:
        """(label, URL) of each button that opens a link."""
        return [(b["text"], b["url"]) for row in self.keyboard for b in row if "url" in b]

    @property
    def button_labels(self) -> list[str]:
        return [button["text"] for row in self.keyboard for button in row]


@dataclass
class FakeTelegram:
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, tuple[int, str]] = field(default_factory=dict)  # method → (code, description)
    _ids: count = field(default_factory=lambda: count(1000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- what the tests read ------------------------------------------------------------------

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    @property
    def sent(self) -> list[Call]:
        return self.of("sendMessage")

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    # --- the server ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        if token != self.token:
            return _error(401, "Unauthorized")
        call = Call(method, await _params(request))
        with self._lock:
            self.calls.append(call)
        if method in self.fail:
            code, description = self.fail[method]
            return _error(code, description)
        call.result = self._result(method, call.params)
        if call.result is None:
            return _error(404, "Not Found")
        return web.json_response({"ok": True, "result": call.result})

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method in {"sendMessage", "sendPhoto"}:
            message: dict[str, Any] = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "from": {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "rb"},
            }
            if method == "sendPhoto":
                size = {"file_id": "PHOTO", "file_unique_id": "P", "width": 1, "height": 1}
                message |= {"photo": [size], "caption": params.get("caption", "")}
            else:
                message["text"] = params.get("text", "")
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            return message
        if method in {"answerCallbackQuery", "editMessageReplyMarkup", "setWebhook"}:
            return True
        if method == "getMe":
            bot_id = int(self.token.split(":")[0])
            return {"id": bot_id, "is_bot": True, "first_name": "ratebot", "username": "ratebot"}
        return None

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns the base URL (``http://127.0.0.1:<port>``)."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/bot{token}/{method}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", 0).start()
            self.port = self._runner.addresses[0][1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Telegram API did not start")
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    form = await request.post()  # urlencoded or multipart, as aiogram's aiohttp session sends
    params: dict[str, Any] = {}
    for key, value in form.items():
        if not isinstance(value, str):  # an uploaded file
            params[key] = value.file.read()
            continue
        params[key] = _maybe_json(value) if key in {"reply_markup", "allowed_updates"} else value
    return params


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error(code: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": code, "description": description}, status=code
    )
