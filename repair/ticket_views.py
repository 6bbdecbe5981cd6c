"""What the console and the engineer's page show of tickets: the scoped list and one ticket with everything
around it (device card and history, attachments, the robot's attempt, messages, the trail, allowed actions).

Plain dicts of stored values; text is returned as stored and escaped by whoever renders it.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.expressions import Q

from core.errors import BadRequest
from core.models import User
from repair.devices import device_card
from repair.groups import group_card
from repair.models import TICKET_STATES, Ticket, TicketAttachment, TicketMessage
from repair.tickets import OPEN_STATES, STATE_LABELS, history
from repair.work import ACTION_LABELS, allowed_actions

PAGE_SIZE = 50
DEVICE_HISTORY = 10
_RELATED = ("hospital", "device", "group", "agent", "engineer")


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _person(user: User | None) -> dict | None:
    return {"id": user.id, "name": user.label()} if user else None


def ticket_item(t: Ticket) -> dict:
    """One row of the queue (``hospital``, ``device``, ``group``, ``agent``, ``engineer`` fetched)."""
    return {
        "id": t.id, "number": t.number, "state": t.state, "state_label": STATE_LABELS.get(t.state, t.state),
        "tier": t.tier, "kind": t.kind, "channel": t.channel,
        "hospital": {"id": t.hospital.id, "name": t.hospital.name},
        "device": {"id": t.device.id, "name": t.device.name, "system_number": t.device.system_number}
        if t.device else None,
        "group": {"id": t.group.id, "name": t.group.name} if t.group else None,
        "description": t.description, "created_at": _iso(t.created_at), "updated_at": _iso(t.updated_at),
        "agent": _person(t.agent), "engineer": _person(t.engineer),
        "engineer_accepted_at": _iso(t.engineer_accepted_at),
    }


def _states(value: str | None) -> list[str] | None:
    """``state=with_agent,remote`` or ``state=open``; unknown names are refused."""
    if not value:
        return None
    names = [s.strip() for s in value.split(",") if s.strip()]
    states: list[str] = []
    for name in names:
        if name == "open":
            states += OPEN_STATES
        elif name in TICKET_STATES:
            states.append(name)
        else:
            raise BadRequest(f"未知的工单状态：{name[:20]}", code="invalid_field")
    return states


async def list_tickets(user: User, scope: set[int] | None, *, state: str | None = None, tier: str | None = None,
                       hospital_id: int | None = None, q: str | None = None, mine: bool = False,
                       page: int = 1) -> tuple[list[dict], int]:
    """(items of the page, total): newest activity first; an agent sees their hospitals only, an engineer only
    the tickets assigned to them."""
    query = Ticket.all()
    if user.role == "engineer":
        query = query.filter(engineer_id=user.id)
    elif user.role == "agent":
        if scope is not None:
            if not scope:
                return [], 0  # an agent who serves no hospital yet
            query = query.filter(hospital_id__in=list(scope))
        if mine:
            query = query.filter(agent_id=user.id)
    elif user.role == "admin":
        if mine:
            query = query.filter(Q(agent_id=user.id) | Q(engineer_id=user.id))
    else:
        return [], 0
    if (states := _states(state)) is not None:
        query = query.filter(state__in=states)
    if tier:
        if tier not in ("basic", "advanced", "none"):
            raise BadRequest("tier 须为 basic、advanced 或 none", code="invalid_field")
        query = query.filter(tier=None) if tier == "none" else query.filter(tier=tier)
    if hospital_id is not None:
        query = query.filter(hospital_id=hospital_id)
    if q and (q := q.strip()[:64]):
        query = query.filter(Q(number__icontains=q) | Q(description__icontains=q) | Q(device__name__icontains=q)
                             | Q(device__system_number__icontains=q) | Q(device__nameplate_id__icontains=q)
                             | Q(group__name__icontains=q))
    if page < 1 or page > 10_000:
        raise BadRequest("page 须为正整数", code="invalid_field")
    total = await query.count()
    rows = await query.order_by("-updated_at", "-id").offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE) \
        .prefetch_related(*_RELATED)
    return [ticket_item(t) for t in rows], total


def attachment_item(a: TicketAttachment, media_prefix: str) -> dict:
    photo = a.kind == "photo"
    return {"id": a.id, "kind": a.kind, "media_id": a.media_id, "url": f"{media_prefix}/{a.media_id}",
            "thumb_url": f"{media_prefix}/{a.media_id}/thumb" if photo else None, "transcript": a.transcript,
            "from": "engineer" if a.message_id else "reporter", "message_id": a.message_id}


def message_item(m: TicketMessage) -> dict:
    return {"id": m.id, "kind": m.kind, "author": {"id": m.author_id, "name": m.author_label},
            "author_role": m.author_role, "text": m.text, "via": m.via, "delivery": m.delivery,
            "delivery_error": m.delivery_error, "created_at": _iso(m.created_at)}


async def ticket_view(ticket: Ticket, user: User, scope: set[int] | None, *,
                      media_prefix: str = "/console/media") -> dict:
    """Everything the ticket page shows; the caller has checked that ``user`` may see ``ticket``."""
    await ticket.fetch_related(*_RELATED, "reporter")
    view = ticket_item(ticket)
    reporter = ticket.reporter
    view["reporter"] = {"id": reporter.id, "name": reporter.label(), "phone": reporter.phone} if reporter else None
    view["reporter_reachable"] = bool((reporter and reporter.openid) or ticket.reporter_openid)
    view.update(robot_answer=ticket.robot_answer, robot_confidence=ticket.robot_confidence,
                done_at=_iso(ticket.done_at), closed_at=_iso(ticket.closed_at))
    view["device"] = await device_card(ticket.device) if ticket.device else None
    view["group"] = await group_card(ticket.group) if ticket.group else None
    view["members"] = [{"id": d.id, "name": d.name, "system_number": d.system_number}
                       for d in await ticket.member_devices.all().order_by("group_position", "id")] \
        if ticket.group_id else []
    earlier = Ticket.filter(device_id=ticket.device_id) if ticket.device_id else \
        Ticket.filter(group_id=ticket.group_id)
    view["device_history"] = [
        {"number": t.number, "state": t.state, "state_label": STATE_LABELS.get(t.state, t.state), "tier": t.tier,
         "description": t.description[:200], "created_at": _iso(t.created_at), "closed_at": _iso(t.closed_at)}
        for t in await earlier.exclude(id=ticket.id).order_by("-created_at").limit(DEVICE_HISTORY)]
    attachments = await TicketAttachment.filter(ticket_id=ticket.id).order_by("id")
    view["attachments"] = [attachment_item(a, media_prefix) for a in attachments]
    photos_of: dict[int, list[int]] = {}
    for a in attachments:
        if a.message_id:
            photos_of.setdefault(a.message_id, []).append(a.id)
    view["messages"] = [{**message_item(m), "attachments": photos_of.get(m.id, [])}
                        for m in await TicketMessage.filter(ticket_id=ticket.id).order_by("created_at", "id")]
    view["transitions"] = [
        {"id": t.id, "from": t.from_state, "to": t.to_state, "action": t.action or None,
         "label": ACTION_LABELS.get(t.action, t.action) if t.action else STATE_LABELS.get(t.to_state, t.to_state),
         "state_label": STATE_LABELS.get(t.to_state, t.to_state), "actor": t.actor_label, "actor_id": t.actor_id,
         "note": t.note, "created_at": _iso(t.created_at)}
        for t in await history(ticket, actions=True)]
    view["actions"] = allowed_actions(ticket, user, scope)
    return view


async def engineer_jobs(engineer: User) -> list[dict]:
    """An engineer's own tickets: those to work on first, then finished ones, newest activity first."""
    rows = await Ticket.filter(engineer_id=engineer.id).order_by("-updated_at", "-id").limit(200) \
        .prefetch_related(*_RELATED)
    order = {"with_engineer": 0, "reopened": 1, "done": 2}
    return [ticket_item(t) for t in sorted(rows, key=lambda t: order.get(t.state, 3))]
