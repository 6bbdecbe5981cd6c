"""The WeChat client against the local stand-in of the WeChat API, on the embedded fakeredis and on a real Redis.

What is checked is what WeChat and other workers would see: how many tokens were fetched, which requests arrived
with which bodies, which typed error a caller gets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from core.errors import BadRequest, UpstreamError, WeChatAPIError
from core.redis import create_redis
from core.settings import Settings
from integrations.wechat import WeChatClient, jsapi_sign
from tests.conftest import free_port
from tests.wechat_standin import WeChatStandIn

ROOT = Path(__file__).resolve().parents[1]
APP_ID, APP_SECRET = "wx_test_service", "service-secret-never-logged"
MP_APP_ID, MP_APP_SECRET = "wx_test_mini", "mini-secret-never-logged"
TOKEN_KEY = f"wx:token:{APP_ID}"
CUSTOM_SEND = "/cgi-bin/message/custom/send"


def make_settings(base_url: str, **changes) -> Settings:
    values = dict(secret_key="t", wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET, wechat_mp_app_id=MP_APP_ID,
                  wechat_mp_app_secret=MP_APP_SECRET, wechat_api_base=base_url)
    return Settings(**{**values, **changes})


@pytest.fixture
async def standin():
    server = WeChatStandIn(app_id=APP_ID, app_secret=APP_SECRET, mp_app_id=MP_APP_ID, mp_app_secret=MP_APP_SECRET)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def wechat(standin, redis_client):
    client = WeChatClient(make_settings(standin.base_url + "/"), redis_client)  # a trailing slash is fine
    yield client
    await client.close()


@pytest.fixture
async def second_wechat(standin, redis_client):
    """Another worker: its own HTTP session, the same Redis."""
    client = WeChatClient(make_settings(standin.base_url), redis_client)
    yield client
    await client.close()


# -- access_token ----------------------------------------------------------------------------------------------------
async def test_concurrent_callers_of_two_clients_fetch_one_token(standin, redis_client, redis_url, wechat,
                                                                  second_wechat):
    tokens = await asyncio.gather(*(client.access_token() for client in [wechat, second_wechat] * 10))

    assert len(set(tokens)) == 1
    assert tokens[0] == standin.current_token
    assert standin.token_fetches == 1
    assert 7200 - 300 - 5 <= await redis_client.ttl(TOKEN_KEY) <= 7200 - 300

    # A client as another process would build it: own session and, on a real Redis, its own connections.
    other_redis = create_redis(Settings(redis_url=redis_url, secret_key="t")) if redis_url else redis_client
    late = WeChatClient(make_settings(standin.base_url), other_redis)
    try:
        assert await late.access_token() == tokens[0]
    finally:
        await late.close()
        if other_redis is not redis_client:
            await other_redis.aclose()
    assert standin.token_fetches == 1


_WORKER = """
import asyncio, json, sys
import redis.asyncio as aioredis
from core.settings import Settings
from integrations.wechat import WeChatClient

async def main():
    redis = aioredis.from_url(sys.argv[2], decode_responses=True)
    await redis.ping()
    async with WeChatClient(Settings(**json.loads(sys.argv[1])), redis) as client:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        tokens = await asyncio.gather(*(client.access_token() for _ in range(5)))
    await redis.aclose()
    print(json.dumps(tokens), flush=True)

asyncio.run(main())
"""


async def test_worker_processes_share_one_token(real_redis_url):
    """Three processes released at once on a real Redis: one fetch for all."""
    app_id = f"wx_proc_{uuid.uuid4().hex[:8]}"
    server = WeChatStandIn(app_id=app_id, app_secret=APP_SECRET)
    await server.start()
    settings = dict(secret_key="t", wechat_app_id=app_id, wechat_app_secret=APP_SECRET,
                    wechat_api_base=server.base_url)
    redis = create_redis(Settings(redis_url=real_redis_url, secret_key="t"))
    try:
        workers = [await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, json.dumps(settings), real_redis_url, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE) for _ in range(3)]
        for worker in workers:
            assert (await asyncio.wait_for(worker.stdout.readline(), 30)).strip() == b"ready"
        for worker in workers:
            worker.stdin.write(b"go\n")
        outputs = await asyncio.wait_for(asyncio.gather(*(worker.communicate() for worker in workers)), 30)
        assert [worker.returncode for worker in workers] == [0, 0, 0]
        tokens = {token for stdout, _ in outputs for token in json.loads(stdout)}
        assert tokens == {server.current_token}
        assert server.token_fetches == 1
    finally:
        await redis.delete(f"wx:token:{app_id}")
        await redis.aclose()
        await server.stop()


async def test_force_refresh_fetches_a_new_token(standin, wechat, redis_client):
    first = await wechat.access_token()
    second = await wechat.access_token(force_refresh=True)
    assert second != first
    assert await redis_client.get(TOKEN_KEY) == second
    assert standin.token_fetches == 2


async def test_refused_token_is_refreshed_once_and_the_message_delivered_once(standin, wechat, redis_client):
    stale = await wechat.access_token()
    standin.expire_token()

    await wechat.send_text("o_patient_1", "您的检查报告已出，请查收。")

    assert standin.token_fetches == 2
    assert standin.custom_messages == [
        {"touser": "o_patient_1", "msgtype": "text", "text": {"content": "您的检查报告已出，请查收。"}}]
    first_try, retry = standin.calls_to(CUSTOM_SEND)
    assert first_try.query["access_token"] == stale
    assert retry.query["access_token"] == standin.current_token != stale
    assert await redis_client.get(TOKEN_KEY) == standin.current_token


async def test_chinese_is_sent_as_utf8_text(standin, wechat):
    await wechat.send_text("o_patient_1", "请到三楼取药")
    (call,) = standin.calls_to(CUSTOM_SEND)
    assert "请到三楼取药".encode("utf-8") in call.body
    assert b"\\u" not in call.body


async def test_many_refusals_at_once_share_one_refresh(standin, wechat, second_wechat):
    await wechat.access_token()
    standin.expire_token()

    await asyncio.gather(*(client.send_text(f"o_{i}", f"消息 {i}")
                           for i, client in enumerate([wechat, second_wechat] * 5)))

    assert standin.token_fetches == 2
    assert sorted(m["touser"] for m in standin.custom_messages) == sorted(f"o_{i}" for i in range(10))


async def test_a_token_refreshed_by_another_worker_is_not_dropped(standin, wechat, second_wechat, redis_client):
    """A call refused with the old token must not delete the new one another worker cached meanwhile."""
    old = await wechat.access_token()
    standin.stall_next(CUSTOM_SEND, 0.5)
    sending = asyncio.create_task(wechat.send_text("o_patient_1", "您好"))
    while not standin.calls_to(CUSTOM_SEND):
        await asyncio.sleep(0.01)

    new = await second_wechat.access_token(force_refresh=True)
    standin.expire_token(old)
    await sending

    assert standin.token_fetches == 2
    assert await redis_client.get(TOKEN_KEY) == new
    assert standin.calls_to(CUSTOM_SEND)[-1].query["access_token"] == new
    assert len(standin.custom_messages) == 1


# -- messages --------------------------------------------------------------------------------------------------------
async def test_send_template_returns_the_msgid_and_sends_the_documented_shape(standin, wechat):
    msgid = await wechat.send_template(
        "o_patient_1", "TPL_REPORT_READY",
        {"thing1": "心内科 张医生", "time2": "2024-05-01 09:30", "number3": 12,
         "remark": {"value": "请提前15分钟到达", "color": "#173177"}},
        url="https://h.example/reports/1", miniprogram={"appid": MP_APP_ID, "pagepath": "pages/report?id=1"})
    second = await wechat.send_template("o_patient_2", "TPL_REPORT_READY", {"thing1": "复诊"})

    assert isinstance(msgid, int) and msgid > 0 and second != msgid
    assert standin.template_messages[0] == {
        "touser": "o_patient_1", "template_id": "TPL_REPORT_READY",
        "url": "https://h.example/reports/1", "miniprogram": {"appid": MP_APP_ID, "pagepath": "pages/report?id=1"},
        "data": {"thing1": {"value": "心内科 张医生"}, "time2": {"value": "2024-05-01 09:30"},
                 "number3": {"value": "12"}, "remark": {"value": "请提前15分钟到达", "color": "#173177"}}}
    assert "url" not in standin.template_messages[1] and "miniprogram" not in standin.template_messages[1]


async def test_send_news_sends_one_article(standin, wechat):
    article = {"title": "就诊须知", "description": "请携带身份证", "url": "https://h.example/n/1",
               "picurl": "https://h.example/n/1.jpg", "extra": "dropped"}
    await wechat.send_news("o_patient_1", [article])
    assert standin.custom_messages == [{"touser": "o_patient_1", "msgtype": "news", "news": {"articles": [
        {"title": "就诊须知", "description": "请携带身份证", "url": "https://h.example/n/1",
         "picurl": "https://h.example/n/1.jpg"}]}}]

    with pytest.raises(BadRequest):
        await wechat.send_news("o_patient_1", [article, article])
    with pytest.raises(BadRequest):
        await wechat.send_news("o_patient_1", [])
    assert len(standin.calls_to(CUSTOM_SEND)) == 1


@pytest.mark.parametrize("errcode, status", [(45015, 409), (45047, 409), (43004, 409), (45011, 429), (40226, 403),
                                             (-1, 503), (40003, 400), (47001, 502)])
async def test_wechat_errors_become_typed_errors(standin, wechat, errcode, status):
    standin.fail_next(CUSTOM_SEND, errcode, "refused")
    with pytest.raises(WeChatAPIError) as caught:
        await wechat.send_text("o_patient_1", "您好")
    assert (caught.value.errcode, caught.value.status, caught.value.errmsg) == (errcode, status, "refused")
    assert caught.value.to_body()["error"]["details"]["errcode"] == errcode
    assert any("\u4e00" <= ch <= "\u9fff" for ch in caught.value.message)  # a Chinese text for users
    assert standin.custom_messages == []
    assert len(standin.calls_to(CUSTOM_SEND)) == 1  # not retried


async def test_window_expired_message_is_explicit(standin, wechat):
    standin.fail_next(CUSTOM_SEND, 45015, "response out of time limit or subscription is canceled")
    with pytest.raises(WeChatAPIError) as caught:
        await wechat.send_text("o_patient_1", "您好")
    assert "超出客服消息时限" in caught.value.message


async def test_a_token_refused_twice_gives_up_after_one_retry(standin, wechat):
    await wechat.access_token()
    standin.fail_next(CUSTOM_SEND, 40001, "invalid credential")
    standin.fail_next(CUSTOM_SEND, 42001, "access_token expired")
    with pytest.raises(WeChatAPIError) as caught:
        await wechat.send_text("o_patient_1", "您好")
    assert caught.value.status == 502
    assert len(standin.calls_to(CUSTOM_SEND)) == 2
    assert standin.token_fetches == 2


# -- QR codes --------------------------------------------------------------------------------------------------------
async def test_create_qrcode_permanent_and_temporary(standin, wechat):
    permanent = await wechat.create_qrcode("device:ECG-07")
    temporary = await wechat.create_qrcode("visit:42", permanent=False, expire_seconds=3600)
    longest = await wechat.create_qrcode("x" * 64, permanent=False)

    bodies = [call.json for call in standin.calls_to("/cgi-bin/qrcode/create")]
    assert bodies == [
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "device:ECG-07"}}},
        {"action_name": "QR_STR_SCENE", "expire_seconds": 3600, "action_info": {"scene": {"scene_str": "visit:42"}}},
        {"action_name": "QR_STR_SCENE", "expire_seconds": 2592000, "action_info": {"scene": {"scene_str": "x" * 64}}},
    ]
    assert permanent["ticket"] and permanent["url"] and permanent["expire_seconds"] is None
    assert temporary["expire_seconds"] == 3600 and temporary["ticket"] != permanent["ticket"]
    assert longest["expire_seconds"] == 2592000


@pytest.mark.parametrize("scene, options", [("x" * 65, {}), ("", {}), ("ok", {"permanent": False,
                                                                            "expire_seconds": 2592001}),
                                            ("ok", {"permanent": False, "expire_seconds": 0})])
async def test_create_qrcode_rejects_bad_input_before_any_call(standin, wechat, scene, options):
    with pytest.raises(BadRequest):
        await wechat.create_qrcode(scene, **options)
    assert standin.calls == []


def test_qrcode_image_url_encodes_the_ticket():
    ticket = "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3+Uw=="
    url = WeChatClient.qrcode_image_url(ticket)
    assert url == ("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFx"
                   "LmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3%2BUw%3D%3D")


# -- logins ----------------------------------------------------------------------------------------------------------
async def test_code2session_works_once(standin, wechat, caplog):
    caplog.set_level(logging.DEBUG)
    standin.add_js_code("js-code-1", "o_mini_1", unionid="u_1")

    session = await wechat.code2session("js-code-1")
    assert session["openid"] == "o_mini_1" and session["unionid"] == "u_1" and session["session_key"]
    (call,) = standin.calls_to("/sns/jscode2session")
    assert call.query == {"appid": MP_APP_ID, "secret": MP_APP_SECRET, "js_code": "js-code-1",
                          "grant_type": "authorization_code"}
    assert standin.token_fetches == 0

    with pytest.raises(WeChatAPIError) as reused:
        await wechat.code2session("js-code-1")
    assert (reused.value.errcode, reused.value.status) == (40163, 400)
    assert reused.value.message == "登录凭证无效或已使用，请重新进入"
    with pytest.raises(WeChatAPIError) as unknown:
        await wechat.code2session("never-issued")
    assert (unknown.value.errcode, unknown.value.status) == (40029, 400)

    assert session["session_key"] not in caplog.text
    assert MP_APP_SECRET not in caplog.text


async def test_code2session_rate_limit_and_risky_user(standin, wechat):
    standin.fail_next("/sns/jscode2session", 45011, "api minute-quota reach limit")
    with pytest.raises(WeChatAPIError) as limited:
        await wechat.code2session("any")
    assert limited.value.status == 429
    standin.fail_next("/sns/jscode2session", 40226, "high risk user")
    with pytest.raises(WeChatAPIError) as risky:
        await wechat.code2session("any")
    assert risky.value.status == 403


async def test_login_answers_come_as_text_plain(standin):
    """The premise of parsing regardless of Content-Type: WeChat (and the stand-in) label /sns/ JSON text/plain."""
    async with aiohttp.ClientSession() as session:
        async with session.get(standin.base_url + "/sns/jscode2session", params={"appid": "x"}) as response:
            assert response.content_type == "text/plain"
            assert json.loads(await response.read())["errcode"] == 40013


async def test_oauth_openid(standin, wechat):
    standin.add_oauth_code("oauth-1", "o_web_1")
    answer = await wechat.oauth_openid("oauth-1")
    assert answer["openid"] == "o_web_1" and answer["scope"] == "snsapi_base"
    assert "errcode" not in answer
    (call,) = standin.calls_to("/sns/oauth2/access_token")
    assert call.query == {"appid": APP_ID, "secret": APP_SECRET, "code": "oauth-1",
                          "grant_type": "authorization_code"}
    with pytest.raises(WeChatAPIError) as reused:
        await wechat.oauth_openid("oauth-1")
    assert reused.value.status == 400


async def test_wrong_secret_is_a_configuration_error_that_does_not_leak(standin, redis_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = WeChatClient(make_settings(standin.base_url, wechat_app_secret="wrong-secret-never-logged"),
                          redis_client)
    try:
        with pytest.raises(WeChatAPIError) as caught:
            await client.send_text("o_patient_1", "您好")
    finally:
        await client.close()
    assert (caught.value.errcode, caught.value.status) == (40125, 502)
    assert "wrong-secret-never-logged" not in caplog.text
    assert "wrong-secret-never-logged" not in json.dumps(caught.value.to_body(), ensure_ascii=False)
    assert await redis_client.get(TOKEN_KEY) is None


async def test_missing_configuration(standin, redis_client):
    client = WeChatClient(make_settings(standin.base_url, wechat_mp_app_id=""), redis_client)
    try:
        with pytest.raises(UpstreamError) as caught:
            await client.code2session("js-code")
    finally:
        await client.close()
    assert (caught.value.code, caught.value.status) == ("wechat_not_configured", 503)
    assert standin.calls == []


# -- JS-SDK ----------------------------------------------------------------------------------------------------------
async def test_jsapi_signature_matches_an_independent_sha1(standin, wechat):
    page = "https://h.example/queue?dept=3&day=周一"
    config = await wechat.jsapi_signature(page + "#top")

    ticket = standin.current_ticket
    plain = f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}&timestamp={config['timestamp']}&url={page}"
    assert config["signature"] == hashlib.sha1(plain.encode("utf-8")).hexdigest()
    assert config["appId"] == APP_ID
    assert abs(config["timestamp"] - time.time()) < 5
    assert len(config["nonceStr"]) == 16

    again = await wechat.jsapi_signature(page)
    assert again["nonceStr"] != config["nonceStr"]
    assert standin.ticket_fetches == 1 and standin.token_fetches == 1


def test_jsapi_sign_worked_example_from_the_js_sdk_docs():
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    assert jsapi_sign(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value") \
        == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


async def test_jsapi_ticket_is_fetched_once_for_concurrent_callers(standin, wechat, second_wechat, redis_client):
    tickets = await asyncio.gather(*(client.jsapi_ticket() for client in [wechat, second_wechat] * 10))
    assert set(tickets) == {standin.current_ticket}
    assert standin.ticket_fetches == 1 and standin.token_fetches == 1
    assert 7200 - 300 - 5 <= await redis_client.ttl(f"wx:jsapi_ticket:{APP_ID}") <= 7200 - 300


async def test_jsapi_ticket_survives_a_refused_token(standin, wechat):
    await wechat.access_token()
    standin.expire_token()
    assert await wechat.jsapi_ticket() == standin.current_ticket
    assert standin.token_fetches == 2 and standin.ticket_fetches == 2


# -- the network -----------------------------------------------------------------------------------------------------
async def test_unreachable_server_is_an_upstream_error(redis_client):
    client = WeChatClient(make_settings(f"http://127.0.0.1:{free_port()}"), redis_client)
    try:
        with pytest.raises(UpstreamError) as caught:
            await client.send_text("o_patient_1", "您好")
    finally:
        await client.close()
    assert not isinstance(caught.value, WeChatAPIError)
    assert caught.value.status == 502


async def test_stopped_server_is_an_upstream_error(standin, wechat):
    await wechat.send_text("o_patient_1", "第一条")
    await standin.stop()
    with pytest.raises(UpstreamError) as caught:
        await wechat.send_text("o_patient_1", "第二条")
    assert caught.value.status == 502


async def test_timeout_is_an_upstream_error_and_releases_the_lock(standin, redis_client):
    client = WeChatClient(make_settings(standin.base_url), redis_client, timeout=0.3)
    try:
        standin.stall_next("/cgi-bin/token", 3)
        with pytest.raises(UpstreamError) as caught:
            await client.access_token()
        assert caught.value.status == 504
        assert await client.access_token() == standin.current_token  # the lock did not wait for its expiry
    finally:
        await client.close()


@pytest.mark.parametrize("status", [502, 200])
async def test_an_html_page_instead_of_json_is_an_upstream_error(standin, wechat, status):
    standin.break_next(CUSTOM_SEND, status)
    with pytest.raises(UpstreamError) as caught:
        await wechat.send_text("o_patient_1", "您好")
    assert not isinstance(caught.value, WeChatAPIError)
    assert caught.value.status == 502


async def test_close_leaves_a_session_passed_in_open(standin, redis_client):
    async with aiohttp.ClientSession() as session:
        client = WeChatClient(make_settings(standin.base_url), redis_client, session=session)
        await client.access_token()
        await client.close()
        assert not session.closed

    own = WeChatClient(make_settings(standin.base_url), redis_client)
    await own.access_token(force_refresh=True)
    await own.close()
    await own.close()  # twice is harmless
