"""The runtime and a database session as FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session as DbSession

from bot.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_db(rt: RuntimeDep):  # type: ignore[no-untyped-def]
    with DbSession(rt.db) as db:
        yield db


DbDep = Annotated[DbSession, Depends(get_db)]
