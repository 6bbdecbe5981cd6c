"""Gateways: registration, API keys, authentication.

A gateway's key is shown once by ``add_gateway``; only its SHA-256 is stored. Telemetry arrives many times a second
per gateway, so ``authenticate`` remembers a key's gateway for a few seconds in this process instead of asking the
database on every message: a revoked key stops working within ``_CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from tortoise.exceptions import IntegrityError

from core import audit
from core.errors import BadRequest, Conflict, NotFound, Unauthorized
from core.models import Hospital
from monitoring.models import Gateway

KEY_PREFIX = "gw_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # also an MQTT topic level: no '/', '+', '#'
_CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, Gateway | None]] = {}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def add_gateway(name: str, *, hospital_id: int, rate_limit: int = 1000,
                      actor_label: str = "system") -> tuple[Gateway, str]:
    """A new gateway and its API key. The key is returned here only: it cannot be read back later."""
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise BadRequest("网关名称须为 1–64 个字母、数字或 _ . -", code="invalid_field")
    if not 1 <= rate_limit <= 1_000_000:
        raise BadRequest("速率上限须在 1–1000000 条/秒之间", code="invalid_field")
    if not await Hospital.exists(id=hospital_id):
        raise NotFound("未找到该医院", code="hospital_not_found")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        gateway = await Gateway.create(name=name, key_hash=_digest(key), key_hint=key[:8], hospital_id=hospital_id,
                                       rate_limit=rate_limit)
    except IntegrityError:
        raise Conflict(f"已有名为“{name}”的网关", code="gateway_exists") from None
    await audit.record("gateway.added", "gateway", gateway.id, actor_label=actor_label,
                       changes={"name": name, "hospital_id": hospital_id, "rate_limit": rate_limit})
    return gateway, key


async def list_gateways() -> list[Gateway]:
    return await Gateway.all().order_by("id").prefetch_related("hospital")


async def find_gateway(name_or_id: str) -> Gateway:
    gateway = await Gateway.get_or_none(name=name_or_id.strip())
    if gateway is None and name_or_id.strip().isdigit():
        gateway = await Gateway.get_or_none(id=int(name_or_id))
    if gateway is None:
        raise NotFound("未找到该网关", code="gateway_not_found")
    return gateway


async def revoke_gateway(gateway: Gateway, *, actor_label: str = "system") -> Gateway:
    if gateway.active:
        gateway.active = False
        await gateway.save(update_fields=["active"])
        await audit.record("gateway.revoked", "gateway", gateway.id, actor_label=actor_label,
                           changes={"name": gateway.name})
    _cache.clear()
    return gateway


async def authenticate(key: str | None) -> Gateway:
    """The active gateway owning ``key``, or 401 (``X-Gateway-Key``, or the ``key`` of an MQTT message)."""
    key = (key or "").strip() if isinstance(key, str) else ""
    if not key:
        raise Unauthorized("缺少网关密钥（X-Gateway-Key）", code="gateway_key_required")
    digest = _digest(key)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        gateway = hit[1]
    else:
        gateway = await Gateway.get_or_none(key_hash=digest)
        if len(_cache) > 10_000:  # wrong keys must not grow it without end
            _cache.clear()
        _cache[digest] = (now + _CACHE_SECONDS, gateway)
    if gateway is None or not gateway.active:
        raise Unauthorized("网关密钥无效或已停用", code="invalid_gateway_key")
    return gateway


def forget_cached() -> None:
    """Tests and commands that change gateways behind this process's back."""
    _cache.clear()
