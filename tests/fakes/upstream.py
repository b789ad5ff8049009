"""A fake of the provincial platform's push endpoint on 127.0.0.1 (上报), so ratebot's real httpx
client runs in tests.

It records every request — its ``Idempotency-Key``, its raw body, and whether its
``X-Ratebot-Signature`` checks out against the fake's own copy of the secret (computed here, not
with ratebot's code) — and answers from a script, one answer per request, then ``ok``:

- ``ok``: 200, the item stored under its key (a key seen before is answered 200 again and
  stored once: the platform is idempotent);
- ``fail``: 500;
- ``slow``: stores the item, then answers 200 only after ``slow_seconds`` — later than ratebot
  waits, so ratebot sees a timeout for an item the platform has.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # two workers' rounds at once (the default 5 drops connections)


@dataclass
class Received:
    key: str
    body: bytes
    signed: bool  # the signature is the HMAC-SHA256 of the body with the fake's secret
    answer: str

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class FakeUpstream:
    secret: str
    answers: list[str] = field(default_factory=list)
    slow_seconds: float = 2.0
    delay_seconds: float = 0.0  # before every answer: lets concurrent workers overlap
    url: str = ""  # set by start()
    received: list[Received] = field(default_factory=list)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # key → body, once each
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                key = self.headers.get("idempotency-key", "")
                expected = hmac.new(fake.secret.encode(), body, hashlib.sha256).hexdigest()
                given = self.headers.get("x-ratebot-signature", "")
                signed = hmac.compare_digest(given, f"sha256={expected}")
                with fake._lock:
                    answer = fake.answers.pop(0) if fake.answers else "ok"
                    fake.received.append(Received(key, body, signed, answer))
                    if answer != "fail" and signed:
                        fake.stored.setdefault(key, json.loads(body))
                if fake.delay_seconds:
                    fake._stopping.wait(fake.delay_seconds)
                if answer == "slow":
                    fake._stopping.wait(fake.slow_seconds)
                status = 500 if answer == "fail" else 200 if signed else 401
                self._json(status, {"code": status})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # ratebot gave up waiting (a slow answer) and closed
                    pass

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hcp/push"
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def keys(self) -> Counter[str]:
        """How many times each idempotency key came."""
        return Counter(r.key for r in self.received)
