"""``/console/api/v1``: log in, log out, who am I."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from console import auth
from core.errors import Unauthorized
from miniprogram_api.schemas import parse

bp = Blueprint("console_auth", url_prefix="/console/api/v1")
TAG = "console: sign-in"


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=256)


@bp.post("/login")
@openapi.definition(summary="Log in to the console", tag=TAG,
                    description="Sets the HttpOnly session cookie; the answer's `csrf` goes in the X-CSRF-Token "
                                "header of every later POST/PUT/DELETE. Wrong password: 401 bad_credentials; "
                                "too many in a row: 429 locked; too many from one address: 429 too_many_attempts.")
async def login(request: Request) -> HTTPResponse:
    body = parse(request, LoginBody)
    app = request.app
    user, session_id, csrf = await auth.login(app.ctx.redis, app.ctx.settings, body.username.strip(), body.password,
                                              request.remote_addr or request.ip)
    response = json({"user": await auth.user_out(user), "csrf": csrf})
    auth.set_session_cookie(response, app.ctx.settings, session_id)
    return response


@bp.post("/logout")
@openapi.definition(summary="Log out (ends the session on the server)", tag=TAG)
async def logout(request: Request) -> HTTPResponse:
    try:
        await auth.console_user(request)  # a valid session must come with its CSRF token
    except Unauthorized:
        pass  # already gone: just clear the cookie
    else:
        await auth.end_session(request.app.ctx.redis, request.cookies.get(auth.COOKIE))
    response = json({"ok": True})
    auth.clear_session_cookie(response)
    return response


@bp.get("/me")
@openapi.definition(summary="The signed-in user, their hospitals and the CSRF token", tag=TAG)
async def me(request: Request) -> HTTPResponse:
    user = await auth.console_user(request)
    return json({"user": await auth.user_out(user), "csrf": request.ctx.console_csrf})
