"""The H5 repair page, the report submit and the reporter's ticket page, over real HTTP on both databases."""

from __future__ import annotations

import asyncio
import html
import json
import time
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from core.auth import issue_session
from core.media import media_path
from core.models import MediaFile
from repair import tickets
from repair.models import Device, Ticket, TicketAttachment, TicketTransition
from tests.h5_support import cookie_from, make_world, png_bytes, repair_path, wav_bytes

SECRET = "test-secret"
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN")
PHONE = "13812345678"


@pytest.fixture
async def live(serve, settings_for, database_url):
    return await serve(settings_for(database_url))


@pytest.fixture
async def world(live):
    return await make_world()


def session_cookie(user) -> dict:
    token = issue_session(SECRET, user_id=user.id, openid=user.openid or "", roles=[user.role])
    return {"Cookie": f"medwx_h5={token}"}


def report_form(path: str, *, description: str = "开机报警 E-05，无法送气", photos=(), voices=(), member_ids=(),
                request_id: str | None = None, phone: str | None = PHONE, name: str = "王护士") -> aiohttp.FormData:
    token = urlsplit(path).query.split("t=", 1)[1]
    form = aiohttp.FormData()
    form.add_field("t", token)
    form.add_field("description", description)
    if request_id:
        form.add_field("client_request_id", request_id)
    if phone is not None:
        form.add_field("name", name)
        form.add_field("phone", phone)
    for member in member_ids:
        form.add_field("member_ids", str(member))
    for filename, data, ctype in photos:
        form.add_field("photos", data, filename=filename, content_type=ctype)
    for filename, data, ctype in voices:
        form.add_field("voices", data, filename=filename, content_type=ctype)
    return form


async def submit(live, form: aiohttp.FormData, headers: dict | None = None) -> tuple[int, dict, dict]:
    status, resp_headers, body = await live.request("POST", "/h5/repair/tickets", data=form, headers=headers or {})
    return status, json.loads(body), resp_headers


def aged_token(scene: str, age_seconds: int, *, printed: bool = False) -> str:
    """A repair-link token signed ``age_seconds`` ago."""
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    data: dict = {"s": scene, **({"p": 1} if printed else {})}
    return URLSafeTimedSerializer(SECRET, salt="medwx.repair", signer=Past).dumps(data)


PNG = ("fault.png", png_bytes(), "image/png")
WAV = ("voice.wav", wav_bytes(), "audio/wav")


# -- the page ----------------------------------------------------------------------------------------------------------
async def test_the_page_shows_the_device_card_and_asks_an_anonymous_reporter_for_a_phone(live, world):
    status, headers, body = await live.request("GET", repair_path(live.app.ctx.settings, "d:D0001"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    for shown in ("呼吸机", "V60", "D0001", "市第一人民医院", "重症医学科", "在用", "维修次数", "维护评分",
                  '<span class="stat-value">3</span>', ">85</span>", "故障描述", 'capture="environment"',
                  'accept="audio/*"', 'name="phone"', "提交报修"):
        assert shown in body, shown
    assert "default-src 'self'" in headers["Content-Security-Policy"]


async def test_everything_from_data_is_escaped(live, world):
    await Device.create(hospital=world["hospital"], system_number="D0666", nameplate_id="X", device_type="x",
                        name="<img src=x onerror=alert(1)>", model='"><script>alert(2)</script>')
    status, _, body = await live.request("GET", repair_path(live.app.ctx.settings, "d:D0666"))
    assert status == 200
    assert "<img src=x" not in body and "<script>alert(2)" not in body
    assert html.escape("<img src=x onerror=alert(1)>") in body


async def test_a_group_page_lists_its_members_in_order_with_checkboxes(live, world):
    status, _, body = await live.request("GET", repair_path(live.app.ctx.settings, f"g:{world['group'].id}"))
    assert status == 200
    assert "生化流水线" in body and "哪台设备有问题？" in body and "(可不选)" in body
    positions = [body.index(f'name="member_ids" value="{m.id}"') for m in world["members"]]
    assert positions == sorted(positions)
    assert [body.index(name) for name in ("生化分析仪", "免疫分析仪", "样本处理器")] == sorted(
        body.index(name) for name in ("生化分析仪", "免疫分析仪", "样本处理器"))


async def test_forged_and_expired_links_get_a_friendly_403_page(live, world):
    forged = URLSafeTimedSerializer("another-key", salt="medwx.repair").dumps({"s": "d:D0001"})
    status, headers, body = await live.request("GET", f"/h5/repair?t={forged}")
    assert status == 403 and headers["Content-Type"].startswith("text/html")
    assert "链接无效" in body and "铭牌" in body

    day_old_reply = aged_token("d:D0001", 25 * 3600)
    status, headers, body = await live.request("GET", f"/h5/repair?t={day_old_reply}")
    assert status == 403 and headers["Content-Type"].startswith("text/html")
    assert "链接已失效" in body and "重新扫描" in body

    # A label printed three years ago still opens the page.
    status, _, body = await live.request("GET", f"/h5/repair?t={aged_token('d:D0001', 3 * 365 * 86400, printed=True)}")
    assert status == 200 and "呼吸机" in body


async def test_inside_wechat_an_unknown_reporter_signs_in_first(live, world):
    path = repair_path(live.app.ctx.settings, "d:D0001")
    status, headers, _ = await live.request("GET", path, headers={"User-Agent": WECHAT_UA}, allow_redirects=False)
    assert status == 302
    assert headers["Location"] == f"/h5/auth/start?next={quote(path, safe='')}"

    signed_in = {"User-Agent": WECHAT_UA, **session_cookie(world["nurse"])}
    status, _, body = await live.request("GET", path, headers=signed_in)
    assert status == 200
    assert "报修人：<strong>王护士</strong>" in body and 'name="phone"' not in body


async def test_without_a_wechat_account_the_wechat_browser_asks_for_a_phone(serve, settings_for, database_url):
    live = await serve(settings_for(database_url, wechat_app_id=""))
    await make_world()
    status, _, body = await live.request("GET", repair_path(live.app.ctx.settings, "d:D0001"),
                                         headers={"User-Agent": WECHAT_UA}, allow_redirects=False)
    assert status == 200 and 'name="phone"' in body


# -- submitting --------------------------------------------------------------------------------------------------------
async def test_a_report_with_a_photo_and_a_voice_clip_becomes_a_ticket(live, world):
    settings = live.app.ctx.settings
    status, answer, headers = await submit(live, report_form(repair_path(settings, "d:D0001"), photos=[PNG],
                                                             voices=[WAV], request_id="3f1c8a52-aaaa-4bbb-8ccc-1234"))
    assert status == 201, answer
    assert answer["state"] == "new" and answer["url"] == f"/h5/tickets/{answer['number']}"
    ticket = await Ticket.get(number=answer["number"]).prefetch_related("device")
    assert ticket.device.system_number == "D0001" and ticket.channel == "h5" and ticket.reporter_id is None
    assert ticket.description.splitlines() == [f"报修人：王护士，电话 {PHONE}", "开机报警 E-05，无法送气"]
    attachments = await TicketAttachment.filter(ticket=ticket).order_by("id").prefetch_related("media")
    assert [(a.kind, a.media.content_type) for a in attachments] == [("photo", "image/png"), ("voice", "audio/x-wav")]
    photo = attachments[0].media
    assert media_path(settings, photo).read_bytes() == PNG[1]
    assert media_path(settings, photo, thumbnail=True).stat().st_size > 0
    assert (await Device.get(system_number="D0001")).status == "under_repair"
    assert cookie_from(headers, "medwx_reports")


async def test_a_text_file_as_a_photo_is_refused_and_nothing_is_stored(live, world):
    settings = live.app.ctx.settings
    text = ("notes.png", "这不是图片".encode(), "image/png")
    status, answer, _ = await submit(live, report_form(repair_path(settings, "d:D0001"), photos=[PNG, text]))
    assert status == 422 and answer["error"]["code"] == "not_image"
    assert answer["error"]["message"] == "文件不是有效的图片"
    assert await Ticket.all().count() == 0 and await MediaFile.all().count() == 0
    assert not [p for p in settings.media_root.rglob("*") if p.is_file()]  # the good photo's bytes went too


async def test_a_non_audio_voice_and_an_oversized_photo_are_refused(live, world):
    path = repair_path(live.app.ctx.settings, "d:D0001")
    status, answer, _ = await submit(live, report_form(path, voices=[("v.webm", png_bytes(), "audio/webm")]))
    assert status == 422 and answer["error"]["code"] == "not_audio"
    huge = ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(11 * 1024 * 1024), "image/png")
    status, answer, _ = await submit(live, report_form(path, photos=[huge]))
    assert status == 413 and "太大" in answer["error"]["message"]
    assert await Ticket.all().count() == 0 and await MediaFile.all().count() == 0


async def test_too_many_photos_are_refused(live, world):
    path = repair_path(live.app.ctx.settings, "d:D0001")
    status, answer, _ = await submit(live, report_form(path, photos=[PNG] * 7))
    assert status == 422 and answer["error"]["message"] == "最多上传 6 张照片"
    assert await MediaFile.all().count() == 0


async def test_an_anonymous_reporter_must_leave_a_mobile_number(live, world):
    path = repair_path(live.app.ctx.settings, "d:D0001")
    for phone in (None, "", "12345678901", "1381234567"):
        status, answer, _ = await submit(live, report_form(path, phone=phone))
        assert status == 400 and answer["error"]["code"] == "phone_invalid", phone
    assert await Ticket.all().count() == 0


async def test_a_phone_number_alone_is_no_report(live, world):
    status, answer, _ = await submit(live, report_form(repair_path(live.app.ctx.settings, "d:D0001"), description=" "))
    assert status == 422 and answer["error"]["message"] == "请描述故障，或附上照片、语音"
    assert await Ticket.all().count() == 0


async def test_a_session_that_ran_out_inside_wechat_asks_to_reload(live, world):
    form = report_form(repair_path(live.app.ctx.settings, "d:D0001"), phone=None)
    status, answer, _ = await submit(live, form, headers={"User-Agent": WECHAT_UA, "Cookie": "medwx_h5=expired"})
    assert status == 401 and answer["error"]["message"] == "登录已过期，请刷新页面后重新提交"
    assert await Ticket.all().count() == 0


async def test_the_routes_are_documented(live):
    status, _, body = await live.request("GET", "/docs/openapi.json")
    assert status == 200
    paths = json.loads(body)["paths"]
    assert {"/h5/repair", "/h5/repair/tickets", "/h5/tickets/{number}", "/h5/tickets/{number}/confirm",
            "/h5/media/{media_id}"} <= set(paths)


async def test_a_repeated_submit_returns_the_same_ticket_and_stores_nothing_twice(live, world):
    path = repair_path(live.app.ctx.settings, "d:D0001")
    first = await submit(live, report_form(path, photos=[PNG], request_id="dup-0001-request"))
    again = await submit(live, report_form(path, photos=[PNG], request_id="dup-0001-request"))
    assert (first[0], again[0]) == (201, 200)
    assert again[1]["number"] == first[1]["number"]
    assert await Ticket.all().count() == 1
    assert await MediaFile.all().count() == 1 and await TicketAttachment.all().count() == 1


async def test_simultaneous_repeats_make_one_ticket(live, world):
    path = repair_path(live.app.ctx.settings, "d:D0001")
    # Each with its own bytes: identical files stored at the same instant trip core.media's shared ".part" name.
    photos = [("fault.png", png_bytes(colour=colour), "image/png") for colour in ("red", "green", "blue", "gray")]
    answers = await asyncio.gather(*(submit(live, report_form(path, photos=[photo], request_id="double-tap-0001"))
                                     for photo in photos))
    assert sorted(status for status, _, _ in answers) == [200, 200, 200, 201]
    assert len({answer["number"] for _, answer, _ in answers}) == 1
    assert await Ticket.all().count() == 1
    assert await TicketAttachment.all().count() == 1 and await MediaFile.all().count() == 1
    stored = [p for p in live.app.ctx.settings.media_root.rglob("*") if p.is_file()]
    assert len(stored) == 2  # the winner's photo and its thumbnail; the repeats' files were removed


async def test_a_group_report_names_the_checked_members(live, world):
    path = repair_path(live.app.ctx.settings, f"g:{world['group'].id}")
    first, _, third = world["members"]
    status, answer, _ = await submit(live, report_form(path, member_ids=[first.id, third.id]))
    assert status == 201, answer
    ticket = await Ticket.get(number=answer["number"])
    assert ticket.group_id == world["group"].id and ticket.device_id is None
    assert sorted(d.id for d in await ticket.member_devices.all()) == sorted([first.id, third.id])

    outsider = await Device.get(system_number="D0001")
    status, answer, _ = await submit(live, report_form(path, member_ids=[outsider.id], photos=[PNG]))
    assert status == 422 and answer["error"]["code"] == "not_a_member"
    assert await Ticket.all().count() == 1 and await MediaFile.all().count() == 0


async def test_a_signed_in_reporter_is_the_tickets_reporter(live, world):
    nurse = world["nurse"]
    status, answer, headers = await submit(live, report_form(repair_path(live.app.ctx.settings, "d:D0001"),
                                                             phone=None), headers=session_cookie(nurse))
    assert status == 201, answer
    ticket = await Ticket.get(number=answer["number"])
    assert (ticket.reporter_id, ticket.reporter_openid) == (nurse.id, "oNurse")
    assert ticket.description == "开机报警 E-05，无法送气"
    assert cookie_from(headers, "medwx_reports") is None
    first = await TicketTransition.get(ticket=ticket)
    assert first.actor_label == "王护士"


async def test_a_post_from_another_site_is_refused(live, world):
    path = repair_path(live.app.ctx.settings, "d:D0001")
    status, answer, _ = await submit(live, report_form(path), headers={"Origin": "https://evil.example"})
    assert status == 403 and answer["error"]["code"] == "cross_origin"
    status, answer, _ = await submit(live, report_form(path), headers={"Origin": live.base_url})
    assert status == 201, answer


async def test_an_expired_link_cannot_submit(live, world):
    form = report_form(f"/h5/repair?t={aged_token('d:D0001', 2 * 86400)}")
    status, answer, _ = await submit(live, form)
    assert status == 403 and answer["error"]["code"] == "link_expired"
    assert await Ticket.all().count() == 0


# -- the ticket page ---------------------------------------------------------------------------------------------------
async def _advance_to_done(live, ticket: Ticket, engineer) -> None:
    events = live.app.ctx.events
    await tickets.change_state(ticket, "with_agent", events=events, actor=tickets.Actor(label="机器人"))
    await tickets.change_state(ticket, "with_engineer", events=events, actor=tickets.Actor(label="李客服"),
                               engineer=engineer)
    await tickets.change_state(ticket, "done", events=events, actor=tickets.Actor(user=engineer), note="更换氧电池")


async def test_the_anonymous_reporter_sees_the_ticket_page_with_history_and_media(live, world):
    status, answer, headers = await submit(live, report_form(repair_path(live.app.ctx.settings, "d:D0001"),
                                                             photos=[PNG], voices=[WAV]))
    number = answer["number"]
    mine = {"Cookie": f"medwx_reports={cookie_from(headers, 'medwx_reports')}"}
    ticket = await Ticket.get(number=number)
    await _advance_to_done(live, ticket, world["engineer"])

    status, _, body = await live.request("GET", f"/h5/tickets/{number}", headers=mine)
    assert status == 200
    for shown in (number, "呼吸机", "D0001", "开机报警 E-05", "新工单", "工程师处理中", "已完成待确认", "张工",
                  "更换氧电池", "确认修好", "还没修好"):
        assert shown in body, shown
    # Newest first, times in the hospital's time zone.
    assert body.index("已完成待确认") < body.index("新工单")
    created = (await TicketTransition.filter(ticket=ticket).order_by("id").first()).created_at
    assert created.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M") in body

    attachments = await TicketAttachment.filter(ticket=ticket).order_by("id").prefetch_related("media")
    photo, voice = [a.media for a in attachments]
    async with live.http.get(live.url(f"/h5/media/{photo.id}/thumb"), headers=mine) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/jpeg"
        assert resp.headers["Cache-Control"].startswith("private")
        assert (await resp.read())[:2] == b"\xff\xd8"  # a JPEG
    async with live.http.get(live.url(f"/h5/media/{photo.id}"), headers=mine) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == PNG[1]
    async with live.http.get(live.url(f"/h5/media/{voice.id}"), headers={**mine, "Range": "bytes=0-99"}) as resp:
        assert resp.status == 206 and resp.headers["Content-Type"] == "audio/x-wav"
        assert await resp.read() == WAV[1][:100]

    # Someone else's browser, or another signed-in user: no page, no files.
    for stranger in ({}, session_cookie(world["other"])):
        status, headers, body = await live.request("GET", f"/h5/tickets/{number}", headers=stranger)
        assert status == 403 and headers["Content-Type"].startswith("text/html") and "无法查看该工单" in body
        status, _, _ = await live.request("GET", f"/h5/media/{photo.id}/thumb", headers=stranger)
        assert status == 403


async def test_the_assigned_engineer_may_look_but_not_confirm(live, world):
    status, answer, _ = await submit(live, report_form(repair_path(live.app.ctx.settings, "d:D0001")),
                                     headers=session_cookie(world["nurse"]))
    ticket = await Ticket.get(number=answer["number"])
    await _advance_to_done(live, ticket, world["engineer"])
    page = f"/h5/tickets/{ticket.number}"
    status, _, body = await live.request("GET", page, headers=session_cookie(world["engineer"]))
    assert status == 200 and "确认修好" not in body
    status, _, body = await live.request("GET", page, headers=session_cookie(world["nurse"]))
    assert status == 200 and "确认修好" in body


async def test_an_unknown_ticket_is_a_404_page(live, world):
    status, headers, body = await live.request("GET", "/h5/tickets/R9901010001")
    assert status == 404 and headers["Content-Type"].startswith("text/html") and "工单不存在" in body


async def test_the_reporter_confirms_and_reopens_others_are_refused(live, world):
    nurse, other = world["nurse"], world["other"]
    status, answer, _ = await submit(live, report_form(repair_path(live.app.ctx.settings, "d:D0001")),
                                     headers=session_cookie(nurse))
    number = answer["number"]
    ticket = await Ticket.get(number=number)

    status, body, _ = await _post(live, f"/h5/tickets/{number}/confirm", session_cookie(nurse))
    assert status == 409 and body["error"]["code"] == "illegal_transition"  # not done yet

    await _advance_to_done(live, ticket, world["engineer"])
    for stranger in ({}, session_cookie(other), session_cookie(world["engineer"])):
        status, body, _ = await _post(live, f"/h5/tickets/{number}/confirm", stranger)
        assert status == 403 and body["error"]["code"] == "not_the_reporter"
    assert (await Ticket.get(number=number)).state == "done"

    status, body, _ = await _post(live, f"/h5/tickets/{number}/confirm", session_cookie(nurse))
    assert status == 200 and (body["state"], body["state_label"]) == ("closed", "已关闭")
    last = await TicketTransition.filter(ticket=ticket).order_by("-id").first()
    assert (last.to_state, last.actor_id, last.note) == ("closed", nurse.id, "报修人确认已修好")

    status, body, _ = await _post(live, f"/h5/tickets/{number}/reopen", session_cookie(other), {"note": "x"})
    assert status == 403
    status, body, _ = await _post(live, f"/h5/tickets/{number}/reopen", session_cookie(nurse), {"note": "又报警了"})
    assert status == 200 and body["state"] == "reopened"
    last = await TicketTransition.filter(ticket=ticket).order_by("-id").first()
    assert (last.to_state, last.note) == ("reopened", "又报警了")
    status, _, page = await live.request("GET", f"/h5/tickets/{number}", headers=session_cookie(nurse))
    assert "已重新打开" in page and "又报警了" in page


async def test_the_anonymous_reporter_confirms_with_the_cookie_of_the_report(live, world):
    status, answer, headers = await submit(live, report_form(repair_path(live.app.ctx.settings, "d:D0001")))
    number = answer["number"]
    await _advance_to_done(live, await Ticket.get(number=number), world["engineer"])
    status, body, _ = await _post(live, f"/h5/tickets/{number}/confirm", {})
    assert status == 403
    mine = {"Cookie": f"medwx_reports={cookie_from(headers, 'medwx_reports')}"}
    status, body, _ = await _post(live, f"/h5/tickets/{number}/confirm", mine)
    assert status == 200 and body["state"] == "closed"
    last = await TicketTransition.filter(ticket__number=number).order_by("-id").first()
    assert last.actor_label == "报修人"


async def _post(live, path: str, headers: dict, payload: dict | None = None) -> tuple[int, dict, dict]:
    status, resp_headers, body = await live.request("POST", path, json=payload or {}, headers=headers)
    return status, json.loads(body), resp_headers
