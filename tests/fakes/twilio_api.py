"""A fake of Twilio's REST API on 127.0.0.1, so the real twilio client runs in tests.

It records every request and answers ``Messages.json`` and ``Calls.json`` the way Twilio does
(201 with an ``SM…`` or ``CA…`` sid, status ``queued``), or with Twilio's error body for numbers
listed in ``refuse``.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import parse_qs


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, str]
    account_sid: str  # from the Basic auth header


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "test-auth-token"
    requests: list[Recorded] = field(default_factory=list)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # to-number → (code, message)
    _ids: count = field(default_factory=lambda: count(1))

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                user = base64.b64decode(
                    self.headers.get("authorization", "Basic ").split(" ", 1)[1] or b""
                ).decode()
                fake.requests.append(Recorded("POST", self.path, form, user.split(":", 1)[0]))
                kinds = {"/Messages.json": "SM", "/Calls.json": "CA"}
                kind = next((k for p, k in kinds.items() if self.path.endswith(p)), None)
                if kind is None:
                    return self._json(404, {"code": 20404, "message": "not found", "status": 404})
                if form.get("To") in fake.refuse:
                    code, message = fake.refuse[form["To"]]
                    return self._json(400, {"code": code, "message": message, "status": 400})
                sid = f"{kind}{next(fake._ids):032x}"
                self._json(
                    201,
                    {
                        "sid": sid,
                        "status": "queued",
                        "to": form.get("To"),
                        "from": form.get("From"),
                        "body": form.get("Body"),
                        "account_sid": fake.account_sid,
                    },
                )

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def messages(self) -> list[dict[str, str]]:
        return [r.form for r in self.requests if r.path.endswith("/Messages.json")]

    @property
    def calls(self) -> list[dict[str, str]]:
        return [r.form for r in self.requests if r.path.endswith("/Calls.json")]
