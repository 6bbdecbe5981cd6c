"""Subscribe messages when the HIS answers a consultation request: the mini program's consent, the notice to the
patient's mini-program users (the booker first) through the WeChat stand-in, on both databases; the mini program's
own access_token in the WeChat client."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from care import kiosks, patients
from care.consultation_models import Consultation, ConsultationNotice, SubscribeCredit
from care.consultation_notices import ConsultationNotifier
from care.doctor_models import PractitionerSlot
from care.models import Practitioner
from core.errors import UpstreamError, WeChatAPIError
from core.events import Event
from core.models import Hospital, User
from core.settings import Settings
from integrations.wechat import WeChatClient, fit_subscribe_data
from tests.conftest import STANDIN_APP_ID, STANDIN_APP_SECRET, STANDIN_MP_APP_ID, STANDIN_MP_APP_SECRET
from tests.consultation_support import make_site
from tests.wechat_standin import WeChatStandIn

APP_ID, APP_SECRET = STANDIN_APP_ID, STANDIN_APP_SECRET
MP_APP_ID, MP_APP_SECRET = STANDIN_MP_APP_ID, STANDIN_MP_APP_SECRET
TPL = "TPL-consultation-result-01"
SEND = "/cgi-bin/message/subscribe/send"
MP_TOKEN_KEY, OA_TOKEN_KEY = f"wx:token:{MP_APP_ID}", f"wx:token:{APP_ID}"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def wx(standin):
    return standin


def wechat_settings(wx: WeChatStandIn, **changes) -> dict:
    values = dict(wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET, wechat_mp_app_id=MP_APP_ID,
                  wechat_mp_app_secret=MP_APP_SECRET, wechat_api_base=wx.base_url,
                  wechat_mp_template_consultation=TPL)
    return {**values, **changes}


@pytest.fixture
async def site(serve, settings_for, database_url, wx):
    site = await make_site(serve, settings_for, database_url, **wechat_settings(wx))
    yield site
    await site.his.stop()


async def consent(site, jwt: str, results) -> tuple[int, dict]:
    return await site.mp("POST", "/mp/v1/patient/subscriptions", jwt, json={"results": results})


async def book(site, jwt: str) -> tuple[dict, PractitionerSlot]:
    slot = await site.slot()
    status, body = await site.mp("POST", "/mp/v1/patient/consultations", jwt,
                                 json={"practitioner_id": site.practitioner.id, "slot_id": slot.id})
    assert status == 201, body
    return body, slot


async def settled(consultation_id: int, count: int, *, timeout: float = 15.0) -> list[ConsultationNotice]:
    """The consultation's notices (oldest first) once ``count`` of them exist and none is pending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    rows: list[ConsultationNotice] = []
    while loop.time() < deadline:
        rows = await ConsultationNotice.filter(consultation_id=consultation_id).order_by("id")
        if len(rows) == count and all(row.status != "pending" for row in rows):
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"notices of consultation {consultation_id}: {[(r.user_id, r.status) for r in rows]}")


def slot_time(slot: PractitionerSlot) -> str:
    return slot.start.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


# -- consent -----------------------------------------------------------------------------------------------------------
async def test_consent_counts_each_accept_of_a_known_template(site):
    patient = await site.patient("林秀英", "13800011111")
    jwt = await site.mp_user("oDaughter", patient)
    user = await User.get(mp_openid="oDaughter")

    status, view = await site.mp("GET", "/mp/v1/patient/subscriptions", jwt)
    assert status == 200
    assert view == {"tmpl_ids": [TPL], "templates": [{"template_id": TPL, "purpose": "consultation_answered",
                                                      "title": "问诊预约结果", "credits": 0}]}

    # Exactly what wx.requestSubscribeMessage returned: its errMsg, our template, someone else's.
    status, body = await consent(site, jwt, {"errMsg": "requestSubscribeMessage:ok", TPL: "accept",
                                             "TPL-unknown": "accept"})
    assert status == 200, body
    assert body == {"counted": [TPL], "ignored": [{"template_id": "TPL-unknown", "reason": "unknown_template"}],
                    "credits": {TPL: 1}}
    status, body = await consent(site, jwt, {TPL: "reject"})
    assert status == 200 and body["counted"] == [] and body["credits"] == {TPL: 1}
    assert body["ignored"] == [{"template_id": TPL, "reason": "not_accepted"}]
    status, body = await consent(site, jwt, {TPL: "accept"})
    assert status == 200 and body["credits"] == {TPL: 2}

    assert [(c.template_id, c.count) for c in await SubscribeCredit.filter(user=user)] == [(TPL, 2)]
    status, view = await site.mp("GET", "/mp/v1/patient/subscriptions", jwt)
    assert view["templates"][0]["credits"] == 2


async def test_consent_refuses_what_is_not_an_answer(site):
    jwt = await site.mp_user("oAnyone")
    for results in (["accept"], "accept", None):
        status, body = await consent(site, jwt, results)
        assert status == 400, body
        assert body["error"]["code"] == "invalid_field" and body["error"]["details"] == {"field": "results"}
    status, body = await consent(site, jwt, {f"TPL-{n}": "accept" for n in range(21)})
    assert status == 400 and body["error"]["details"] == {"field": "results"}
    status, _, text = await site.live.request("POST", "/mp/v1/patient/subscriptions", data=b"[1]",
                                              headers={"Authorization": f"Bearer {jwt}"})
    assert status == 400 and "invalid_json" in text
    status, _, text = await site.live.request("POST", "/mp/v1/patient/subscriptions", json={"results": {}})
    assert status == 401 and "login_required" in text
    assert await SubscribeCredit.all().count() == 0


# -- the HIS answers ---------------------------------------------------------------------------------------------------
async def test_accepted_tells_the_booker_who_subscribed(site, wx):
    mother = await site.patient("林秀英", "13800011111")
    await site.mp_user("oSon", mother)  # bound first, but did not subscribe
    daughter = await site.mp_user("oDaughter", mother)
    by_public_account = await User.create(openid="oPublicOnly", name="公众号用户")  # no mini program: not told
    await kiosks.bind_patient(by_public_account, mother)
    assert (await consent(site, daughter, {TPL: "accept"}))[0] == 200

    body, slot = await book(site, daughter)
    site.his.answer_appointment(body["his_appointment_id"], accept=True)
    await site.wait_status(body["id"], "accepted")
    first, second = await settled(body["id"], 2)

    assert wx.subscribe_messages == [{
        "touser": "oDaughter", "template_id": TPL, "page": f"pages/consultation/detail?id={body['id']}",
        "miniprogram_state": "formal", "lang": "zh_CN",
        "data": {"name1": {"value": "李医生"}, "thing2": {"value": "心内科"}, "time3": {"value": slot_time(slot)},
                 "phrase4": {"value": "已接受"}, "thing5": {"value": "请按时进入诊室"}}}]
    daughter_user, son_user = await User.get(mp_openid="oDaughter"), await User.get(mp_openid="oSon")
    assert (first.user_id, first.event, first.status, first.attempts) == (daughter_user.id, "accepted", "sent", 1)
    assert first.openid == "oDaughter" and first.template_id == TPL and first.sent_at is not None
    assert (second.user_id, second.status, second.last_error) == (son_user.id, "skipped", "用户未订阅")
    _, view = await site.mp("GET", "/mp/v1/patient/subscriptions", daughter)
    assert view["templates"][0]["credits"] == 0  # used: the mini program asks again next time
    assert len(wx.calls_to(SEND)) == 1

    # Sent with the mini program's own token, fetched with its appid and cached apart from the service account's.
    (fetch,) = wx.calls_to("/cgi-bin/token")
    assert fetch.query["appid"] == MP_APP_ID
    assert wx.calls_to(SEND)[0].query["access_token"] == await site.redis.get(MP_TOKEN_KEY) == wx.current_mp_token
    assert await site.redis.get(OA_TOKEN_KEY) is None


async def test_without_a_subscription_nothing_is_sent(site, wx):
    patient = await site.patient("何平", "13800022222")
    jwt = await site.mp_user("oHe", patient)
    body, _ = await book(site, jwt)
    site.his.answer_appointment(body["his_appointment_id"], accept=True)
    (notice,) = await settled(body["id"], 1)
    assert (notice.status, notice.last_error, notice.attempts) == ("skipped", "用户未订阅", 0)
    assert wx.subscribe_messages == [] and wx.calls_to(SEND) == []


async def test_a_refused_subscription_is_kept_as_failed(site, wx):
    patient = await site.patient("罗兰", "13800033333")
    jwt = await site.mp_user("oLuo", patient)
    await consent(site, jwt, {TPL: "accept"})
    wx.refuse_subscribe("oLuo")  # WeChat no longer holds the user's "accept" (used elsewhere, or withdrawn)

    body, _ = await book(site, jwt)
    site.his.answer_appointment(body["his_appointment_id"], accept=True)
    (notice,) = await settled(body["id"], 1)
    assert (notice.status, notice.attempts) == ("failed", 1)
    assert notice.last_error.startswith("errcode 43101")
    assert wx.subscribe_messages == [] and len(wx.calls_to(SEND)) == 1  # not tried again
    _, view = await site.mp("GET", "/mp/v1/patient/subscriptions", jwt)
    assert view["templates"][0]["credits"] == 0  # not given back


async def test_declined_is_told_with_the_reason_cut_to_fit(site, wx):
    patient = await site.patient("张伟", "13800044444")
    jwt = await site.mp_user("oZhang", patient)
    await consent(site, jwt, {TPL: "accept"})
    body, slot = await book(site, jwt)
    reason = "李医生今日临时停诊，请改约本周其他时段或选择其他医生"  # 26 characters; a "thing" takes 20
    site.his.answer_appointment(body["his_appointment_id"], accept=False, comment=reason)
    await site.wait_status(body["id"], "declined")
    (notice,) = await settled(body["id"], 1)

    assert (notice.event, notice.status) == ("declined", "sent")
    (message,) = wx.subscribe_messages
    assert message["touser"] == "oZhang"
    assert message["data"]["phrase4"] == {"value": "未接受"}
    assert message["data"]["thing5"] == {"value": reason[:19] + "…"}
    assert message["data"]["time3"] == {"value": slot_time(slot)}


async def test_the_same_event_delivered_again_sends_nothing_more(site, wx):
    patient = await site.patient("陈静", "13800055555")
    jwt = await site.mp_user("oChen", patient)
    await consent(site, jwt, {TPL: "accept"})
    await consent(site, jwt, {TPL: "accept"})
    body, _ = await book(site, jwt)
    site.his.answer_appointment(body["his_appointment_id"], accept=True)
    await settled(body["id"], 1)

    events = await site.live.app.ctx.events.read_after("0-0")
    (accepted,) = [e for e in events if e.name == "consultation.accepted"]
    notifier = ConsultationNotifier(site.live.app.ctx.settings, site.live.app.ctx.wechat)
    await asyncio.gather(notifier.on_answer(accepted), notifier.on_answer(accepted))  # redeliveries
    await notifier.on_answer(accepted)

    assert len(wx.subscribe_messages) == 1
    assert [(n.status, n.attempts) for n in await ConsultationNotice.filter(consultation_id=body["id"])] == [
        ("sent", 1)]
    _, view = await site.mp("GET", "/mp/v1/patient/subscriptions", jwt)
    assert view["templates"][0]["credits"] == 1  # one of the two taken, once


# -- passing failures, unset template (the listener called as the event bus calls it) ----------------------------------
async def _answered_consultation(settings: Settings, *, credits: int = 1) -> Consultation:
    hospital = await Hospital.create(name="市第二人民医院")
    doctor = await Practitioner.create(his_id="pr-wang", name="王医生", department="内分泌科", hospital=hospital)
    start = datetime.now(timezone.utc) + timedelta(hours=3)
    slot = await PractitionerSlot.create(practitioner=doctor, start=start, end=start + timedelta(minutes=15),
                                         status="booked")
    patient = await patients.new_patient(name="赵敏", sex="female", phone="13800066666", hospital_id=hospital.id,
                                         secret_key=settings.secret_key)
    user = await User.create(mp_openid="oZhao", name="赵敏家属")
    await kiosks.bind_patient(user, patient)
    if credits:
        await SubscribeCredit.create(user=user, template_id=TPL, count=credits)
    return await Consultation.create(patient=patient, practitioner=doctor, slot=slot, status="accepted",
                                     source="mp", requested_by=user, room=secrets.token_hex(16))


def _accepted(c: Consultation) -> Event:
    return Event(id="1-0", name="consultation.accepted",
                 data={"consultation_id": c.id, "patient_id": c.patient_id, "status": "accepted"})


async def test_a_passing_failure_is_retried_by_the_bus_and_sent_once(db, wx, redis_client):
    settings = db.with_(**wechat_settings(wx))
    c = await _answered_consultation(settings)
    async with WeChatClient(settings, redis_client) as wechat:
        notifier = ConsultationNotifier(settings, wechat)
        wx.break_next(SEND, 502)
        with pytest.raises(UpstreamError):
            await notifier.on_answer(_accepted(c))  # raising makes the bus deliver it again
        (notice,) = await ConsultationNotice.filter(consultation=c)
        assert (notice.status, notice.attempts) == ("pending", 1) and "upstream_error" in notice.last_error
        assert wx.subscribe_messages == []
        assert (await SubscribeCredit.get(template_id=TPL)).count == 0

        await notifier.on_answer(_accepted(c))  # the redelivery
        (notice,) = await ConsultationNotice.filter(consultation=c)
        assert (notice.status, notice.attempts, notice.last_error) == ("sent", 2, "")
        assert [m["touser"] for m in wx.subscribe_messages] == ["oZhao"]
        assert wx.subscribe_messages[0]["data"]["name1"] == {"value": "王医生"}


async def test_two_deliveries_at_once_make_one_notice_and_take_one_credit(db, wx, redis_client):
    settings = db.with_(**wechat_settings(wx))
    c = await _answered_consultation(settings, credits=2)
    async with WeChatClient(settings, redis_client) as wechat:
        notifier = ConsultationNotifier(settings, wechat)
        outcomes = await asyncio.gather(*(notifier.on_answer(_accepted(c)) for _ in range(3)),
                                        return_exceptions=True)
        # A delivery that found the send taken by another asks the bus to come back; by then it is settled.
        assert all(o is None or isinstance(o, UpstreamError) for o in outcomes)
        await notifier.on_answer(_accepted(c))
    assert [(n.status, n.attempts) for n in await ConsultationNotice.filter(consultation=c)] == [("sent", 1)]
    assert len(wx.subscribe_messages) == 1
    assert (await SubscribeCredit.get(template_id=TPL)).count == 1


async def test_a_send_left_by_a_worker_that_died_is_made_once_its_lease_runs_out(db, wx, redis_client):
    settings = db.with_(**wechat_settings(wx))
    c = await _answered_consultation(settings)
    async with WeChatClient(settings, redis_client) as wechat:
        notifier = ConsultationNotifier(settings, wechat)
        wx.stall_next(SEND, 30)  # the first delivery hangs in the send ...
        first = asyncio.create_task(notifier.on_answer(_accepted(c)))
        while not wx.calls_to(SEND):
            await asyncio.sleep(0.02)
        first.cancel()  # ... and its worker dies there
        await asyncio.gather(first, return_exceptions=True)
        (notice,) = await ConsultationNotice.filter(consultation=c)
        assert (notice.status, notice.attempts) == ("pending", 1) and notice.sending_until is not None

        with pytest.raises(UpstreamError):  # still within the lease: another delivery leaves it alone
            await notifier.on_answer(_accepted(c))
        await ConsultationNotice.filter(id=notice.id).update(
            sending_until=datetime.now(timezone.utc) - timedelta(seconds=1))  # the lease ran out
        await notifier.on_answer(_accepted(c))
    (notice,) = await ConsultationNotice.filter(consultation=c)
    assert (notice.status, notice.attempts) == ("sent", 2)
    assert [m["touser"] for m in wx.subscribe_messages] == ["oZhao"]


async def test_passing_failures_give_up_after_three_sends(db, wx, redis_client):
    settings = db.with_(**wechat_settings(wx))
    c = await _answered_consultation(settings)
    async with WeChatClient(settings, redis_client) as wechat:
        notifier = ConsultationNotifier(settings, wechat)
        for _ in range(3):
            wx.fail_next(SEND, -1, "system error")  # WeChat busy
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await notifier.on_answer(_accepted(c))
        await notifier.on_answer(_accepted(c))  # the third send fails too: kept as failed, the event settled
        (notice,) = await ConsultationNotice.filter(consultation=c)
        assert (notice.status, notice.attempts) == ("failed", 3) and notice.last_error.startswith("errcode -1")
        await notifier.on_answer(_accepted(c))
        assert len(wx.calls_to(SEND)) == 3 and wx.subscribe_messages == []


async def test_without_a_template_notices_are_skipped_and_nothing_sent(db, wx, redis_client):
    settings = db.with_(**wechat_settings(wx, wechat_mp_template_consultation=""))
    c = await _answered_consultation(settings)
    async with WeChatClient(settings, redis_client) as wechat:
        await ConsultationNotifier(settings, wechat).on_answer(_accepted(c))
    (notice,) = await ConsultationNotice.filter(consultation=c)
    assert notice.status == "skipped" and "WECHAT_MP_TEMPLATE_CONSULTATION" in notice.last_error
    assert wx.calls == []  # not even a token
    assert (await SubscribeCredit.get(template_id=TPL)).count == 1  # the user's credit stays theirs


async def test_a_long_term_subscription_is_not_used_up(db, wx, redis_client):
    """Medical mini programs may use long-term templates: one accept, every later answer told."""
    settings = db.with_(**wechat_settings(wx, wechat_mp_subscribe_long_term=True))
    c = await _answered_consultation(settings)
    async with WeChatClient(settings, redis_client) as wechat:
        notifier = ConsultationNotifier(settings, wechat)
        await notifier.on_answer(_accepted(c))
        await notifier.on_answer(Event(id="2-0", name="consultation.declined",
                                       data={"consultation_id": c.id, "patient_id": c.patient_id}))
    assert sorted((n.event, n.status) for n in await ConsultationNotice.filter(consultation=c)) == [
        ("accepted", "sent"), ("declined", "sent")]
    assert len(wx.subscribe_messages) == 2
    assert (await SubscribeCredit.get(template_id=TPL)).count == 1


# -- the WeChat client: the mini program's token and subscribe messages ------------------------------------------------
@pytest.fixture
async def client(wx, redis_client):
    async with WeChatClient(Settings(secret_key="t", **wechat_settings(wx)), redis_client) as wechat:
        yield wechat


async def test_the_mini_program_token_is_fetched_with_its_appid_and_cached_apart(wx, client, redis_client):
    other = WeChatClient(Settings(secret_key="t", **wechat_settings(wx)), redis_client)  # another worker
    try:
        tokens = await asyncio.gather(*(c.access_token(app=app) for c in (client, other) for app in ("mp", "oa")
                                        for _ in range(5)))
    finally:
        await other.close()
    assert set(tokens) == {wx.current_mp_token, wx.current_token} and wx.current_mp_token != wx.current_token
    assert wx.token_fetches_for(MP_APP_ID) == 1 and wx.token_fetches_for(APP_ID) == 1
    assert await redis_client.get(MP_TOKEN_KEY) == wx.current_mp_token
    assert await redis_client.get(OA_TOKEN_KEY) == wx.current_token


@pytest.mark.parametrize("refusal", ["expired", 40001, 42001])
async def test_a_refused_mini_program_token_is_refreshed_once(wx, client, redis_client, refusal):
    stale = await client.access_token(app="mp")
    if refusal == "expired":
        wx.expire_token(stale)
    else:
        wx.fail_next(SEND, refusal, "access_token refused")
    data = fit_subscribe_data({"thing1": "复诊提醒"})

    await client.send_subscribe_message("oPatient", TPL, data, page="pages/index")

    assert wx.token_fetches_for(MP_APP_ID) == 2 and wx.token_fetches_for(APP_ID) == 0
    first, retry = wx.calls_to(SEND)
    assert first.query["access_token"] == stale and retry.query["access_token"] == wx.current_mp_token != stale
    assert await redis_client.get(MP_TOKEN_KEY) == wx.current_mp_token
    assert wx.subscribe_messages == [{"touser": "oPatient", "template_id": TPL, "data": data,
                                      "miniprogram_state": "formal", "lang": "zh_CN", "page": "pages/index"}]


async def test_the_client_sends_what_it_gets_and_wechat_judges_it(wx, client):
    with pytest.raises(WeChatAPIError) as empty:
        await client.send_subscribe_message("oPatient", TPL, {})
    assert (empty.value.errcode, empty.value.status) == (47003, 400)
    with pytest.raises(WeChatAPIError) as too_long:  # not cut by the client: 21 characters for a "thing"
        await client.send_subscribe_message("oPatient", TPL, {"thing1": {"value": "一" * 21}})
    assert too_long.value.errcode == 47003
    wx.refuse_subscribe("oPatient")
    with pytest.raises(WeChatAPIError) as refused:
        await client.send_subscribe_message("oPatient", TPL, fit_subscribe_data({"thing1": "一" * 21}))
    assert (refused.value.errcode, refused.value.status) == (43101, 409)
    assert wx.calls_to(SEND)[-1].json["data"] == {"thing1": {"value": "一" * 19 + "…"}}
    assert wx.subscribe_messages == []


async def test_the_service_account_token_does_not_send_subscribe_messages(wx, client):
    token = await client.access_token()  # the service account's
    async with aiohttp.ClientSession() as http:
        async with http.post(wx.base_url + SEND, params={"access_token": token},
                             json={"touser": "oPatient", "template_id": TPL,
                                   "data": {"thing1": {"value": "复诊"}}}) as response:
            assert (await response.json())["errcode"] == 40001
    assert wx.subscribe_messages == []


def test_fit_subscribe_data_cuts_each_kind_to_its_limit():
    data = fit_subscribe_data({"thing1": "一" * 25, "name2": "欧阳" * 6, "phrase3": "已经被接受了",
                               "time4": "2025-03-01 09:30", "thing5": " 两个\n空格 "})
    assert data == {"thing1": {"value": "一" * 19 + "…"}, "name2": {"value": "欧阳" * 5},
                    "phrase3": {"value": "已经被接受"}, "time4": {"value": "2025-03-01 09:30"},
                    "thing5": {"value": "两个 空格"}}
