"""The public-account callback as WeChat's servers use it: signatures, both modes, retries, bad input."""

from __future__ import annotations

import asyncio
import json

import pytest
import xmltodict
from wechatpy.crypto import WeChatCrypto

from bot import handlers
from bot.router import router
from tests.conftest import need_conformance
from tests.wechat_messages import event_xml, safe_mode, sign, text_xml, voice_xml

TOKEN = "medwxtoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wxtestappid00001"


def reply_of(body: str) -> dict:
    return xmltodict.parse(body)["xml"]


@pytest.fixture
async def live(serve, settings_for, tmp_path):
    """The app on SQLite and the in-process Redis."""
    return await serve(settings_for(f"sqlite://{tmp_path / 'cb.sqlite3'}", wechat_aes_key=AES_KEY))


@pytest.fixture
async def live_everywhere(serve, settings_for, database_url, redis_url):
    """The app on each database (SQLite, PostgreSQL) × each Redis (in-process, real)."""
    return await serve(settings_for(database_url, redis_url, wechat_aes_key=AES_KEY))


async def post(live, xml: str, query: dict | None = None):
    return await live.request("POST", "/wechat/callback", params=query or sign(TOKEN), data=xml.encode())


async def stream_events(live, name: str) -> list:
    events = await live.app.ctx.events.read_after("0-0")
    return [e for e in events if e.name == name]


# -- URL verification ---------------------------------------------------------------------------------------------
async def test_url_verification_echoes_echostr(live):
    status, _, body = await live.request("GET", "/wechat/callback", params=dict(sign(TOKEN), echostr="8254117"))
    assert (status, body) == (200, "8254117")


async def test_url_verification_with_the_official_vector(serve, settings_for, tmp_path):
    vectors = json.loads(need_conformance("wechat", "vectors.json").read_text())["vectors"]
    v = next(x for x in vectors if x["id"] == "mp_url_verify_signature_derived")
    live = await serve(settings_for(f"sqlite://{tmp_path / 'v.sqlite3'}", wechat_token=v["token"]))
    query = {"signature": v["signature"], "timestamp": v["timestamp"], "nonce": v["nonce"], "echostr": "hello"}
    assert (await live.request("GET", "/wechat/callback", params=query))[::2] == (200, "hello")
    query["nonce"] = "1"
    status, _, body = await live.request("GET", "/wechat/callback", params=query)
    assert status == 403 and json.loads(body)["error"]["code"] == "bad_signature"


# -- messages -------------------------------------------------------------------------------------------------------
async def test_signed_text_message_gets_a_passive_reply(live_everywhere):
    from core.models import WechatUser

    status, headers, body = await post(live_everywhere, text_xml("呼吸机报警怎么办", sender="oNurse1"))
    assert status == 200 and "xml" in headers["Content-Type"]
    reply = reply_of(body)
    assert reply["MsgType"] == "text" and reply["ToUserName"] == "oNurse1"
    assert "设备服务助手" in reply["Content"] and "转人工" in reply["Content"]  # the robot, with an empty KB
    user = await WechatUser.get(openid="oNurse1")
    assert user.last_interaction_at is not None  # opens the 48-hour customer-service window


async def test_safe_mode_message_is_decrypted_and_the_reply_encrypted(live):
    query, body = safe_mode(TOKEN, AES_KEY, APP_ID, text_xml("你好", sender="oSafe1"))
    status, _, answer = await post(live, body, query)
    assert status == 200
    envelope = reply_of(answer)
    assert set(envelope) >= {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    plain = WeChatCrypto(TOKEN, AES_KEY, APP_ID).decrypt_message(
        answer, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    assert reply_of(plain)["ToUserName"] == "oSafe1"


async def test_the_official_safe_mode_sample_is_read(serve, settings_for, tmp_path):
    vectors = json.loads(need_conformance("wechat", "vectors.json").read_text())["vectors"]
    v = next(x for x in vectors if x["id"] == "mp_official_sample_decrypt")
    live = await serve(settings_for(f"sqlite://{tmp_path / 'o.sqlite3'}", wechat_token=v["token"],
                                    wechat_aes_key=v["encoding_aes_key"], wechat_app_id=v["appid"]))
    query = dict(sign(v["token"], v["timestamp"], v["nonce"]), encrypt_type="aes", msg_signature=v["msg_signature"])
    status, _, answer = await post(live, v["post_body_xml"], query)
    assert status == 200
    envelope = reply_of(answer)
    plain = WeChatCrypto(v["token"], v["encoding_aes_key"], v["appid"]).decrypt_message(
        answer, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    assert reply_of(plain)["ToUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"


async def test_forged_signature_is_refused_and_nothing_is_stored(live):
    from core.models import WechatUser

    query = dict(sign(TOKEN), signature="0" * 40)
    status, _, body = await post(live, event_xml("subscribe", sender="oForger"), query)
    assert status == 403 and json.loads(body)["error"]["code"] == "bad_signature"
    status, _, _ = await live.request("POST", "/wechat/callback", data=event_xml("subscribe", sender="oForger"))
    assert status == 403
    assert not await WechatUser.filter(openid="oForger").exists()
    assert await stream_events(live, "wechat.followed") == []


async def test_safe_mode_with_a_forged_msg_signature_is_refused(live):
    query, body = safe_mode(TOKEN, AES_KEY, APP_ID, text_xml("你好"))
    query["msg_signature"] = "f" * 40
    assert (await post(live, body, query))[0] == 403


# -- each message once ----------------------------------------------------------------------------------------
async def test_the_same_msgid_three_times_has_one_effect(live_everywhere):
    """WeChat retries; the retries get the first reply and change nothing more."""
    from core.models import WechatUser

    xml = event_xml("subscribe", sender="oRetry1", create_time=1700000000)
    answers = [await post(live_everywhere, xml) for _ in range(3)]
    assert {a[0] for a in answers} == {200}
    assert len({a[2] for a in answers}) == 1
    assert "感谢关注" in reply_of(answers[0][2])["Content"]
    assert len(await stream_events(live_everywhere, "wechat.followed")) == 1
    assert await WechatUser.filter(openid="oRetry1", subscribed=True).count() == 1


async def test_a_retry_during_slow_handling_waits_for_the_first_answer(live, monkeypatch):
    calls = []

    async def slow(message, ctx):
        calls.append(message.id)
        await asyncio.sleep(0.5)
        return "处理完成"

    monkeypatch.setitem(router._messages, "text", slow)
    xml = text_xml("慢问题", msg_id=990002)
    first, retry = await asyncio.gather(post(live, xml), _delayed(post(live, xml), 0.1))
    assert reply_of(first[2])["Content"] == reply_of(retry[2])["Content"] == "处理完成"
    assert calls == [990002]


async def _delayed(coro, delay: float):
    await asyncio.sleep(delay)
    return await coro


async def test_an_answer_later_than_the_window_goes_out_as_customer_service_message(serve, settings_for, tmp_path,
                                                                                   monkeypatch):
    from tests.wechat_standin import WeChatStandIn

    standin = WeChatStandIn(app_id=APP_ID, app_secret="test-app-secret")
    base = await standin.start()
    try:
        live = await serve(settings_for(f"sqlite://{tmp_path / 'late.sqlite3'}", wechat_api_base=base,
                                        wechat_reply_window=0.3))

        async def slow(message, ctx):
            await asyncio.sleep(0.6)
            return "稍后的答复"

        monkeypatch.setitem(router._messages, "text", slow)
        xml = text_xml("需要查询很久", sender="oLate1", msg_id=770001)
        status, _, body = await post(live, xml)
        assert (status, body) == (200, "success")
        retry = await post(live, xml)  # WeChat's retry after its own timeout: nothing new
        assert retry[2] == "success"
        for _ in range(40):
            if standin.custom_messages:
                break
            await asyncio.sleep(0.05)
        assert [(m["touser"], m["text"]["content"]) for m in standin.custom_messages] == [("oLate1", "稍后的答复")]
    finally:
        await standin.stop()


# -- what users send ---------------------------------------------------------------------------------------------
async def test_voice_with_recognition_is_answered_like_text(live):
    reply = reply_of((await post(live, voice_xml("离心机不转了")))[2])
    assert "设备服务助手" in reply["Content"] and "转人工" in reply["Content"]  # the robot, with an empty KB
    reply = reply_of((await post(live, voice_xml(None)))[2])
    assert reply["Content"] == handlers.VOICE_UNCLEAR


async def test_follow_by_scanning_an_unknown_label(live):
    from core.models import WechatUser

    reply = reply_of((await post(live, event_xml("subscribe", sender="oScan1", key="qrscene_d:NOPE")))[2])
    assert reply["Content"] == handlers.UNKNOWN_SCENE
    user = await WechatUser.get(openid="oScan1")
    assert user.subscribed and user.subscribe_scene == "d:NOPE"
    await post(live, event_xml("unsubscribe", sender="oScan1"))
    assert not (await WechatUser.get(openid="oScan1")).subscribed


async def test_a_handler_failure_becomes_a_polite_reply(live, monkeypatch):
    async def broken(message, ctx):
        raise RuntimeError("boom")

    monkeypatch.setitem(router._messages, "text", broken)
    status, _, body = await post(live, text_xml("你好"))
    assert status == 200 and reply_of(body)["Content"] == "抱歉，系统繁忙，请稍后再试。"


CONFORMANCE_REPLIES = {
    "text.xml": "text", "image.xml": "text", "voice.xml": "text", "video.xml": "text", "location.xml": "text",
    "link.xml": "text", "unknown_msgtype.xml": "text",
    "event_subscribe.xml": "text", "event_subscribe_qrscene.xml": "text", "event_subscribe_last_trade_no.xml": "text",
    "event_scan.xml": "text", "event_scan_string_scene.xml": "text", "event_click.xml": "text",
    "event_unsubscribe.xml": None, "event_view.xml": None, "event_location.xml": None,
    "event_templatesendjobfinish.xml": None,
}


async def test_every_sample_message_of_the_protocol_is_answered(live):
    folder = need_conformance("wechat", "messages")
    replies = {}
    for name, expected in CONFORMANCE_REPLIES.items():
        await live.app.ctx.redis.flushdb()  # the samples share one MsgId: each must count as a new message
        status, _, body = await post(live, (folder / name).read_text())
        replies[name] = body
        assert status == 200, name
        if expected is None:
            assert body == "success", name
        else:
            assert reply_of(body)["MsgType"] == expected, name
    assert reply_of(replies["unknown_msgtype.xml"])["Content"] == handlers.UNSUPPORTED
    assert reply_of(replies["event_subscribe_qrscene.xml"])["Content"] == handlers.UNKNOWN_SCENE
    assert "感谢关注" in reply_of(replies["event_subscribe.xml"])["Content"]
    assert reply_of(replies["voice.xml"])["Content"] == handlers.VOICE_UNCLEAR


# -- bad input: signed, so always 200 -------------------------------------------------------------------------------
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><ToUserName>a</ToUserName><FromUserName>&lol3;</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>x</Content><MsgId>5</MsgId></xml>"""


@pytest.mark.parametrize("body", [
    "not xml at all",
    "<xml><ToUserName>a</ToUserName>",  # truncated
    "<xml><FromUserName>a</FromUserName></xml>",  # no MsgType
    "<root><MsgType>text</MsgType></root>",  # not a WeChat envelope
    "",
    BILLION_LAUGHS,
    "<xml>" + "<a>" * 10 + "x" * 300_000 + "</a>" * 10 + "</xml>",  # oversize
], ids=["garbage", "truncated", "no-type", "wrong-root", "empty", "billion-laughs", "oversize"])
async def test_signed_but_unreadable_input_is_answered_success(live, body):
    status, _, answer = await post(live, body)
    assert (status, answer) == (200, "success")


async def test_safe_mode_oddities_are_answered_success(live):
    # Encrypted for another appid.
    query, body = safe_mode(TOKEN, AES_KEY, "wxsomeoneelse0001", text_xml("你好"))
    assert (await post(live, body, query))[::2] == (200, "success")
    # Correctly signed envelope whose ciphertext is not ours.
    q = sign(TOKEN)
    bogus = "bm90IGNpcGhlcnRleHQ="
    import hashlib

    msg_signature = hashlib.sha1("".join(sorted([TOKEN, q["timestamp"], q["nonce"], bogus])).encode()).hexdigest()
    envelope = f"<xml><Encrypt><![CDATA[{bogus}]]></Encrypt></xml>"
    assert (await post(live, envelope, dict(q, encrypt_type="aes", msg_signature=msg_signature)))[::2] == \
        (200, "success")


async def test_other_routes_answer_bad_input_with_json_4xx(live):
    status, _, body = await live.request("GET", "/no/such/page")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    status, _, body = await live.request("DELETE", "/wechat/callback")
    assert status == 405 and "error" in json.loads(body)
