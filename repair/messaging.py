"""Template messages for ticket transitions: who is told what, sent once per person and transition.

A listener of ``ticket.opened`` / ``ticket.state_changed`` (one worker per event). Each message owed is a
``Notification`` row first, so a failure to send never loses the transition: a passing failure (network, WeChat
busy) is retried by the event bus, a final one (user unfollowed, bad template) is kept as ``failed`` with the reason.
Each send is claimed on its row first (``core.delivery``), so an event delivered twice at once sends once.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo
from datetime import datetime, timezone

from core import delivery
from core.errors import AppError, UpstreamError
from core.events import Event, EventBus
from core.models import User
from core.settings import Settings
from repair.models import Notification, Ticket, TicketTransition
from repair.tickets import STATE_LABELS

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3

# state -> (role, first line) for each person concerned
MESSAGES: dict[str, list[tuple[str, str]]] = {
    "new": [("reporter", "已收到您的报修，客服将尽快处理。"), ("owner", "您负责的设备有新的报修。")],
    "with_agent": [("reporter", "您的报修已转人工客服处理。"), ("agent", "有新的工单转给您。")],
    "remote": [("reporter", "客服正在远程协助处理您的报修。")],
    "with_engineer": [("engineer", "有新的维修工单派给您，请尽快接单。"),
                      ("reporter", "已安排工程师上门维修。"), ("owner", "您负责的设备已安排工程师维修。")],
    "done": [("reporter", "维修已完成，请确认设备是否正常。"), ("agent", "工单已完成，等待报修人确认。")],
    "closed": [("reporter", "工单已关闭，感谢您的反馈。"), ("owner", "您负责的设备维修工单已关闭。")],
    "reopened": [("agent", "报修人重新打开了工单。"), ("engineer", "您处理过的工单被重新打开。")],
}


def ticket_link(settings: Settings, number: str, role: str = "reporter") -> str:
    """The page a message links to: the engineer's job page for the engineer, the ticket page for the others."""
    page = "/h5/engineer/tickets/" if role == "engineer" else "/h5/tickets/"
    return f"{settings.public_base_url.rstrip('/')}{page}{number}"


def target_name(ticket: Ticket) -> str:
    """The device (or group) of a ticket whose ``device`` and ``group`` are fetched, as messages name it."""
    if ticket.device_id and ticket.device:
        return f"{ticket.device.name}（{ticket.device.system_number}）"
    return ticket.group.name if ticket.group_id and ticket.group else ""


class TicketNotifier:
    def __init__(self, settings: Settings, wechat):
        self.settings = settings
        self.wechat = wechat

    def register(self, bus: EventBus) -> None:
        bus.on("ticket.opened", "ticket.state_changed", once=True, group="repair.notify-ticket")(self.on_ticket)

    async def on_ticket(self, event: Event) -> None:
        ticket = await Ticket.get_or_none(id=event.data["ticket_id"]).prefetch_related(
            "device", "group", "reporter", "agent", "engineer")
        transition = await TicketTransition.get_or_none(id=event.data.get("transition_id"))
        if ticket is None or transition is None:
            return
        owed = await self._owed(ticket, transition)
        retry_later = False
        for note in owed:
            if note.status == "pending" and not await self._send(ticket, transition, note):
                retry_later = True
        if retry_later:
            raise UpstreamError("template messages left to retry")  # the bus delivers this event again later

    async def _owed(self, ticket: Ticket, transition: TicketTransition) -> list[Notification]:
        people = await self._people(ticket)
        owed = []
        messages = MESSAGES.get(transition.to_state, ())
        if transition.action == "reassign":  # only the engineer taking over needs to hear of it
            messages = [(role, first) for role, first in messages if role == "engineer"]
        for role, _first in messages:
            for openid, user in people.get(role, ()):
                own_action = transition.actor_id and user and user.id == transition.actor_id
                if not openid or (own_action and transition.to_state != "new"):
                    continue  # nobody is told about their own action, but a reporter gets the receipt
                note, _ = await Notification.get_or_create(
                    transition=transition, openid=openid,
                    defaults={"ticket": ticket, "user": user, "role": role, "template": transition.to_state})
                owed.append(note)
        return owed

    async def _people(self, ticket: Ticket) -> dict[str, list[tuple[str, User | None]]]:
        reporter = ticket.reporter
        owner = None
        if ticket.device_id:
            owner = await User.get_or_none(owned_devices__id=ticket.device_id)
        elif ticket.group_id:
            owner = await User.get_or_none(owned_groups__id=ticket.group_id)
        return {
            "reporter": [((reporter.openid if reporter else None) or ticket.reporter_openid, reporter)],
            "agent": [(ticket.agent.openid, ticket.agent)] if ticket.agent else [],
            "engineer": [(ticket.engineer.openid, ticket.engineer)] if ticket.engineer else [],
            "owner": [(owner.openid, owner)] if owner and (not reporter or owner.id != reporter.id) else [],
        }

    async def _send(self, ticket: Ticket, transition: TicketTransition, note: Notification) -> bool:
        """True when settled (sent or failed for good); False when it should be tried again."""
        template_id = self.settings.wechat_template_ticket
        if not template_id:
            note.status, note.last_error = "failed", "未配置工单模板消息（WECHAT_TEMPLATE_TICKET）"
            await note.save()
            return True
        # Claimed first: of two deliveries of one event at once, one sends (core.delivery).
        claimed = await delivery.claim(Notification, note.id)
        await note.refresh_from_db()
        if not claimed:
            return note.status != "pending"  # the other delivery settles it; the bus comes back if it did not
        try:
            note.wechat_msgid = await self.wechat.send_template(
                note.openid, template_id, self._data(ticket, transition, note.role),
                url=ticket_link(self.settings, ticket.number, note.role))
            note.status, note.sent_at, note.last_error = "sent", datetime.now(timezone.utc), ""
            note.sending_until = None
            await note.save()
            return True
        except AppError as exc:
            passing = isinstance(exc, UpstreamError) and exc.status >= 500 and note.attempts < MAX_ATTEMPTS
            note.status = "pending" if passing else "failed"
            note.last_error = f"{exc.code}: {exc.message}"[:500]
            note.sending_until = None
            await note.save()
            log.warning("template message for %s to %s %s: %s", ticket.number, note.role,
                        "will be retried" if passing else "failed", exc.message)
            return not passing

    def _data(self, ticket: Ticket, transition: TicketTransition, role: str) -> dict:
        tz = ZoneInfo(self.settings.timezone)
        first = dict(MESSAGES.get(transition.to_state, ())).get(role, "工单状态已更新。")
        return {
            "first": first,
            "keyword1": ticket.number,
            "keyword2": target_name(ticket),
            "keyword3": STATE_LABELS.get(transition.to_state, transition.to_state),
            "keyword4": transition.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "remark": (transition.note or "点击查看工单详情")[:100],
        }
