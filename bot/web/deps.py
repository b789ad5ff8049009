"""The runtime and a database session as FastAPI dependencies; an act in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlmodel import Session as DbSession
from starlette.concurrency import run_in_threadpool

from bot.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_db(rt: RuntimeDep):  # type: ignore[no-untyped-def]
    with DbSession(rt.db) as db:
        yield db


DbDep = Annotated[DbSession, Depends(get_db)]


T = TypeVar("T")


async def in_transaction(rt: Runtime, act: Callable[[sa.Connection, datetime], T]) -> T:
    """Run ``act`` (given the connection and the clock's now) in one transaction, off the event
    loop: what it wrote is committed if it returns, rolled back if it raises."""

    def run() -> T:
        with rt.db.begin() as conn:
            return act(conn, rt.clock())

    return await run_in_threadpool(run)
