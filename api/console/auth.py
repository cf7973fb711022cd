"""Logging in and out of the console, and the language switch.

A login is checked against the throttle first (failures per name and per address, in
Redis, over a 15-minute window), then against the operator's argon2 hash. A successful
login always starts a new session (its id is never one the browser brought along), and any
session the browser still held is ended. The login form has its own CSRF token in a
short-lived cookie (double submit), as there is no session yet to hold one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from redis import Redis

from refundbridge.api.console.web import (
    LANG_COOKIE,
    LOCALES,
    PREFIX,
    SESSION_COOKIE,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
    safe_next,
)
from refundbridge.api.deps import AppDeps

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LOGIN_CSRF_COOKIE = "rb_login_csrf"
WINDOW_SECONDS = 15 * 60
NAME_MAX = 64


class LoginThrottle:
    """Failed logins counted per name and per address; either count at its limit refuses
    further tries (without checking the password) until the window has passed."""

    def __init__(self, redis: Redis, per_name: int, per_address: int) -> None:
        self._redis = redis
        self._limits = {"name": per_name, "address": per_address}

    @staticmethod
    def _key(kind: str, value: str) -> str:
        return f"refundbridge:login:{kind}:{hashlib.sha256(value.encode()).hexdigest()}"

    def blocked_for(self, name: str, address: str) -> int:
        """Seconds until another try is allowed (0: now)."""
        wait = 0
        for kind, value in (("name", name.casefold()), ("address", address)):
            key = self._key(kind, value)
            count = int(self._redis.get(key) or 0)
            if count >= self._limits[kind]:
                wait = max(wait, int(self._redis.ttl(key)), 1)
        return wait

    def failed(self, name: str, address: str) -> None:
        for kind, value in (("name", name.casefold()), ("address", address)):
            key = self._key(kind, value)
            with self._redis.pipeline() as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS, nx=True)
                pipe.execute()

    def succeeded(self, name: str) -> None:
        self._redis.delete(self._key("name", name.casefold()))


def _throttle(deps: AppDeps) -> LoginThrottle:
    console = deps.settings.console
    return LoginThrottle(deps.redis, console.login_failures_per_name,
                         console.login_failures_per_address)


def _secure(request: Request, deps: AppDeps) -> bool:
    return request.url.scheme == "https" or deps.settings.console.secure_cookies


def _login_page(request: Request, deps: AppDeps, *, next_url: str, error: str = "",
                name: str = "", status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, status=status, login_csrf=token,
                      next_url=next_url, error=error, name=name)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=WINDOW_SECONDS, path=PREFIX,
                        httponly=True, samesite="strict", secure=_secure(request, deps))
    return response


@router.get("/login")
async def login_form(request: Request, deps: AppDeps, next: str | None = None) -> Response:
    return _login_page(request, deps, next_url=safe_next(next))


@router.post("/login")
async def login(request: Request, deps: AppDeps,
                name: Annotated[str, Form(max_length=NAME_MAX)] = "",
                password: Annotated[str, Form(max_length=1024)] = "",
                csrf_token: Annotated[str, Form(max_length=128)] = "",
                next: Annotated[str, Form(max_length=2048)] = "") -> Response:
    next_url = safe_next(next)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return _login_page(request, deps, next_url=next_url, name=name, status=403,
                           error="The form expired. Please log in again.")
    address = request.client.host if request.client else "-"
    throttle = _throttle(deps)
    wait = await run_in_threadpool(throttle.blocked_for, name, address)
    if wait:
        return _login_page(request, deps, next_url=next_url, name=name, status=429,
                           error="Too many failed logins. Try again in a few minutes.")
    principal = await run_in_threadpool(deps.operators.authenticate, name, password)
    if principal is None:
        await run_in_threadpool(throttle.failed, name, address)
        return _login_page(request, deps, next_url=next_url, name=name, status=401,
                           error="Wrong name or password.")
    await run_in_threadpool(throttle.succeeded, name)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await run_in_threadpool(deps.operators.end_session, old)
    lifetime = deps.settings.console.session_hours * 3600
    session_id, _ = await run_in_threadpool(deps.operators.start_session, principal.name,
                                            datetime.now(UTC), lifetime)
    response = redirect(next_url)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=int(lifetime), path="/",
                        httponly=True, samesite="lax", secure=_secure(request, deps))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, deps: AppDeps, _: ConsoleWriter) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        await run_in_threadpool(deps.operators.end_session, session_id)
    response = redirect(f"{PREFIX}/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/language/{locale}")
async def choose_language(locale: str, request: Request, next: str | None = None) -> Response:
    """Only a preference, kept in a cookie; nothing on the server changes."""
    response = redirect(safe_next(next))
    if locale in LOCALES:
        response.set_cookie(LANG_COOKIE, locale, max_age=365 * 86400, path="/",
                            samesite="lax", httponly=True)
    return response


@router.get("/")
async def home(user: ConsoleUser) -> Response:
    """Each role's first page: its day's work."""
    from refundbridge.core.access import Permission

    if user.may(Permission.DECIDE):
        return redirect(f"{PREFIX}/review")
    if user.may(Permission.RECEIVE):
        return redirect(f"{PREFIX}/receive")
    if user.may(Permission.RECALL):
        return redirect(f"{PREFIX}/recalls")
    return redirect(f"{PREFIX}/cases")


@router.get("/me")
async def me(request: Request, user: ConsoleUser, deps: AppDeps) -> Response:
    """Who is logged in, their role and shops, and when the session ends."""
    shops = deps.shop_ids if user.principal.shops is None else sorted(user.principal.shops)
    return render(request, "me.html", user, shops=shops)


@router.get("")
async def bare() -> Response:
    return redirect(f"{PREFIX}/")
