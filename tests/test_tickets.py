"""The ticket state machine on both databases: numbers, transitions, events, repair history."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from core.errors import Conflict, Unprocessable
from core.events import EventBus
from core.models import AuditEntry, Hospital, User
from core.redis import create_redis
from core.settings import Settings
from repair import tickets
from repair.models import Device, DeviceGroup, Ticket, TicketTransition
from repair.tickets import Actor, TicketRequest


@pytest.fixture
async def world(db):
    hospital = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    nurse = await User.create(name="王护士", role="staff", hospital=hospital, openid="oNurse")
    agent = await User.create(name="李客服", role="agent", openid="oAgent")
    engineer = await User.create(name="张工", role="engineer", hospital=hospital, openid="oEngineer")
    device = await Device.create(hospital=hospital, system_number="D0001", nameplate_id="SN-778", name="呼吸机",
                                 model="V60", device_type="ventilator")
    foreign = await Device.create(hospital=other, system_number="D0002", nameplate_id="SN-900", name="离心机",
                                  model="C1", device_type="centrifuge")
    redis = create_redis(Settings(secret_key="t"))
    events = EventBus(redis)
    yield dict(hospital=hospital, other=other, nurse=nurse, agent=agent, engineer=engineer, device=device,
               foreign=foreign, events=events)
    await redis.aclose()


async def _open(w, **overrides) -> Ticket:
    req = TicketRequest(hospital=w["hospital"], device=w["device"], description="呼吸机报警 E-05",
                        reporter=w["nurse"], reporter_openid="oNurse", **overrides)
    ticket, created = await tickets.open_ticket(req, events=w["events"])
    assert created
    return ticket


async def test_numbers_are_daily_sequences(world):
    a, b = await _open(world), await _open(world)
    today = datetime.now(timezone.utc).strftime("%y%m%d")
    assert (a.number, b.number) == (f"R{today}0001", f"R{today}0002")
    assert await tickets.next_number(datetime(2026, 1, 2, tzinfo=timezone.utc)) == "R2601020001"


async def test_concurrent_openings_get_distinct_numbers(world):
    opened = await asyncio.gather(*(_open(world) for _ in range(8)))
    assert len({t.number for t in opened}) == 8


async def test_the_whole_way_with_transitions_events_and_history(world):
    w = world
    ticket = await _open(w)
    assert (await Device.get(id=w["device"].id)).status == "under_repair"
    agent, engineer = Actor(user=w["agent"]), Actor(user=w["engineer"])
    await tickets.change_state(ticket, "with_agent", events=w["events"], actor=Actor(label="机器人"), agent=w["agent"])
    await tickets.change_state(ticket, "remote", events=w["events"], actor=agent, note="远程指导重启")
    await tickets.change_state(ticket, "with_engineer", events=w["events"], actor=agent, engineer=w["engineer"])
    await tickets.change_state(ticket, "done", events=w["events"], actor=engineer, note="更换传感器")
    await tickets.change_state(ticket, "closed", events=w["events"], actor=Actor(user=w["nurse"]))

    steps = [(t.from_state, t.to_state, t.actor_label) for t in await tickets.history(ticket)]
    assert steps == [(None, "new", "王护士"), ("new", "with_agent", "机器人"), ("with_agent", "remote", "李客服"),
                     ("remote", "with_engineer", "李客服"), ("with_engineer", "done", "张工"),
                     ("done", "closed", "王护士")]
    device = await Device.get(id=w["device"].id)
    assert (device.repair_count, device.maintenance_score, device.status) == (1, 90, "in_service")
    names = [e.name for e in await w["events"].read_after("0-0")]
    assert names == ["ticket.opened", "ticket.state_changed", "ticket.handed_off", "ticket.state_changed",
                     "ticket.state_changed", "ticket.assigned", "ticket.state_changed", "ticket.state_changed"]
    assert await AuditEntry.filter(entity="ticket", entity_id=ticket.number).count() == 6


async def test_an_illegal_transition_is_refused_and_changes_nothing(world):
    ticket = await _open(world)
    with pytest.raises(Conflict) as refused:
        await tickets.change_state(ticket, "done", events=world["events"], actor=Actor(user=world["nurse"]))
    assert "不能改为" in refused.value.message
    assert (await Ticket.get(id=ticket.id)).state == "new"
    await tickets.change_state(ticket, "with_agent", events=world["events"], actor=Actor(user=world["agent"]))
    with pytest.raises(Unprocessable):  # an engineer's turn needs an engineer
        await tickets.change_state(ticket, "with_engineer", events=world["events"], actor=Actor(user=world["agent"]))
    assert (await Ticket.get(id=ticket.id)).state == "with_agent"
    assert await TicketTransition.filter(ticket=ticket).count() == 2


async def test_reopen_after_close_and_repairs_lower_the_score(world):
    w = world
    ticket = await _open(w)
    for state, kwargs in (("with_agent", {}), ("done", {}), ("closed", {}), ("reopened", {}),
                          ("with_engineer", {"engineer": w["engineer"]}), ("done", {}), ("closed", {})):
        await tickets.change_state(ticket, state, events=w["events"], actor=Actor(user=w["agent"]), **kwargs)
    device = await Device.get(id=w["device"].id)
    # Closed twice (counted twice), reopened once: 100 - 10 (unknown tier) - 5 (reopened).
    assert device.repair_count == 2 and device.maintenance_score == 85


async def test_a_repeated_submission_returns_the_first_ticket(world):
    first = await _open(world, client_request_id="req-123")
    again, created = await tickets.open_ticket(
        TicketRequest(hospital=world["hospital"], device=world["device"], description="呼吸机报警 E-05",
                      reporter=world["nurse"], reporter_openid="oNurse", client_request_id="req-123"),
        events=world["events"])
    assert (again.id, created) == (first.id, False)
    assert await Ticket.all().count() == 1
    with pytest.raises(Conflict):  # someone else reusing the id gets no peek at the ticket
        await tickets.open_ticket(TicketRequest(hospital=world["hospital"], device=world["device"],
                                                description="x", reporter_openid="oOther",
                                                client_request_id="req-123"), events=world["events"])


@pytest.mark.parametrize("change, code", [
    ({"description": "  "}, "empty_report"),
    ({"device": "foreign"}, "device_of_other_hospital"),
    ({"device": None}, "no_device"),
])
async def test_bad_reports_are_refused(world, change, code):
    overrides = {k: (world[v] if isinstance(v, str) and v in world else v) for k, v in change.items()}
    req = TicketRequest(**{**dict(hospital=world["hospital"], device=world["device"], description="报警",
                                  reporter_openid="oNurse"), **overrides})
    with pytest.raises(Unprocessable) as refused:
        await tickets.open_ticket(req, events=world["events"])
    assert refused.value.code == code
    assert await Ticket.all().count() == 0


async def test_group_ticket_names_the_group_and_members(world):
    w = world
    group = await DeviceGroup.create(hospital=w["hospital"], name="生化流水线")
    a = await Device.create(hospital=w["hospital"], system_number="D0101", nameplate_id="A1", name="分析仪A",
                            model="AU5800", device_type="analyser", group=group, group_position=1)
    await Device.create(hospital=w["hospital"], system_number="D0102", nameplate_id="A2", name="分析仪B",
                        model="AU5800", device_type="analyser", group=group, group_position=2)
    ticket, _ = await tickets.open_ticket(TicketRequest(hospital=w["hospital"], group=group, member_device_ids=[a.id],
                                                        description="流水线卡样", reporter_openid="oNurse"),
                                          events=w["events"])
    assert [d.system_number for d in await ticket.member_devices.all()] == ["D0101"]
    with pytest.raises(Unprocessable):
        await tickets.open_ticket(TicketRequest(hospital=w["hospital"], group=group,
                                                member_device_ids=[w["device"].id], description="x",
                                                reporter_openid="oNurse"), events=w["events"])
    await tickets.change_state(ticket, "answered_by_robot", events=w["events"], actor=Actor(label="机器人"))
    await tickets.change_state(ticket, "closed", events=w["events"], actor=Actor(user=w["nurse"]))
    assert (await DeviceGroup.get(id=group.id)).repair_count == 1


async def test_done_tickets_close_themselves_after_three_days(world):
    ticket = await _open(world)
    await tickets.change_state(ticket, "with_agent", events=world["events"], actor=Actor(user=world["agent"]))
    await tickets.change_state(ticket, "done", events=world["events"], actor=Actor(user=world["agent"]))
    assert await tickets.close_stale_done(events=world["events"]) == []
    later = datetime.now(timezone.utc) + timedelta(days=3, minutes=1)
    assert await tickets.close_stale_done(events=world["events"], now=later) == [ticket.number]
    assert (await Ticket.get(id=ticket.id)).state == "closed"


async def test_preventive_tickets_start_with_the_engineer(world):
    ticket, _ = await tickets.open_ticket(TicketRequest(hospital=world["hospital"], device=world["device"],
                                                        description="季度保养", kind="preventive"),
                                          events=world["events"], actor=Actor(label="保养计划"))
    assert ticket.state == "with_engineer"
    assert (await Device.get(id=world["device"].id)).status == "in_service"
