"""What ``ratebot serve`` asks of uvicorn: the access log only when it is asked for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from bot.cli import main


@pytest.mark.parametrize(("setting", "logged"), [(None, False), ("true", True), ("false", False)])
def test_the_access_log_is_a_setting_off_by_default(
    setting: str | None, logged: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in os.environ if n.startswith("RATEBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATEBOT_DATABASE_URL", f"sqlite:///{tmp_path}/serve.db")
    if setting is not None:
        monkeypatch.setenv("RATEBOT_ACCESS_LOG", setting)
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))
    main(["serve"])
    assert served["app"] == "bot.app:served_app"
    assert served["access_log"] is logged
    assert served["log_level"] == "info"  # errors and warnings are logged either way
