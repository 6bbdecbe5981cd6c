"""Shared by the console tests: console users, and a client that logs in and then behaves like the console page
(session cookie on every request, the CSRF header on unsafe methods)."""

from __future__ import annotations

import json

import aiohttp

from console.auth import COOKIE, CSRF_HEADER, hash_password
from core.models import Hospital, User
from tests.h5_support import cookie_from


async def make_console_user(role: str, username: str, password: str, hospitals: list[Hospital] = (), *,
                            name: str = "", active: bool = True) -> User:
    """A console user (agent, engineer, admin) serving ``hospitals``."""
    user = await User.create(role=role, username=username, name=name or username, active=active,
                             password_hash=hash_password(password))
    if hospitals:
        await user.served_hospitals.add(*hospitals)
    return user


class ConsoleClient:
    """A logged-in console: ``get/post/put/delete`` answer (status, JSON body — or text when not JSON)."""

    def __init__(self, live, session_id: str, csrf: str, user: dict):
        self.live, self.session_id, self.csrf, self.user = live, session_id, csrf, user

    @property
    def cookies(self) -> dict:
        # aiohttp keeps no cookies for IP-address hosts: send the session cookie by hand.
        return {"Cookie": f"{COOKIE}={self.session_id}"}

    def headers(self, method: str, extra: dict | None = None) -> dict:
        headers = dict(self.cookies)
        if method.upper() not in ("GET", "HEAD", "OPTIONS"):
            headers[CSRF_HEADER] = self.csrf
        headers.update(extra or {})
        return headers

    async def raw(self, method: str, path: str, *, headers: dict | None = None, **kwargs):
        """(status, response headers, body bytes): for exports and pages."""
        async with self.live.http.request(method, self.live.url(path), headers=self.headers(method, headers),
                                          **kwargs) as resp:
            return resp.status, resp.headers, await resp.read()

    async def request(self, method: str, path: str, **kwargs):
        status, headers, body = await self.raw(method, path, **kwargs)
        if headers.get("Content-Type", "").startswith("application/json"):
            return status, json.loads(body)
        return status, body.decode("utf-8", "replace")

    async def get(self, path: str, **kwargs):
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: dict | None = None, **kwargs):
        if body is not None:
            kwargs["json"] = body
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, body: dict | None = None, **kwargs):
        if body is not None:
            kwargs["json"] = body
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs):
        return await self.request("DELETE", path, **kwargs)

    def websocket(self, after: str | None = None) -> "aiohttp.client._WSRequestContextManager":
        """The live queue: ``async with client.websocket() as ws: frame = await ws.receive_json()``."""
        params = {"after": after} if after else None
        return self.live.http.ws_connect(self.live.url("/console/ws").replace("http", "ws", 1), params=params,
                                         headers=self.cookies, heartbeat=None)


async def console_login(live, username: str, password: str) -> ConsoleClient:
    """Log in through ``POST /console/api/v1/login``; fails the test when the login is refused."""
    status, headers, body = await live.request("POST", "/console/api/v1/login",
                                               json={"username": username, "password": password})
    assert status == 200, f"login of {username} refused: {status} {body}"
    answer = json.loads(body)
    session_id = cookie_from(headers, COOKIE)
    assert session_id, "login set no session cookie"
    return ConsoleClient(live, session_id, answer["csrf"], answer["user"])


# -- the console in a browser (Playwright pages) ---------------------------------------------------------------------
DESK = {"viewport": {"width": 1280, "height": 800}, "locale": "zh-CN"}


def watch_page(page) -> None:
    """Record script errors, console errors, CSP violations and failed requests on the page (``page.problems``)."""
    page.problems = []
    page.on("pageerror", lambda exc: page.problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: page.problems.append(f"console: {msg.text} at {msg.location.get('url')}")
            if msg.type == "error" else None)
    page.on("response", lambda r: page.problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)


def unexpected_problems(problems: list[str], *refused: str) -> list[str]:
    """The problems besides the refusals the test provoked (paths in ``refused``) and the first /me: before logging
    in, the page asks /me and is told 401, which is how it knows to show the login form."""
    expected = ("/console/api/v1/me", *refused)
    return [p for p in problems if not any(path in p for path in expected)]


async def signed_in_page(browser, url: str, username: str, password: str):
    """(context, page): a desk-sized, watched page opened at ``url`` and signed in through the login form."""
    context = await browser.new_context(**DESK)
    page = await context.new_page()
    watch_page(page)
    await page.goto(url)
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    return context, page
