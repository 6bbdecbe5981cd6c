"""Telemetry through the real server: ``POST /iot/v1/readings`` and MQTT (``medwx/<gateway>/readings``) into the
stored history and the latest values; wrong keys, bad payloads and a flooding gateway refused and counted without
stopping anyone else's readings; and the ``python -m monitoring`` gateway commands."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import pytest

from core.models import Hospital
from core.settings import PROJECT_ROOT
from monitoring import gateways, ingest
from monitoring.models import ErrorCodeEvent, Gateway, Reading
from repair.models import Device
from tests.conftest import need_service

MQTT_URL = os.environ.get("TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


async def _setup() -> dict:
    ingest.DEVICES.clear()
    gateways.forget_cached()
    hospital = await Hospital.create(name="市第一人民医院")
    fridge = await Device.create(hospital=hospital, system_number="SY-0001", nameplate_id="N1", name="药品冰箱",
                                 device_type="refrigerator")
    autoclave = await Device.create(hospital=hospital, system_number="SY-0002", nameplate_id="N2", name="灭菌器",
                                    device_type="sterilizer")
    # Names unique per test: the MQTT broker is shared with anything else running on the machine.
    suffix = uuid.uuid4().hex[:8]
    ward, ward_key = await gateways.add_gateway(f"ward-{suffix}", hospital_id=hospital.id, rate_limit=100)
    lab, lab_key = await gateways.add_gateway(f"lab-{suffix}", hospital_id=hospital.id, rate_limit=100)
    return dict(hospital=hospital, fridge=fridge, autoclave=autoclave, ward=ward, ward_key=ward_key, lab=lab,
                lab_key=lab_key)


async def until(check, seconds: float = 15.0):
    """Wait for the consumer to store what was sent (it runs in the server's background)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


def reading(device: str, metric: str, value, t=None) -> dict:
    return {"device": device, "metric": metric, "value": value, "t": t if t is not None else time.time()}


@pytest.fixture
async def site(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    return live, await _setup()


async def test_http_readings_are_stored_and_refusals_explained(site):
    live, w = site
    now = (time.time() // 60) * 60 + 1  # one minute for both temperatures (1 s ahead is within the clock skew)
    body = {"readings": [reading("SY-0001", "temperature", 4.2, now - 1), reading("SY-0001", "temperature", 5.1, now),
                         reading("SY-0002", "error_code", "E21", now), reading("SY-9999", "temperature", 1.0, now),
                         reading("SY-0001", "temperature", 1e9, now)]}
    status, _, text = await live.request("POST", "/iot/v1/readings", json=body,
                                         headers={"X-Gateway-Key": w["ward_key"]})
    answer = json.loads(text)
    assert status == 200, text
    assert (answer["accepted"], answer["duplicates"], answer["refused"]) == (3, 0, 2)
    assert [(x["index"], x["code"]) for x in answer["refusals"]] == [(3, "unknown_device"), (4, "absurd_value")]
    assert "设备" in answer["refusals"][0]["message"]

    row = await until(lambda: Reading.get_or_none(device=w["fridge"], metric="temperature"))
    assert row is not None and (row.count, row.min, row.max, row.last_value) == (2, 4.2, 5.1, 5.1)
    assert await until(lambda: ErrorCodeEvent.filter(device=w["autoclave"], code="E21").exists())
    latest = await ingest.latest(live.app.ctx.redis, w["fridge"].id)
    assert latest["temperature"]["value"] == 5.1

    # Sent again (the gateway missed the answer): nothing counted twice.
    status, _, text = await live.request("POST", "/iot/v1/readings", json=body,
                                         headers={"X-Gateway-Key": w["ward_key"]})
    assert status == 200 and json.loads(text)["duplicates"] == 3


async def test_http_refuses_bad_requests_with_chinese_json(site):
    live, w = site
    key = {"X-Gateway-Key": w["ward_key"]}
    cases = [
        ({}, {"readings": [reading("SY-0001", "temperature", 4.0)]}, 401, "gateway_key_required"),
        ({"X-Gateway-Key": "gw_not_a_key"}, {"readings": [reading("SY-0001", "temperature", 4.0)]}, 401,
         "invalid_gateway_key"),
        (key, b"{not json", 400, "malformed"),
        (key, {"readings": "many"}, 400, "malformed"),
        (key, {"readings": []}, 400, "malformed"),
        (key, {"readings": [reading("SY-0001", "temperature", 4.0)] * 1001}, 413, "too_many_readings"),
        (key, {"readings": [reading("SY-0001", "temperature", "hot"), {"metric": "x"}]}, 422, "all_refused"),
    ]
    for headers, body, status, code in cases:
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        got, _, text = await live.request("POST", "/iot/v1/readings", headers=headers, **kwargs)
        error = json.loads(text)["error"]
        assert (got, error["code"]) == (status, code), text
        assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"])
    stats = await ingest.gateway_stats(live.app.ctx.redis, "unauthenticated")
    assert stats["refused"] == 2


async def test_http_flood_gets_429_and_the_other_gateway_goes_on(site):
    live, w = site
    now = time.time()
    flood = {"readings": [reading("SY-0001", "temperature", 4.0, now - i / 1000) for i in range(1000)]}
    status, _, _ = await live.request("POST", "/iot/v1/readings", json=flood, headers={"X-Gateway-Key": w["ward_key"]})
    assert status == 200
    status, headers, text = await live.request("POST", "/iot/v1/readings", json=flood,
                                               headers={"X-Gateway-Key": w["ward_key"]})
    assert status == 429 and json.loads(text)["error"]["code"] == "rate_limited" and int(headers["Retry-After"]) >= 1
    status, _, _ = await live.request("POST", "/iot/v1/readings", json={"readings": [
        reading("SY-0002", "pressure", 101.0, now)]}, headers={"X-Gateway-Key": w["lab_key"]})
    assert status == 200
    assert await until(lambda: Reading.filter(device=w["autoclave"], metric="pressure").exists())
    assert (await ingest.gateway_stats(live.app.ctx.redis, w["ward"].id))["rate_limited"] == 1000


@pytest.fixture
async def mqtt_site(serve, settings_for, database_url):
    need_service("MQTT", MQTT_URL)
    live = await serve(settings_for(database_url, mqtt_url=MQTT_URL))
    await asyncio.wait_for(live.app.ctx.mqtt.connected.wait(), 10)
    return live, await _setup()


async def test_mqtt_readings_are_stored_and_bad_messages_do_not_stop_the_consumer(mqtt_site):
    import aiomqtt

    live, w = mqtt_site
    ward, lab = w["ward"].name, w["lab"].name
    now = time.time()
    minute = (now // 60) * 60  # the lab's readings fall in one minute (up to 19 s ahead: within the clock skew)
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        garbage = [b"\xff\xfe not json", b"[1, 2", json.dumps({"readings": []}).encode(),
                   json.dumps({"key": "gw_wrong", "readings": [reading("SY-0001", "temperature", 1.0)]}).encode(),
                   # the right key on another gateway's topic
                   json.dumps({"key": w["ward_key"], "readings": [reading("SY-0001", "temperature", 1.0)]}).encode()]
        for i, payload in enumerate(garbage):
            await client.publish(f"medwx/{lab if i == 4 else ward}/readings", payload, qos=1)
        # A flood from the ward: 1,000 at once is its whole bucket, the next 500 are dropped and counted.
        for start in (0, 1000):
            await client.publish(f"medwx/{ward}/readings", json.dumps({"key": w["ward_key"], "readings": [
                reading("SY-0001", "cycle_count", start + i, now - 60 + i / 100) for i in range(
                    1000 if start == 0 else 500)]}).encode(), qos=1)
        # Small messages from the lab, one reading each, as a device speaking for itself would send.
        for i in range(20):
            await client.publish(f"medwx/{lab}/readings", json.dumps({"key": w["lab_key"], "readings": [
                reading("SY-0002", "temperature", 120.0 + i, minute + i)]}).encode(), qos=1)

    lab_row = await until(lambda: Reading.filter(device=w["autoclave"], metric="temperature", count__gte=20).first())
    assert lab_row is not None and lab_row.max == 139.0
    ward_rows = await until(lambda: Reading.filter(device=w["fridge"], metric="cycle_count").all())
    assert sum(r.count for r in ward_rows) == 1000
    assert not await Reading.filter(device=w["fridge"], metric="temperature").exists()
    redis = live.app.ctx.redis
    assert (await ingest.gateway_stats(redis, w["ward"].id))["rate_limited"] == 500
    assert (await ingest.gateway_stats(redis, "unauthenticated"))["refused"] == 5
    assert (await ingest.latest(redis, w["autoclave"].id))["temperature"]["value"] == 139.0


async def run_cli(settings, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "VAR_DIR": str(settings.var_dir),
           "SECRET_KEY": settings.secret_key, "REDIS_URL": "", "LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "monitoring", *args, cwd=PROJECT_ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_gateway_commands(db):
    hospital = await Hospital.create(name="市第一人民医院")
    code, out, err = await run_cli(db, "add-gateway", "icu-gw1", "--hospital", str(hospital.id), "--rate", "500")
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith(gateways.KEY_PREFIX) and "medwx/icu-gw1/readings" in out
    stored = await Gateway.get(name="icu-gw1")
    assert stored.rate_limit == 500 and key not in (stored.key_hash, stored.key_hint)
    gateways.forget_cached()
    assert (await gateways.authenticate(key)).id == stored.id

    code, out, _ = await run_cli(db, "list-gateways")
    assert code == 0 and "icu-gw1" in out and "500/s" in out and key not in out
    code, _, err = await run_cli(db, "add-gateway", "icu-gw1", "--hospital", str(hospital.id))
    assert code == 1 and "已有" in err
    code, _, err = await run_cli(db, "add-gateway", "icu gw/2", "--hospital", str(hospital.id))
    assert code == 1 and "网关名称" in err
    code, out, _ = await run_cli(db, "revoke-gateway", "icu-gw1")
    assert code == 0 and "revoked" in out
    gateways.forget_cached()
    with pytest.raises(Exception) as refused:
        await gateways.authenticate(key)
    assert getattr(refused.value, "code", "") == "invalid_gateway_key"
