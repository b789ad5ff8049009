"""``ratebot simulate-sms`` against a real ratebot listening on a port: it prints the reply's text
(not TwiML), exits 1 with the status and the reason when refused, says what to check when
nothing listens, and signs for ``--url`` when the service's public URL is not this shell's."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from bot.app import create_app
from bot.cli import main
from storage.db import upgrade
from tests.bot.conftest import AUTH_TOKEN, make_settings
from tests.samples import PHONE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A ratebot on 127.0.0.1 (its own thread), whose RATEBOT_PUBLIC_URL is its address."""
    url = f"sqlite:///{tmp_path}/served.db"
    upgrade(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(make_settings(url, public_url=base))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def shell(cli_env: str, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The operator's shell: the service's auth token, and a public URL that is not its."""
    monkeypatch.setenv("RATEBOT_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("RATEBOT_PUBLIC_URL", "http://127.0.0.1:1")  # nothing listens there
    return monkeypatch


def test_the_reply_is_printed_as_text(
    served: str, shell: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["simulate-sms", "--url", served, "--phone", PHONE, "5"])
    out = capsys.readouterr().out
    assert "<" not in out and "服务态度" in out, out  # the next question, as the citizen reads it


def test_a_refusal_exits_1_with_the_status_and_the_reason(
    served: str, shell: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.setenv("RATEBOT_TWILIO_AUTH_TOKEN", "another-token")
    with pytest.raises(SystemExit) as refused:
        main(["simulate-sms", "--url", served, "--phone", PHONE, "5"])
    message = str(refused.value.code)
    assert message.startswith(
        "ratebot simulate-sms: 403 Forbidden: missing or wrong X-Twilio-Signature"
    )
    assert "--url" in message  # what to check
    assert capsys.readouterr().out == ""


def test_signed_for_this_shells_public_url_by_default(
    served: str, shell: pytest.MonkeyPatch
) -> None:
    """With no --url it posts to, and signs for, RATEBOT_PUBLIC_URL: here nothing listens."""
    with pytest.raises(SystemExit) as refused:
        main(["simulate-sms", "--phone", PHONE, "5"])
    assert str(refused.value.code) == (
        "ratebot simulate-sms: cannot reach http://127.0.0.1:1/channels/sms (ConnectError): "
        "is `ratebot serve` running at http://127.0.0.1:1?"
    )
    shell.setenv("RATEBOT_PUBLIC_URL", served)
    main(["simulate-sms", "--phone", PHONE, "5"])  # the same URL as the service's: it answers
