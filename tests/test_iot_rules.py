"""Early warning on both databases: each kind of rule firing (and not firing) on readings as the ingest consumer
hands them over, one alert per device and rule while open, the preventive ticket it opens (assigned to the service
group's engineer, evidence and risk in it), closing with the ticket, the risk score weighed by the maintenance
profile, rules loaded as data (all or nothing), and scheduled preventive maintenance."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from core.errors import Unprocessable
from core.events import Event, EventBus
from core.models import Hospital, User
from core.redis import create_redis
from core.settings import Settings
from monitoring import alerts, ingest, preventive, rules
from monitoring.ingest import ReadingIn
from monitoring.models import DeviceAlert, MaintenanceRule, PreventiveSchedule
from repair import tickets
from repair.models import Device, Ticket
from repair.service_groups import rebuild_service_groups
from repair.tickets import Actor, TicketRequest

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def reading(device: Device, metric: str, value, *, seconds_ago: float = 0) -> ReadingIn:
    at = ms(NOW - timedelta(seconds=seconds_ago))
    if metric == ingest.ERROR_CODE:
        return ReadingIn(device.id, metric, at, None, str(value))
    return ReadingIn(device.id, metric, at, float(value))


@pytest.fixture
async def world(db):
    redis = create_redis(Settings(secret_key="t"))  # in-process: the rule state and locks need only one process
    events = EventBus(redis)
    await rules.ensure_rules(Settings().iot_rules_file)
    hospital = await Hospital.create(name="市第一人民医院")
    owner = await User.create(name="赵主任", role="staff", hospital=hospital, openid="oOwner")
    busy = await User.create(name="王工", role="engineer", hospital=hospital, openid="oBusy")
    free = await User.create(name="张工", role="engineer", hospital=hospital, openid="oFree")
    vent = await Device.create(hospital=hospital, system_number="V-01", nameplate_id="SN1", name="呼吸机1号",
                               device_type="ventilator", owner=owner, install_date=date(2024, 1, 1))
    spare = await Device.create(hospital=hospital, system_number="V-02", nameplate_id="SN2", name="呼吸机2号",
                                device_type="ventilator", owner=owner, install_date=date(2024, 1, 1))
    await rebuild_service_groups(hospital.id)
    # The busy engineer already has a job: the alert goes to the one with fewer open tickets.
    job, _ = await tickets.open_ticket(TicketRequest(hospital=hospital, device=spare, description="报警"),
                                       events=events)
    await tickets.change_state(job, "with_agent", events=events, actor=Actor(label="t"))
    await tickets.change_state(job, "with_engineer", events=events, actor=Actor(label="t"), engineer=busy)
    yield dict(redis=redis, events=events, hospital=hospital, owner=owner, busy=busy, free=free, vent=vent,
               spare=spare)
    await redis.aclose()


async def evaluate(w, *items):
    return await rules.evaluate(list(items), redis=w["redis"], events=w["events"])


async def preventive_tickets(device) -> list[Ticket]:
    return await Ticket.filter(device_id=device.id, kind="preventive").order_by("id")


async def test_a_threshold_crossing_opens_one_assigned_preventive_ticket_with_the_evidence(world):
    w = world
    assert await evaluate(w, reading(w["vent"], "temperature", 38.0, seconds_ago=600)) == []
    opened = await evaluate(w, reading(w["vent"], "temperature", 47.5))
    assert len(opened) == 1
    [ticket] = await preventive_tickets(w["vent"])
    assert (ticket.state, ticket.channel, ticket.engineer_id) == ("with_engineer", "iot", w["free"].id)
    assert "呼吸机温度过高" in ticket.description and "47.5" in ticket.description and "风险评分" in ticket.description
    alert = await DeviceAlert.get(id=opened[0].id)
    assert (alert.state, alert.ticket_id, alert.severity) == ("open", ticket.id, "high")
    assert alert.evidence["value"] == 47.5 and alert.evidence["detail"]["max"] == 45
    assert 0 < alert.risk_score <= 100 and alert.evidence["risk"]["score"] == alert.risk_score

    # Still hot: the same alert counts the repeat; no second alert, no second ticket.
    assert await evaluate(w, reading(w["vent"], "temperature", 47.6, seconds_ago=-60)) == []
    assert await DeviceAlert.filter(device_id=w["vent"].id).count() == 1
    assert (await DeviceAlert.get(id=alert.id)).hits == 2
    assert len(await preventive_tickets(w["vent"])) == 1

    # Another rule of the same device joins the open ticket instead of opening one more.
    joined = await evaluate(w, reading(w["vent"], "temperature", 60.0, seconds_ago=-120))  # +12 °C/min: rate rule
    assert [a.evidence["rule"] for a in joined] == ["temperature_rising"]
    assert joined[0].ticket_id == ticket.id
    assert len(await preventive_tickets(w["vent"])) == 1


async def test_an_alert_closes_with_its_ticket_and_a_new_finding_opens_a_new_one(world):
    w = world
    [first] = await evaluate(w, reading(w["vent"], "temperature", 50))
    ticket = await Ticket.get(id=first.ticket_id)
    done = await tickets.change_state(ticket, "done", events=w["events"], actor=Actor(user=w["free"]))
    await alerts.close_for_ticket(Event("1-0", "ticket.state_changed",
                                        {"ticket_id": done.id, "state": "done", "device_id": w["vent"].id}))
    closed = await DeviceAlert.get(id=first.id)
    assert (closed.state, closed.open_key) == ("closed", None) and closed.closed_at is not None

    [again] = await evaluate(w, reading(w["vent"], "temperature", 51, seconds_ago=-600))
    assert again.id != first.id and again.ticket_id != ticket.id
    assert len(await preventive_tickets(w["vent"])) == 2


async def test_consecutive_readings_and_late_readings(world):
    """Pressure out of range must be seen three readings in a row; a reading older than the last one does not
    count towards (nor break) the run."""
    w = world
    v = w["vent"]
    assert await evaluate(w, reading(v, "pressure", 70, seconds_ago=30), reading(v, "pressure", 71, seconds_ago=20)) == []
    assert await evaluate(w, reading(v, "pressure", 72, seconds_ago=25)) == []  # late: ignored for the run
    assert await evaluate(w, reading(v, "pressure", 20, seconds_ago=10)) == []  # back in range: run broken
    assert await evaluate(w, reading(v, "pressure", 75, seconds_ago=5), reading(v, "pressure", 76, seconds_ago=4)) == []
    [alert] = await evaluate(w, reading(v, "pressure", 77, seconds_ago=3))
    assert alert.evidence["rule"] == "pressure_out_of_range" and "连续 3 次" in alert.evidence["text"]


async def test_a_drift_from_the_devices_own_baseline(world):
    """The EWMA rule learns this ventilator's normal temperature (around 36 °C, well under the 45 °C threshold)
    and fires on 41 °C, which the fixed threshold would let pass."""
    w = world
    v = w["vent"]
    normal = [reading(v, "temperature", 36 + (i % 5) * 0.1, seconds_ago=600 - i * 5) for i in range(80)]
    assert await evaluate(w, *normal) == []
    [alert] = await evaluate(w, reading(v, "temperature", 41, seconds_ago=-3000))  # slowly: no rate rule
    assert alert.evidence["rule"] == "temperature_drift"
    assert 35.9 < alert.evidence["detail"]["baseline"] < 36.5 and alert.evidence["detail"]["z"] > 5


async def test_frequent_error_codes(world):
    w = world
    v = w["vent"]
    codes = [reading(v, ingest.ERROR_CODE, "E21", seconds_ago=300 - i) for i in range(4)]
    await ingest.store(codes)
    assert await evaluate(w, *codes) == []  # four within the hour: under the five of the rule
    fifth = reading(v, ingest.ERROR_CODE, "E21", seconds_ago=10)
    await ingest.store([fifth])
    # The fifth arrives with a hot reading: two rules fire in one batch, both alerts share one ticket.
    opened = await evaluate(w, fifth, reading(v, "temperature", 50, seconds_ago=10))
    by_rule = {a.evidence["rule"]: a for a in opened}
    assert set(by_rule) == {"error_burst", "temperature_high"}
    assert by_rule["error_burst"].evidence["detail"]["count"] == 5 and "E21" in by_rule["error_burst"].evidence["text"]
    assert len({a.ticket_id for a in opened}) == 1 and len(await preventive_tickets(v)) == 1


async def test_run_hours_since_the_last_service(world):
    """The counter's value at the last finished service is the zero of the count."""
    w = world
    v = w["vent"]
    serviced = NOW - timedelta(days=30)
    await ingest.store([ReadingIn(v.id, "run_hours", ms(serviced - timedelta(minutes=5)), 9000.0)])
    service, _ = await tickets.open_ticket(TicketRequest(hospital=w["hospital"], device=v, kind="preventive",
                                                         description="保养"), events=w["events"])
    await tickets.change_state(service, "with_engineer", events=w["events"], actor=Actor(label="t"),
                               engineer=w["busy"])
    await tickets.change_state(service, "done", events=w["events"], actor=Actor(user=w["busy"]))
    await Ticket.filter(id=service.id).update(done_at=serviced)
    rules.forget_cached()
    assert await evaluate(w, reading(v, "run_hours", 13900)) == []  # 4,900 h since the service: under 5,000
    [alert] = await evaluate(w, reading(v, "run_hours", 14100, seconds_ago=-60))
    assert alert.evidence["rule"] == "service_due" and alert.evidence["detail"]["hours_since_service"] == 5100


async def test_the_maintenance_profile_raises_the_risk_of_a_troubled_device(world):
    w = world
    healthy, troubled = w["spare"], w["vent"]
    await Device.filter(id=troubled.id).update(maintenance_score=40, install_date=date(2012, 1, 1))
    for _ in range(3):
        t, _ = await tickets.open_ticket(TicketRequest(hospital=w["hospital"], device=troubled, description="坏了",
                                                       tier="advanced"), events=w["events"])
    [calm] = await evaluate(w, reading(healthy, "temperature", 50))
    [worried] = await evaluate(w, reading(troubled, "temperature", 50))
    assert worried.risk_score > calm.risk_score
    reasons = "；".join(worried.evidence["risk"]["reasons"])
    assert "维护评分 40" in reasons and "上门维修的故障 3 次" in reasons


async def test_retired_devices_and_unwatched_metrics_raise_nothing(world):
    w = world
    await Device.filter(id=w["spare"].id).update(status="retired")
    rules.forget_cached()
    assert await evaluate(w, reading(w["spare"], "temperature", 90), reading(w["vent"], "humidity", 99)) == []
    assert await DeviceAlert.all().count() == 0


async def test_rules_are_loaded_all_or_nothing(world):
    before = await MaintenanceRule.filter(active=True).count()
    bad = {"rules": [{"device_type": "ventilator", "name": "ok", "metric": "temperature", "kind": "threshold",
                      "params": {"max": 40}},
                     {"device_type": "ventilator", "name": "broken", "metric": "pressure", "kind": "threshold",
                      "params": {"min": 10, "max": 5}}]}
    with pytest.raises(Unprocessable) as refused:
        await rules.load_rules(bad)
    assert refused.value.details["index"] == 1 and refused.value.details["field"] == "params.min"
    assert await MaintenanceRule.filter(active=True).count() == before
    with pytest.raises(Unprocessable):
        await rules.load_rules({"rules": [{"device_type": "x", "name": "y", "metric": "m", "kind": "guess"}]})

    report = await rules.load_rules({
        "rules": [{"device_type": "ventilator", "name": "cool", "title": "温度过高", "metric": "temperature",
                   "kind": "threshold", "params": {"max": 30}, "severity": "critical"}],
        "preventive": [{"device_type": "ventilator", "interval_days": 30}]})
    assert (report.rules, report.schedules, report.deactivated) == (1, 1, before)
    assert await MaintenanceRule.filter(active=True).count() == 1
    assert await PreventiveSchedule.filter(active=True).values_list("device_type", flat=True) == ["ventilator"]
    # The new set is in use at once: 32 °C now fires the administrator's own rule.
    [alert] = await evaluate(world, reading(world["vent"], "temperature", 32))
    assert (alert.evidence["rule"], alert.severity) == ("cool", "critical")


async def test_preventive_schedule_opens_due_tickets_once(world):
    w = world
    await rules.load_rules({"rules": [], "preventive": [{"device_type": "ventilator", "interval_days": 180}]})
    old = await Device.create(hospital=w["hospital"], system_number="V-03", nameplate_id="SN3", name="呼吸机3号",
                              device_type="ventilator", install_date=date.today() - timedelta(days=400))
    recent = await Device.create(hospital=w["hospital"], system_number="V-04", nameplate_id="SN4",
                                 name="呼吸机4号", device_type="ventilator", install_date=date.today())
    await Device.filter(id__in=[w["vent"].id, w["spare"].id]).update(install_date=date.today())
    numbers = await preventive.run_schedules(events=w["events"])
    assert len(numbers) == 1
    [ticket] = await preventive_tickets(old)
    assert ticket.number == numbers[0] and ticket.state == "with_engineer" and ticket.engineer_id is not None
    assert "180 天" in ticket.description and await preventive_tickets(recent) == []
    # The round is claimed: running again at once does nothing; later, the open ticket keeps it from repeating.
    assert await preventive.run_schedules(events=w["events"]) == []
    assert await preventive.run_schedules(events=w["events"], now=NOW + timedelta(hours=1)) == []
    assert len(await preventive_tickets(old)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the command, once, on the SQLite file
async def test_load_rules_command(world, tmp_path, database_url):
    """``python -m monitoring load-rules FILE``: a bad file changes nothing and says why."""
    import asyncio
    import os
    import sys

    good = tmp_path / "rules.json"
    good.write_text(json.dumps({"rules": [{"device_type": "ct", "name": "hot", "metric": "tube_temperature",
                                           "kind": "threshold", "params": {"max": 80}}]}), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": database_url, "VAR_DIR": str(tmp_path), "SECRET_KEY": "t" * 32}

    async def run(path):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "monitoring", "load-rules", str(path),
                                                    env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    code, _, err = await run(bad)
    assert code == 1 and "不是有效的 JSON" in err
    code, out, _ = await run(good)
    assert code == 0 and "已载入规则 1 条" in out
    assert await MaintenanceRule.filter(active=True).values_list("name", flat=True) == ["hot"]


async def test_rate_of_change_is_measured_over_a_window_not_between_noisy_neighbours(world):
    """Sampled every second with ±0.5 °C of noise: neighbours differ by up to 60 °C/min, yet nothing fires; a real
    climb of 3 °C per minute (over the ventilator's 2 °C/min) does."""
    w = world
    v = w["vent"]
    noisy = [reading(v, "temperature", 36.5 + (0.5 if i % 2 else -0.5), seconds_ago=300 - i) for i in range(180)]
    assert await evaluate(w, *noisy) == []
    climb = [reading(v, "temperature", 36.5 + 3 * i / 60, seconds_ago=120 - i) for i in range(0, 121, 10)]
    [alert] = await evaluate(w, *climb)
    assert alert.evidence["rule"] == "temperature_rising" and alert.evidence["detail"]["per_min"] > 2
