"""A fake of the WeChat official-account API on 127.0.0.1, so wechatpy's real client (and its
``requests`` session) runs in tests (point ``RATEBOT_WECHAT_API_URL`` at it).

It serves, under ``/cgi-bin/``: ``token`` (an access token for the right AppID and AppSecret),
``message/custom/send``, ``message/template/send``, ``media/upload`` (a temporary image: the
multipart body is kept in ``raw``), ``qrcode/create`` and ``showqrcode`` (a tiny PNG), checks the
access token of every other call, records every request, and answers as WeChat does: JSON with
``errcode``/``errmsg`` (0 for success). ``fail[path] = (errcode, errmsg)`` makes a
path fail, e.g. ``fail["message/custom/send"] = (45015, "response out of time limit or
subscription is canceled")``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any
from urllib.parse import parse_qs, urlsplit

APPID = "wx1234567890abcdef"
SECRET = "test-app-secret-0123456789abcdef"
# A 1×1 PNG, what showqrcode answers with.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)


@dataclass
class Call:
    method: str
    path: str  # after /cgi-bin/, e.g. "message/custom/send"
    query: dict[str, str]
    body: Any  # decoded JSON, or None
    raw: bytes = b""  # the body as sent (an upload's multipart form)


@dataclass
class FakeWeChat:
    appid: str = APPID
    secret: str = SECRET
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, tuple[int, str]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)  # every access token handed out
    _ids: count = field(default_factory=lambda: count(2000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    @property
    def custom(self) -> list[Call]:
        return self.of("message/custom/send")

    def _respond(
        self, method: str, path: str, query: dict[str, str], body: Any, raw: bytes = b""
    ) -> Any:
        """Record one API call and answer it as WeChat's API would."""
        with self._lock:
            self.calls.append(Call(method, path, query, body, raw))
        if path in self.fail:
            code, message = self.fail[path]
            return {"errcode": code, "errmsg": message}
        if path == "token":
            if query.get("appid") != self.appid or query.get("secret") != self.secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            token = f"ACCESS-{next(self._ids)}"
            with self._lock:
                self.tokens.append(token)
            return {"access_token": token, "expires_in": 7200}
        if path == "showqrcode":
            return PNG if query.get("ticket") else {"errcode": 40097, "errmsg": "invalid args"}
        if query.get("access_token") not in self.tokens:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if path == "message/custom/send":
            return {"errcode": 0, "errmsg": "ok"}
        if path == "media/upload":
            if query.get("type") != "image" or b"\x89PNG" not in raw:
                return {"errcode": 40004, "errmsg": "invalid media type"}
            return {"type": "image", "media_id": f"MEDIA-{next(self._ids)}", "created_at": 1}
        if path == "message/template/send":
            return {"errcode": 0, "errmsg": "ok", "msgid": next(self._ids)}
        if path == "qrcode/create":
            scene = (body or {}).get("action_info", {}).get("scene", {})
            ticket = f"TICKET-{scene.get('scene_str', scene.get('scene_id', ''))}"
            answer = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{ticket}"}
            if "expire_seconds" in (body or {}):
                answer["expire_seconds"] = body["expire_seconds"]
            return answer
        return {"errcode": 48001, "errmsg": "api unauthorized"}

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns the base URL (``http://127.0.0.1:<port>``)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                if not parts.path.startswith("/cgi-bin/"):
                    self.send_error(404)
                    return
                answer = fake._respond(method, parts.path[len("/cgi-bin/") :], query, body, raw)
                if isinstance(answer, bytes):
                    payload, kind = answer, "image/jpg"
                else:
                    payload, kind = json.dumps(answer).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
