"""Console accounts (agents, engineers, administrators) as administrators manage them: username, password, role,
the hospitals an agent serves, active or not. Every change is audited; a refusal names its field and changes nothing.

The password hash function is passed in by the caller (the console's argon2 hasher), so core depends on no
transport; it runs in a thread, since a strong hash costs tens of milliseconds of CPU.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Callable

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import audit
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from core.models import Hospital, User
from core.people import require_admin
from core.textutil import storable

CONSOLE_ROLES = ("agent", "engineer", "admin")
ROLES = ("staff", *CONSOLE_ROLES)
MIN_PASSWORD = 10
MAX_PASSWORD = 256
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,63}$")

Hasher = Callable[[str], str]


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
        raise _bad("角色须为客服（agent）、工程师（engineer）或管理员（admin）", "role")
    return role


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
        raise _bad("角色须为 staff、agent、engineer 或 admin", "role")
    query = User.filter(role=role) if role else User.filter(role__in=CONSOLE_ROLES)
    return await query.order_by("id").prefetch_related("served_hospitals", "hospital")


async def get_user(user_id: int) -> User:
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise NotFound("用户不存在", code="user_not_found", details={"field": "user_id"})
    return user


async def create_console_user(admin: User, *, username: Any, password: Any, role: Any, hasher: Hasher,
                              name: Any = "", hospital_ids: Any = ()) -> User:
    """A new console account; an agent or engineer serves ``hospital_ids``."""
    require_admin(admin)
    username, role, name = check_username(username), _role(role), _name(name)
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
            await audit.record("user.created", "user", user.id, actor=admin, using_db=conn, changes={
                "username": username, "name": name, "role": role, "hospitals": [h.id for h in hospitals]})
    except IntegrityError:  # the same username created meanwhile
        raise _username_taken(username) from None
    return user


async def update_console_user(admin: User, user_id: int, changes: dict, *, hasher: Hasher) -> tuple[User, bool]:
    """Change a console account: ``name``, ``role``, ``active``, ``hospital_ids``, ``password`` (a reset).
    (user, sessions_void): the second is True when the person must sign in again (disabled, role or password
    changed). An administrator cannot disable or demote their own account (someone must stay able to sign in)."""
    require_admin(admin)
    values: dict = {}
    if "name" in changes:
        values["name"] = _name(changes["name"])
    if "role" in changes:
        values["role"] = _role(changes["role"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise _bad("active 须为 true 或 false", "active")
        values["active"] = changes["active"]
    password_hash = None
    if changes.get("password") is not None:
        password_hash = await asyncio.to_thread(hasher, check_password(changes["password"]))
    if user_id == admin.id and (values.get("active") is False or values.get("role", "admin") != "admin"):
        raise Forbidden("不能停用自己的账号或取消自己的管理员身份", code="own_account",
                        details={"field": "active" if values.get("active") is False else "role"})
    async with in_transaction() as conn:
        user = await User.filter(id=user_id).using_db(conn).select_for_update().first()
        if user is None:
            raise NotFound("用户不存在", code="user_not_found", details={"field": "user_id"})
        if user.role not in CONSOLE_ROLES and ("role" in values or password_hash):
            raise Forbidden("该用户不是控制台账号（微信员工请用邀请码绑定）", code="not_console_user")
        diff = {k: [getattr(user, k), v] for k, v in values.items() if getattr(user, k) != v}
        for k, (_, v) in diff.items():
            setattr(user, k, v)
        if password_hash:
            user.password_hash = password_hash
            diff["password"] = "reset"
        if diff:
            await user.save(using_db=conn, update_fields=[k if k != "password" else "password_hash" for k in diff])
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
            await audit.record("user.updated", "user", user.id, actor=admin, changes=diff, using_db=conn)
    sessions_void = any(k in diff for k in ("active", "role", "password"))
    return user, sessions_void
