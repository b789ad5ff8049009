"""Liveness, readiness and metrics: what an orchestrator and Prometheus see.

Every test runs on both backends (SQLite + memory, PostgreSQL + Redis) through ``backend``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from tests.bot.conftest import PUBLIC_URL, Harness, make_settings

UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/x"  # nothing listens on port 1
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
READINESS_BUDGET = 5.0  # seconds a probe may take before an orchestrator gives up on it


@asynccontextmanager
async def client_for(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a new app on ``settings`` (lifespan run, so the runtime exists)."""
    app = create_app(make_settings(**settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            yield client


def sample(metrics_text: str, name: str, labels: dict[str, str]) -> float:
    """The value of one sample in Prometheus text (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_healthz_is_up(harness: Harness) -> None:
    response = await harness.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_both_stores_answer(harness: Harness) -> None:
    response = await harness.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


async def test_readyz_is_503_naming_the_database_when_it_is_down(backend: dict[str, Any]) -> None:
    async with client_for(
        database_url=UNREACHABLE_POSTGRES, redis_url=backend["redis_url"]
    ) as client:
        started = time.monotonic()
        response = await client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["detail"] == "not ready"
    assert set(body["problems"]) == {"database"}  # the state store is fine
    assert body["problems"]["database"]  # the error's kind, e.g. OperationalError
    assert "127.0.0.1:1" not in response.text and "postgres@" not in response.text
    assert elapsed < READINESS_BUDGET, f"readiness took {elapsed:.1f}s with the database down"


async def test_readyz_is_503_naming_the_state_store_when_redis_is_down(
    backend: dict[str, Any],
) -> None:
    async with client_for(
        database_url=backend["database_url"], redis_url=UNREACHABLE_REDIS
    ) as client:
        started = time.monotonic()
        response = await client.get("/readyz")
        elapsed = time.monotonic() - started
        # liveness does not depend on the stores: the process is up, just not ready
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body["problems"]) == {"state_store"}
    assert body["problems"]["state_store"]
    assert elapsed < READINESS_BUDGET, f"readiness took {elapsed:.1f}s with Redis down"


async def test_metrics_is_prometheus_text_and_counts_an_sms_turn(harness: Harness) -> None:
    labels = {"channel": "sms"}
    before = await harness.client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(before.text)}
    assert "ratebot_turns" in families  # a counter family is named without _total
    turns_before = sample(before.text, "ratebot_turns_total", labels)

    await harness.report()
    assert await harness.reply_text("5")

    after = (await harness.client.get("/metrics")).text
    # the registry is per process, so compare with before rather than expect an absolute value
    assert sample(after, "ratebot_turns_total", labels) == turns_before + 1


def test_a_served_app_freezes_its_start_up_objects(monkeypatch: Any, tmp_path: Any) -> None:
    """``ratebot serve``'s factory: the objects built at start-up are out of the collector's
    sight, so a full collection in a request does not walk them all."""
    import gc

    from bot.app import served_app

    monkeypatch.setenv("RATEBOT_DATABASE_URL", f"sqlite:///{tmp_path}/ratebot.db")
    gc.unfreeze()
    try:
        served_app()
        assert gc.get_freeze_count() > 100_000
    finally:
        gc.unfreeze()
