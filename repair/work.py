"""Agents' and engineers' work on a ticket: take it, reply to the reporter, resolve remotely, assign or reassign an
engineer, close, reopen; the engineer accepts, writes notes with photos and marks the job done; canned replies.

Who may act is checked here, whatever the transport: an agent only on tickets of the hospitals they serve
(``scope``, ``None`` = all, as the console computes it), an engineer only on tickets assigned to them, an
administrator everywhere. A refusal changes nothing.

Every action is audited and lands in the ticket's trail (``TicketTransition``): a change of state through
``repair.tickets.change_state``, anything else as a row with ``action`` set and the state kept. Replies and notes
are ``TicketMessage`` rows, announced after commit as ``ticket.message``. Text is stored as written (pages escape).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Sequence
from zoneinfo import ZoneInfo

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from core import audit
from core.errors import AppError, BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from core.events import EventBus
from core.media import store_upload
from core.models import Hospital, User
from core.settings import Settings
from core.textutil import storable
from repair import tickets
from repair.messaging import target_name, ticket_link
from repair.models import CannedReply, Ticket, TicketAttachment, TicketMessage, TicketTransition
from repair.reporting import MAX_PHOTOS, Upload, _discard
from repair.tickets import STATE_LABELS, Actor, NewAttachment

log = logging.getLogger(__name__)

AGENT_ROLES = ("agent", "admin")
REPLY_MAX = 600  # a customer-service text message holds 2048 bytes: 600 Chinese characters stay within it
NOTE_MAX = 2000
ACTION_LABELS = {
    "take": "客服接手", "reply": "回复报修人", "note": "工作记录", "accept": "工程师接单", "reassign": "改派工程师",
    "save_to_kb": "回复存入知识库",
}
VIA = ("custom", "template")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- who may do what -------------------------------------------------------------------------------------------------
def may_see(ticket: Ticket, user: User, scope: set[int] | None) -> bool:
    if user.role == "admin":
        return True
    if user.role == "engineer":
        return ticket.engineer_id == user.id
    if user.role == "agent":
        return scope is None or ticket.hospital_id in scope
    return False


def check_view(ticket: Ticket, user: User, scope: set[int] | None) -> None:
    if may_see(ticket, user, scope):
        return
    if user.role == "engineer":
        raise Forbidden("该工单未指派给您", code="not_your_ticket")
    if user.role == "agent":
        raise Forbidden("您无权查看其他医院的工单", code="other_hospital")
    raise Forbidden("当前身份无权查看工单", code="role")


def _require_agent(ticket: Ticket, user: User, scope: set[int] | None) -> None:
    if user.role not in AGENT_ROLES:
        raise Forbidden("只有客服或管理员可以进行此操作", code="role")
    check_view(ticket, user, scope)


def _require_engineer(ticket: Ticket, user: User) -> None:
    if user.role != "engineer" or ticket.engineer_id != user.id:
        raise Forbidden("该工单未指派给您", code="not_your_ticket")


def _not_closed(ticket: Ticket) -> None:
    if ticket.state == "closed":
        raise Conflict("工单已关闭，如需继续处理请先重新打开", code="ticket_closed")


async def ticket_for(number: str, user: User, scope: set[int] | None) -> Ticket:
    """The ticket ``number`` if ``user`` may see it: 404 when there is none, 403 when it is not theirs to see."""
    ticket = await tickets.get_ticket(number)
    check_view(ticket, user, scope)
    return ticket


def allowed_actions(ticket: Ticket, user: User, scope: set[int] | None) -> list[str]:
    """What the console or the engineer's page offers this user on this ticket now."""
    state = ticket.state
    if not may_see(ticket, user, scope):
        return []
    if user.role == "engineer":
        if state != "with_engineer":
            return ["note"] if state == "done" else []
        return (["accept"] if ticket.engineer_accepted_at is None else []) + ["note", "done"]
    acts = []
    if state in tickets.ALLOWED["with_agent"] or (state in ("with_agent", "remote", "with_engineer")
                                                  and ticket.agent_id != user.id):
        acts.append("take")
    if state != "closed":
        acts += ["reply", "save_to_kb"]
    if state in ("with_agent", "remote", "with_engineer"):
        acts.append("resolve")
    if state in ("with_agent", "remote", "reopened", "with_engineer"):
        acts.append("assign")
    if state in tickets.ALLOWED["closed"]:
        acts.append("close")
    if state in tickets.ALLOWED["reopened"]:
        acts.append("reopen")
    return acts


# -- the trail -------------------------------------------------------------------------------------------------------
async def _record_action(ticket: Ticket, user: User, action: str, note: str, conn, **changes) -> TicketTransition:
    """One action without a change of state, in the trail and the audit log (inside the caller's transaction)."""
    row = await TicketTransition.create(ticket_id=ticket.id, from_state=ticket.state, to_state=ticket.state,
                                        actor=user, actor_label=user.label()[:64], note=note[:2000], action=action,
                                        using_db=conn)
    await audit.record(f"ticket.{action}", "ticket", ticket.number, actor=user,
                       changes={"state": ticket.state, **changes, "note": note[:200]}, using_db=conn)
    return row


async def record_action(ticket: Ticket, user: User, action: str, note: str = "", **changes) -> TicketTransition:
    """An action done elsewhere (a reply saved to the knowledge base) entered in the ticket's trail."""
    async with in_transaction() as conn:
        return await _record_action(ticket, user, action, note, conn, **changes)


async def _locked(ticket: Ticket, conn) -> Ticket:
    current = await Ticket.filter(id=ticket.id).using_db(conn).select_for_update().first()
    if current is None:
        raise NotFound("工单不存在", code="ticket_not_found")
    return current


async def _announce(events: EventBus, ticket: Ticket, message: TicketMessage) -> None:
    await events.publish("ticket.message", {
        "ticket_id": ticket.id, "number": ticket.number, "hospital_id": ticket.hospital_id,
        "message_id": message.id, "author_role": message.author_role, "kind": message.kind})


def _clean(text: str | None, limit: int, what: str, *, required: bool) -> str:
    text = storable(text or "").strip()
    if required and not text:
        raise Unprocessable(f"{what}不能为空", code="empty_text")
    if len(text) > limit:
        raise Unprocessable(f"{what}太长（最多 {limit} 字）", code="text_too_long")
    return text


# -- agents ----------------------------------------------------------------------------------------------------------
async def take(number: str, user: User, scope: set[int] | None, *, events: EventBus) -> Ticket:
    """The agent takes the ticket: a waiting one moves to ``with_agent``; one being handled by another agent
    becomes theirs (state kept)."""
    ticket = await tickets.get_ticket(number)
    _require_agent(ticket, user, scope)
    if ticket.state in tickets.ALLOWED["with_agent"]:
        return await tickets.change_state(ticket, "with_agent", events=events, actor=Actor(user=user),
                                          agent=user, note="客服接手")
    if ticket.state not in ("with_agent", "remote", "with_engineer"):
        raise Conflict(f"工单当前为“{STATE_LABELS[ticket.state]}”，无需接手", code="illegal_transition")
    async with in_transaction() as conn:
        current = await _locked(ticket, conn)
        if current.agent_id == user.id:
            return current  # already theirs: nothing to store
        previous = current.agent_id
        current.agent = user
        await current.save(using_db=conn)
        row = await _record_action(current, user, "take", "客服接手", conn, agent=user.id, previous_agent=previous)
    await events.publish("ticket.assigned", {
        "ticket_id": current.id, "number": current.number, "hospital_id": current.hospital_id,
        "device_id": current.device_id, "group_id": current.group_id, "kind": current.kind,
        "from": current.state, "state": current.state, "transition_id": row.id})
    return current


async def reply(number: str, user: User, scope: set[int] | None, *, text: str, via: str, settings: Settings,
                wechat, events: EventBus) -> TicketMessage:
    """A message to the reporter over WeChat: a customer-service message (``custom``: only within WeChat's 48 h
    after the reporter last wrote) or a template message linking to the ticket page (``template``).

    The message is stored first; a failed send keeps it with ``delivery = failed`` and the reason, so the agent can
    try the other way or call."""
    if via not in VIA:
        raise BadRequest("via 须为 custom 或 template", code="invalid_field")
    text = _clean(text, REPLY_MAX, "回复内容", required=True)
    ticket = await tickets.get_ticket(number)
    _require_agent(ticket, user, scope)
    _not_closed(ticket)
    async with in_transaction() as conn:
        current = await _locked(ticket, conn)
        _not_closed(current)
        message = await TicketMessage.create(ticket_id=current.id, author=user, author_label=user.label()[:64],
                                             author_role=user.role, kind="reply", text=text, via=via,
                                             delivery="pending", using_db=conn)
        await _record_action(current, user, "reply", text, conn, message=message.id, via=via)
    await _announce(events, current, message)
    await _deliver(settings, wechat, current, message)
    return message


async def _deliver(settings: Settings, wechat, ticket: Ticket, message: TicketMessage) -> None:
    await ticket.fetch_related("reporter", "device", "group")
    openid = (ticket.reporter.openid if ticket.reporter else None) or ticket.reporter_openid
    error = ""
    if not openid:
        error = "报修人没有微信身份（未登录报修），无法通过微信发送，请按报修描述中的电话联系"
    elif message.via == "template" and not settings.wechat_template_ticket:
        error = "未配置工单模板消息（WECHAT_TEMPLATE_TICKET），请改用客服消息"
    else:
        try:
            if message.via == "custom":
                await wechat.send_text(openid, f"关于您的报修（工单 {ticket.number}）：\n{message.text}\n"
                                               f"查看工单：{ticket_link(settings, ticket.number)}")
            else:
                await wechat.send_template(openid, settings.wechat_template_ticket, {
                    "first": "客服回复了您的报修：", "keyword1": ticket.number, "keyword2": target_name(ticket),
                    "keyword3": STATE_LABELS.get(ticket.state, ticket.state),
                    "keyword4": message.created_at.astimezone(ZoneInfo(settings.timezone)).strftime(
                        "%Y-%m-%d %H:%M"),
                    "remark": message.text[:200]}, url=ticket_link(settings, ticket.number))
        except AppError as exc:
            error = exc.message
            if getattr(exc, "details", None) and exc.details.get("errcode") == 45015:
                error = "报修人 48 小时内没有给公众号发消息，客服消息发不出去，请改用模板消息"
            log.warning("reply on %s by %s not delivered: %s", ticket.number, message.via, exc.message)
    message.delivery, message.delivery_error = ("failed", error[:500]) if error else ("sent", "")
    await message.save(update_fields=["delivery", "delivery_error"])


async def resolve(number: str, user: User, scope: set[int] | None, *, note: str, events: EventBus) -> Ticket:
    """Solved without (further) work on site: ``with_agent`` → ``remote`` → ``done``; from ``remote`` or
    ``with_engineer`` straight to ``done``. The reporter then confirms (or the ticket closes itself in 3 days)."""
    note = _clean(note, NOTE_MAX, "处理说明", required=False) or "客服远程处理完成"
    ticket = await tickets.get_ticket(number)
    _require_agent(ticket, user, scope)
    actor = Actor(user=user)
    agent = user if ticket.agent_id is None else None
    if ticket.state == "with_agent":
        ticket = await tickets.change_state(ticket, "remote", events=events, actor=actor, agent=agent,
                                            note="客服远程处理")
        agent = None
    elif ticket.state not in ("remote", "with_engineer"):
        raise Conflict(f"工单当前为“{STATE_LABELS[ticket.state]}”，不能标记为已解决", code="illegal_transition")
    return await tickets.change_state(ticket, "done", events=events, actor=actor, agent=agent, note=note)


async def assign(number: str, user: User, scope: set[int] | None, *, engineer_id: int, note: str,
                 events: EventBus) -> Ticket:
    """Send an engineer (or another engineer, while one has it); the engineer gets a template message linking to
    their job page (``repair.messaging``)."""
    note = _clean(note, NOTE_MAX, "派工说明", required=False)
    ticket = await tickets.get_ticket(number)
    _require_agent(ticket, user, scope)
    engineer = await User.get_or_none(id=engineer_id)
    if engineer is None or engineer.role != "engineer" or not engineer.active:
        raise Unprocessable("请选择有效的工程师", code="not_an_engineer")
    if not await _serves(engineer, ticket.hospital_id):
        raise Unprocessable("该工程师不负责这家医院", code="engineer_other_hospital")
    if ticket.state == "with_engineer" and ticket.engineer_id == engineer.id:
        raise Conflict("工单已指派给该工程师", code="already_assigned")
    return await tickets.change_state(ticket, "with_engineer", events=events, actor=Actor(user=user),
                                      agent=user if ticket.agent_id is None else None, engineer=engineer,
                                      note=note or f"指派工程师：{engineer.label()}")


async def close(number: str, user: User, scope: set[int] | None, *, note: str, events: EventBus) -> Ticket:
    note = _clean(note, NOTE_MAX, "关闭说明", required=False) or "客服关闭工单"
    ticket = await tickets.get_ticket(number)
    _require_agent(ticket, user, scope)
    return await tickets.change_state(ticket, "closed", events=events, actor=Actor(user=user), note=note)


async def reopen(number: str, user: User, scope: set[int] | None, *, note: str, events: EventBus) -> Ticket:
    note = _clean(note, NOTE_MAX, "重开原因", required=False) or "客服重新打开工单"
    ticket = await tickets.get_ticket(number)
    _require_agent(ticket, user, scope)
    return await tickets.change_state(ticket, "reopened", events=events, actor=Actor(user=user), note=note)


# -- engineers -------------------------------------------------------------------------------------------------------
async def _serves(engineer: User, hospital_id: int) -> bool:
    return engineer.hospital_id == hospital_id or \
        await engineer.served_hospitals.filter(id=hospital_id).exists()


async def engineers_for(user: User, scope: set[int] | None, hospital_id: int | None = None) -> list[User]:
    """Active engineers an agent may send: of ``hospital_id`` (which must be in scope), or of any hospital in
    scope."""
    if user.role not in AGENT_ROLES:
        raise Forbidden("只有客服或管理员可以指派工程师", code="role")
    if hospital_id is not None:
        if scope is not None and hospital_id not in scope:
            raise Forbidden("您无权查看其他医院的工程师", code="other_hospital")
        hospitals = [hospital_id]
    else:
        hospitals = None if scope is None else list(scope)
    query = User.filter(role="engineer", active=True)
    if hospitals is not None:
        query = query.filter(Q(hospital_id__in=hospitals) | Q(served_hospitals__id__in=hospitals))
    return list(await query.distinct().order_by("name", "id"))


async def accept(number: str, user: User, *, events: EventBus) -> Ticket:
    """The assigned engineer takes the job (once; accepting again changes nothing)."""
    ticket = await tickets.get_ticket(number)
    _require_engineer(ticket, user)
    async with in_transaction() as conn:
        current = await _locked(ticket, conn)
        _require_engineer(current, user)
        if current.state != "with_engineer":
            raise Conflict(f"工单当前为“{STATE_LABELS[current.state]}”，不能接单", code="illegal_transition")
        if current.engineer_accepted_at is not None:
            return current
        current.engineer_accepted_at = _now()
        await current.save(using_db=conn)
        message = await TicketMessage.create(ticket_id=current.id, author=user, author_label=user.label()[:64],
                                             author_role="engineer", kind="accept", text="工程师已接单",
                                             using_db=conn)
        await _record_action(current, user, "accept", "工程师已接单", conn, message=message.id)
    await _announce(events, current, message)
    return current


async def add_note(number: str, user: User, *, text: str, photos: Sequence[Upload] = (), settings: Settings,
                   events: EventBus) -> TicketMessage:
    """The engineer's working note, with up to 6 photos (stored through ``core.media``; a refused photo leaves
    nothing behind)."""
    text = _clean(text, NOTE_MAX, "记录内容", required=not photos)
    if len(photos) > MAX_PHOTOS:
        raise Unprocessable(f"最多上传 {MAX_PHOTOS} 张照片", code="too_many_photos")
    ticket = await tickets.get_ticket(number)
    _require_engineer(ticket, user)
    if ticket.state not in ("with_engineer", "done"):
        raise Conflict(f"工单当前为“{STATE_LABELS[ticket.state]}”，不能添加记录", code="illegal_transition")
    stored: list[NewAttachment] = []
    try:
        for photo in photos:
            media = await store_upload(settings, photo.data, kind="image", original_name=photo.name,
                                       uploaded_by=user)
            stored.append(NewAttachment(media=media, kind="photo"))
        async with in_transaction() as conn:
            current = await _locked(ticket, conn)
            _require_engineer(current, user)
            message = await TicketMessage.create(ticket_id=current.id, author=user, author_label=user.label()[:64],
                                                 author_role="engineer", kind="note", text=text, using_db=conn)
            for a in stored:
                await TicketAttachment.create(ticket_id=current.id, media=a.media, kind="photo", message=message,
                                              using_db=conn)
            await _record_action(current, user, "note", text or f"上传照片 {len(stored)} 张", conn,
                                 message=message.id, photos=len(stored))
    except Exception:
        await _discard(settings, stored)
        raise
    await _announce(events, current, message)
    return message


async def mark_done(number: str, user: User, *, note: str, photos: Sequence[Upload] = (), settings: Settings,
                    events: EventBus) -> Ticket:
    """The engineer finished: an optional closing note (with photos), then ``done``; the reporter and the agent are
    told by template message (``repair.messaging``) and the reporter confirms."""
    note = _clean(note, NOTE_MAX, "完工说明", required=False)
    ticket = await tickets.get_ticket(number)
    _require_engineer(ticket, user)
    if ticket.state != "with_engineer":
        raise Conflict(f"工单当前为“{STATE_LABELS[ticket.state]}”，不能标记完工", code="illegal_transition")
    if note or photos:
        await add_note(number, user, text=note, photos=photos, settings=settings, events=events)
    if ticket.engineer_accepted_at is None:
        await Ticket.filter(id=ticket.id, engineer_accepted_at=None).update(engineer_accepted_at=_now())
    return await tickets.change_state(ticket, "done", events=events, actor=Actor(user=user),
                                      note=note or "工程师已完成维修")


# -- canned replies --------------------------------------------------------------------------------------------------
async def canned_replies(user: User, scope: set[int] | None, hospital_id: int | None = None) -> list[CannedReply]:
    """Replies for every hospital plus those of the hospitals in scope (or of ``hospital_id``)."""
    if user.role not in AGENT_ROLES:
        raise Forbidden("只有客服或管理员可以使用常用回复", code="role")
    if hospital_id is not None and scope is not None and hospital_id not in scope:
        raise Forbidden("您无权查看其他医院的常用回复", code="other_hospital")
    query = CannedReply.filter(active=True)
    hospitals = [hospital_id] if hospital_id is not None else (None if scope is None else list(scope))
    if hospitals is not None:
        query = query.filter(Q(hospital_id=None) | Q(hospital_id__in=hospitals))
    return list(await query.order_by("title", "id"))


async def add_canned_reply(user: User, scope: set[int] | None, *, title: str, text: str,
                           hospital_id: int | None) -> CannedReply:
    """An agent adds a reply for one of their hospitals; only an administrator adds one for every hospital."""
    if user.role not in AGENT_ROLES:
        raise Forbidden("只有客服或管理员可以添加常用回复", code="role")
    title = _clean(title, 64, "标题", required=True)
    text = _clean(text, REPLY_MAX, "回复内容", required=True)
    if hospital_id is None and user.role != "admin":
        raise Forbidden("只有管理员可以添加适用于所有医院的常用回复，请选择医院", code="role")
    if hospital_id is not None:
        if scope is not None and hospital_id not in scope:
            raise Forbidden("您无权为其他医院添加常用回复", code="other_hospital")
        if not await Hospital.exists(id=hospital_id):
            raise Unprocessable("医院不存在", code="hospital_not_found")
    async with in_transaction() as conn:
        canned = await CannedReply.create(hospital_id=hospital_id, title=title, text=text, created_by=user,
                                          using_db=conn)
        await audit.record("canned_reply.created", "canned_reply", canned.id, actor=user,
                           changes={"title": title, "hospital": hospital_id}, using_db=conn)
    return canned


async def remove_canned_reply(user: User, scope: set[int] | None, reply_id: int) -> None:
    canned = await CannedReply.get_or_none(id=reply_id, active=True)
    if canned is None:
        raise NotFound("常用回复不存在", code="canned_reply_not_found")
    if user.role != "admin" and (user.role != "agent" or canned.hospital_id is None
                                 or (scope is not None and canned.hospital_id not in scope)):
        raise Forbidden("您无权删除该常用回复", code="role")
    async with in_transaction() as conn:
        await CannedReply.filter(id=canned.id).using_db(conn).update(active=False)
        await audit.record("canned_reply.removed", "canned_reply", canned.id, actor=user, using_db=conn)
