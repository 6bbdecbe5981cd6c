"""``/mp/v1``: mini program sign-in, binding to a hospital with an invitation code, who am I, invitations."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import SpecificationBuilder
from sanic_ext.extensions.openapi.definitions import RequestBody, Response

from core import people
from miniprogram_api.schemas import (BindBody, ErrorOut, InvitationBody, InvitationOut, LoginBody, SessionOut,
                                     UserOut, as_json, invitation_out, parse, user_out)
from miniprogram_api.session import current_user

bp = Blueprint("mp_auth", url_prefix="/mp/v1")
TAG = "mini program: people"
BEARER = {"bearer": []}


@bp.before_server_start
async def document_bearer(app):
    SpecificationBuilder().add_security_scheme("bearer", "http", bearer_format="JWT",
                                               description="the token from /mp/v1/auth/login or /mp/v1/auth/bind")


def _error(status: int, description: str) -> Response:
    return Response(as_json(ErrorOut), status=status, description=description)


async def _session_answer(request: Request, user) -> HTTPResponse:
    token = people.session_token(request.app.ctx.settings, user)
    return json({"token": token, "user": await user_out(user)})


@bp.post("/auth/login")
@openapi.definition(
    summary="Sign in with a wx.login() code",
    description="Exchanges the code with WeChat (code2session), finds or creates the user (role staff, no hospital "
                "yet) and returns a session token. The WeChat session_key stays with WeChat.",
    tag=TAG,
    body=RequestBody(as_json(LoginBody), required=True, description="the code from wx.login()"),
    response=[Response(as_json(SessionOut), status=200, description="the token and the user"),
              _error(400, "the code is missing, invalid or already used"),
              _error(429, "WeChat refuses: too many logins")],
)
async def login(request: Request) -> HTTPResponse:
    body = parse(request, LoginBody)
    user, _ = await people.login_mini_program(request.app.ctx.wechat, body.code)
    return await _session_answer(request, user)


@bp.post("/auth/bind")
@openapi.definition(
    summary="Bind to a hospital with an invitation code",
    description="Uses one use of the code and gives the user its hospital, department and role; answers a new token "
                "carrying them. Nothing changes when the code is refused.",
    tag=TAG, secured=BEARER,
    body=RequestBody(as_json(BindBody), required=True, description="the invitation code, name, phone"),
    response=[Response(as_json(SessionOut), status=200, description="the new token and the user"),
              _error(400, "malformed or expired code, missing name"), _error(401, "not signed in"),
              _error(404, "unknown code"), _error(409, "code used up, or the user belongs to another hospital")],
)
async def bind(request: Request) -> HTTPResponse:
    user = await current_user(request)
    body = parse(request, BindBody)
    user = await people.bind_with_code(user, body.code, name=body.name, phone=body.phone)
    await request.app.ctx.events.publish("user.bound", {"user_id": user.id, "hospital_id": user.hospital_id,
                                                        "role": user.role})
    return await _session_answer(request, user)


@bp.get("/me")
@openapi.definition(
    summary="The signed-in user",
    description="The user as stored now (role and hospital may have changed since the token was issued).",
    tag=TAG, secured=BEARER,
    response=[Response(as_json(UserOut), status=200, description="the user"),
              _error(401, "no token, a bad or an expired one"), _error(403, "the account is deactivated")],
)
async def me(request: Request) -> HTTPResponse:
    return json(await user_out(await current_user(request)))


@bp.post("/admin/invitations")
@openapi.definition(
    summary="Create an invitation code (administrators)",
    description="An 8-character code without 0/O/1/I. The hospital defaults to the administrator's own.",
    tag=TAG, secured=BEARER,
    body=RequestBody(as_json(InvitationBody), required=True, description="what the code grants"),
    response=[Response(as_json(InvitationOut), status=201, description="the new code"),
              _error(400, "invalid role, counts or department"), _error(401, "not signed in"),
              _error(403, "not an administrator, or another hospital"), _error(404, "unknown hospital")],
)
async def create_invitation(request: Request) -> HTTPResponse:
    admin = people.require_admin(await current_user(request))
    body = parse(request, InvitationBody)
    invitation = await people.create_invitation(admin, body.hospital_id, role=body.role,
                                                department_id=body.department_id, max_uses=body.max_uses,
                                                ttl_days=body.ttl_days)
    return json(invitation_out(invitation), status=201)
