"""Fault statistics, ticket ageing and maintenance profiles on both databases, over a known ticket history.

Tickets are opened and moved through ``repair.tickets``; where time must pass, their timestamps are set directly.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from core.errors import NotFound, Unprocessable
from core.events import EventBus
from core.models import Hospital, User
from core.redis import create_redis
from core.settings import Settings
from repair import tickets
from repair.models import Device, DeviceGroup, Ticket
from repair.statistics import fault_statistics, maintenance_profile, ticket_ageing
from repair.tickets import Actor, TicketRequest

ROBOT = Actor(label="机器人")


def _years_ago(years: float) -> date:
    return (datetime.now(timezone.utc) - timedelta(days=round(years * 365.25))).date()


class History:
    """Opens tickets and moves time: the test's hands."""

    def __init__(self, events, nurse, agent, engineer):
        self.events, self.nurse, self.agent, self.engineer = events, nurse, agent, engineer
        self.now = datetime.now(timezone.utc)

    async def open(self, device=None, *, days_ago: float, tier=None, group=None, members=(), kind="repair",
                   hospital=None) -> Ticket:
        req = TicketRequest(hospital=hospital or (device or group).hospital, device=device, group=group,
                            member_device_ids=[m.id for m in members], kind=kind, description="故障报警",
                            reporter=self.nurse, reporter_openid=self.nurse.openid)
        ticket, _ = await tickets.open_ticket(req, events=self.events)
        await Ticket.filter(id=ticket.id).update(created_at=self.now - timedelta(days=days_ago), tier=tier)
        return ticket

    async def move(self, ticket: Ticket, *states: str, actor: Actor | None = None) -> None:
        for state in states:
            extra = {"engineer": self.engineer} if state == "with_engineer" else {}
            await tickets.change_state(ticket, state, events=self.events, actor=actor or Actor(user=self.agent),
                                       **extra)

    async def repair(self, device=None, *, days_ago: float, hours: float, tier=None, **kw) -> Ticket:
        """A repair done ``hours`` after it was opened, then confirmed."""
        ticket = await self.open(device, days_ago=days_ago, tier=tier, **kw)
        await self.move(ticket, "with_agent", "done")
        await Ticket.filter(id=ticket.id).update(done_at=self.now - timedelta(days=days_ago, hours=-hours))
        await self.move(ticket, "closed")
        return ticket


@pytest.fixture
async def world(db):
    hospital = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    nurse = await User.create(name="王护士", role="staff", hospital=hospital, openid="oNurse")
    agent = await User.create(name="李客服", role="agent", openid="oAgent")
    engineer = await User.create(name="张工", role="engineer", hospital=hospital, openid="oEngineer")
    redis = create_redis(Settings(secret_key="t"))
    yield dict(hospital=hospital, other=other, h=History(EventBus(redis), nurse, agent, engineer))
    await redis.aclose()


async def _device(hospital, number, device_type, model, *, installed=None, group=None, status="in_service"):
    return await Device.create(hospital=hospital, system_number=number, nameplate_id=f"SN-{number}", name=number,
                               device_type=device_type, model=model, install_date=installed, group=group,
                               status=status)


@pytest.fixture
async def fleet(world):
    """Six devices of one hospital with a year of tickets, and a foreign device whose tickets must not count.

    ventilators v1 (V60, 2 y), v2 (V60, 12 y), v3 (V680, install date unknown); centrifuge c1 (C1, 4 y) and a
    retired one without tickets; analysers a1 (6 y) and a2 (half a year) in the group "检验流水线".
    """
    w, hospital = world, world["hospital"]
    h: History = w["h"]
    line = await DeviceGroup.create(hospital=hospital, name="检验流水线")
    d = dict(
        v1=await _device(hospital, "V1", "ventilator", "V60", installed=_years_ago(2)),
        v2=await _device(hospital, "V2", "ventilator", "V60", installed=_years_ago(12)),
        v3=await _device(hospital, "V3", "ventilator", "V680"),
        c1=await _device(hospital, "C1", "centrifuge", "C1", installed=_years_ago(4)),
        r1=await _device(hospital, "R1", "centrifuge", "C1", installed=_years_ago(4), status="retired"),
        a1=await _device(hospital, "A1", "biochemistry_analyser", "AU5800", installed=_years_ago(6), group=line),
        a2=await _device(hospital, "A2", "biochemistry_analyser", "AU5800", installed=_years_ago(0.5), group=line),
        foreign=await _device(w["other"], "X1", "ventilator", "V60", installed=_years_ago(2)),
    )
    await h.repair(d["v1"], days_ago=10, hours=4, tier="basic")
    await h.repair(d["v1"], days_ago=100, hours=20, tier="advanced")
    await h.repair(d["v1"], days_ago=400, hours=2, tier="basic")  # before the period
    robot = await h.open(d["v2"], days_ago=2, tier="basic")
    await h.move(robot, "answered_by_robot", "closed", actor=ROBOT)
    waiting = await h.open(d["c1"], days_ago=1)
    await h.move(waiting, "with_agent")
    await h.open(group=line, members=[d["a1"]], days_ago=3, tier="advanced")
    await h.open(d["c1"], days_ago=30, kind="preventive")  # preventive work is not a fault
    await h.repair(d["foreign"], days_ago=5, hours=1)
    # The scores the dashboard bands (set after the closes above, which lower them).
    for key, score in dict(v1=95, v2=80, v3=60, c1=40, a1=100, a2=74).items():
        await Device.filter(id=d[key].id).update(maintenance_score=score)
    return dict(w, line=line, **d)


def _by_key(rows):
    return {r.key: r for r in rows}


async def test_by_device_type(fleet):
    rows = await fault_statistics(fleet["hospital"].id, by="device_type")
    assert [r.key for r in rows][0] == "ventilator"
    got = _by_key(rows)
    assert set(got) == {"ventilator", "centrifuge", "biochemistry_analyser"}
    v = got["ventilator"]
    assert (v.label, v.devices, v.repair_tickets, v.failure_rate) == ("呼吸机", 3, 3, 1.0)
    assert (v.basic, v.advanced, v.unknown_tier) == (2, 1, 0)
    assert (v.basic_share, v.advanced_share, v.unknown_share) == (0.6667, 0.3333, 0.0)
    assert (v.robot_resolved, v.robot_resolved_share) == (1, 0.3333)
    assert v.mttr_hours == 12.0  # (4 h + 20 h) / 2; the robot's close never reached done
    assert v.open_tickets == 0
    c = got["centrifuge"]  # the retired centrifuge without tickets is out of the fleet
    assert (c.devices, c.repair_tickets, c.failure_rate, c.unknown_tier, c.open_tickets, c.mttr_hours) == \
        (1, 1, 1.0, 1, 1, None)
    a = got["biochemistry_analyser"]  # the line's ticket pointed at a1
    assert (a.devices, a.repair_tickets, a.failure_rate, a.advanced, a.open_tickets) == (2, 1, 0.5, 1, 1)
    assert json.loads(json.dumps(v.as_dict()))["tiers"] == {"basic": 2, "advanced": 1, "unknown": 0}


async def test_by_model(fleet):
    got = _by_key(await fault_statistics(fleet["hospital"].id, by="model"))
    assert {k: (r.devices, r.repair_tickets, r.failure_rate) for k, r in got.items()} == {
        "V60": (2, 3, 1.5), "V680": (1, 0, 0.0), "C1": (1, 1, 1.0), "AU5800": (2, 1, 0.5)}


async def test_by_age_band_in_band_order(fleet):
    rows = await fault_statistics(fleet["hospital"].id, by="age_band")
    assert [(r.key, r.label, r.devices, r.repair_tickets) for r in rows] == [
        ("lt1", "不满1年", 1, 0), ("1-3", "1–3年", 1, 2), ("3-5", "3–5年", 1, 1), ("5-10", "5–10年", 1, 1),
        ("ge10", "10年及以上", 1, 1), ("unknown", "安装日期未知", 1, 0)]


async def test_by_score_band_in_band_order(fleet):
    rows = await fault_statistics(fleet["hospital"].id, by="score_band")
    assert [(r.key, r.devices, r.repair_tickets, r.failure_rate) for r in rows] == [
        ("90-100", 2, 3, 1.5), ("75-89", 1, 1, 1.0), ("50-74", 2, 0, 0.0), ("lt50", 1, 1, 1.0)]


async def test_by_group_with_the_ungrouped_last(fleet):
    rows = await fault_statistics(fleet["hospital"].id, by="group")
    assert [(r.key, r.label, r.devices, r.repair_tickets, r.open_tickets) for r in rows] == [
        (fleet["line"].id, "检验流水线", 2, 1, 1), (None, "未分组", 4, 4, 1)]


async def test_a_period_and_all_hospitals(fleet):
    now = fleet["h"].now
    # 73 days = 0.2 year: v1's 10-day-old repair and v2's robot answer.
    rows = _by_key(await fault_statistics(fleet["hospital"].id, since=now - timedelta(days=73), until=now))
    assert (rows["ventilator"].repair_tickets, rows["ventilator"].failure_rate) == (2, 3.3333)
    assert rows["ventilator"].mttr_hours == 4.0
    everywhere = _by_key(await fault_statistics(by="device_type"))
    assert (everywhere["ventilator"].devices, everywhere["ventilator"].repair_tickets) == (4, 4)


async def test_a_retired_device_with_tickets_still_counts_and_reopened_robot_answers_are_not_the_robots(world):
    h: History = world["h"]
    hospital = world["hospital"]
    pump = await _device(hospital, "P1", "infusion_pump", "P-7")
    old = await _device(hospital, "P2", "infusion_pump", "P-7")
    ticket = await h.open(pump, days_ago=20)
    await h.move(ticket, "answered_by_robot", "closed", actor=ROBOT)
    await h.move(ticket, "reopened", "with_agent", "done", "closed")  # the robot's answer did not hold
    solved = await h.open(pump, days_ago=5)
    await h.move(solved, "answered_by_robot", "closed", actor=ROBOT)
    await h.repair(old, days_ago=40, hours=3)
    await Device.filter(id=old.id).update(status="retired")
    await _device(hospital, "P3", "infusion_pump", "P-7", status="retired")  # retired before: not in the fleet
    (row,) = await fault_statistics(hospital.id)
    assert (row.devices, row.repair_tickets, row.robot_resolved, row.failure_rate) == (2, 3, 1, 1.5)


async def test_an_empty_hospital_gets_empty_rows(db):
    empty = await Hospital.create(name="空医院")
    for by in ("device_type", "model", "age_band", "score_band", "group"):
        assert await fault_statistics(empty.id, by=by) == []
        assert await fault_statistics(by=by) == []
    ageing = await ticket_ageing(empty.id)
    assert ageing.total == 0 and set(ageing.by_age.values()) == {0}


async def test_bad_requests_are_refused(db):
    with pytest.raises(Unprocessable) as bad:
        await fault_statistics(by="colour")
    assert bad.value.code == "bad_grouping"
    now = datetime.now(timezone.utc)
    with pytest.raises(Unprocessable) as backwards:
        await fault_statistics(since=now, until=now - timedelta(days=1))
    assert backwards.value.code == "bad_period"
    with pytest.raises(Unprocessable):
        await fault_statistics(hospital_id="市一院")
    with pytest.raises(NotFound):
        await maintenance_profile(424242)


async def test_ticket_ageing_buckets(world):
    h: History = world["h"]
    hospital = world["hospital"]
    device = await _device(hospital, "M1", "monitor", "MX40")
    foreign = await _device(world["other"], "M2", "monitor", "MX40")
    now = h.now

    async def aged(delta: timedelta, *states: str, on=device) -> None:
        ticket = await h.open(on, days_ago=0)
        await h.move(ticket, *states)
        await Ticket.filter(id=ticket.id).update(created_at=now - delta)

    await aged(timedelta(hours=1))  # new
    await aged(timedelta(hours=4), "with_agent")  # exactly 4 h: the second bucket
    await aged(timedelta(hours=23), "with_agent", "with_engineer")
    await aged(timedelta(hours=30), "answered_by_robot")
    await aged(timedelta(days=5), "with_agent", "remote")
    await aged(timedelta(days=6), "with_agent", "done")  # done waits for the reporter: not open
    await aged(timedelta(days=7), "with_agent", "done", "closed")
    await aged(timedelta(hours=2), on=foreign)

    ageing = await ticket_ageing(hospital.id, now=now)
    assert ageing.total == 5
    assert ageing.by_age == {"lt4h": 1, "4-24h": 2, "1-3d": 1, "gt3d": 1}
    assert {s: n for s, n in ageing.by_state.items() if n} == {
        "new": 1, "with_agent": 1, "with_engineer": 1, "answered_by_robot": 1, "remote": 1}
    assert ageing.by_state_and_age["with_engineer"]["4-24h"] == 1
    assert (await ticket_ageing(now=now)).by_age["lt4h"] == 2  # every hospital
    assert json.loads(json.dumps(ageing.as_dict()))["age_labels"]["gt3d"] == "3天以上"


async def test_maintenance_profile_of_a_known_history(world):
    h: History = world["h"]
    hospital = world["hospital"]
    icu = await DeviceGroup.create(hospital=hospital, name="ICU 呼吸机组")
    vent = await _device(hospital, "V1", "ventilator", "V60", installed=_years_ago(3.5), group=icu)
    peer = await _device(hospital, "V2", "ventilator", "V60", installed=_years_ago(1), group=icu)
    await h.repair(vent, days_ago=400, hours=2)  # unknown tier, over a year ago
    await h.repair(vent, days_ago=100, hours=6, tier="basic")
    advanced = await h.repair(vent, days_ago=60, hours=30, tier="advanced")
    latest = await h.open(group=icu, members=[vent], days_ago=10, tier="basic")  # the line's ticket, at vent
    await h.repair(peer, days_ago=50, hours=1, tier="basic")
    await h.open(vent, days_ago=30, kind="preventive")

    profile = await maintenance_profile(vent.id, now=h.now)
    assert profile.faults_12m == {"basic": 2, "advanced": 1, "unknown": 0}
    assert profile.latest_fault["basic"].number == latest.number
    assert profile.latest_fault["advanced"].number == advanced.number
    assert profile.latest_fault["unknown"] is not None and profile.latest_fault["unknown"].tier is None
    assert profile.mtbf_days == 130.0  # from 400 to 10 days ago: 390 days over three gaps
    assert (profile.days_since_last_repair, profile.days_since_last_preventive) == (10, 30)
    # Ventilators of the hospital: 3 + 1 faults over 2 devices in the year = 2.0; this one 3.0.
    assert (profile.failure_rate, profile.peer_failure_rate, profile.relative_risk) == (3.0, 2.0, 1.5)
    assert (profile.age_band, profile.age_years) == ("3-5", 3.5)
    device = await Device.get(id=vent.id)
    assert (profile.repair_count, profile.maintenance_score) == (device.repair_count, device.maintenance_score) \
        == (3, 75)  # three closed repairs in the record: 100 - 10 - 5 - 10
    assert profile.score_band == "75-89"
    assert profile.group.name == "ICU 呼吸机组"
    assert (profile.group.devices, profile.group.repair_tickets_12m, profile.group.failure_rate,
            profile.group.open_tickets) == (2, 4, 2.0, 1)
    body = json.loads(json.dumps(profile.as_dict()))
    assert body["latest_fault"]["basic"]["number"] == latest.number
    assert body["install_date"] == vent.install_date.isoformat()

    lone = await maintenance_profile(peer.id, now=h.now)
    assert (lone.mtbf_days, lone.days_since_last_preventive, lone.relative_risk) == (None, None, 0.5)


async def test_a_device_without_history(world):
    device = await _device(world["hospital"], "E1", "ecg", "ECG-12")
    profile = await maintenance_profile(device.id)
    assert profile.faults_12m == {"basic": 0, "advanced": 0, "unknown": 0}
    assert set(profile.latest_fault.values()) == {None}
    assert (profile.mtbf_days, profile.days_since_last_repair, profile.peer_failure_rate, profile.relative_risk,
            profile.group, profile.age_band, profile.age_years) == (None, None, 0.0, None, None, "unknown", None)
