"""Console sign-in: argon2 passwords, server-side sessions in Redis behind an HttpOnly cookie, a CSRF token for
unsafe methods, lockout after repeated wrong passwords, and what hospitals a console user may see.

A session is ``console:session:<id>`` → ``{"uid", "csrf"}`` with a sliding expiry (``CONSOLE_SESSION_TTL``); the
cookie holds only the random id, so logging out (or an administrator disabling the account) ends it at once.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sanic import Request
from sanic.response import HTTPResponse

from core import audit
from core.errors import Forbidden, TooManyRequests, Unauthorized
from core.models import Hospital, User
from core.redis import Redis
from core.settings import Settings

log = logging.getLogger(__name__)

COOKIE = "medwx_console"
CSRF_HEADER = "X-CSRF-Token"
# A doctor (linked to a Practitioner) signs in to the console for their consultations (console/consultations_api.py).
CONSOLE_ROLES = ("agent", "engineer", "admin", "doctor")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_SESSION = "console:session:{}"
_USER_SESSIONS = "console:user-sessions:{}"  # the session ids of one user, to end them all
_FAILURES = "console:login-failures:{}"
_LOCKED = "console:login-locked:{}"
_IP_FAILURES = "console:login-ip-failures:{}"

_hasher = PasswordHasher()
# Verified when the username is unknown, so that an unknown name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# -- passwords -------------------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or malformed hash never matches. CPU-bound (~tens of ms): call it
    through ``asyncio.to_thread`` on the server."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# -- sessions ---------------------------------------------------------------------------------------------------
async def start_session(redis: Redis, settings: Settings, user: User) -> tuple[str, str]:
    """A new session for ``user``: (session id for the cookie, CSRF token). A new id at every login (no fixation)."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    ttl = settings.console_session_ttl
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(_SESSION.format(session_id), json.dumps({"uid": user.id, "csrf": csrf}), ex=ttl)
        pipe.sadd(_USER_SESSIONS.format(user.id), session_id)
        pipe.expire(_USER_SESSIONS.format(user.id), ttl * 2)
        await pipe.execute()
    return session_id, csrf


async def read_session(redis: Redis, settings: Settings, session_id: str | None, *, touch: bool = True) -> dict | None:
    """The session ``{"uid", "csrf"}`` or None; ``touch`` slides its expiry (requests do, WebSocket checks don't,
    so that an open queue page alone does not keep a session alive for ever)."""
    if not session_id or len(session_id) > 128:
        return None
    key = _SESSION.format(session_id)
    raw = await (redis.getex(key, ex=settings.console_session_ttl) if touch else redis.get(key))
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def end_session(redis: Redis, session_id: str) -> None:
    raw = await redis.getdel(_SESSION.format(session_id))
    if raw:
        await redis.srem(_USER_SESSIONS.format(json.loads(raw)["uid"]), session_id)


async def end_user_sessions(redis: Redis, user_id: int) -> None:
    """Log a user out everywhere (account disabled, password reset, role changed)."""
    key = _USER_SESSIONS.format(user_id)
    ids = await redis.smembers(key)
    if ids:
        await redis.delete(*(_SESSION.format(i) for i in ids))
    await redis.delete(key)


def set_session_cookie(response: HTTPResponse, settings: Settings, session_id: str) -> None:
    # No Max-Age: the browser forgets it when closed; the server side expires after CONSOLE_SESSION_TTL idle.
    response.add_cookie(COOKIE, session_id, path="/", httponly=True, samesite="Strict",
                        secure=settings.public_base_url.startswith("https://"))


def clear_session_cookie(response: HTTPResponse) -> None:
    response.delete_cookie(COOKIE, path="/")


async def console_user(request: Request, *roles: str) -> User:
    """The signed-in console user of this request.

    No or expired session: 401 ``login_required``. Unsafe method without the session's ``X-CSRF-Token``: 403
    ``csrf``. ``roles`` given and the user has none of them (admin always passes): 403 ``role``."""
    user = getattr(request.ctx, "console_user", None)
    if user is None:
        app = request.app
        session = await read_session(app.ctx.redis, app.ctx.settings, request.cookies.get(COOKIE))
        if session is None:
            raise Unauthorized("请先登录", code="login_required")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent.encode(), str(session.get("csrf", "")).encode()):
                log.warning("console %s %s refused: CSRF token missing or wrong", request.method, request.path)
                raise Forbidden("页面已过期，请刷新后重试", code="csrf")
        user = await User.get_or_none(id=session.get("uid"))
        if user is None or not user.active or user.role not in CONSOLE_ROLES:
            await end_session(app.ctx.redis, request.cookies.get(COOKIE))
            raise Unauthorized("请先登录", code="login_required")
        request.ctx.console_user = user
        request.ctx.console_csrf = session.get("csrf")
    if roles and user.role != "admin" and user.role not in roles:
        log.warning("console %s %s refused: role %s not in %s", request.method, request.path, user.role, roles)
        raise Forbidden("当前身份无权进行此操作", code="role")
    return user


# -- scope --------------------------------------------------------------------------------------------------------
async def served_hospital_ids(user: User) -> set[int] | None:
    """Hospitals the user may see: None = all (admin); an agent those they serve; an engineer those plus the
    hospitals of the tickets assigned to them."""
    if user.role == "admin":
        return None
    ids = set(await Hospital.filter(agents=user.id).values_list("id", flat=True))
    if user.role == "engineer":
        from repair.models import Ticket

        ids |= set(await Ticket.filter(engineer_id=user.id).distinct().values_list("hospital_id", flat=True))
    return ids


def may_see_hospital(scope: set[int] | None, hospital_id) -> bool:
    if scope is None:
        return True
    try:
        return int(hospital_id) in scope
    except (TypeError, ValueError):
        return False


async def visible_hospitals(user: User) -> list[dict]:
    scope = await served_hospital_ids(user)
    query = Hospital.all() if scope is None else Hospital.filter(id__in=scope)
    return [{"id": h.id, "name": h.name} for h in await query.order_by("id")]


async def user_out(user: User) -> dict:
    """The console's view of a user (login, /me, the WebSocket's hello)."""
    return {"id": user.id, "name": user.name, "username": user.username, "role": user.role,
            "hospitals": await visible_hospitals(user)}


# -- login and lockout ------------------------------------------------------------------------------------------
def _lock_key(username: str) -> str:
    return username.strip().lower()[:64]


async def _locked_seconds(redis: Redis, username: str) -> int:
    ttl = await redis.ttl(_LOCKED.format(_lock_key(username)))
    return max(int(ttl), 0)


def _locked_error(seconds: int) -> TooManyRequests:
    minutes = max(1, -(-seconds // 60))
    return TooManyRequests(f"密码错误次数过多，账号已锁定，请 {minutes} 分钟后再试", code="locked",
                           headers={"Retry-After": str(max(seconds, 1))})


async def _count_failure(redis: Redis, settings: Settings, username: str) -> int:
    """Count a wrong password; the lock's seconds when this failure locked the username, else 0."""
    key = _FAILURES.format(_lock_key(username))
    window = settings.console_lockout_seconds
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window, nx=True)  # the window starts at the first failure
        failures, _ = await pipe.execute()
    if failures >= settings.console_lockout_failures:
        await redis.set(_LOCKED.format(_lock_key(username)), "1", ex=window)
        await redis.delete(key)
        return window
    return 0


async def _ip_blocked_seconds(redis: Redis, settings: Settings, ip: str) -> int:
    """Seconds this address must wait: it gave too many wrong passwords, for whichever usernames."""
    key = _IP_FAILURES.format(ip)
    failures = await redis.get(key)
    if failures is None or int(failures) < settings.console_ip_lockout_failures:
        return 0
    return max(int(await redis.ttl(key)), 1)


async def _count_ip_failure(redis: Redis, settings: Settings, ip: str) -> None:
    key = _IP_FAILURES.format(ip)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, settings.console_lockout_seconds, nx=True)
        await pipe.execute()


async def _audit_login(action: str, username: str, user: User | None, ip: str, reason: str = "") -> None:
    changes = {"ip": ip, **({"reason": reason} if reason else {})}
    await audit.record(action, "console_login", username[:64], actor=user if user and not reason else None,
                       actor_label=username[:64] or "?", changes=changes)


async def login(redis: Redis, settings: Settings, username: str, password: str, ip: str) -> tuple[User, str, str]:
    """Check the password: (user, session id, CSRF token). Wrong → 401 ``bad_credentials``; too many wrong in a
    row for the username → 429 ``locked``, from the address (any usernames) → 429 ``too_many_attempts``; every
    refusal is logged and audited."""
    blocked = await _ip_blocked_seconds(redis, settings, ip)
    if blocked:
        log.warning("console login refused for %r from %s: too many failures from that address", username, ip)
        await _audit_login("console.login_failed", username, None, ip, "address_blocked")
        minutes = max(1, -(-blocked // 60))
        raise TooManyRequests(f"登录失败次数过多，请 {minutes} 分钟后再试", code="too_many_attempts",
                              headers={"Retry-After": str(blocked)})
    locked = await _locked_seconds(redis, username)
    if locked:
        log.warning("console login refused for %r from %s: locked", username, ip)
        await _audit_login("console.login_failed", username, None, ip, "locked")
        raise _locked_error(locked)
    user = await User.get_or_none(username=username)
    ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    if not ok:
        await _count_ip_failure(redis, settings, ip)
        locked = await _count_failure(redis, settings, username)
        log.warning("console login failed for %r from %s%s", username, ip, " (now locked)" if locked else "")
        await _audit_login("console.login_failed", username, user, ip, "bad_credentials")
        if locked:
            raise _locked_error(locked)
        raise Unauthorized("用户名或密码错误", code="bad_credentials")
    if not user.active:
        await _audit_login("console.login_failed", username, user, ip, "account_disabled")
        raise Forbidden("账号已停用，请联系管理员", code="account_disabled")
    if user.role not in CONSOLE_ROLES:
        await _audit_login("console.login_failed", username, user, ip, "role")
        raise Forbidden("该账号不能登录控制台", code="role")
    await redis.delete(_FAILURES.format(_lock_key(username)))
    if needs_rehash(user.password_hash):  # argon2 parameters raised since the hash was made
        user.password_hash = await asyncio.to_thread(hash_password, password)
        await user.save(update_fields=["password_hash"])
    session_id, csrf = await start_session(redis, settings, user)
    await _audit_login("console.login", username, user, ip)
    return user, session_id, csrf
