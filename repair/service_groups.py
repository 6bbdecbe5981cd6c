"""Service groups: the people around a hospital's equipment, and around each owned device group.

A hospital's group holds the agents serving it, its engineers (of the hospital, or serving it), the owners of its
devices and device groups, and its staff. A device group with an owner gets a group of its own: the agents and
engineers, the group's owner and the owners of its member devices. ``rebuild_service_groups`` derives all of
this from the current data and brings the stored groups in line (idempotent: adds, removes and re-roles people,
drops groups of device groups that are gone or have no owner). The device and group services call it after
changes of owners and members; code that changes people (binding, roles, served hospitals) calls it too.
"""

from __future__ import annotations

from core import audit
from core.errors import NotFound
from core.models import Hospital, User
from repair._shared import transaction
from repair.models import Device, DeviceGroup, ServiceGroup, ServiceGroupMember

# When a person fits several roles, the first one here is theirs.
ROLE_ORDER = ("agent", "engineer", "owner", "staff")


def _merge(wanted: dict[int, str], user_ids, role: str) -> None:
    for uid in user_ids:
        if uid not in wanted or ROLE_ORDER.index(role) < ROLE_ORDER.index(wanted[uid]):
            wanted[uid] = role


async def _active(ids, conn) -> list[int]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return []
    return await User.filter(id__in=list(ids), active=True).using_db(conn).values_list("id", flat=True)


async def _support(hospital_id: int, conn) -> dict[int, str]:
    """Agents and engineers: they are in every service group of the hospital."""
    wanted: dict[int, str] = {}
    agents = await User.filter(role="agent", active=True, served_hospitals__id=hospital_id).using_db(conn) \
        .values_list("id", flat=True)
    engineers = set(await User.filter(role="engineer", active=True, hospital_id=hospital_id).using_db(conn)
                    .values_list("id", flat=True))
    engineers |= set(await User.filter(role="engineer", active=True, served_hospitals__id=hospital_id)
                     .using_db(conn).values_list("id", flat=True))
    _merge(wanted, agents, "agent")
    _merge(wanted, engineers, "engineer")
    return wanted


async def _sync(group: ServiceGroup, wanted: dict[int, str], conn, *, created: bool) -> dict:
    """Make the stored members equal ``wanted``; what changed (empty when nothing did)."""
    have = {m.user_id: m for m in await ServiceGroupMember.filter(service_group_id=group.id).using_db(conn)}
    added = sorted(set(wanted) - set(have))
    removed = sorted(set(have) - set(wanted))
    recast = sorted(uid for uid in set(have) & set(wanted) if have[uid].role != wanted[uid])
    if removed:
        await ServiceGroupMember.filter(service_group_id=group.id, user_id__in=removed).using_db(conn).delete()
    for uid in recast:
        await ServiceGroupMember.filter(id=have[uid].id).using_db(conn).update(role=wanted[uid])
    for uid in added:
        await ServiceGroupMember.create(service_group_id=group.id, user_id=uid, role=wanted[uid], using_db=conn)
    changes = {k: v for k, v in (("added", added), ("removed", removed), ("role_changed", recast)) if v}
    if changes or created:
        await audit.record("service_group.created" if created else "service_group.updated", "service_group",
                           group.id, actor_label="system", changes={"name": group.name, **changes}, using_db=conn)
    return changes


async def _ensure(hospital_id: int, device_group_id: int | None, name: str, existing: list[ServiceGroup],
                  conn) -> tuple[ServiceGroup, bool]:
    mine = [g for g in existing if g.device_group_id == device_group_id]
    if mine:
        group = mine[0]
        if group.name != name:
            group.name = name
            await group.save(using_db=conn)
        return group, False
    return await ServiceGroup.create(hospital_id=hospital_id, device_group_id=device_group_id, name=name,
                                     using_db=conn), True


async def rebuild_service_groups(hospital_id: int) -> list[ServiceGroup]:
    """Bring the hospital's service groups in line with its people and devices; the hospital's group first."""
    async with transaction() as conn:
        # One rebuild of a hospital at a time (PostgreSQL row lock; SQLite serialises writers anyway).
        hospital = await Hospital.filter(id=hospital_id).using_db(conn).select_for_update().first()
        if hospital is None:
            raise NotFound("医院不存在", code="hospital_not_found")
        existing = await ServiceGroup.filter(hospital_id=hospital_id).using_db(conn).order_by("id")
        support = await _support(hospital_id, conn)

        devices = await Device.filter(hospital_id=hospital_id).using_db(conn).values("owner_id", "group_id")
        owned_groups = await DeviceGroup.filter(hospital_id=hospital_id, active=True, owner_id__isnull=False) \
            .using_db(conn).order_by("id")
        everyone = dict(support)
        _merge(everyone, await _active([d["owner_id"] for d in devices] + [g.owner_id for g in owned_groups], conn),
               "owner")
        _merge(everyone, await User.filter(role="staff", active=True, hospital_id=hospital_id).using_db(conn)
               .values_list("id", flat=True), "staff")
        main, created = await _ensure(hospital_id, None, f"{hospital.name}设备服务群"[:96], existing, conn)
        await _sync(main, everyone, conn, created=created)
        result = [main]

        for device_group in owned_groups:
            wanted = dict(support)
            member_owners = [d["owner_id"] for d in devices if d["group_id"] == device_group.id]
            _merge(wanted, await _active([device_group.owner_id, *member_owners], conn), "owner")
            group, created = await _ensure(hospital_id, device_group.id,
                                           f"{hospital.name}·{device_group.name}服务群"[:96], existing, conn)
            await _sync(group, wanted, conn, created=created)
            result.append(group)

        keep = {g.id for g in result}
        for stale in (g for g in existing if g.id not in keep):  # device group gone, ownerless, or a duplicate
            await audit.record("service_group.removed", "service_group", stale.id, actor_label="system",
                               changes={"name": stale.name}, using_db=conn)
            await ServiceGroup.filter(id=stale.id).using_db(conn).delete()
    return result


async def members_of(hospital_id: int, device_group_id: int | None = None) -> list[ServiceGroupMember]:
    """The members of the hospital's service group (or of a device group's), with ``user`` loaded, by role."""
    group = await ServiceGroup.filter(hospital_id=hospital_id, device_group_id=device_group_id).order_by("id").first()
    if group is None:
        return []
    found = await ServiceGroupMember.filter(service_group_id=group.id).prefetch_related("user")
    return sorted(found, key=lambda m: (ROLE_ORDER.index(m.role) if m.role in ROLE_ORDER else len(ROLE_ORDER),
                                        m.user.label(), m.user_id))
