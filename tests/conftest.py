"""Fixtures for the real parts: databases (SQLite and PostgreSQL), Redis (in-process and real), the app.

PostgreSQL/Redis tests skip with a reason when no server answers, unless REQUIRE_SERVICES=1 (CI), which turns
those skips into failures. Server addresses: TEST_POSTGRES_URL (an admin database used to create throw-away
databases) and TEST_REDIS_URL.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sanic import Sanic

from core.settings import Settings

Sanic.test_mode = True

TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = Settings.from_env().require_services
SHARED = Path(__file__).resolve().parents[2] / "shared"
CONFORMANCE = SHARED / "conformance"


def _answers(url: str) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, url: str) -> None:
    if _answers(url):
        return
    message = f"{name} does not answer at {url}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (REQUIRE_SERVICES=1)")
    pytest.skip(message)


def need_conformance(*parts: str) -> Path:
    path = CONFORMANCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"conformance data not present: ../shared/conformance/{'/'.join(parts)}")
    return path


# -- databases -------------------------------------------------------------------------------------------------
def _admin_dsn() -> str:
    return TEST_POSTGRES_URL.replace("postgres://", "postgresql://", 1)


def _url_of(name: str) -> str:
    return f"postgres://{urlparse(TEST_POSTGRES_URL).netloc}/{name}"


# One migrated database per test run, emptied before each test (TRUNCATE is far faster than making a database and
# applying the migrations every time). Tests that need a database of their own ask for an empty one.
_shared_db: str | None = None


async def _migrated_database() -> str:
    """The shared migrated database, with every table emptied."""
    global _shared_db
    import asyncpg

    if _shared_db is None:
        from core.db import close_db, init_db

        name = f"medwx_test_{uuid.uuid4().hex[:10]}"
        url = await _create_pg_database(empty=True, name=name)
        await init_db(Settings(database_url=url, secret_key="t"))
        await close_db()
        _shared_db = name
    conn = await asyncpg.connect(_admin_dsn().rsplit("/", 1)[0] + f"/{_shared_db}")
    try:
        await conn.execute("SET lock_timeout = '10s'")
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                  "AND tablename <> 'tortoise_migrations'")
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    return _url_of(_shared_db)


async def _create_pg_database(*, empty: bool = True, name: str | None = None) -> str:
    """A new, empty database of the test's own (drop it with ``_drop_pg_database``)."""
    import asyncpg

    name = name or f"medwx_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _url_of(name)


def pytest_sessionfinish(session, exitstatus):
    if _shared_db is not None:
        import asyncio

        asyncio.run(_drop_pg_database(_url_of(_shared_db)))


async def _drop_pg_database(url: str) -> None:
    import asyncpg

    name = urlparse(url).path.lstrip("/")
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request, tmp_path):
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'test.sqlite3'}"
        return
    need_service("PostgreSQL", TEST_POSTGRES_URL)
    yield await _migrated_database()
    from core.db import close_db

    await close_db()


@pytest.fixture
async def db(database_url, tmp_path):
    """Tortoise initialised on a fresh database with the schema up to date (both kinds)."""
    from core.db import close_db, init_db

    settings = Settings(var_dir=tmp_path, database_url=database_url, secret_key="test")
    await init_db(settings)
    yield settings
    await close_db()


# -- redis ---------------------------------------------------------------------------------------------------------
@pytest.fixture(params=["embedded", "real"])
def redis_url(request):
    """'' for the in-process fakeredis, or the real server's URL (its test database is flushed)."""
    if request.param == "embedded":
        return ""
    need_service("Redis", TEST_REDIS_URL)
    _flush(TEST_REDIS_URL)
    return TEST_REDIS_URL


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
async def redis_client(redis_url):
    from core.redis import create_redis

    client = create_redis(Settings(redis_url=redis_url, secret_key="test"))
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def real_redis_url():
    need_service("Redis", TEST_REDIS_URL)
    _flush(TEST_REDIS_URL)
    return TEST_REDIS_URL


# -- the app, served for real on a loopback port ------------------------------------------------------------------
class LiveApp:
    """A running server and an HTTP client for it."""

    def __init__(self, app, server, base_url: str, http):
        self.app, self.server, self.base_url, self.http = app, server, base_url, http

    def url(self, path: str) -> str:
        return self.base_url + path

    async def request(self, method: str, path: str, **kwargs):
        """(status, headers, body text) of one request."""
        async with self.http.request(method, self.url(path), **kwargs) as resp:
            return resp.status, resp.headers, await resp.text()


def free_port() -> int:
    # Sanic reads port 0 as "the default, 8000": ask the OS for a free one instead.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def serve():
    """``await serve(settings)`` starts the app on 127.0.0.1 (random port); everything stops after the test."""
    import aiohttp

    from app import create_app

    started = []

    async def start(settings: Settings) -> LiveApp:
        app = create_app(settings)
        server = await app.create_server(host="127.0.0.1", port=free_port(), return_asyncio_server=True,
                                         access_log=False)
        await server.startup()
        await server.before_start()
        await server.after_start()
        port = server.server.sockets[0].getsockname()[1]
        live = LiveApp(app, server, f"http://127.0.0.1:{port}", aiohttp.ClientSession())
        started.append(live)
        return live

    yield start
    for live in started:
        await live.http.close()
        await live.server.before_stop()
        await live.server.close()
        await live.server.after_stop()


@pytest.fixture
def settings_for(tmp_path):
    """Settings for one test: fresh var dir, the given database and Redis, test WeChat credentials."""

    def build(database_url: str, redis_url: str = "", **overrides) -> Settings:
        base = dict(
            var_dir=tmp_path, media_root=tmp_path / "media", database_url=database_url, redis_url=redis_url,
            secret_key="test-secret", wechat_token="medwxtoken", wechat_app_id="wxtestappid00001",
            wechat_app_secret="test-app-secret", wechat_api_base="http://127.0.0.1:9",
        )
        base.update(overrides)
        return Settings(**base)

    return build


# -- WeChat's API, stood in for ---------------------------------------------------------------------------------------
STANDIN_APP_ID, STANDIN_APP_SECRET = "wxstandinapp0001", "standin-app-secret"
STANDIN_MP_APP_ID, STANDIN_MP_APP_SECRET = "wxstandinmini001", "standin-mini-secret"


@pytest.fixture
async def standin():
    """The local WeChat API stand-in, for the public account ``STANDIN_APP_ID`` and the mini program
    ``STANDIN_MP_APP_ID``; it records what it is sent."""
    from tests.wechat_standin import WeChatStandIn

    server = WeChatStandIn(app_id=STANDIN_APP_ID, app_secret=STANDIN_APP_SECRET, mp_app_id=STANDIN_MP_APP_ID,
                           mp_app_secret=STANDIN_MP_APP_SECRET)
    await server.start()
    yield server
    await server.stop()


# -- a headless browser (Debian's Chromium driven by Playwright; never Playwright's own download) ---------------------
@pytest.fixture
async def browser():
    from tests.test_browser_repair import CHROMIUM, CHROMIUM_ARGS, _need_browser

    async_playwright = _need_browser()
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
