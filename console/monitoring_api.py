"""``/console/api/v1`` device health and alerts (IoT early warning), for agents, engineers and administrators within
the hospitals they may see. Parse, authenticate, call ``monitoring.health``, answer JSON."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from console.auth import console_user, may_see_hospital, served_hospital_ids
from core.errors import BadRequest, Forbidden, NotFound
from monitoring import health
from repair.models import Device

bp = Blueprint("console_monitoring", url_prefix="/console/api/v1")
TAG = "console: device health"


def _int_arg(request: Request, name: str, default: int | None = None) -> int | None:
    value = (request.args.get(name) or "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise BadRequest(f"参数 {name} 须为正整数", code="invalid_field", details={"field": name})
    return int(value)


@bp.get("/devices/<device_id:int>/health")
@openapi.definition(
    summary="A device's health: latest values, reading series for charts, alerts, risk score and profile",
    description="`hours=` history to chart (1–744, default 24). Agents: devices of the hospitals they serve; "
                "engineers: those and the hospitals of their tickets; admins: all.", tag=TAG)
async def device_health(request: Request, device_id: int) -> HTTPResponse:
    user = await console_user(request)
    scope = await served_hospital_ids(user)
    hospital_id = await Device.filter(id=device_id).values_list("hospital_id", flat=True)
    if not hospital_id:
        raise NotFound("设备不存在", code="device_not_found")
    if not may_see_hospital(scope, hospital_id[0]):
        raise Forbidden("您不负责该设备所在的医院", code="other_hospital")
    return json(await health.device_health(device_id, redis=request.app.ctx.redis,
                                           hours=_int_arg(request, "hours", 24)))


@bp.get("/alerts")
@openapi.definition(
    summary="Device alerts, highest risk first",
    description="`state=` open (default) | closed | all; `hospital_id=` one hospital; `limit=` (default 100, "
                "at most 500).", tag=TAG)
async def alerts(request: Request) -> HTTPResponse:
    user = await console_user(request)
    scope = await served_hospital_ids(user)
    hospital_id = _int_arg(request, "hospital_id")
    if hospital_id is not None and not may_see_hospital(scope, hospital_id):
        raise Forbidden("您不负责该医院", code="other_hospital", details={"field": "hospital_id"})
    rows = await health.list_alerts(scope, state=(request.args.get("state") or "open").strip(),
                                    hospital_id=hospital_id, limit=_int_arg(request, "limit", 100))
    return json({"alerts": rows})
