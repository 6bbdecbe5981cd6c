"""Repair tickets: one state machine, human-readable numbers, every transition stored with actor and time.

States (../shared/ARCHITECTURE.md): ``new`` → ``answered_by_robot`` (the user may still escalate) | ``with_agent`` →
``remote`` → ``with_engineer`` → ``done`` (waiting for the reporter) → ``closed``; ``reopened`` from done/closed.
Preventive tickets start at ``with_engineer``. A change commits first and then publishes its event, so a listener
never sees a ticket that is not stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from core import audit
from core.errors import Conflict, NotFound, Unprocessable
from core.events import EventBus
from core.models import Hospital, MediaFile, User
from core.textutil import storable
from repair.models import Device, DeviceGroup, Ticket, TicketAttachment, TicketCounter, TicketTransition

# to_state -> the states it may be reached from
ALLOWED: dict[str, frozenset] = {
    "answered_by_robot": frozenset({"new"}),
    "with_agent": frozenset({"new", "answered_by_robot", "reopened"}),
    "remote": frozenset({"with_agent"}),
    "with_engineer": frozenset({"with_agent", "remote", "reopened"}),
    "done": frozenset({"with_agent", "remote", "with_engineer"}),
    "closed": frozenset({"answered_by_robot", "done"}),
    "reopened": frozenset({"done", "closed"}),
}
STATE_LABELS = {
    "new": "新工单", "answered_by_robot": "机器人已答复", "with_agent": "客服处理中", "remote": "远程处理中",
    "with_engineer": "工程师处理中", "done": "已完成待确认", "closed": "已关闭", "reopened": "已重新打开",
}
AUTO_CLOSE_AFTER = timedelta(days=3)
OPEN_STATES = ("new", "answered_by_robot", "with_agent", "remote", "with_engineer", "reopened")


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class NewAttachment:
    media: MediaFile
    kind: str  # photo | voice | video | document
    transcript: str | None = None


@dataclass
class Actor:
    """Who does something: a user, or a named system part (the robot, an import, the scheduler)."""

    user: User | None = None
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or (self.user.label() if self.user else "system")


SYSTEM = Actor(label="system")


async def next_number(day: datetime | None = None, using_db=None) -> str:
    """``R`` + yymmdd + a 4-digit daily sequence, incremented atomically in the database."""
    stamp = (day or _now()).astimezone(timezone.utc).strftime("%y%m%d")
    conn = using_db or Ticket._meta.db
    dialect = conn.capabilities.dialect
    mark = "$1" if dialect == "postgres" else "?"
    rows = await conn.execute_query_dict(
        f"INSERT INTO ticket_counter (day, value) VALUES ({mark}, 1) "
        "ON CONFLICT (day) DO UPDATE SET value = ticket_counter.value + 1 RETURNING value", [stamp])
    return f"R{stamp}{rows[0]['value']:04d}"


@dataclass
class TicketRequest:
    hospital: Hospital
    description: str
    channel: str = "h5"
    kind: str = "repair"
    device: Device | None = None
    group: DeviceGroup | None = None
    member_device_ids: Iterable[int] = ()
    reporter: User | None = None
    reporter_openid: str | None = None
    client_request_id: str | None = None
    attachments: list[NewAttachment] = field(default_factory=list)
    tier: str | None = None  # basic | advanced, when the robot already knows the kind of fault


async def open_ticket(req: TicketRequest, *, events: EventBus, actor: Actor | None = None) -> tuple[Ticket, bool]:
    """Store a new ticket; (ticket, created). A repeated ``client_request_id`` returns the first ticket."""
    if req.client_request_id:
        earlier = await Ticket.get_or_none(client_request_id=req.client_request_id)
        if earlier is not None:
            if earlier.reporter_id != (req.reporter.id if req.reporter else None) or \
                    earlier.reporter_openid != req.reporter_openid:
                raise Conflict("该提交编号已被使用", code="duplicate_request_id")
            return earlier, False
    await _validate(req)
    actor = actor or Actor(user=req.reporter, label="" if req.reporter else "reporter")
    first_state = "with_engineer" if req.kind == "preventive" else "new"
    async with in_transaction() as conn:
        number = await next_number(using_db=conn)
        ticket = await Ticket.create(
            number=number, hospital=req.hospital, device=req.device, group=req.group, kind=req.kind,
            channel=req.channel, state=first_state, description=storable(req.description).strip(), tier=req.tier,
            reporter=req.reporter,
            reporter_openid=req.reporter_openid, client_request_id=req.client_request_id, using_db=conn)
        if req.group is not None and req.member_device_ids:
            await ticket.member_devices.add(*await _members(req.group, req.member_device_ids), using_db=conn)
        for a in req.attachments:
            await TicketAttachment.create(ticket=ticket, media=a.media, kind=a.kind, transcript=a.transcript,
                                          using_db=conn)
        transition = await TicketTransition.create(ticket=ticket, from_state=None, to_state=first_state,
                                                   actor=actor.user, actor_label=actor.name[:64], using_db=conn)
        if req.device and req.device.status == "in_service" and req.kind == "repair":
            await Device.filter(id=req.device.id).using_db(conn).update(status="under_repair")
        await audit.record("ticket.opened", "ticket", number, actor=actor.user, actor_label=actor.name,
                           changes={"state": first_state, "device": req.device.system_number if req.device else None,
                                    "group": req.group.id if req.group else None}, using_db=conn)
    await events.publish("ticket.opened", _event_data(ticket, None, transition))
    return ticket, True


async def _validate(req: TicketRequest) -> None:
    if not req.description.strip() and not req.attachments:
        raise Unprocessable("请描述故障，或附上照片、语音", code="empty_report")
    if len(req.description) > 2000:
        raise Unprocessable("故障描述太长（最多 2000 字）", code="description_too_long")
    if req.device is None and req.group is None:
        raise Unprocessable("请选择报修的设备", code="no_device")
    for target in (req.device, req.group):
        if target is not None and target.hospital_id != req.hospital.id:
            raise Unprocessable("设备不属于该医院", code="device_of_other_hospital")
    if req.device is not None and req.device.status == "retired":
        raise Unprocessable("该设备已停用，无法报修", code="device_retired")
    if req.group is not None and not req.group.active:
        raise Unprocessable("该设备组已停用", code="group_inactive")
    if req.kind not in ("repair", "preventive"):
        raise Unprocessable("未知的工单类型", code="bad_kind")
    if req.tier not in (None, "basic", "advanced"):
        raise Unprocessable("未知的故障级别", code="bad_tier")


async def _members(group: DeviceGroup, device_ids: Iterable[int]) -> list[Device]:
    wanted = set(device_ids)
    members = await Device.filter(group_id=group.id, id__in=list(wanted))
    if len(members) != len(wanted):
        raise Unprocessable("所选设备不属于该设备组", code="not_a_member")
    return members


async def get_ticket(number: str) -> Ticket:
    ticket = await Ticket.get_or_none(number=number)
    if ticket is None:
        raise NotFound("工单不存在", code="ticket_not_found")
    return ticket


async def change_state(ticket: Ticket, to_state: str, *, events: EventBus, actor: Actor, note: str = "",
                       agent: User | None = None, engineer: User | None = None) -> Ticket:
    """Move a ticket along the state machine; an illegal move is refused and changes nothing."""
    if to_state not in ALLOWED:
        raise Unprocessable("未知的工单状态", code="unknown_state")
    async with in_transaction() as conn:
        # Re-read under the transaction, so two agents acting at once cannot both move it from the same state.
        current = await Ticket.filter(id=ticket.id).using_db(conn).select_for_update().first()
        if current is None:
            raise NotFound("工单不存在", code="ticket_not_found")
        # Another engineer takes over a ticket already with an engineer: the state stays, the change is stored.
        reassign = (to_state == current.state == "with_engineer" and engineer is not None
                    and engineer.id != current.engineer_id)
        if current.state not in ALLOWED[to_state] and not reassign:
            raise Conflict(f"工单当前为“{STATE_LABELS[current.state]}”，不能改为“{STATE_LABELS[to_state]}”",
                           code="illegal_transition")
        changes: dict = {"state": to_state}
        if agent is not None:
            current.agent = agent
            changes["agent"] = agent.id
        if engineer is not None:
            if engineer.id != current.engineer_id:
                current.engineer_accepted_at = None  # the new engineer has not accepted yet
            current.engineer = engineer
            changes["engineer"] = engineer.id
        if to_state == "with_engineer" and current.engineer_id is None:
            raise Unprocessable("请指定工程师", code="engineer_required")
        from_state = current.state
        current.state = to_state
        if to_state == "done":
            current.done_at = _now()
        elif to_state == "closed":
            current.closed_at = _now()
        elif to_state == "reopened":
            current.done_at = current.closed_at = None
        await current.save(using_db=conn)
        transition = await TicketTransition.create(ticket=current, from_state=from_state, to_state=to_state,
                                                   actor=actor.user, actor_label=actor.name[:64], note=note[:2000],
                                                   action="reassign" if reassign else "", using_db=conn)
        if to_state == "closed":
            await _record_repair(current, conn)
        elif to_state == "reopened" and current.device_id:
            await Device.filter(id=current.device_id, status="in_service").using_db(conn).update(
                status="under_repair")
        await audit.record("ticket.state_changed", "ticket", current.number, actor=actor.user,
                           actor_label=actor.name, changes={"from": from_state, **changes, "note": note[:200]},
                           using_db=conn)
    data = _event_data(current, from_state, transition)
    await events.publish("ticket.state_changed", data)
    if to_state == "with_agent":
        await events.publish("ticket.handed_off", data)
    if engineer is not None:
        await events.publish("ticket.assigned", data)
    return current


async def _record_repair(ticket: Ticket, conn) -> None:
    """A closed repair counts in the device's (or group's) history and lowers its maintenance score."""
    if ticket.kind != "repair":
        return
    if ticket.device_id:
        device = await Device.filter(id=ticket.device_id).using_db(conn).select_for_update().first()
        if device:
            device.repair_count += 1
            device.maintenance_score = await maintenance_score(device.id, conn, closing=ticket)
            if device.status == "under_repair":
                still_open = await Ticket.filter(device_id=device.id, state__in=OPEN_STATES).exclude(
                    id=ticket.id).using_db(conn).exists()
                if not still_open:
                    device.status = "in_service"
            await device.save(using_db=conn)
    if ticket.group_id:
        await DeviceGroup.filter(id=ticket.group_id).using_db(conn).update(repair_count=F("repair_count") + 1)


async def maintenance_score(device_id: int, conn=None, *, closing: Ticket | None = None) -> int:
    """100 minus the repair burden of the last 12 months: 5 per basic repair, 10 per advanced (or unknown-tier)
    repair, 5 more for each that had to be reopened. Never below 0."""
    since = _now() - timedelta(days=365)
    tickets = await Ticket.filter(device_id=device_id, kind="repair", state="closed",
                                  closed_at__gte=since).using_db(conn).values("id", "tier")
    by_id = {t["id"]: t["tier"] for t in tickets}
    if closing is not None:
        by_id[closing.id] = closing.tier
    reopened = await TicketTransition.filter(ticket_id__in=list(by_id), to_state="reopened",
                                             action="").using_db(conn).count()
    burden = sum(5 if tier == "basic" else 10 for tier in by_id.values()) + 5 * reopened
    return max(0, 100 - burden)


async def close_stale_done(*, events: EventBus, now: datetime | None = None) -> list[str]:
    """Close tickets left in ``done`` for three days without the reporter's answer."""
    cutoff = (now or _now()) - AUTO_CLOSE_AFTER
    closed = []
    for ticket in await Ticket.filter(state="done", done_at__lte=cutoff):
        try:
            await change_state(ticket, "closed", events=events, actor=Actor(label="自动关闭"),
                               note="完成后 3 天未确认，自动关闭")
            closed.append(ticket.number)
        except Conflict:
            continue  # someone moved it meanwhile
    return closed


async def history(ticket: Ticket, *, actions: bool = False) -> list[TicketTransition]:
    """The ticket's changes of state; with ``actions`` also the work done without one (replies, notes, …)."""
    rows = TicketTransition.filter(ticket=ticket)
    if not actions:
        rows = rows.filter(action="")
    return await rows.order_by("created_at", "id")


def _event_data(ticket: Ticket, from_state: str | None, transition: TicketTransition) -> dict:
    return {"ticket_id": ticket.id, "number": ticket.number, "hospital_id": ticket.hospital_id,
            "device_id": ticket.device_id, "group_id": ticket.group_id, "kind": ticket.kind,
            "from": from_state, "state": ticket.state, "transition_id": transition.id}
