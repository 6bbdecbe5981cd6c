""""My devices": a staff member claims devices or groups; the owner or an administrator approves."""

from __future__ import annotations

from datetime import datetime, timezone

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from core import audit
from core.errors import Conflict, Forbidden, NotFound, Unprocessable
from core.models import User
from repair.models import Device, DeviceClaim, DeviceGroup, Ticket


async def claim(user: User, *, device_id: int | None = None, group_id: int | None = None) -> DeviceClaim:
    """Ask for a device or group; an administrator's own claim, or one on something they own, is approved at once."""
    if (device_id is None) == (group_id is None):
        raise Unprocessable("请选择一台设备或一个设备组", code="claim_target")
    target = await (Device.get_or_none(id=device_id) if device_id else DeviceGroup.get_or_none(id=group_id))
    if target is None:
        raise NotFound("设备不存在", code="device_not_found")
    if user.role != "admin" and user.hospital_id != target.hospital_id:
        raise Forbidden("只能认领本院的设备", code="device_of_other_hospital")
    existing = await DeviceClaim.filter(user=user, device_id=device_id, group_id=group_id,
                                        state__in=("pending", "approved")).first()
    if existing:
        return existing
    automatic = user.role == "admin" or target.owner_id == user.id
    async with in_transaction() as conn:
        made = await DeviceClaim.create(user=user, device_id=device_id, group_id=group_id,
                                        state="approved" if automatic else "pending",
                                        decided_by=user if automatic else None,
                                        decided_at=datetime.now(timezone.utc) if automatic else None, using_db=conn)
        await audit.record("claim.requested", "device_claim", made.id, actor=user,
                           changes={"device": device_id, "group": group_id, "state": made.state}, using_db=conn)
    return made


async def decide(claim_id: int, decider: User, approve: bool) -> DeviceClaim:
    async with in_transaction() as conn:
        made = await DeviceClaim.filter(id=claim_id).using_db(conn).select_for_update().first()
        if made is None:
            raise NotFound("认领申请不存在", code="claim_not_found")
        target = await (Device.get(id=made.device_id).using_db(conn) if made.device_id
                        else DeviceGroup.get(id=made.group_id).using_db(conn))
        if decider.role != "admin" and target.owner_id != decider.id:
            raise Forbidden("只有设备负责人或管理员可以审批", code="not_owner")
        if made.state != "pending":
            raise Conflict("该申请已处理", code="claim_decided")
        made.state = "approved" if approve else "rejected"
        made.decided_by = decider
        made.decided_at = datetime.now(timezone.utc)
        await made.save(using_db=conn)
        await audit.record("claim.decided", "device_claim", made.id, actor=decider,
                           changes={"state": made.state}, using_db=conn)
    return made


async def pending_for(decider: User) -> list[DeviceClaim]:
    """Claims waiting for this person: on what they own, or every one for an administrator."""
    query = DeviceClaim.filter(state="pending")
    if decider.role != "admin":
        query = query.filter(Q(device__owner_id=decider.id) | Q(group__owner_id=decider.id))
    return await query.order_by("created_at").prefetch_related("user", "device", "group")


async def my_devices(user: User, history: int = 5) -> list[dict]:
    """Devices and groups the user owns or has an approved claim on, each with its latest tickets."""
    claims = await DeviceClaim.filter(user=user, state="approved").values("device_id", "group_id")
    device_ids = {c["device_id"] for c in claims if c["device_id"]}
    device_ids |= set(await Device.filter(owner=user).values_list("id", flat=True))
    group_ids = {c["group_id"] for c in claims if c["group_id"]}
    group_ids |= set(await DeviceGroup.filter(owner=user, active=True).values_list("id", flat=True))
    items = []
    for device in await Device.filter(id__in=list(device_ids)).order_by("system_number"):
        items.append({"kind": "device", "item": device,
                      "tickets": await Ticket.filter(device=device).order_by("-created_at").limit(history)})
    for group in await DeviceGroup.filter(id__in=list(group_ids), active=True).order_by("name"):
        items.append({"kind": "group", "item": group,
                      "tickets": await Ticket.filter(group=group).order_by("-created_at").limit(history)})
    return items
