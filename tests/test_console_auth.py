"""Console sign-in: password, lockout, session cookie and its expiry, CSRF, the first admin from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.models import AuditEntry, Hospital, User
from core.settings import Settings
from tests.console_support import console_login, make_console_user

PROJECT = Path(__file__).resolve().parent.parent
LOGIN = "/console/api/v1/login"


@pytest.fixture
async def console(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    first = await Hospital.create(name="市第一人民医院")
    await Hospital.create(name="市中心医院")
    agent = await make_console_user("agent", "liqing", "correct-horse", [first], name="李青")
    return dict(live=live, first=first, agent=agent)


async def _post_login(live, username, password):
    status, headers, body = await live.request("POST", LOGIN, json={"username": username, "password": password})
    return status, headers, json.loads(body)


async def test_login_sets_an_httponly_cookie_and_answers_who_and_where(console):
    live, first = console["live"], console["first"]
    status, headers, body = await _post_login(live, "liqing", "correct-horse")
    assert status == 200
    assert body["user"] == {"id": console["agent"].id, "name": "李青", "username": "liqing", "role": "agent",
                            "hospitals": [{"id": first.id, "name": "市第一人民医院"}]}
    cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith("medwx_console="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path"} <= attributes and "samesite=strict" in cookie.lower()
    client = await console_login(live, "liqing", "correct-horse")
    status, me = await client.get("/console/api/v1/me")
    assert status == 200 and me["user"]["username"] == "liqing" and me["csrf"] == client.csrf
    assert await AuditEntry.filter(action="console.login", entity_id="liqing").count() == 2


async def test_wrong_password_and_unknown_user_are_refused_alike_and_audited(console):
    live = console["live"]
    for username, password in (("liqing", "wrong"), ("nobody", "correct-horse")):
        status, headers, body = await _post_login(live, username, password)
        assert status == 401
        assert body["error"] == {"code": "bad_credentials", "message": "用户名或密码错误"}
        assert not any(c.startswith("medwx_console=") for c in headers.getall("Set-Cookie", []))
    failed = await AuditEntry.filter(action="console.login_failed").order_by("id")
    assert [(e.entity_id, e.changes["reason"]) for e in failed] == [("liqing", "bad_credentials"),
                                                                     ("nobody", "bad_credentials")]
    status, _, body = await live.request("GET", "/console/api/v1/me")
    assert status == 401 and json.loads(body)["error"]["code"] == "login_required"


async def test_five_wrong_passwords_lock_the_username(console):
    live = console["live"]
    for _ in range(4):
        assert (await _post_login(live, "liqing", "guess"))[0] == 401
    status, headers, body = await _post_login(live, "liqing", "guess")
    assert status == 429 and body["error"]["code"] == "locked" and "锁定" in body["error"]["message"]
    assert 0 < int(headers["Retry-After"]) <= 15 * 60
    # Even the right password is refused while locked, whatever the letter case of the name.
    for username in ("liqing", "LiQing"):
        status, _, body = await _post_login(live, username, "correct-horse")
        assert status == 429 and body["error"]["code"] == "locked"
    # Someone else is not locked out with them.
    await make_console_user("agent", "wangfang", "another-pass", [console["first"]])
    await console_login(live, "wangfang", "another-pass")


async def test_many_wrong_passwords_from_one_address_make_it_wait(serve, settings_for, database_url):
    """One password tried across many usernames: the address is stopped, whichever name comes next."""
    live = await serve(settings_for(database_url, console_ip_lockout_failures=3))
    await make_console_user("agent", "liqing", "correct-horse", name="李青")
    for name in ("zhangsan", "lisi", "wangwu"):
        assert (await _post_login(live, name, "123456"))[0] == 401
    status, headers, body = await _post_login(live, "liqing", "correct-horse")
    assert status == 429 and body["error"]["code"] == "too_many_attempts" and "分钟后再试" in body["error"]["message"]
    assert 0 < int(headers["Retry-After"]) <= 15 * 60
    reasons = [e.changes["reason"] for e in await AuditEntry.filter(action="console.login_failed").order_by("id")]
    assert reasons == ["bad_credentials"] * 3 + ["address_blocked"]


async def test_a_successful_login_starts_the_count_again(console):
    live = console["live"]
    for _ in range(4):
        await _post_login(live, "liqing", "guess")
    await console_login(live, "liqing", "correct-horse")
    for _ in range(4):
        assert (await _post_login(live, "liqing", "guess"))[0] == 401


async def test_unsafe_methods_need_the_csrf_header(console):
    live = console["live"]
    client = await console_login(live, "liqing", "correct-horse")
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        status, _, body = await live.request("POST", "/console/api/v1/logout",
                                             headers={**client.cookies, **headers})
        assert status == 403 and json.loads(body)["error"]["code"] == "csrf"
    assert (await client.get("/console/api/v1/me"))[0] == 200  # still logged in
    status, body = await client.post("/console/api/v1/logout")
    assert status == 200
    status, body = await client.get("/console/api/v1/me")
    assert status == 401 and body["error"]["code"] == "login_required"


async def test_a_disabled_account_loses_its_session_and_cannot_log_in(console):
    live, agent = console["live"], console["agent"]
    client = await console_login(live, "liqing", "correct-horse")
    agent.active = False
    await agent.save()
    status, body = await client.get("/console/api/v1/me")
    assert status == 401 and body["error"]["code"] == "login_required"
    status, _, body = await _post_login(live, "liqing", "correct-horse")
    assert status == 403 and body["error"]["code"] == "account_disabled"


async def test_staff_and_bad_bodies_are_refused(console):
    live = console["live"]
    await make_console_user("staff", "nurse", "nurse-pass-1", [console["first"]])
    status, _, body = await _post_login(live, "nurse", "nurse-pass-1")
    assert status == 403 and body["error"]["code"] == "role"
    for payload in ({"username": "liqing"}, {"username": "liqing", "password": 123}, [1]):
        status, _, text = await live.request("POST", LOGIN, json=payload)
        assert status == 400 and json.loads(text)["error"]["code"] in ("invalid_field", "invalid_json")


async def test_the_session_expires_after_the_idle_time_and_slides_while_used(serve, settings_for, tmp_path):
    live = await serve(settings_for(f"sqlite://{tmp_path / 'idle.sqlite3'}", console_session_ttl=4))
    await make_console_user("admin", "boss", "boss-password")
    client = await console_login(live, "boss", "boss-password")
    for _ in range(2):  # 5 s in all, longer than the TTL: each request slides the expiry
        await asyncio.sleep(2.5)
        assert (await client.get("/console/api/v1/me"))[0] == 200
    await asyncio.sleep(5)
    status, body = await client.get("/console/api/v1/me")
    assert status == 401 and body["error"]["code"] == "login_required"


async def test_create_admin_from_the_command_line_then_reset(tmp_path):
    from console.auth import verify_password
    from core.db import close_db, init_db

    database_url = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": database_url, "VAR_DIR": str(tmp_path), "REDIS_URL": "",
           "LOG_LEVEL": "WARNING"}

    def create(password: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core", "create-admin", "boss", "--password-stdin", *extra],
                              input=password + "\n", capture_output=True, text=True, env=env, cwd=PROJECT,
                              timeout=120)

    assert create("short").returncode == 2
    made = create("first-password", "--name", "王主任")
    assert made.returncode == 0, made.stderr
    reset = create("second-password")
    assert reset.returncode == 0 and "reset" in reset.stdout
    await init_db(Settings(database_url=database_url, var_dir=tmp_path, secret_key="test"))
    try:
        boss = await User.get(username="boss")
    finally:
        await close_db()
    assert (boss.role, boss.name, boss.active) == ("admin", "王主任", True)
    assert verify_password(boss.password_hash, "second-password")
    assert not verify_password(boss.password_hash, "first-password")
