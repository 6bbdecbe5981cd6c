"""``/mp/v1/patient/subscriptions``: the mini program's subscribe-message consent.

The mini program asks for the templates ``GET`` names (``wx.requestSubscribeMessage({tmplIds})``, after a tap) and
posts back exactly what WeChat returned; each "accept" allows the server one message of that template (how they are
used: ``care.consultation_notices``). ``GET`` also gives the user's remaining credits, so the front end asks again
when they run out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from care import consultation_notices
from miniprogram_api.schemas import parse
from miniprogram_api.session import current_user

bp = Blueprint("mp_subscriptions", url_prefix="/mp/v1/patient")
TAG = "mini program: subscribe messages"
SECURED = {"bearer": []}


class ConsentBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    results: Any = None  # checked by the domain, which names the field when it is not an object


@bp.get("/subscriptions")
@openapi.definition(
    summary="The subscribe-message templates to ask for, and the user's remaining credits",
    description="`tmpl_ids` for `wx.requestSubscribeMessage`; `templates[]` `{template_id, purpose, title, credits}`."
                " Empty when no template is configured.",
    tag=TAG, secured=SECURED,
)
async def mine(request: Request) -> HTTPResponse:
    user = await current_user(request)
    return json(await consultation_notices.subscriptions_view(user, request.app.ctx.settings))


@bp.post("/subscriptions")
@openapi.definition(
    summary="Report the user's answers to wx.requestSubscribeMessage",
    description="`{\"results\": {\"<tmplId>\": \"accept\" | \"reject\" | \"ban\" | \"filter\"}}` as WeChat returned "
                "them: each `accept` of a known template is one message allowed. → `counted` (template ids), "
                "`ignored` (`{template_id, reason: unknown_template | not_accepted}`), `credits`. "
                "400 `invalid_field` (`details.field = results`) when `results` is not an object.",
    tag=TAG, secured=SECURED,
)
async def consent(request: Request) -> HTTPResponse:
    user = await current_user(request)
    body = parse(request, ConsentBody)
    return json(await consultation_notices.record_consent(user, body.results, request.app.ctx.settings))
