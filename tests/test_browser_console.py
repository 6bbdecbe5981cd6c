"""The console in a real browser: headless Chromium (Debian's, driven by Playwright) at 1280×800.

An agent logs in; a ticket reported while the page is open appears on it pushed over the WebSocket; the agent takes
it, replies to the reporter and assigns an engineer; the engineer completes it on the mobile page (a second browser,
signed in as the engineer) and the agent's open ticket follows live; the dashboard draws its charts. Also: the other
ticket actions (canned replies, save to the knowledge base, resolve, close, reopen), the administration screens, and
the page's Content-Security-Policy. Screenshots go to pytest's tmp_path.
"""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

from PIL import Image

from console.auth import COOKIE
from core.auth import issue_session
from core.models import Department, Hospital, InvitationCode, User
from knowledge.models import KBEntry, KBProposal, QuestionLog
from repair import reporting
from repair.models import CannedReply, Device, Ticket, TicketMessage
from tests.conftest import STANDIN_APP_ID, STANDIN_APP_SECRET
from tests.console_support import make_console_user, signed_in_page, unexpected_problems, watch_page
from tests.h5_support import png_bytes, wav_bytes
from tests.test_browser_repair import PHONE_UA, image_loaded

PASSWORD = "correct-horse-42"
# What a reporter may type: it must reach every page as text, never as markup.
HOSTILE = '开机报警 E-05 <img src=x onerror="document.title=\'pwned\'"><script>alert(1)</script>'


async def _world():
    hospital = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市第二人民医院")
    icu = await Department.create(hospital=hospital, name="重症医学科")
    device = await Device.create(hospital=hospital, department=icu, system_number="D0001", nameplate_id="SN-778",
                                 name="呼吸机", model="V60", manufacturer="飞利浦", device_type="ventilator",
                                 repair_count=3, maintenance_score=85)
    nurse = await User.create(name="王护士", role="staff", hospital=hospital, openid="oNurse")
    agent = await make_console_user("agent", "li.kefu", PASSWORD, [hospital], name="李客服")
    engineer = await make_console_user("engineer", "zhang.gong", PASSWORD, [hospital], name="张工")
    engineer.hospital, engineer.openid = hospital, "oEngineer"
    await engineer.save()
    await make_console_user("engineer", "wang.gong", PASSWORD, [other], name="王工")  # not this hospital's
    return dict(hospital=hospital, device=device, nurse=nurse, agent=agent, engineer=engineer)


async def _canvas_ink(page, selector: str, path: Path) -> int:
    """Pixels of a chart's canvas that are coloured (neither white nor grey): what Chart.js drew."""
    await page.locator(selector).screenshot(path=str(path))
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    raw = image.tobytes()
    return sum(1 for i in range(0, len(raw), 3) if max(raw[i:i + 3]) - min(raw[i:i + 3]) > 40)


async def test_agent_works_a_live_ticket_through_to_the_engineer_and_sees_the_dashboard(
        serve, settings_for, database_url, standin, browser, tmp_path):
    live = await serve(settings_for(database_url, wechat_app_id=STANDIN_APP_ID, wechat_app_secret=STANDIN_APP_SECRET,
                                    wechat_api_base=standin.base_url, wechat_template_ticket="TPL-TICKET"))
    settings = live.app.ctx.settings
    world = await _world()

    desk = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = await desk.new_page()
    watch_page(page)

    # -- log in ------------------------------------------------------------------------------------------------------
    await page.goto(live.url("/console/"))
    await page.wait_for_selector("#login-form")
    await page.fill("#login-username", "li.kefu")
    await page.fill("#login-password", "wrong-password-1")
    await page.click("#login-submit")
    await page.wait_for_selector("#login-error:not([hidden])")
    assert await page.inner_text("#login-error") == "用户名或密码错误"

    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#app-view:not([hidden])")
    assert await page.inner_text("#me-name") == "李客服"
    assert (await desk.cookies())[0]["name"] == COOKIE and (await desk.cookies())[0]["httpOnly"]
    await page.wait_for_selector("#live-status.is-on")
    await page.wait_for_selector("#queue-rows .empty")
    assert await page.inner_text("#queue-rows") == "暂无工单"

    # -- a ticket reported while the page is open arrives by itself -----------------------------------------------
    ticket, _ = await reporting.submit_report(
        settings, live.app.ctx.events, world["device"], description=HOSTILE, reporter=world["nurse"],
        reporter_openid="oNurse", uploads=[reporting.Upload(png_bytes((640, 480), "#d94f4f"), "photo", "fault.png"),
                                           reporting.Upload(wav_bytes(), "voice", "voice.wav")])
    row = f'#queue-rows tr[data-number="{ticket.number}"]'
    await page.wait_for_selector(row, timeout=5000)
    assert await page.inner_text(f"{row} .description-cell") == HOSTILE
    assert await page.locator(f"{row} img, {row} script").count() == 0
    assert await page.inner_text("#nav-unread") == "1"  # counted from the pushed event, not from a reload
    assert "is-unread" in (await page.get_attribute(row, "class")).split()
    await page.screenshot(path=str(tmp_path / "console-queue.png"))

    # -- the ticket: device card, the report as text, the photo in the lightbox ------------------------------------
    await page.click(row)
    await page.wait_for_selector("#ticket-number")
    assert await page.inner_text("#ticket-number") == ticket.number
    assert await page.inner_text("#ticket-description") == HOSTILE
    assert await page.title() == "设备服务工作台"  # the reporter's markup did not run
    assert "呼吸机" in await page.inner_text("#device-card")
    assert await page.locator("audio").count() == 1
    await image_loaded(page, ".photo-tile img")
    await page.click(".photo-tile")
    await page.wait_for_selector("#lightbox:not([hidden])")
    await image_loaded(page, "#lightbox-img")
    await page.keyboard.press("Escape")
    assert await page.locator("#lightbox").is_hidden()
    assert await page.locator("#nav-unread").is_hidden()  # opened: read

    # -- take it, reply to the reporter, assign an engineer ---------------------------------------------------------
    await page.click("#take-btn")
    await page.wait_for_selector('#ticket-state[data-state="with_agent"]')
    await page.fill("#reply-text", "您好，请先检查氧气管路是否接好，工程师稍后到场。")
    await page.click("#reply-send")
    await page.wait_for_selector("#messages .message-reply .badge-delivery-sent")  # pending, then sent
    assert "请先检查氧气管路" in await page.inner_text("#messages")
    assert "已送达微信" in await page.inner_text("#messages")
    stored = await TicketMessage.get(ticket_id=ticket.id, kind="reply")
    assert stored.delivery == "sent" and stored.text.startswith("您好，请先检查氧气管路")
    assert [m["touser"] for m in standin.custom_messages] == ["oNurse"]

    await page.wait_for_selector(f'#assign-engineer option[value="{world["engineer"].id}"]', state="attached")
    assert await page.locator("#assign-engineer option").all_inner_texts() == ["选择工程师…", "张工"]
    await page.select_option("#assign-engineer", str(world["engineer"].id))
    await page.fill("#assign-note", "请今天下午到重症医学科")
    await page.click("#assign-btn")
    await page.wait_for_selector('#ticket-state[data-state="with_engineer"]')
    assert await page.inner_text("#ticket-engineer") == "张工"
    assert "请今天下午到重症医学科" in await page.inner_text("#audit-trail")
    await page.screenshot(path=str(tmp_path / "console-ticket.png"))

    # -- the engineer completes it on the phone ---------------------------------------------------------------------
    phone_context = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                              is_mobile=True, has_touch=True, locale="zh-CN", user_agent=PHONE_UA)
    engineer = world["engineer"]
    await phone_context.add_cookies([{"name": "medwx_h5", "url": live.base_url, "value": issue_session(
        settings.secret_key, user_id=engineer.id, openid=engineer.openid, roles=["engineer"])}])
    phone = await phone_context.new_page()
    watch_page(phone)
    phone.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await phone.goto(live.url(f"/h5/engineer/tickets/{ticket.number}"))
    assert await phone.inner_text("#job-description") == HOSTILE
    async with phone.expect_navigation():
        await phone.click("#accept-btn")
    await phone.fill("#note-text", "已更换氧电池，开机自检通过")
    async with phone.expect_navigation():
        await phone.click("#done-btn")
    assert await phone.inner_text("#job-state") == "已完成待确认"
    await phone.screenshot(path=str(tmp_path / "engineer-done.png"), full_page=True)
    assert (await Ticket.get(id=ticket.id)).state == "done"

    # The agent's open ticket follows without a reload.
    await page.wait_for_selector('#ticket-state[data-state="done"]', timeout=5000)
    assert "已更换氧电池" in await page.inner_text("#audit-trail")

    # -- the dashboard draws its charts -----------------------------------------------------------------------------
    await page.click('[data-nav="dashboard"]')
    await page.wait_for_selector("#chart-state")
    await page.wait_for_selector("#chart-ageing")
    kpis = await page.inner_text(".kpis")
    assert "工单总数\n1" in kpis
    shot = tmp_path / "console-dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for chart in ("#chart-state", "#chart-hospital", "#chart-failure-type"):
        assert await _canvas_ink(page, chart, tmp_path / f"{chart[1:]}.png") > 500, f"{chart} drew nothing"
    session = {"Cookie": f"{COOKIE}={(await desk.cookies())[0]['value']}"}
    for link, kind in (("#export-csv", "text/csv"), ("#export-xlsx", "spreadsheetml")):
        href = await page.get_attribute(link, "href")
        async with live.http.get(live.url(href), headers=session) as answer:
            assert answer.status == 200 and kind in answer.headers["Content-Type"], href
            assert len(await answer.read()) > 0

    # A smaller laptop screen: everything still fits the width (no sideways scrolling), charts included.
    await page.set_viewport_size({"width": 1024, "height": 640})
    for view, ready in (("#/dashboard", "#chart-ageing"), (f"#/tickets/{ticket.number}", "#audit-trail"),
                        ("#/queue", f'#queue-rows tr[data-number="{ticket.number}"]')):
        await page.goto(live.url(f"/console/{view}"))
        await page.wait_for_selector(ready)
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), view
    await page.screenshot(path=str(tmp_path / "console-laptop-queue.png"))

    # Away from the page while a ticket comes in: back on it, the socket resumes after the last event it saw, so the
    # missed ticket is counted unread (a plain list reload would not mark it).
    await page.goto("about:blank")
    missed, _ = await reporting.submit_report(settings, live.app.ctx.events, world["device"],
                                              description="监护仪黑屏", reporter=world["nurse"])
    await page.goto(live.url("/console/#/queue"))
    await page.wait_for_selector(f'#queue-rows tr[data-number="{missed.number}"].is-unread')
    assert await page.inner_text("#nav-unread") == "1"

    assert unexpected_problems(page.problems, "/console/api/v1/login") == []
    assert phone.problems == []


async def test_an_administrator_manages_hospitals_people_codes_devices_and_the_knowledge_base(
        serve, settings_for, database_url, browser, tmp_path):
    live = await serve(settings_for(database_url))
    hospital = await Hospital.create(name="市第一人民医院")
    await make_console_user("admin", "root.admin", PASSWORD, name="系统管理员")
    question = await QuestionLog.create(openid="oNurse", text="呼吸机<b>一直响</b>怎么办", kind="decline")
    await KBEntry.create(id="vent-new", device_type="ventilator", question="呼吸机漏气报警", variants=[],
                         answer="检查管路连接", tier="basic", active=False)
    proposal = await KBProposal.create(kind="entry", entry_id="vent-new", question="呼吸机漏气报警",
                                       answer="检查管路连接", device_type="ventilator", status="pending")

    context, page = await signed_in_page(browser, live.url("/console/"), "root.admin", PASSWORD)
    await page.wait_for_selector("#nav-admin:not([hidden])")

    # Hospitals and departments
    await page.click('[data-nav="admin/hospitals"]')
    await page.fill("#hospital-form input >> nth=0", "市第三人民医院")
    await page.click("#hospital-form button[type=submit]")
    await page.wait_for_selector("tr[data-id] >> text=市第三人民医院")
    third = await Hospital.get(name="市第三人民医院")
    await page.click(f'tr[data-id="{third.id}"]')
    await page.fill(".inline-form input", "检验科")
    await page.click(".inline-form button")
    await page.wait_for_selector(".hospital-detail li >> text=检验科")
    assert [d.name for d in await third.departments.all()] == ["检验科"]

    # Users and roles: a weak password is refused with the server's message, then the agent is created.
    await page.click('[data-nav="admin/users"]')
    form = page.locator("#user-form")
    await form.locator("input >> nth=0").fill("zhao.kefu")
    await form.locator("input >> nth=1").fill("赵客服")
    await form.locator("input[type=password]").fill("short")
    await form.locator(f'input[type=checkbox][value="{hospital.id}"]').check()
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#user-form .alert-error:not([hidden])")
    assert "密码" in await page.inner_text("#user-form .alert-error")
    assert not await User.exists(username="zhao.kefu")
    await form.locator("input[type=password]").fill(PASSWORD)
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("td >> text=zhao.kefu")
    agent = await User.get(username="zhao.kefu").prefetch_related("served_hospitals")
    assert agent.role == "agent" and [h.id for h in agent.served_hospitals] == [hospital.id]

    # Invitation codes
    await page.click('[data-nav="admin/invitations"]')
    await page.select_option("#invitation-form select >> nth=1", "engineer")
    await page.click("#invitation-form button[type=submit]")
    await page.wait_for_selector(".code-made:not([hidden])")
    code = await page.inner_text(".code-made .code")
    stored = await InvitationCode.get(code=code)
    assert stored.role == "engineer" and stored.hospital_id == hospital.id

    # Device import: the report comes back row by row.
    await page.click('[data-nav="admin/devices"]')
    csv = ("系统编号,铭牌号,名称,型号,类型,厂家,科室,安装日期,负责人手机,维护评分,状态\r\n"
           "A0001,SN-778,呼吸机,V60,呼吸机,飞利浦,重症医学科,2021/3/5,,90,在用\r\n").encode("utf-8-sig")
    await page.set_input_files("#import-form input[type=file]",
                               files=[{"name": "设备.csv", "mimeType": "text/csv", "buffer": csv}])
    await page.click("#import-form button[type=submit]")
    await page.wait_for_selector(".import-report table")
    assert "A0001" in await page.inner_text(".import-report")
    assert await Device.filter(hospital=hospital, system_number="A0001").count() == 1

    # The knowledge base: a question to review (shown as text) and a proposal to approve.
    await page.click('[data-nav="admin/kb"]')
    await page.wait_for_selector(f'tr[data-question="{question.id}"]')
    assert "呼吸机<b>一直响</b>怎么办" in await page.inner_text(f'tr[data-question="{question.id}"]')
    await page.click(f'tr[data-proposal="{proposal.id}"] .btn-primary')
    await page.wait_for_selector(f'tr[data-proposal="{proposal.id}"] >> text=已批准')
    assert (await KBEntry.get(id="vent-new")).active
    await page.screenshot(path=str(tmp_path / "console-admin-kb.png"), full_page=True)

    # Logging out ends the session on the server, not only on the page.
    session_id = next(c["value"] for c in await context.cookies() if c["name"] == COOKIE)
    await page.click("#logout")
    await page.wait_for_selector("#login-view:not([hidden])")
    status, _, _ = await live.request("GET", "/console/api/v1/me", headers={"Cookie": f"{COOKIE}={session_id}"})
    assert status == 401

    assert unexpected_problems(page.problems, "/console/api/v1/admin/users") == []


async def test_the_page_is_served_with_a_strict_policy_and_only_its_own_files(serve, settings_for, tmp_path):
    live = await serve(settings_for(f"sqlite://{tmp_path / 'page.sqlite3'}"))
    for path in ("/console/", "/console"):
        status, headers, body = await live.request("GET", path)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "style-src 'self';" in policy and "unsafe" not in policy
        assert "frame-ancestors 'none'" in policy
    # Every script and stylesheet comes from here, and is served.
    head, page_body = body.split("</head>")
    assets = re.findall(r'(?:src|href)="([^"]+)"', head)
    assert assets and all(a.startswith("/console/static/") for a in assets), assets
    for asset in assets:
        status, headers, _ = await live.request("GET", asset)
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff", asset
    status, headers, _ = await live.request("GET", "/console/static/js/ticket.js")  # imported by app.js
    assert status == 200 and "javascript" in headers["Content-Type"]
    assert "<script" not in page_body and " style=" not in body  # nothing inline for the policy to refuse


async def test_an_agent_uses_a_canned_reply_teaches_the_robot_and_resolves_closes_and_reopens(
        serve, settings_for, database_url, standin, browser, tmp_path):
    live = await serve(settings_for(database_url, wechat_app_id=STANDIN_APP_ID, wechat_app_secret=STANDIN_APP_SECRET,
                                    wechat_api_base=standin.base_url))
    world = await _world()
    await KBEntry.create(id="vent-e05", device_type="ventilator", question="呼吸机报警E-05怎么办", variants=[],
                         answer="检查氧气管路连接", tier="basic", active=True)
    ticket, _ = await reporting.submit_report(live.app.ctx.settings, live.app.ctx.events, world["device"],
                                              description="呼吸机一开机就报E-05", reporter=world["nurse"],
                                              reporter_openid="oNurse")
    await Ticket.filter(id=ticket.id).update(robot_answer="请检查氧气管路连接", robot_confidence=0.62)
    context, page = await signed_in_page(browser, live.url(f"/console/#/tickets/{ticket.number}"), "li.kefu", PASSWORD)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.wait_for_selector("#robot-confidence")
    assert await page.inner_text("#robot-confidence") == "62%"
    assert "请检查氧气管路连接" in await page.inner_text(".robot-panel")
    await page.click("#take-btn")
    await page.wait_for_selector('#ticket-state[data-state="with_agent"]')

    # A reply saved as a canned reply, then sent; the next reply starts from the canned one.
    await page.fill("#reply-text", "请检查氧气管路是否接好，再重新开机。")
    await page.click("text=存为常用回复")
    await page.wait_for_selector("#flash >> text=已存为常用回复")
    canned = await CannedReply.get()
    assert canned.text == "请检查氧气管路是否接好，再重新开机。" and canned.hospital_id == world["hospital"].id
    await page.click("#reply-send")
    await page.wait_for_selector("#messages .message-reply")
    await page.wait_for_selector(f'#canned-select option[value="{canned.id}"]', state="attached")
    await page.select_option("#canned-select", str(canned.id))
    assert await page.input_value("#reply-text") == canned.text

    # The reply teaches the robot: the reporter's words become a new wording of the entry, in use at once.
    await page.click("#messages .message-reply >> text=保存到知识库")
    form = page.locator("#messages .kb-form")
    await form.locator("select").first.select_option("variant")
    await form.locator("input.mono").fill("vent-e05")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#flash >> text=已加入知识库")
    assert "呼吸机一开机就报E-05" in (await KBEntry.get(id="vent-e05")).variants

    # Resolved remotely → done; closed; reopened.
    await page.fill("#resolve-note", "远程指导护士重新连接管路后恢复")
    await page.click("#resolve-btn")
    await page.wait_for_selector('#ticket-state[data-state="done"]')
    await page.click("#close-btn")
    await page.wait_for_selector('#ticket-state[data-state="closed"]')
    assert await page.locator("#reply-form").count() == 0  # a closed ticket takes no replies
    await page.click("#reopen-btn")
    await page.wait_for_selector('#ticket-state[data-state="reopened"]')
    assert (await Ticket.get(id=ticket.id)).state == "reopened"
    assert "远程指导护士重新连接管路后恢复" in await page.inner_text("#audit-trail")
    await page.screenshot(path=str(tmp_path / "console-reopened.png"))
    assert unexpected_problems(page.problems) == []
