"""Reports from the H5 repair page: the uploads are kept with the ticket or not at all, and what the reporter's
ticket page shows.

``core.media.store_upload`` writes each file as it checks it, so a report whose third file is refused (or whose
ticket is refused) would leave the first two behind: ``submit_report`` removes what it stored for a report that
did not become a ticket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from tortoise.exceptions import IntegrityError

from core.errors import BadRequest, Unprocessable
from core.events import EventBus
from core.media import media_path, store_upload
from core.models import MediaFile, User
from core.settings import Settings
from repair.models import Device, DeviceGroup, Ticket, TicketAttachment, TicketTransition
from repair.tickets import Actor, NewAttachment, TicketRequest, history, open_ticket

MAX_PHOTOS = 6
MAX_VOICES = 2
_MEDIA_KIND = {"photo": "image", "voice": "audio"}
MOBILE = re.compile(r"^1[3-9]\d{9}$")
NAME_MAX = 32


@dataclass(frozen=True)
class Upload:
    data: bytes
    kind: str  # photo | voice
    name: str = ""


def contact_line(name: str | None, phone: str | None) -> str:
    """The first line of an anonymous report: who to call back. The phone must be a Chinese mobile number."""
    phone = "".join((phone or "").split())
    if phone.startswith("+86"):
        phone = phone[3:]
    if not MOBILE.match(phone):
        raise BadRequest("请填写正确的手机号（11 位）", code="phone_invalid")
    name = " ".join((name or "").split())
    if len(name) > NAME_MAX:
        raise BadRequest(f"称呼不能超过 {NAME_MAX} 个字", code="name_too_long")
    return f"报修人：{name}，电话 {phone}" if name else f"报修人电话：{phone}"


async def submit_report(settings: Settings, events: EventBus, target: Device | DeviceGroup, *, description: str,
                        uploads: Sequence[Upload] = (), member_ids: Iterable[int] = (), reporter: User | None = None,
                        reporter_openid: str | None = None, client_request_id: str | None = None,
                        contact: str | None = None, channel: str = "h5",
                        tier: str | None = None) -> tuple[Ticket, bool]:
    """Open a ticket for ``target`` with its photos and voice clips; (ticket, created).

    ``contact`` (from ``contact_line``) heads the description of a reporter who is not signed in. A repeated
    ``client_request_id`` returns the first ticket and stores nothing; a refused upload or ticket leaves no media
    behind.
    """
    if not description.strip() and not uploads:
        # Checked before the contact line is added: a phone number alone is no report.
        raise Unprocessable("请描述故障，或附上照片、语音", code="empty_report")
    if contact:
        description = f"{contact}\n{description.strip()}".strip()
    photos = sum(1 for u in uploads if u.kind == "photo")
    voices = sum(1 for u in uploads if u.kind == "voice")
    if photos > MAX_PHOTOS:
        raise Unprocessable(f"最多上传 {MAX_PHOTOS} 张照片", code="too_many_photos")
    if voices > MAX_VOICES:
        raise Unprocessable(f"最多上传 {MAX_VOICES} 段语音", code="too_many_voices")
    if any(u.kind not in _MEDIA_KIND for u in uploads):
        raise Unprocessable("不支持的附件类型", code="bad_attachment_kind")

    def request(attachments: list[NewAttachment]) -> TicketRequest:
        is_group = isinstance(target, DeviceGroup)
        return TicketRequest(hospital=target.hospital, description=description, channel=channel,
                             device=None if is_group else target, group=target if is_group else None,
                             member_device_ids=list(member_ids) if is_group else (), reporter=reporter,
                             reporter_openid=reporter_openid, client_request_id=client_request_id,
                             attachments=attachments, tier=tier)

    # A repeat never stores its uploads again: open_ticket answers it with the first ticket before anything else.
    if client_request_id and await Ticket.exists(client_request_id=client_request_id):
        return await open_ticket(request([]), events=events, actor=_actor(reporter))

    stored: list[NewAttachment] = []
    try:
        for upload in uploads:
            media = await store_upload(settings, upload.data, kind=_MEDIA_KIND[upload.kind],
                                       original_name=upload.name, uploaded_by=reporter)
            stored.append(NewAttachment(media=media, kind=upload.kind))
        ticket, created = await open_ticket(request(stored), events=events, actor=_actor(reporter))
    except IntegrityError:
        # The same submission arrived twice at once and the other one stored the ticket first.
        await _discard(settings, stored)
        if client_request_id and await Ticket.exists(client_request_id=client_request_id):
            return await open_ticket(request([]), events=events, actor=_actor(reporter))
        raise
    except Exception:
        await _discard(settings, stored)
        raise
    if not created:  # the first of two simultaneous repeats stored the ticket while this one stored its uploads
        await _discard(settings, stored)
    return ticket, created


def _actor(reporter: User | None) -> Actor:
    return Actor(user=reporter) if reporter else Actor(label="报修人")


async def _discard(settings: Settings, attachments: list[NewAttachment]) -> None:
    """Remove the media rows of a report that was not stored, and their bytes when no other row shares them
    (files are content-addressed: the same photo sent earlier by someone else keeps its file)."""
    for attachment in attachments:
        media = attachment.media
        await media.delete()
        for thumbnail in (False, True):
            if thumbnail and not media.thumbnail_path:
                continue
            column = "thumbnail_path" if thumbnail else "path"
            if not await MediaFile.filter(**{column: getattr(media, column)}).exists():
                media_path(settings, media, thumbnail=thumbnail).unlink(missing_ok=True)


# -- the reporter's ticket page --------------------------------------------------------------------------------------
@dataclass
class TicketDetails:
    ticket: Ticket
    device: Device | None
    group: DeviceGroup | None
    members: list[Device]  # for a group ticket: the devices the reporter pointed at
    photos: list[TicketAttachment] = field(default_factory=list)
    voices: list[TicketAttachment] = field(default_factory=list)
    history: list[TicketTransition] = field(default_factory=list)


async def ticket_details(ticket: Ticket) -> TicketDetails:
    await ticket.fetch_related("hospital")
    device = await Device.get_or_none(id=ticket.device_id).prefetch_related("department") \
        if ticket.device_id else None
    group = await DeviceGroup.get_or_none(id=ticket.group_id).prefetch_related("department") \
        if ticket.group_id else None
    members = await ticket.member_devices.all().order_by("group_position", "id") if group else []
    attachments = await TicketAttachment.filter(ticket_id=ticket.id).order_by("id").prefetch_related("media")
    return TicketDetails(ticket=ticket, device=device, group=group, members=list(members),
                         photos=[a for a in attachments if a.kind == "photo"],
                         voices=[a for a in attachments if a.kind == "voice"], history=await history(ticket))


def is_reporter(ticket: Ticket, user: User | None) -> bool:
    return user is not None and (ticket.reporter_id == user.id
                                 or bool(user.openid and ticket.reporter_openid == user.openid))


def may_view(ticket: Ticket, user: User | None) -> bool:
    """The reporter, the ticket's agent and engineer, and administrators see a ticket's page and its media."""
    if user is None:
        return False
    return is_reporter(ticket, user) or user.id in (ticket.agent_id, ticket.engineer_id) or user.role == "admin"


async def media_tickets(media_id: int) -> tuple[MediaFile | None, list[Ticket]]:
    """A media file and the tickets it is attached to (whoever may see one of them may see the file)."""
    media = await MediaFile.get_or_none(id=media_id)
    if media is None:
        return None, []
    ticket_ids = await TicketAttachment.filter(media_id=media_id).values_list("ticket_id", flat=True)
    return media, list(await Ticket.filter(id__in=list(ticket_ids)))
