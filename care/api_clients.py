"""Hospital systems allowed to read vitals over ``/fhir``: each has a bearer token, shown once when it is added
(``python -m care add-api-client NAME``); only its SHA-256 is stored (32 random bytes need no password stretching).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from tortoise.exceptions import IntegrityError

from core import audit
from core.errors import BadRequest, Conflict, NotFound, Unauthorized
from care.vitals_models import ApiClient

TOKEN_PREFIX = "mac_"
_LAST_USED_EVERY = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_client_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


async def add_api_client(name: str, *, actor_label: str = "system") -> tuple[ApiClient, str]:
    """A new client and its token; the token is returned here only."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise BadRequest("系统名称须为 1–64 个字符", code="invalid_field", details={"field": "name"})
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        client = await ApiClient.create(name=name, token_hash=_digest(token), token_hint=token[:8])
    except IntegrityError:
        raise Conflict(f"已有名为“{name}”的系统", code="api_client_exists", details={"field": "name"}) from None
    await audit.record("api_client.added", "api_client", client.id, actor_label=actor_label, changes={"name": name})
    return client, token


async def list_api_clients() -> list[ApiClient]:
    return await ApiClient.all().order_by("id")


async def revoke_api_client(name_or_id: str, *, actor_label: str = "system") -> ApiClient:
    client = await ApiClient.get_or_none(name=name_or_id.strip())
    if client is None and name_or_id.strip().isdigit():
        client = await ApiClient.get_or_none(id=int(name_or_id))
    if client is None:
        raise NotFound("未找到该系统", code="api_client_not_found")
    if client.active:
        client.active = False
        await client.save(update_fields=["active"])
        await audit.record("api_client.revoked", "api_client", client.id, actor_label=actor_label,
                           changes={"name": client.name})
    return client


async def authenticate(token: str) -> ApiClient:
    client = await ApiClient.get_or_none(token_hash=_digest(token or ""))
    if client is None or not client.active:
        raise Unauthorized("接口令牌无效或已停用", code="invalid_api_token")
    now = datetime.now(timezone.utc)
    if client.last_used_at is None or now - client.last_used_at > _LAST_USED_EVERY:
        await ApiClient.filter(id=client.id).update(last_used_at=now)
    return client
