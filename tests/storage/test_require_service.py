"""The service policy in tests/conftest.py: skip for a newcomer, fail on CI."""

from __future__ import annotations

import pytest

from tests.conftest import redact_url, require_service


def unreachable() -> None:
    raise ConnectionRefusedError("connection refused")


def test_unreachable_service_skips_with_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Redis not reachable at here.*start it"):
        require_service("Redis", unreachable, where="here", hint="start it")


def test_empty_ci_variable_still_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        require_service("Redis", unreachable, where="here", hint="start it")


def test_unreachable_service_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL not reachable.*CI is set"):
        require_service("PostgreSQL", unreachable, where="here", hint="start it")


def test_reachable_service_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require_service("Redis", lambda: None, where="here", hint="start it")


def test_redact_url_hides_the_password() -> None:
    assert redact_url("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("redis://127.0.0.1:6379/15") == "redis://127.0.0.1:6379/15"
