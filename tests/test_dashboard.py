"""The console dashboard on both databases: the numbers over a known ticket history, an agent's view limited to the
hospitals they serve, bad parameters refused, and the CSV/XLSX exports agreeing with the numbers.

Tickets are opened and moved through ``repair.tickets``; opening times are set back where time must have passed, and
each repair's ``done_at`` (stored by the transition to ``done``) is set to a known number of hours after opening.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook

from core.models import Hospital, User
from repair import tickets
from repair.dashboard import dashboard_figures
from repair.models import Device, Ticket
from repair.tickets import Actor, TicketRequest
from tests.console_support import console_login, make_console_user

API = "/console/api/v1/dashboard"
ROBOT = Actor(label="机器人")


class Desk:
    """Opens and moves tickets (the test's hands)."""

    def __init__(self, events, nurse, agent, engineer):
        self.events, self.nurse, self.agent, self.engineer = events, nurse, agent, engineer
        self.now = datetime.now(timezone.utc)

    async def open(self, device, *, days_ago: float, tier=None, kind="repair") -> Ticket:
        req = TicketRequest(hospital=await device.hospital, device=device, kind=kind, description="报警",
                            reporter=self.nurse, reporter_openid=self.nurse.openid)
        ticket, _ = await tickets.open_ticket(req, events=self.events)
        await Ticket.filter(id=ticket.id).update(created_at=self.now - timedelta(days=days_ago), tier=tier)
        return ticket

    async def move(self, ticket, *states, actor=None):
        for state in states:
            extra = {"engineer": self.engineer} if state == "with_engineer" else {}
            await tickets.change_state(ticket, state, events=self.events, actor=actor or Actor(user=self.agent),
                                       **extra)

    async def done_after(self, ticket, hours: float):
        created = (await Ticket.get(id=ticket.id)).created_at
        await Ticket.filter(id=ticket.id).update(done_at=created + timedelta(hours=hours))


async def _device(hospital, number, name, device_type, model) -> Device:
    return await Device.create(hospital=hospital, system_number=number, nameplate_id=f"SN-{number}", name=name,
                               device_type=device_type, model=model)


async def _history(events) -> dict:
    """Hospital 1: three devices, three repairs of the period — one the robot resolved, one an agent solved remotely
    in 4 h, one an engineer repaired in 10 h — plus preventive work and a repair of last year. Hospital 2: one
    waiting repair."""
    first = await Hospital.create(name="市第一人民医院")
    second = await Hospital.create(name="市中心医院")
    nurse = await User.create(name="王护士", role="staff", hospital=first, openid="oNurse")
    agent = await User.create(name="李客服", role="agent", openid="oAgent")
    engineer = await User.create(name="张工", role="engineer", openid="oEngineer")
    desk = Desk(events, nurse, agent, engineer)
    v1 = await _device(first, "V1", "呼吸机1", "ventilator", "V60")
    v2 = await _device(first, "V2", "呼吸机2", "ventilator", "V60")
    pump = await _device(first, "P1", "输液泵", "infusion_pump", "P-7")
    far = await _device(second, "X1", "离心机", "centrifuge", "C1")

    robot = await desk.open(v1, days_ago=20, tier="basic")
    await desk.move(robot, "answered_by_robot", "closed", actor=ROBOT)
    remote = await desk.open(v2, days_ago=10, tier="basic")
    await desk.move(remote, "with_agent", "remote", "done")
    await desk.done_after(remote, 4)
    await desk.move(remote, "closed")
    visit = await desk.open(pump, days_ago=5, tier="advanced")
    await desk.move(visit, "with_agent", "with_engineer", "done")
    await desk.done_after(visit, 10)
    await desk.open(pump, days_ago=3, kind="preventive")  # opens with_engineer: workload, not a fault
    old = await desk.open(v1, days_ago=400, tier="basic")  # before the period
    await desk.move(old, "answered_by_robot", "closed", actor=ROBOT)
    waiting = await desk.open(far, days_ago=2)
    await desk.move(waiting, "with_agent")
    return dict(first=first, second=second, desk=desk)


@pytest.fixture
async def history(db):
    from core.events import EventBus
    from core.redis import create_redis
    from core.settings import Settings

    redis = create_redis(Settings(secret_key="t"))
    yield await _history(EventBus(redis))
    await redis.aclose()


async def test_the_numbers_of_one_hospital(history):
    f = await dashboard_figures({history["first"].id})
    assert f["tickets_total"] == 4 and f["tickets_by_kind"] == {"repair": 3, "preventive": 1}
    assert f["tickets_by_state"]["closed"] == 2 and f["tickets_by_state"]["done"] == 1
    assert f["tickets_by_state"]["with_engineer"] == 1 and sum(f["tickets_by_state"].values()) == 4
    assert f["tickets_by_tier"] == {"basic": 2, "advanced": 1, "unknown": 1}
    assert f["tickets_by_hospital"] == [{"id": history["first"].id, "name": "市第一人民医院", "tickets": 4, "open": 1}]
    assert (f["repair_tickets"], f["robot_resolved"], f["robot_resolution_rate"]) == (3, 1, 0.3333)
    # The robot's and the remote one: resolved without an engineer; the pump needed one.
    assert (f["customer_repaired"], f["customer_repair_rate"]) == (2, 0.6667)
    assert (f["repaired_to_done"], f["mttr_hours"]) == (2, 7.0)  # (4 h + 10 h) / 2
    assert (f["devices"], f["mtbf_days"]) == (3, 365.0)  # 3 devices × 365 days / 3 repairs
    by_type = {r["key"]: r for r in f["failure_by_type"]}
    assert (by_type["ventilator"]["repair_tickets"], by_type["ventilator"]["failure_rate"]) == (2, 1.0)
    assert (by_type["infusion_pump"]["repair_tickets"], by_type["infusion_pump"]["mttr_hours"]) == (1, 10.0)
    assert {r["key"]: r["devices"] for r in f["failure_by_model"]} == {"V60": 2, "P-7": 1}
    assert [r["key"] for r in f["failure_by_age"]] == ["unknown"]
    assert f["ageing"]["total"] == 1 and f["ageing"]["by_state"]["with_engineer"] == 1  # the preventive work


async def test_several_hospitals_add_up_and_an_empty_scope_is_zero(history):
    both = await dashboard_figures({history["first"].id, history["second"].id})
    everywhere = await dashboard_figures(None)
    for f in (both, everywhere):
        assert (f["repair_tickets"], f["devices"], f["robot_resolution_rate"]) == (4, 4, 0.25)
        assert [h["name"] for h in f["tickets_by_hospital"]] == ["市第一人民医院", "市中心医院"]
        assert {r["key"]: r["repair_tickets"] for r in f["failure_by_type"]} == {
            "ventilator": 2, "infusion_pump": 1, "centrifuge": 1}
        assert f["ageing"]["total"] == 2 and f["ageing"]["by_age"]["1-3d"] == 1
    assert both["mtbf_days"] == everywhere["mtbf_days"] == 365.0
    none = await dashboard_figures(set())
    assert (none["tickets_total"], none["repair_tickets"], none["robot_resolution_rate"], none["mttr_hours"]) == (
        0, 0, None, None)
    assert none["failure_by_type"] == [] and none["ageing"]["total"] == 0


async def test_a_period(history):
    now = history["desk"].now
    f = await dashboard_figures({history["first"].id}, since=now - timedelta(days=8), until=now)
    assert (f["repair_tickets"], f["robot_resolved"], f["customer_repaired"], f["mttr_hours"]) == (1, 0, 0, 10.0)
    assert f["tickets_by_kind"] == {"repair": 1, "preventive": 1}


# -- over HTTP -------------------------------------------------------------------------------------------------------
@pytest.fixture
async def desk(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    world = await _history(live.app.ctx.events)
    await make_console_user("admin", "admin", "admin-password-1")
    await make_console_user("agent", "agent1", "agent-password-1", [world["first"]])
    await make_console_user("engineer", "eng1", "engineer-password", [world["first"]])
    return dict(world, live=live)


async def test_an_agent_sees_only_the_hospitals_served(desk):
    first, second = desk["first"], desk["second"]
    agent = await console_login(desk["live"], "agent1", "agent-password-1")
    status, f = await agent.get(API)
    assert status == 200
    assert [h["id"] for h in f["tickets_by_hospital"]] == [first.id]
    assert (f["repair_tickets"], f["robot_resolution_rate"], f["mttr_hours"]) == (3, 0.3333, 7.0)
    status, body = await agent.get(API, params={"hospital_id": second.id})
    assert status == 403 and body["error"]["code"] == "other_hospital"
    status, body = await agent.get(API + "/export.csv", params={"hospital_id": second.id})
    assert status == 403

    admin = await console_login(desk["live"], "admin", "admin-password-1")
    status, f = await admin.get(API)
    assert status == 200 and [h["id"] for h in f["tickets_by_hospital"]] == [first.id, second.id]
    status, f = await admin.get(API, params={"hospital_id": second.id})
    assert status == 200 and (f["repair_tickets"], f["robot_resolution_rate"]) == (1, 0.0)


async def test_engineers_and_strangers_have_no_dashboard(desk):
    engineer = await console_login(desk["live"], "eng1", "engineer-password")
    status, body = await engineer.get(API)
    assert status == 403 and body["error"]["code"] == "role"
    status, _, _ = await desk["live"].request("GET", API)
    assert status == 401


async def test_bad_parameters_name_the_field(desk):
    admin = await console_login(desk["live"], "admin", "admin-password-1")
    status, body = await admin.get(API, params={"since": "2026-13-01"})
    assert status == 400 and body["error"]["details"]["field"] == "since" and "since" in body["error"]["message"]
    status, body = await admin.get(API, params={"until": "yesterday"})
    assert status == 400 and body["error"]["details"]["field"] == "until"
    status, body = await admin.get(API, params={"since": "2026-05-01", "until": "2026-04-01"})
    assert status == 422 and body["error"]["code"] == "bad_period"
    status, body = await admin.get(API, params={"hospital_id": "99999"})
    assert status == 404 and body["error"]["code"] == "hospital_not_found"
    status, body = await admin.get(API, params={"hospital_id": "x"})
    assert status == 400 and body["error"]["details"]["field"] == "hospital_id"


async def test_dates_are_whole_days(desk):
    admin = await console_login(desk["live"], "admin", "admin-password-1")
    today = desk["desk"].now.date()
    status, f = await admin.get(API, params={"since": str(today - timedelta(days=6)), "until": str(today)})
    assert status == 200
    assert f["period"]["days"] == 7.0 and f["tickets_total"] == 3  # the pump's repair, its maintenance, the waiting


async def test_exports_agree_with_the_numbers(desk):
    admin = await console_login(desk["live"], "admin", "admin-password-1")
    # A name a spreadsheet would run as a formula is written as text.
    await Hospital.filter(id=desk["second"].id).update(name="=HYPERLINK(\"http://x\")")
    status, headers, body = await admin.raw("GET", API + "/export.csv", params={"hospital_id": desk["first"].id})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"] and body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    summary = {r[0]: r[1] for r in rows if len(r) == 2}
    assert summary["机器人解决率"] == "33.3%" and summary["客户自修率"] == "66.7%"
    assert summary["平均修复时间 MTTR（小时）"] == "7.0" and summary["维修工单"] == "3"
    assert ["呼吸机", "2", "2", "1.0"] == next(r for r in rows if r and r[0] == "呼吸机")[:4]

    status, headers, body = await admin.raw("GET", API + "/export.xlsx")
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(body))
    assert book.sheetnames[:4] == ["概览", "按状态", "按级别", "按医院"]
    overview = {r[0]: r[1] for r in book["概览"].iter_rows(min_row=2, values_only=True)}
    assert (overview["维修工单"], overview["机器人解决率"], overview["平均故障间隔 MTBF（天）"]) == (4, "25.0%", 365.0)
    names = [r[0] for r in book["按医院"].iter_rows(min_row=2, values_only=True)]
    assert names == ["市第一人民医院", "'=HYPERLINK(\"http://x\")"]
