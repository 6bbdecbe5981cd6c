"""``POST /fhir-callback/appointment``: the HIS pushes an Appointment (or a Bundle of them, as a FHIR Subscription
notification carries) when it accepts or declines a consultation request.

The HIS authenticates with the shared secret ``HIS_CALLBACK_SECRET`` as ``Authorization: Bearer <secret>``; unset,
the callback is off (404) and answers come by polling only. An Appointment that names none of our requests is
acknowledged and ignored (the HIS need not know which of its appointments are ours).
"""

from __future__ import annotations

import hmac
import json as jsonlib
import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from care import consultations
from core.errors import BadRequest, NotFound, Unauthorized

log = logging.getLogger(__name__)

bp = Blueprint("his_callback", url_prefix="/fhir-callback")


def _check_secret(request: Request) -> None:
    secret = request.app.ctx.settings.his_callback_secret
    if not secret:
        raise NotFound("未启用回调", code="callback_disabled")
    scheme, _, sent = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), secret.encode()):
        log.warning("HIS callback refused from %s: wrong secret", request.remote_addr or request.ip)
        raise Unauthorized("回调密钥无效", code="invalid_callback_secret")


@bp.post("/appointment")
@openapi.definition(
    summary="The HIS's answer to a consultation request",
    description="Body: a FHIR R4 Appointment (`status: booked` accepts; `cancelled`, or the practitioner "
                "participant `declined`, declines) or a Bundle holding Appointments. Matched by the Appointment's id "
                "(as returned when we created it) or our identifier `urn:medwx:consultation`. 200 "
                "`{\"updated\": [consultation ids]}`.",
    tag="HIS callbacks",
)
async def appointment(request: Request) -> HTTPResponse:
    _check_secret(request)
    try:
        body = jsonlib.loads(request.body or b"null")
    except ValueError:
        raise BadRequest("请求内容须为 FHIR JSON", code="invalid_json") from None
    changed = await consultations.apply_notification(body, events=request.app.ctx.events)
    return json({"updated": [c.id for c in changed]})
