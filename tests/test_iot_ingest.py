"""Telemetry ingest on both databases and both Redis kinds: checks per reading, duplicates, out-of-order readings
merged into their minute, error codes, the latest values, the per-gateway rate limit and the full buffer."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from core.errors import BadRequest, PayloadTooLarge, ServiceBusy, TooManyRequests, Unauthorized
from core.events import EventBus
from core.models import Hospital
from monitoring import gateways, ingest
from monitoring.models import ErrorCodeEvent, Reading
from repair.models import Device

# A fixed "now" (2026-11-23 08:00:00 UTC) keeps minutes and token refills exact.
NOW = int(datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc).timestamp() * 1000)
MINUTE = 60_000


@pytest.fixture
async def world(db, redis_client):
    ingest.DEVICES.clear()
    gateways.forget_cached()
    first = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    fridge = await Device.create(hospital=first, system_number="SY-0001", nameplate_id="N1", name="药品冰箱",
                                 device_type="refrigerator")
    autoclave = await Device.create(hospital=first, system_number="SY-0002", nameplate_id="N2", name="灭菌器",
                                    device_type="sterilizer")
    foreign = await Device.create(hospital=other, system_number="ZX-0001", nameplate_id="N3", name="离心机",
                                  device_type="centrifuge")
    gateway, key = await gateways.add_gateway("ward-3", hospital_id=first.id, rate_limit=100)
    return dict(db=db, redis=redis_client, gateway=gateway, key=key, fridge=fridge, autoclave=autoclave,
                foreign=foreign, first=first, other=other)


async def drain(redis, seen: list | None = None) -> None:
    """Store what the buffer holds, the way a server worker does, and keep the batches handed to the rules."""

    async def record(batch, **_):
        if seen is not None:
            seen.extend(batch)

    consumer = ingest.ReadingConsumer(redis, EventBus(redis), block_ms=50, evaluate=record)
    await consumer.start()
    try:
        for _ in range(400):
            if await ingest.backlog(redis) == 0:
                break
            await asyncio.sleep(0.025)
        assert await ingest.backlog(redis) == 0
    finally:
        await consumer.stop()


def r(device: str, metric: str, value, at_ms: int | None = None, **extra) -> dict:
    item = {"device": device, "metric": metric, "value": value, **extra}
    if at_ms is not None:
        item["t"] = at_ms
    return item


async def test_each_reading_is_checked_on_its_own(world):
    w = world
    items = [
        r("SY-0001", "temperature", 4.5, NOW - 1000),
        r("NOPE-1", "temperature", 4.5, NOW),  # not a device
        r("ZX-0001", "temperature", 4.5, NOW),  # another hospital's
        r("SY-0001", "temperature", 9000.0, NOW),  # absurd
        r("SY-0001", "temperature", float("nan"), NOW),
        r("SY-0001", "temperature", "warm", NOW),
        r("SY-0001", "Temp!", 4.5, NOW),
        {"device": "SY-0001", "metric": "temperature"},  # no value
        "not a reading",
        r("SY-0001", "temperature", 4.5, NOW - 7 * 3600 * 1000),  # older than IOT_MAX_AGE
        r("SY-0001", "temperature", 4.5, NOW + 3600 * 1000),  # an hour ahead
        r("SY-0001", "temperature", 4.5, None, t="2026-11-23 08:00:00"),  # no zone: refused, not guessed
        r("SY-0001", "pressure", 101.3, None, t="2026-11-23T16:00:01+08:00"),
        r("SY-0002", "error_code", "E21", NOW),
        r("SY-0002", "error_code", "bad code!", NOW),
    ]
    result = await ingest.accept(w["gateway"], items, redis=w["redis"], settings=w["db"], now_ms=NOW)
    assert result.accepted == 3 and result.duplicates == 0
    assert [(x.index, x.code) for x in result.refused] == [
        (1, "unknown_device"), (2, "unknown_device"), (3, "absurd_value"), (4, "bad_value"), (5, "bad_value"),
        (6, "bad_metric"), (7, "malformed"), (8, "malformed"), (9, "too_old"), (10, "in_future"), (11, "bad_time"),
        (14, "bad_value")]
    assert all(x.message for x in result.refused)
    stats = await ingest.gateway_stats(w["redis"], w["gateway"].id)
    assert stats["accepted"] == 3 and stats["refused"] == 12 and stats["refused:unknown_device"] == 2

    seen: list = []
    await drain(w["redis"], seen)
    assert sorted((x.device_id, x.metric) for x in seen) == sorted(
        [(w["fridge"].id, "temperature"), (w["fridge"].id, "pressure"), (w["autoclave"].id, "error_code")])
    rows = await Reading.filter(device=w["fridge"]).order_by("metric").values("metric", "count", "last_value", "bucket")
    assert [(x["metric"], x["count"], x["last_value"]) for x in rows] == [("pressure", 1, 101.3), ("temperature", 1, 4.5)]
    assert rows[0]["bucket"] == datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    codes = await ErrorCodeEvent.filter(device=w["autoclave"]).values_list("code", flat=True)
    assert codes == ["E21"]


async def test_duplicates_and_late_readings_merge_into_their_minute(world):
    w = world
    gw, redis, settings = w["gateway"], w["redis"], w["db"]
    minute = NOW - 10 * MINUTE
    first = [r("SY-0001", "temperature", 5.0, minute + 30_000), r("SY-0001", "temperature", 3.0, minute + 10_000),
             r("SY-0002", "error_code", 21, minute + 5_000)]
    assert (await ingest.accept(gw, first, redis=redis, settings=settings, now_ms=NOW)).accepted == 3
    # The gateway did not hear our answer and sends it all again, plus one reading that arrives late.
    again = await ingest.accept(gw, first + [r("SY-0001", "temperature", 7.0, minute + 20_000)], redis=redis,
                                settings=settings, now_ms=NOW)
    assert (again.accepted, again.duplicates) == (1, 3)
    await drain(redis)
    # A straggler for the same minute, stored in a later batch, merges with the stored row.
    await ingest.accept(gw, [r("SY-0001", "temperature", 2.0, minute + 1_000)], redis=redis, settings=settings,
                        now_ms=NOW)
    # And the same error code again: one event.
    await ingest.accept(gw, [r("SY-0002", "error_code", "21", minute + 5_000)], redis=redis,
                        settings=settings, now_ms=NOW + 1)
    await drain(redis)
    row = await Reading.get(device=w["fridge"], metric="temperature")
    assert (row.count, row.min, row.max, row.sum) == (4, 2.0, 7.0, 17.0)
    assert row.last_value == 5.0 and row.last_at == datetime.fromtimestamp((minute + 30_000) / 1000, timezone.utc)
    assert await ErrorCodeEvent.filter(device=w["autoclave"]).count() == 1

    latest = await ingest.latest(redis, w["fridge"].id)
    assert latest["temperature"]["value"] == 5.0  # the late 2.0 and 7.0 did not replace the newest reading
    newer = [r("SY-0001", "temperature", 6.5, NOW)]
    await ingest.accept(gw, newer, redis=redis, settings=settings, now_ms=NOW)
    await drain(redis)
    latest = await ingest.latest(redis, w["fridge"].id)
    assert latest["temperature"] == {"value": 6.5, "at": datetime.fromtimestamp(NOW / 1000, timezone.utc)}
    assert (await ingest.latest(redis, w["autoclave"].id))["error_code"]["value"] == "21"


async def test_a_flooding_gateway_is_limited_and_others_are_not(world):
    w = world
    redis, settings = w["redis"], w["db"]
    quiet, _ = await gateways.add_gateway("lab-1", hospital_id=w["first"].id, rate_limit=100)
    # ward-3 may send 100 readings/s, 1,000 at once (a full request); its bucket starts full.
    burst = [r("SY-0001", "temperature", 4.0, NOW - 30_000 - i) for i in range(1000)]  # one minute
    assert (await ingest.accept(w["gateway"], burst, redis=redis, settings=settings, now_ms=NOW)).accepted == 1000
    with pytest.raises(TooManyRequests) as limited:
        await ingest.accept(w["gateway"], [r("SY-0001", "temperature", 4.0, NOW - 5000)], redis=redis,
                            settings=settings, now_ms=NOW)
    assert limited.value.headers["Retry-After"] == "1"
    # The other gateway of the same hospital is not held up.
    ok = await ingest.accept(quiet, [r("SY-0001", "pressure", 100.0, NOW)], redis=redis, settings=settings,
                             now_ms=NOW)
    assert ok.accepted == 1
    # Half a second later ward-3 has earned 50 readings back, not 51.
    later = NOW + 500
    with pytest.raises(TooManyRequests):
        await ingest.accept(w["gateway"], [r("SY-0002", "temperature", 4.0, later - i) for i in range(51)],
                            redis=redis, settings=settings, now_ms=later)
    fifty = await ingest.accept(w["gateway"], [r("SY-0002", "temperature", 4.0, later - i) for i in range(50)],
                                redis=redis, settings=settings, now_ms=later)
    assert fifty.accepted == 50
    stats = await ingest.gateway_stats(redis, w["gateway"].id)
    assert stats["accepted"] == 1050 and stats["rate_limited"] == 52
    await drain(redis)
    assert (await Reading.get(device=w["fridge"], metric="temperature")).count == 1000


async def test_a_full_buffer_refuses_without_taking_anything(world):
    w = world
    small = w["db"].with_(iot_buffer_max=2)
    for i in range(2):
        await ingest.accept(w["gateway"], [r("SY-0001", "temperature", 4.0, NOW - i)], redis=w["redis"],
                            settings=small, now_ms=NOW)
    with pytest.raises(ServiceBusy):
        await ingest.accept(w["gateway"], [r("SY-0001", "temperature", 4.0, NOW - 7)], redis=w["redis"],
                            settings=small, now_ms=NOW)
    await drain(w["redis"])
    # Sent again once there is room: accepted (the refused attempt did not mark it as seen).
    again = await ingest.accept(w["gateway"], [r("SY-0001", "temperature", 4.0, NOW - 7)], redis=w["redis"],
                                settings=small, now_ms=NOW)
    assert again.accepted == 1


async def test_whole_request_refusals_and_keys(world):
    w = world
    with pytest.raises(BadRequest):
        await ingest.accept(w["gateway"], [], redis=w["redis"], settings=w["db"])
    with pytest.raises(PayloadTooLarge):
        await ingest.accept(w["gateway"], [r("SY-0001", "temperature", 1.0)] * 1001, redis=w["redis"],
                            settings=w["db"])
    assert (await gateways.authenticate(w["key"])).id == w["gateway"].id
    with pytest.raises(Unauthorized):
        await gateways.authenticate("gw_wrong")
    await gateways.revoke_gateway(w["gateway"])
    with pytest.raises(Unauthorized):
        await gateways.authenticate(w["key"])
    with pytest.raises(BadRequest):
        await gateways.add_gateway("ward/3", hospital_id=w["first"].id)  # would break the MQTT topic


async def test_readings_a_dead_worker_took_are_stored_by_another(world, monkeypatch):
    w = world
    await ingest.accept(w["gateway"], [r("SY-0001", "temperature", 4.0, NOW - 1000)], redis=w["redis"],
                        settings=w["db"], now_ms=NOW)
    # A worker read the entry and died before storing it: it stays pending under that worker's name.
    await w["redis"].xgroup_create(ingest.STREAM, ingest.GROUP, id="0", mkstream=True)
    taken = await w["redis"].xreadgroup(ingest.GROUP, "dead-worker", {ingest.STREAM: ">"}, count=10)
    assert len(taken[0][1]) == 1
    monkeypatch.setattr(ingest, "CLAIM_IDLE_MS", 0)  # instead of waiting a minute for it to count as abandoned
    await drain(w["redis"])
    row = await Reading.get(device=w["fridge"], metric="temperature")
    assert row.count == 1 and row.last_value == 4.0
