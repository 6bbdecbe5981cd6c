"""From findings to alerts and preventive tickets.

- One open alert per device and rule (the unique ``open_key``): while it is open a rule firing again only counts
  (``hits``, ``last_seen_at``).
- New alerts of a device are scored together (``monitoring.risk``: the severities of everything open on the device,
  weighed by ``repair.statistics.maintenance_profile``) and open one preventive ticket (``repair.tickets.open_ticket``,
  kind ``preventive``, channel ``iot``: it starts at ``with_engineer``) carrying the evidence; the engineer is the
  least-loaded engineer of the device's service group. While the device has an open alert with an open ticket,
  newer alerts join that ticket instead of opening another.
- The people are told by ``repair.messaging.TicketNotifier`` (it listens to the ticket's events): the device's owner
  when the ticket opens, the engineer when it is assigned to them.
- An alert closes when its ticket is done or closed (``close_for_ticket``, a listener in ``app.py``).
- Per device the work runs under a Redis lock, so two workers seeing one fault at once open one ticket.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.functions import Count

from core.errors import AppError, NotFound
from core.events import Event, EventBus
from core.models import User
from core.redis import Redis
from monitoring import risk as risk_score
from monitoring import signals
from monitoring.models import DeviceAlert
from repair.models import Device, Ticket
from repair.service_groups import members_of
from repair.statistics import DeviceProfile, maintenance_profile
from repair.tickets import OPEN_STATES, Actor, TicketRequest, change_state, open_ticket

log = logging.getLogger(__name__)
ACTOR = Actor(label="设备预警")
LOCK_KEY = "iot:alert-lock:{}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def open_key(device_id: int, rule_id: int) -> str:
    return f"{device_id}:{rule_id}"


async def raise_alerts(findings: dict, devices: dict, *, redis: Redis, events: EventBus) -> list[DeviceAlert]:
    """The alerts opened for these findings (device id → findings); one device failing never stops the others."""
    opened: list[DeviceAlert] = []
    for device_id, found in findings.items():
        try:
            opened += await _for_device(device_id, found, redis=redis, events=events)
        except Exception:  # noqa: BLE001 - the readings are stored; the next batch will fire the rule again
            log.exception("alerts for device %s not raised", device_id)
    return opened


async def _for_device(device_id: int, found: list, *, redis: Redis, events: EventBus) -> list[DeviceAlert]:
    now = _now()
    fresh = []
    for f in found:
        repeated = await DeviceAlert.filter(open_key=open_key(device_id, f.rule.id)).update(
            hits=F("hits") + 1, last_seen_at=now)
        if not repeated:
            fresh.append(f)
    # An alert whose ticket could not be opened before (a crash, the database away) gets it now.
    orphans = await DeviceAlert.filter(device_id=device_id, state="open", ticket_id=None).exists()
    if not fresh and not orphans:
        return []
    async with redis.lock(LOCK_KEY.format(device_id), timeout=30, blocking_timeout=15, sleep=0.02):
        device = await Device.get_or_none(id=device_id)
        if device is None:
            return []
        profile = await _profile(device_id)
        severities = [f.rule.severity for f in fresh]
        severities += await DeviceAlert.filter(device_id=device_id, state="open").values_list("severity", flat=True)
        risk = risk_score.score(severities, profile)
        created = []
        for f in fresh:
            try:
                created.append(await DeviceAlert.create(
                    device_id=device_id, rule_id=f.rule.id, open_key=open_key(device_id, f.rule.id),
                    severity=f.rule.severity, risk_score=risk.score, last_seen_at=now,
                    evidence={**f.evidence(), "risk": risk.as_dict(), "profile": _profile_brief(profile)}))
            except IntegrityError:
                continue  # opened meanwhile (by a worker that did not hold the lock yet): counted there
        waiting = await DeviceAlert.filter(device_id=device_id, state="open", ticket_id=None).order_by("id")
        if waiting:
            ticket = await _device_ticket(device_id) or await _open_ticket(device, waiting, risk, events)
            await DeviceAlert.filter(id__in=[a.id for a in waiting]).update(ticket_id=ticket.id)
            for a in created:
                a.ticket_id = ticket.id
    for a in created:
        await events.publish("device.alert", {
            "alert_id": a.id, "device_id": device_id, "hospital_id": device.hospital_id, "rule_id": a.rule_id,
            "severity": a.severity, "risk_score": a.risk_score, "ticket_id": a.ticket_id,
            "text": a.evidence.get("text", "")})
    return created


async def _profile(device_id: int) -> DeviceProfile | None:
    try:
        return await maintenance_profile(device_id)
    except NotFound:
        return None


def _profile_brief(profile: DeviceProfile | None) -> dict | None:
    if profile is None:
        return None
    return {k: getattr(profile, k) for k in ("maintenance_score", "age_years", "faults_12m", "relative_risk",
                                             "days_since_last_repair", "days_since_last_preventive")}


async def _device_ticket(device_id: int) -> Ticket | None:
    """The open ticket an open alert of the device already has, if any."""
    alert = await DeviceAlert.filter(device_id=device_id, state="open", ticket_id__isnull=False,
                                     ticket__state__in=OPEN_STATES).order_by("-id").first()
    return await Ticket.get_or_none(id=alert.ticket_id) if alert else None


def describe(alerts: list[DeviceAlert], risk: risk_score.Risk) -> str:
    lines = ["【设备预警】" + "；".join(a.evidence.get("title", "") for a in alerts)]
    lines += [f"- {a.evidence.get('text', '')}" for a in alerts]
    lines.append(f"风险评分 {risk.score}（{risk.label}）" + (f"：{'；'.join(risk.reasons)}" if risk.reasons else ""))
    lines.append("请安排预防性检查。")
    return "\n".join(lines)[:2000]


async def _open_ticket(device: Device, alerts: list[DeviceAlert], risk: risk_score.Risk,
                       events: EventBus) -> Ticket:
    req = TicketRequest(hospital=await device.hospital, device=device, kind="preventive", channel="iot",
                        description=describe(alerts, risk), client_request_id=f"iot-alert-{alerts[0].id}")
    ticket, _ = await open_ticket(req, events=events, actor=ACTOR)
    return await assign_engineer(ticket, device, events, note="设备预警自动派单")


async def assign_engineer(ticket: Ticket, device: Device, events: EventBus, *, note: str) -> Ticket:
    """Give a preventive ticket (opened at ``with_engineer``) to the least-loaded engineer of the device's service
    group; without one it stays unassigned for an agent to assign."""
    if ticket.engineer_id is not None:
        return ticket
    engineer = await choose_engineer(device.hospital_id, device.group_id)
    if engineer is None:
        log.warning("no engineer in the service group of hospital %s for ticket %s", device.hospital_id,
                    ticket.number)
        return ticket
    try:
        return await change_state(ticket, "with_engineer", events=events, actor=ACTOR, engineer=engineer, note=note)
    except AppError as exc:  # moved meanwhile (already assigned, done): leave it as it is
        log.warning("ticket %s not assigned: %s", ticket.number, exc.message)
        return ticket


async def choose_engineer(hospital_id: int, device_group_id: int | None = None) -> User | None:
    members = await members_of(hospital_id, device_group_id) if device_group_id else []
    members = members or await members_of(hospital_id)
    engineers = [m.user for m in members if m.role == "engineer" and m.user.active]
    if not engineers:
        return None
    load = dict(await Ticket.filter(engineer_id__in=[u.id for u in engineers], state__in=OPEN_STATES)
                .annotate(n=Count("id")).group_by("engineer_id").values_list("engineer_id", "n"))
    return min(engineers, key=lambda u: (load.get(u.id, 0), u.id))


async def close_for_ticket(event: Event) -> None:
    """A ticket reached done or closed: the alerts it answered are closed (a new finding opens a new alert)."""
    if event.data.get("state") not in ("done", "closed"):
        return
    if event.data.get("device_id"):
        signals.forget_service(event.data["device_id"])  # a service done: run hours count from now (this worker)
    await DeviceAlert.filter(ticket_id=event.data.get("ticket_id"), state="open").update(
        state="closed", open_key=None, closed_at=_now())
