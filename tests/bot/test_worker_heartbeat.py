"""The worker's heartbeat: what a container's health check reads, since the worker serves no
HTTP (the image's ``/healthz`` check showed the ``worker`` service unhealthy forever)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from bot import worker
from bot.cli import main
from bot.runtime import Runtime
from storage.db import upgrade
from tests.bot.conftest import make_settings

BUDGET = 10.0  # seconds a pass of an idle worker on SQLite may take on a loaded machine


async def run_until(rt: Runtime, heartbeat: Path) -> None:
    """Run the worker loop until ``heartbeat`` exists (or ``BUDGET`` runs out), then stop it."""
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run_forever(rt, stop, heartbeat))
    deadline = time.monotonic() + BUDGET
    while not heartbeat.exists() and time.monotonic() < deadline and not loop.done():
        await asyncio.sleep(0.05)
    stop.set()
    await loop
    await rt.close()


async def test_a_good_pass_touches_the_heartbeat(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ratebot.db"
    upgrade(url)
    rt = Runtime.from_settings(make_settings(url))
    heartbeat = tmp_path / "worker.alive"
    await run_until(rt, heartbeat)
    assert heartbeat.exists()


async def test_a_failing_pass_leaves_the_heartbeat_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database the worker cannot open: every pass fails, so the check must say unhealthy.
    rt = Runtime.from_settings(make_settings(f"sqlite:///{tmp_path}/no/such/dir/ratebot.db"))
    heartbeat = tmp_path / "worker.alive"
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run_forever(rt, stop, heartbeat))
    deadline = time.monotonic() + BUDGET
    while "worker tick failed" not in caplog.text and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await loop
    await rt.close()
    assert "worker tick failed" in caplog.text
    assert not heartbeat.exists()


def test_check_passes_on_a_fresh_heartbeat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heartbeat = tmp_path / "worker.alive"
    heartbeat.touch()
    main(["worker", "--check", "--heartbeat", str(heartbeat)])
    assert "worker alive" in capsys.readouterr().out


def test_check_fails_on_a_stale_heartbeat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.alive"
    heartbeat.touch()
    old = time.time() - 300
    os.utime(heartbeat, (old, old))
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--check", "--heartbeat", str(heartbeat)])
    assert "300 s ago (more than 120 s)" in str(exited.value.code)
    # A longer allowance accepts it.
    main(["worker", "--check", "--heartbeat", str(heartbeat), "--max-age", "600"])


def test_check_fails_when_the_worker_never_finished_a_pass(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--check", "--heartbeat", str(tmp_path / "worker.alive")])
    assert "has not finished a pass yet" in str(exited.value.code)


def test_check_needs_the_heartbeat_file() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--check"])
    assert "--check needs --heartbeat FILE" in str(exited.value.code)
