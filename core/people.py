"""People: WeChat sign-in (mini program and H5 pages), invitation codes, binding staff to a hospital.

Domain-free: it knows users, hospitals and invitations (``core.models``) and nothing of repair or care. The WeChat
client is passed in by the caller (anything with ``code2session`` / ``oauth_openid``), so core imports no
integration. ``session_key`` from the mini program login is dropped here: it is neither stored nor returned.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from core import audit
from core.auth import issue_session
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from core.models import Department, Hospital, InvitationCode, User
from core.settings import Settings

log = logging.getLogger(__name__)

# Typed by hand from a phone screen or a poster: no 0/O or 1/I to confuse.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
INVITABLE_ROLES = ("staff", "agent", "engineer")
MAX_USES_LIMIT = 1000
TTL_DAYS_LIMIT = 90
SESSION_TTL = 7 * 24 * 3600
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
_CODE_NOISE = re.compile(r"[\s-]+")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- sign-in --------------------------------------------------------------------------------------------------------
async def login_mini_program(wechat_client: Any, js_code: str) -> tuple[User, bool]:
    """The user behind a ``wx.login`` code, created on first sight (role staff, no hospital).

    WeChat's errors surface as their typed errors (used or unknown code 400, rate 429, …).
    """
    answer = await wechat_client.code2session(js_code)
    return await _find_or_create("mp_openid", answer["openid"], answer.get("unionid"))


async def login_oauth(wechat_client: Any, code: str) -> User:
    """The user behind a public-account web OAuth ``code`` (H5 pages), created on first sight."""
    answer = await wechat_client.oauth_openid(code)
    user, _ = await _find_or_create("openid", answer["openid"], answer.get("unionid"))
    return user


async def _find_or_create(field: str, openid: str, unionid: str | None) -> tuple[User, bool]:
    """By this app's openid first, then by unionid (the same person met through the other app)."""
    user = await User.get_or_none(**{field: openid})
    if user is None and unionid:
        user = await User.filter(unionid=unionid).order_by("id").first()
        if user is not None and getattr(user, field) is None:
            setattr(user, field, openid)
            try:
                await user.save(update_fields=[field])
            except IntegrityError:  # a concurrent first login stored this openid on a row of its own
                user = await User.get(**{field: openid})
    created = False
    if user is None:
        try:
            user = await User.create(**{field: openid}, unionid=unionid, role="staff")
            created = True
        except IntegrityError:  # two first logins at once: the other one created the row
            user = await User.get(**{field: openid})
    elif unionid and not user.unionid:
        user.unionid = unionid
        await user.save(update_fields=["unionid"])
    if not user.active:
        raise Forbidden("账号已停用，请联系管理员", code="account_disabled")
    return user, created


def session_token(settings: Settings, user: User) -> str:
    """A JWT for ``user``: their role and hospital as claims.

    ``oid`` is the public-account openid (the one messages are sent to), empty for a mini-program-only user.
    """
    return issue_session(settings.secret_key, user_id=user.id, openid=user.openid or "", roles=[user.role],
                         hospital_id=user.hospital_id, ttl=SESSION_TTL)


# -- invitations ----------------------------------------------------------------------------------------------------
def normalize_code(code: str) -> str:
    """What the user typed, as stored: spaces and dashes dropped, upper case."""
    return _CODE_NOISE.sub("", code or "").upper()


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _int_in(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{what}须为 {low}–{high} 之间的整数")
    return value


def require_admin(user: User) -> User:
    if user.role != "admin" or not user.active:
        raise Forbidden("只有管理员可以进行此操作", code="admin_required")
    return user


async def create_invitation(admin: User, hospital_id: int | None, role: str = "staff",
                            department_id: int | None = None, max_uses: int = 1, ttl_days: int = 7) -> InvitationCode:
    """A new code binding whoever types it to ``hospital_id`` (default: the administrator's) with ``role``.

    Only administrators make codes, for every role; one bound to a hospital makes codes for that hospital only.
    """
    require_admin(admin)
    if hospital_id is None:
        hospital_id = admin.hospital_id
        if hospital_id is None:
            raise BadRequest("请指定医院", code="hospital_required")
    if role not in INVITABLE_ROLES:
        raise BadRequest("邀请码的身份须为员工、客服或工程师", code="invalid_role")
    max_uses = _int_in(max_uses, 1, MAX_USES_LIMIT, "可用次数")
    ttl_days = _int_in(ttl_days, 1, TTL_DAYS_LIMIT, "有效天数")
    hospital_id = _int_in(hospital_id, 1, 2**31 - 1, "医院编号")
    if admin.hospital_id is not None and admin.hospital_id != hospital_id:
        raise Forbidden("只能为本院生成邀请码", code="other_hospital")
    hospital = await Hospital.get_or_none(id=hospital_id)
    if hospital is None:
        raise NotFound("医院不存在", code="hospital_not_found")
    if department_id is not None:
        department_id = _int_in(department_id, 1, 2**31 - 1, "科室编号")
        if not await Department.exists(id=department_id, hospital_id=hospital_id):
            raise BadRequest("科室不属于该医院", code="department_not_in_hospital")
    expires_at = _now() + timedelta(days=ttl_days)
    for _ in range(5):  # 32^8 codes: a collision is rare, two in a row rarer still
        try:
            async with in_transaction() as conn:
                invitation = await InvitationCode.create(
                    code=_new_code(), hospital=hospital, department_id=department_id, role=role, max_uses=max_uses,
                    expires_at=expires_at, created_by=admin, using_db=conn)
                await audit.record("invitation.created", "invitation", invitation.code, actor=admin,
                                   changes={"hospital": hospital_id, "department": department_id, "role": role,
                                            "max_uses": max_uses, "expires_at": expires_at.isoformat()},
                                   using_db=conn)
            return invitation
        except IntegrityError:
            log.info("invitation code collision, drawing another")
    raise Conflict("生成邀请码失败，请重试", code="code_collision")


async def list_invitations(hospital_ids: set[int] | None = None, limit: int = 200) -> list[InvitationCode]:
    """The newest codes first (with hospital and department), of ``hospital_ids`` when given."""
    query = InvitationCode.all() if hospital_ids is None else InvitationCode.filter(hospital_id__in=sorted(hospital_ids))
    return await query.order_by("-id").limit(limit).prefetch_related("hospital", "department", "created_by")


async def bind_with_code(user: User, code: str, *, name: str | None = None, phone: str | None = None) -> User:
    """Bind ``user`` to the code's hospital, department and role; returns the user as stored.

    The use is counted with a conditional UPDATE (``uses < max_uses`` and not expired) inside the same transaction
    as the user's change, so two people typing a single-use code at once cannot both get in, and a refusal leaves
    nothing changed. A user bound to another hospital is refused (409).
    """
    code = normalize_code(code)
    if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        raise BadRequest(f"邀请码应为 {CODE_LENGTH} 位字母或数字", code="invitation_malformed")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _clean_name(name)
    if phone is not None:
        changes["phone"] = _clean_phone(phone)
    if not (changes.get("name") or user.name):
        raise BadRequest("请填写姓名", code="name_required")

    now = _now()
    async with in_transaction() as conn:
        before = await User.get(id=user.id).using_db(conn)
        if not before.active:
            raise Forbidden("账号已停用，请联系管理员", code="account_disabled")
        invitation = await InvitationCode.get_or_none(code=code).using_db(conn)
        if invitation is None:
            raise NotFound("邀请码不存在，请核对后重新输入", code="invitation_not_found")
        if invitation.expires_at <= now:
            raise BadRequest("邀请码已过期，请向管理员索取新的邀请码", code="invitation_expired")
        counted = await InvitationCode.filter(id=invitation.id, uses__lt=F("max_uses"), expires_at__gt=now) \
            .using_db(conn).update(uses=F("uses") + 1)
        if not counted:
            raise Conflict("邀请码已被使用，请向管理员索取新的邀请码", code="invitation_used_up")
        # Conditional as well: a concurrent bind of this same user to another hospital loses here.
        bound = await User.filter(Q(hospital_id__isnull=True) | Q(hospital_id=invitation.hospital_id),
                                  id=user.id).using_db(conn).update(
            hospital_id=invitation.hospital_id, department_id=invitation.department_id, role=invitation.role,
            **changes)
        if not bound:
            raise Conflict("您已绑定其他医院，如需更换请联系管理员", code="already_bound")
        await audit.record("user.bound", "user", user.id, actor=before, using_db=conn, changes={
            "invitation": code, "hospital": [before.hospital_id, invitation.hospital_id],
            "department": [before.department_id, invitation.department_id], "role": [before.role, invitation.role],
            **{k: [getattr(before, k), v] for k, v in changes.items()}})
    return await User.get(id=user.id)


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("请填写姓名", code="name_required")
    name = name.strip()
    if len(name) > 64:
        raise BadRequest("姓名不能超过 64 个字", code="name_too_long")
    return name


def _clean_phone(phone: Any) -> str:
    if not isinstance(phone, str):
        raise BadRequest("手机号格式有误", code="phone_invalid")
    phone = phone.strip()
    if phone and not _PHONE.match(phone):
        raise BadRequest("手机号格式有误", code="phone_invalid")
    return phone
