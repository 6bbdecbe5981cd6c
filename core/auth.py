"""Tokens: JWT sessions for the mini program and H5 pages, and signed, expiring link tokens (QR labels, scan replies).

Both are keyed by ``SECRET_KEY``; each kind carries its own audience/salt so that one can never pass for another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from core.errors import Forbidden, Unauthorized

ROLES = ("staff", "agent", "engineer", "admin", "patient")
_JWT_AUDIENCE = "medwx"
_JWT_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Session:
    """Who a request is from: a user id (our ``User``), their openid and roles."""

    user_id: int
    openid: str
    roles: tuple[str, ...]
    hospital_id: int | None = None

    def require(self, *roles: str) -> "Session":
        if not set(roles) & set(self.roles):
            raise Forbidden("当前身份无权进行此操作", code="role_required")
        return self


def issue_session(secret: str, *, user_id: int, openid: str, roles: tuple[str, ...] | list[str],
                  hospital_id: int | None = None, ttl: int = 7 * 24 * 3600) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "oid": openid, "roles": list(roles), "hid": hospital_id,
              "iat": now, "exp": now + ttl, "aud": _JWT_AUDIENCE}
    return jwt.encode(claims, secret, algorithm=_JWT_ALGORITHM)


def read_session(secret: str, token: str) -> Session:
    try:
        claims = jwt.decode(token, secret, algorithms=[_JWT_ALGORITHM], audience=_JWT_AUDIENCE)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("登录已过期，请重新进入", code="session_expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("登录信息无效，请重新进入", code="invalid_session") from exc
    return Session(user_id=int(claims["sub"]), openid=claims.get("oid", ""), roles=tuple(claims.get("roles", ())),
                   hospital_id=claims.get("hid"))


def bearer_session(secret: str, authorization: str | None) -> Session:
    """The session from an ``Authorization: Bearer <JWT>`` header."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("请先登录", code="login_required")
    return read_session(secret, token.strip())


def sign_link(secret: str, purpose: str, data: dict) -> str:
    """A URL-safe token for ``data``, valid only for ``purpose``; its age is checked when read."""
    return URLSafeTimedSerializer(secret, salt=f"medwx.{purpose}").dumps(data)


def read_link(secret: str, purpose: str, token: str, *, max_age: int) -> dict:
    try:
        return URLSafeTimedSerializer(secret, salt=f"medwx.{purpose}").loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise Forbidden("链接已过期，请重新扫码", code="link_expired") from exc
    except BadSignature as exc:
        raise Forbidden("链接无效", code="link_invalid") from exc
