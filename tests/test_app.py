"""The service skeleton: health on both databases, request ids, JSON errors, API docs."""

from __future__ import annotations

import json
import re


async def test_health_answers_on_each_database_and_redis(serve, settings_for, database_url, redis_url):
    live = await serve(settings_for(database_url, redis_url))
    status, _, body = await live.request("GET", "/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "checks": {"database": True, "redis": True}}


async def test_health_says_which_part_is_down(serve, settings_for, tmp_path):
    live = await serve(settings_for(f"sqlite://{tmp_path / 'h.sqlite3'}", "redis://127.0.0.1:9/0"))
    status, _, body = await live.request("GET", "/healthz")
    assert status == 503
    assert json.loads(body)["checks"] == {"database": True, "redis": False}


async def test_request_id_is_echoed_or_made(serve, settings_for, tmp_path):
    live = await serve(settings_for(f"sqlite://{tmp_path / 'r.sqlite3'}"))
    _, headers, _ = await live.request("GET", "/healthz", headers={"X-Request-ID": "abc-123"})
    assert headers["X-Request-ID"] == "abc-123"
    _, headers, _ = await live.request("GET", "/healthz")
    assert len(headers["X-Request-ID"]) == 32


async def test_api_docs_are_served(serve, settings_for, tmp_path):
    live = await serve(settings_for(f"sqlite://{tmp_path / 'd.sqlite3'}"))
    status, _, body = await live.request("GET", "/docs/openapi.json")
    assert status == 200 and "/wechat/callback" in json.loads(body)["paths"]
    status, _, page = await live.request("GET", "/docs")
    assert status == 200 and "<html" in page.lower()
    # Everything the page loads comes from this server (a hospital network may have no internet).
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/docs/ui/") for a in assets), assets
    for asset in assets:
        status, headers, body = await live.request("GET", asset)
        assert status == 200 and len(body) > 10_000, asset
        assert headers["Content-Type"].split(";")[0] in ("text/css", "text/javascript", "application/javascript")
    status, _, body = await live.request("GET", "/docs/ui/4.15.5/..%2Fapp.py")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
