"""The early warning end to end on the running app: a gateway posts a reading over the threshold, the server stores
it, the rules open a preventive ticket assigned to the hospital's engineer, owner and engineer get their template
messages (WeChat stand-in), and the console shows the device's health and the alert to those who may see it."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.models import Hospital, User
from monitoring import gateways
from repair.models import Device, Ticket
from repair.service_groups import rebuild_service_groups
from tests.conftest import STANDIN_APP_ID, STANDIN_APP_SECRET
from tests.console_support import console_login, make_console_user

PASSWORD = "correct horse battery"
API = "/console/api/v1"


@pytest.fixture
async def live(serve, settings_for, database_url, real_redis_url, standin):
    return await serve(settings_for(database_url, real_redis_url, wechat_app_id=STANDIN_APP_ID,
                                    wechat_app_secret=STANDIN_APP_SECRET, wechat_api_base=standin.base_url,
                                    wechat_template_ticket="TPL-TICKET", public_base_url="https://repair.example.cn"))


@pytest.fixture
async def world(live):
    ours = await Hospital.create(name="市第一人民医院")
    theirs = await Hospital.create(name="市中心医院")
    owner = await User.create(name="赵主任", role="staff", hospital=ours, openid="oOwner")
    engineer = await make_console_user("engineer", "eng1", PASSWORD, [ours], name="张工")
    engineer.openid = "oEngineer"
    await engineer.save()
    await make_console_user("agent", "agent1", PASSWORD, [ours], name="李客服")
    await make_console_user("agent", "agent2", PASSWORD, [theirs], name="钱客服")
    vent = await Device.create(hospital=ours, system_number="V-01", nameplate_id="SN1", name="呼吸机1号",
                               device_type="ventilator", owner=owner)
    await rebuild_service_groups(ours.id)
    gateway, key = await gateways.add_gateway("icu-1", hospital_id=ours.id)
    return dict(ours=ours, theirs=theirs, owner=owner, engineer=engineer, vent=vent, key=key)


async def _until(check, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    return await check()


async def _post(live, key: str, readings: list) -> tuple[int, str]:
    status, _, body = await live.request("POST", "/iot/v1/readings", json={"readings": readings},
                                         headers={"X-Gateway-Key": key})
    return status, body


async def test_a_hot_reading_becomes_an_assigned_ticket_and_messages(live, world, standin):
    w = world
    now = time.time()
    status, body = await _post(live, w["key"], [
        {"device": "V-01", "metric": "temperature", "value": 37.0, "t": now - 600},
        {"device": "V-01", "metric": "temperature", "value": 48.5, "t": now}])
    assert status == 200, body

    async def ticket():
        return await Ticket.filter(device_id=w["vent"].id, kind="preventive", engineer_id__isnull=False).first()

    found = await _until(ticket)
    assert found is not None, "no preventive ticket was opened"
    assert (found.state, found.engineer_id) == ("with_engineer", w["engineer"].id)
    assert "呼吸机温度过高" in found.description and "48.5" in found.description

    async def told():
        people = {m["touser"] for m in standin.template_messages if m["data"]["keyword1"]["value"] == found.number}
        return people if {"oOwner", "oEngineer"} <= people else None

    assert await _until(told) == {"oOwner", "oEngineer"}
    to_engineer = next(m for m in standin.template_messages if m["touser"] == "oEngineer")
    assert to_engineer["url"] == f"https://repair.example.cn/h5/engineer/tickets/{found.number}"

    # Still hot a minute later: no second ticket.
    status, _ = await _post(live, w["key"], [{"device": "V-01", "metric": "temperature", "value": 48.7,
                                              "t": now + 60}])
    assert status == 200

    async def counted():
        from monitoring.models import DeviceAlert

        alert = await DeviceAlert.filter(device_id=w["vent"].id).first()
        return alert if alert and alert.hits == 2 else None

    assert await _until(counted) is not None
    assert await Ticket.filter(device_id=w["vent"].id, kind="preventive").count() == 1

    # The console: the device's health for the engineer.
    console = await console_login(live, "eng1", PASSWORD)
    status, health = await console.get(f"{API}/devices/{w['vent'].id}/health?hours=2")
    assert status == 200, health
    assert health["latest"]["temperature"]["value"] == 48.7
    temperature = health["series"]["temperature"]
    assert max(p["max"] for p in temperature) == 48.7 and min(p["min"] for p in temperature) == 37.0
    [alert] = health["alerts"]
    assert alert["state"] == "open" and alert["ticket"]["number"] == found.number and alert["hits"] == 2
    assert alert["title"] == "呼吸机温度过高" and alert["severity_label"] == "高"
    # Now, with the preventive ticket on record, the profile weighs a little less than when the alert opened.
    assert 0 < health["risk"]["score"] <= alert["risk_score"] and health["risk"]["band"] in ("medium", "high")
    assert health["profile"]["device_id"] == w["vent"].id

    status, listed = await console.get(f"{API}/alerts")
    assert status == 200 and [a["device"]["system_number"] for a in listed["alerts"]] == ["V-01"]


async def test_console_health_and_alerts_are_scoped(live, world):
    w = world
    ours = await console_login(live, "agent1", PASSWORD)
    other = await console_login(live, "agent2", PASSWORD)
    status, health = await ours.get(f"{API}/devices/{w['vent'].id}/health")
    assert status == 200 and health["alerts"] == [] and health["latest"] == {} and health["series"] == {}
    status, body = await other.get(f"{API}/devices/{w['vent'].id}/health")
    assert (status, body["error"]["code"]) == (403, "other_hospital")
    status, body = await other.get(f"{API}/alerts?hospital_id={w['ours'].id}")
    assert (status, body["error"]["code"]) == (403, "other_hospital")
    status, body = await ours.get(f"{API}/devices/999999/health")
    assert (status, body["error"]["code"]) == (404, "device_not_found")
    status, body = await ours.get(f"{API}/devices/{w['vent'].id}/health?hours=abc")
    assert (status, body["error"]["code"]) == (400, "invalid_field")
    status, body = await ours.get(f"{API}/devices/{w['vent'].id}/health?hours=100000")
    assert (status, body["error"]["code"]) == (422, "invalid_field")
    status, body = await ours.get(f"{API}/alerts?state=maybe")
    assert (status, body["error"]["code"]) == (422, "invalid_field")
    status, _, body = await live.request("GET", f"{API}/alerts")
    assert status == 401
