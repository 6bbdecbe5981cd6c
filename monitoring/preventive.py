"""Scheduled preventive maintenance: per device type an interval (``PreventiveSchedule``, loaded with the rules);
each device of the type whose last preventive ticket (or, without one, its installation) is older than the interval
gets a preventive ticket, assigned like an alert's.

``run_schedules`` is called by the housekeeping loop of every server worker. A round of a schedule is claimed with a
conditional UPDATE of ``last_run_at`` so that one worker runs it; a device with an open preventive ticket is skipped,
and the ticket's ``client_request_id`` (schedule, device, day) makes a repeated round on the same day a no-op.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

from tortoise.expressions import Q
from tortoise.functions import Max

from core.errors import AppError
from core.events import EventBus
from monitoring.alerts import ACTOR, assign_engineer
from monitoring.models import PreventiveSchedule
from repair.devices import device_type_label
from repair.models import Device, Ticket
from repair.tickets import OPEN_STATES, TicketRequest, open_ticket

log = logging.getLogger(__name__)
ROUND = timedelta(minutes=5)  # at most one round of a schedule per ROUND, whichever worker runs it
MAX_PER_ROUND = 200  # tickets one round opens; the rest wait for the next round (a new schedule on a big fleet)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _start_of(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc) if day else None


async def run_schedules(*, events: EventBus, now: datetime | None = None) -> list[str]:
    """Open the preventive tickets that are due; their numbers."""
    now = now or _now()
    opened: list[str] = []
    for schedule in await PreventiveSchedule.filter(active=True).order_by("id"):
        claimed = await PreventiveSchedule.filter(id=schedule.id).filter(
            Q(last_run_at__isnull=True) | Q(last_run_at__lte=now - ROUND)).update(last_run_at=now)
        if not claimed:
            continue  # another worker runs this round
        opened += await _run(schedule, events, now)
    return opened


async def due_devices(schedule: PreventiveSchedule, now: datetime) -> list[tuple[Device, datetime | None]]:
    """(device, last preventive ticket's time) for the devices of the type that are due, oldest first."""
    devices = await Device.filter(device_type=schedule.device_type).exclude(status="retired").order_by("id")
    ids = [d.id for d in devices]
    if not ids:
        return []
    last = dict(await Ticket.filter(device_id__in=ids, kind="preventive").annotate(last=Max("created_at"))
                .group_by("device_id").values_list("device_id", "last"))
    busy = set(await Ticket.filter(device_id__in=ids, kind="preventive", state__in=OPEN_STATES)
               .values_list("device_id", flat=True))
    cutoff = now - timedelta(days=schedule.interval_days)
    due = []
    for d in devices:
        if d.id in busy:
            continue
        since = last.get(d.id) or _start_of(d.install_date) or d.created_at
        if since <= cutoff:
            due.append((d, last.get(d.id)))
    return sorted(due, key=lambda item: item[1] or _start_of(item[0].install_date) or item[0].created_at)


async def _run(schedule: PreventiveSchedule, events: EventBus, now: datetime) -> list[str]:
    opened = []
    for device, last in (await due_devices(schedule, now))[:MAX_PER_ROUND]:
        what = schedule.title or f"{device_type_label(device.device_type)}定期保养"
        previous = f"上次保养：{last:%Y-%m-%d}" if last else "尚无保养记录"
        req = TicketRequest(
            hospital=await device.hospital, device=device, kind="preventive", channel="iot",
            description=f"【定期保养】{what}（每 {schedule.interval_days} 天一次）；{previous}。",
            client_request_id=f"pm-{schedule.id}-{device.id}-{now:%Y%m%d}")
        try:
            ticket, created = await open_ticket(req, events=events, actor=ACTOR)
            if created:
                await assign_engineer(ticket, device, events, note="定期保养自动派单")
                opened.append(ticket.number)
        except AppError as exc:
            log.warning("preventive ticket for device %s not opened: %s", device.system_number, exc.message)
    if opened:
        await PreventiveSchedule.filter(id=schedule.id).update(last_created_at=now)
    return opened
