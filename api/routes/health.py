"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from refundbridge.api.deps import ApiDeps, AppDeps
from refundbridge.store.db import DATABASE_ERROR

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _checks(deps: ApiDeps) -> dict[str, str]:
    checks = {}
    try:
        deps.reads.ping()
        checks["database"] = "ok"
    except DATABASE_ERROR as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        deps.redis.ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    return checks


@router.get("/readyz")
async def readyz(deps: AppDeps) -> JSONResponse:
    checks = await run_in_threadpool(_checks, deps)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
