"""Console accounts (agents, engineers, administrators, doctors) as administrators manage them: username, password,
role, the hospitals an agent serves, the practitioner a doctor is, active or not. Every change is audited; a refusal
names its field and changes nothing.

The password hash function is passed in by the caller (the console's argon2 hasher), so core depends on no
transport; it runs in a thread, since a strong hash costs tens of milliseconds of CPU.

A doctor's account is linked to the Practitioner they are (care's ``DoctorAccount``). Core imports no domain, so the
caller passes the care domain's ``link_doctor`` in, as it passes the hasher; it is called inside the account's own
transaction, so a refused link (unknown, inactive or already linked practitioner) leaves no half-made account. The
role and the link move together: becoming a doctor needs a practitioner, any other role drops the link.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Awaitable, Callable

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import audit
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from core.models import Hospital, User
from core.people import require_admin
from core.textutil import storable

CONSOLE_ROLES = ("agent", "engineer", "admin", "doctor")
ROLES = ("staff", *CONSOLE_ROLES)
MIN_PASSWORD = 10
MAX_PASSWORD = 256
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,63}$")

Hasher = Callable[[str], str]
# ``await link_doctor(user, practitioner_id | None, actor=, actor_label=, using_db=)``: links the account to the
# practitioner (404 / 409 naming ``practitioner_id`` when it is unknown, inactive or another account's) or, with None,
# removes the link; audited. The console and ``python -m care`` pass ``care.consultations.link_doctor``.
DoctorLink = Callable[..., Awaitable[Any]]


def _bad(message: str, field: str, code: str = "invalid_field") -> BadRequest:
    return BadRequest(message, code=code, details={"field": field})


def check_username(username: Any) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username.strip()):
        raise _bad("用户名须为 3–64 位字母、数字或 _ . @ -，以字母或数字开头", "username")
    return username.strip()


def check_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise _bad(f"密码至少 {MIN_PASSWORD} 位", "password", "weak_password")
    if len(password) > MAX_PASSWORD:
        raise _bad(f"密码不能超过 {MAX_PASSWORD} 位", "password")
    if len(set(password)) < 4:
        raise _bad("密码太简单，请混用不同的字母、数字或符号", "password", "weak_password")
    return password


def _role(role: Any) -> str:
    if role not in CONSOLE_ROLES:
        raise _bad("角色须为客服（agent）、工程师（engineer）、管理员（admin）或医生（doctor）", "role")
    return role


def _practitioner_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad("practitioner_id 须为医生编号", "practitioner_id")
    return value


def _practitioner_required() -> BadRequest:
    return BadRequest("医生账号须关联一位医生，请选择医生", code="practitioner_required",
                      details={"field": "practitioner_id"})


def _not_a_doctor_role() -> BadRequest:
    return _bad("只有角色为医生的账号可以关联医生", "practitioner_id")


async def linked_practitioner_id(user_id: int, conn=None) -> int | None:
    """The practitioner a console account is linked to, or None. Read through the reverse relation tortoise adds to
    ``User`` for care's DoctorAccount, named as a string (like the model modules in ``core/db.py``)."""
    found = await User.filter(id=user_id).using_db(conn).values_list("doctor_account__practitioner_id", flat=True)
    return found[0] if found else None


def _name(name: Any) -> str:
    if not isinstance(name, str):
        raise _bad("姓名须为文字", "name")
    name = " ".join(storable(name).split())
    if len(name) > 64:
        raise _bad("姓名不能超过 64 个字", "name")
    return name


async def _hospitals(ids: Any, conn) -> list[Hospital]:
    if not isinstance(ids, (list, tuple, set)) or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise _bad("服务医院须为医院编号的列表", "hospital_ids")
    wanted = sorted(set(ids))
    found = await Hospital.filter(id__in=wanted).using_db(conn) if wanted else []
    missing = sorted(set(wanted) - {h.id for h in found})
    if missing:
        raise NotFound(f"医院不存在：{'、'.join(map(str, missing))}", code="hospital_not_found",
                       details={"field": "hospital_ids"})
    return found


def _username_taken(username: str) -> Conflict:
    return Conflict(f"用户名“{username}”已被使用", code="username_taken", details={"field": "username"})


async def list_users(role: str | None = None) -> list[User]:
    """Users of one role (``staff`` too), or every console user; served hospitals fetched."""
    if role is not None and role not in ROLES:
        raise _bad("角色须为 staff、agent、engineer、admin 或 doctor", "role")
    query = User.filter(role=role) if role else User.filter(role__in=CONSOLE_ROLES)
    return await query.order_by("id").prefetch_related("served_hospitals", "hospital")


async def get_user(user_id: int) -> User:
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise NotFound("用户不存在", code="user_not_found", details={"field": "user_id"})
    return user


async def create_console_user(admin: User, *, username: Any, password: Any, role: Any, hasher: Hasher,
                              link_doctor: DoctorLink, name: Any = "", hospital_ids: Any = (),
                              practitioner_id: Any = None) -> User:
    """A new console account; an agent or engineer serves ``hospital_ids``; a doctor is ``practitioner_id`` (linked
    in the same transaction: a refused practitioner creates no account)."""
    require_admin(admin)
    username, role, name = check_username(username), _role(role), _name(name)
    if practitioner_id is not None:
        if role != "doctor":
            raise _not_a_doctor_role()
        practitioner_id = _practitioner_id(practitioner_id)
    elif role == "doctor":
        raise _practitioner_required()
    check_password(password)
    if await User.exists(username=username):
        raise _username_taken(username)
    password_hash = await asyncio.to_thread(hasher, password)
    try:
        async with in_transaction() as conn:
            hospitals = await _hospitals(hospital_ids, conn)
            user = await User.create(username=username, name=name, role=role, password_hash=password_hash,
                                     active=True, using_db=conn)
            if hospitals:
                await user.served_hospitals.add(*hospitals, using_db=conn)
            created = {"username": username, "name": name, "role": role, "hospitals": [h.id for h in hospitals]}
            if practitioner_id is not None:
                await link_doctor(user, practitioner_id, actor=admin, using_db=conn)
                created["practitioner_id"] = practitioner_id
            await audit.record("user.created", "user", user.id, actor=admin, using_db=conn, changes=created)
    except IntegrityError:  # the same username created meanwhile
        raise _username_taken(username) from None
    return user


async def update_console_user(admin: User, user_id: int, changes: dict, *, hasher: Hasher,
                              link_doctor: DoctorLink) -> tuple[User, bool]:
    """Change a console account: ``name``, ``role``, ``active``, ``hospital_ids``, ``password`` (a reset),
    ``practitioner_id`` (a doctor's practitioner; needed when the role becomes ``doctor``).
    (user, sessions_void): the second is True when the person must sign in again (disabled, role, practitioner or
    password changed). An administrator cannot disable or demote their own account (someone must stay able to sign
    in)."""
    require_admin(admin)
    values, password_hash = await _checked_changes(changes, hasher)
    if user_id == admin.id and (values.get("active") is False or values.get("role", "admin") != "admin"):
        raise Forbidden("不能停用自己的账号或取消自己的管理员身份", code="own_account",
                        details={"field": "active" if values.get("active") is False else "role"})
    return await _apply(user_id, changes, values, password_hash, link_doctor=link_doctor, actor=admin)


async def operator_update_console_user(user_id: int, changes: dict, *, link_doctor: DoctorLink,
                                       actor_label: str) -> tuple[User, bool]:
    """``update_console_user`` for an operator's command (``python -m care link-doctor``), where no administrator is
    signed in: the same checks and the same transaction, audited under ``actor_label``; no password reset."""
    if changes.get("password") is not None:
        raise _bad("此处不能重置密码", "password")
    values, _ = await _checked_changes(changes, None)
    return await _apply(user_id, changes, values, None, link_doctor=link_doctor, actor_label=actor_label)


async def _checked_changes(changes: dict, hasher: Hasher | None) -> tuple[dict, str | None]:
    """The plain fields of ``changes`` checked (name, role, active), and the new password's hash."""
    values: dict = {}
    if "name" in changes:
        values["name"] = _name(changes["name"])
    if "role" in changes:
        values["role"] = _role(changes["role"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise _bad("active 须为 true 或 false", "active")
        values["active"] = changes["active"]
    if changes.get("practitioner_id") is not None:
        _practitioner_id(changes["practitioner_id"])
    password_hash = None
    if changes.get("password") is not None:
        password_hash = await asyncio.to_thread(hasher, check_password(changes["password"]))
    return values, password_hash


async def _apply(user_id: int, changes: dict, values: dict, password_hash: str | None, *, link_doctor: DoctorLink,
                 actor: User | None = None, actor_label: str | None = None) -> tuple[User, bool]:
    async with in_transaction() as conn:
        user = await User.filter(id=user_id).using_db(conn).select_for_update().first()
        if user is None:
            raise NotFound("用户不存在", code="user_not_found", details={"field": "user_id"})
        practitioner_id = changes.get("practitioner_id")
        if user.role not in CONSOLE_ROLES and ("role" in values or password_hash or practitioner_id is not None):
            raise Forbidden("该用户不是控制台账号（微信员工请用邀请码绑定）", code="not_console_user")
        diff = {k: [getattr(user, k), v] for k, v in values.items() if getattr(user, k) != v}
        for k, (_, v) in diff.items():
            setattr(user, k, v)
        if password_hash:
            user.password_hash = password_hash
            diff["password"] = "reset"
        if diff:
            await user.save(using_db=conn, update_fields=[k if k != "password" else "password_hash" for k in diff])
        if "role" in diff or practitioner_id is not None:
            diff.update(await _keep_link(user, practitioner_id, link_doctor, conn,
                                         actor=actor, actor_label=actor_label))
        if "hospital_ids" in changes:
            hospitals = await _hospitals(changes["hospital_ids"], conn)
            before = sorted(await Hospital.filter(agents=user.id).using_db(conn).values_list("id", flat=True))
            after = sorted(h.id for h in hospitals)
            if before != after:
                await user.served_hospitals.clear(using_db=conn)
                if hospitals:
                    await user.served_hospitals.add(*hospitals, using_db=conn)
                diff["hospitals"] = [before, after]
        if diff:
            await audit.record("user.updated", "user", user.id, actor=actor, actor_label=actor_label, changes=diff,
                               using_db=conn)
    sessions_void = any(k in diff for k in ("active", "role", "password", "practitioner_id"))
    return user, sessions_void


async def _keep_link(user: User, practitioner_id: int | None, link_doctor: DoctorLink, conn, **actor) -> dict:
    """Keep the account's practitioner link in step with its role (just changed and saved, or a practitioner sent),
    in the caller's transaction: a doctor has one (becoming a doctor needs ``practitioner_id``; sending another
    relinks), any other role none (the link is removed, so a former doctor sees no consultations). The audit's diff
    entry, or {}."""
    before = await linked_practitioner_id(user.id, conn)
    if user.role != "doctor":
        if practitioner_id is not None:
            raise _not_a_doctor_role()
        if before is None:
            return {}
        await link_doctor(user, None, using_db=conn, **actor)
        return {"practitioner_id": [before, None]}
    if practitioner_id is None:
        if before is None:
            raise _practitioner_required()
        return {}
    if practitioner_id == before:
        return {}
    await link_doctor(user, practitioner_id, using_db=conn, **actor)
    return {"practitioner_id": [before, practitioner_id]}
