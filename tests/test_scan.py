"""Scanning a label in WeChat: the signed callback event in, the device card with a signed repair link out."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest
import xmltodict
from itsdangerous import TimestampSigner

from bot import handlers
from core.errors import Forbidden
from repair import labels, scans
from tests.wechat_messages import event_xml, sign

TOKEN = "medwxtoken"


def reply_of(body: str) -> dict:
    return xmltodict.parse(body)["xml"]


def article_of(body: str) -> dict:
    reply = reply_of(body)
    assert reply["MsgType"] == "news" and reply["ArticleCount"] == "1", reply
    return reply["Articles"]["item"]


def token_of(url: str) -> str:
    parsed = urlparse(url)
    assert parsed.path == "/h5/repair"
    return parse_qs(parsed.query)["t"][0]


async def post(live, xml: str):
    status, _, body = await live.request("POST", "/wechat/callback", params=sign(TOKEN), data=xml.encode())
    assert status == 200
    return body


@pytest.fixture
async def live(serve, settings_for, database_url):
    """The app on each database, with a ventilator, a retired device and a lab line."""
    from core.models import Department, Hospital
    from repair.models import Device, DeviceGroup

    app = await serve(settings_for(database_url, public_base_url="https://repair.example.cn"))
    hospital = await Hospital.create(name="市第一人民医院")
    icu = await Department.create(hospital=hospital, name="重症医学科")
    lab = await Department.create(hospital=hospital, name="检验科")
    await Device.create(hospital=hospital, department=icu, system_number="ICU0001", nameplate_id="NP-V1",
                        name="呼吸机", device_type="ventilator", repair_count=3, maintenance_score=82,
                        status="under_repair")
    await Device.create(hospital=hospital, department=icu, system_number="ICU0009", nameplate_id="NP-V9",
                        name="旧监护仪", device_type="monitor", status="retired")
    line = await DeviceGroup.create(hospital=hospital, department=lab, name="生化流水线", repair_count=7)
    for i, score in enumerate((93, 77)):
        await Device.create(hospital=hospital, department=lab, system_number=f"LAB000{i}", nameplate_id=f"NP-L{i}",
                            name="生化分析仪", device_type="analyser", maintenance_score=score, group=line)
    app.line_id = line.id
    return app


async def remembered(live, openid: str) -> tuple[str | None, int]:
    redis = live.app.ctx.redis
    return await scans.last_scene(redis, openid), await redis.ttl(f"bot:scene:{openid}")


async def test_a_follower_scanning_a_device_label_gets_its_card(live):
    body = await post(live, event_xml("SCAN", sender="oNurse1", key="d:ICU0001"))
    article = article_of(body)
    assert article["Title"] == "呼吸机 ICU0001"
    for words in ("市第一人民医院 · 重症医学科", "状态：维修中", "维修次数：3", "维护评分：82", "点击报修"):
        assert words in article["Description"]
    assert article["Url"].startswith("https://repair.example.cn/h5/repair?t=")
    assert labels.read_repair_token(live.app.ctx.settings, token_of(article["Url"])) == "d:ICU0001"
    scene, ttl = await remembered(live, "oNurse1")
    assert scene == "d:ICU0001" and 0 < ttl <= scans.SCAN_MEMORY_TTL


async def test_following_by_scanning_a_label_gets_the_card_too(live):
    from core.models import WechatUser

    article = article_of(await post(live, event_xml("subscribe", sender="oNew1", key="qrscene_d:ICU0001")))
    assert article["Title"] == "呼吸机 ICU0001"
    assert labels.read_repair_token(live.app.ctx.settings, token_of(article["Url"])) == "d:ICU0001"
    user = await WechatUser.get(openid="oNew1")
    assert user.subscribed and user.subscribe_scene == "d:ICU0001"
    assert (await remembered(live, "oNew1"))[0] == "d:ICU0001"


async def test_the_link_in_a_scan_reply_expires(live, monkeypatch):
    article = article_of(await post(live, event_xml("SCAN", sender="oNurse2", key="d:ICU0001")))
    later = int(time.time()) + live.app.ctx.settings.repair_link_max_age + 60
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    with pytest.raises(Forbidden, match="过期"):
        labels.read_repair_token(live.app.ctx.settings, token_of(article["Url"]))


async def test_scanning_a_group_label(live):
    article = article_of(await post(live, event_xml("SCAN", sender="oLab1", key=f"g:{live.line_id}")))
    assert article["Title"] == f"生化流水线（设备组 {live.line_id}）"
    assert "设备组：2 台设备" in article["Description"] and "维修次数：7" in article["Description"]
    assert "维护评分：77" in article["Description"]
    assert labels.read_repair_token(live.app.ctx.settings, token_of(article["Url"])) == f"g:{live.line_id}"


async def test_a_new_scan_replaces_the_remembered_device(live):
    await post(live, event_xml("SCAN", sender="oNurse3", key="d:ICU0001"))
    await post(live, event_xml("SCAN", sender="oNurse3", key="d:LAB0000"))
    assert (await remembered(live, "oNurse3"))[0] == "d:LAB0000"


@pytest.mark.parametrize("key", ["d:NOPE", "g:99999", "g:abc", "x:1"])
async def test_an_unknown_label_gets_the_polite_text(live, key):
    reply = reply_of(await post(live, event_xml("SCAN", sender="oLost1", key=key)))
    assert (reply["MsgType"], reply["Content"]) == ("text", handlers.UNKNOWN_SCENE)
    assert (await remembered(live, "oLost1"))[0] is None


async def test_a_retired_device_says_so(live):
    reply = reply_of(await post(live, event_xml("subscribe", sender="oOld1", key="qrscene_d:ICU0009")))
    assert reply["MsgType"] == "text"
    assert "旧监护仪" in reply["Content"] and "已停用" in reply["Content"]
    assert (await remembered(live, "oOld1"))[0] is None


async def test_scan_memory_on_each_redis(redis_client):
    assert await scans.last_scene(redis_client, "oX") is None
    await scans.remember_scan(redis_client, "oX", "d:A1", ttl=60)
    assert await scans.last_scene(redis_client, "oX") == "d:A1"
    assert 0 < await redis_client.ttl("bot:scene:oX") <= 60
