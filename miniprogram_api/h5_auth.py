"""``/h5/auth``: sign-in for the H5 pages opened inside WeChat, through the public account's web OAuth.

``/start?next=/h5/...`` sends the phone to WeChat's authorize page; WeChat sends it back to ``/callback`` with a
one-time code, which becomes a session cookie (``medwx_h5``), and the phone lands on ``next``.

WeChat allows ``state`` only 128 bytes of ``[a-zA-Z0-9]``, too little for a signed ``next``. So ``state`` is a
random nonce, and the signed ``{next, nonce}`` waits in a short-lived HttpOnly cookie scoped to ``/h5/auth``. The
callback accepts a code only with the cookie whose nonce matches ``state``: a link made by someone else (a forged
or replayed state) cannot sign the victim in as the attacker, and an old one has expired.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import quote, unquote, urlsplit

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, redirect
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import Parameter, Response

from core import people
from core.auth import read_link, sign_link
from core.errors import BadRequest, Forbidden, UpstreamError
from core.settings import Settings
from miniprogram_api.schemas import ErrorOut, as_json
from miniprogram_api.session import H5_COOKIE

bp = Blueprint("h5_auth", url_prefix="/h5/auth")
TAG = "H5 pages: sign-in"
PENDING_COOKIE = "medwx_h5_oauth"
PENDING_PATH = "/h5/auth"
PENDING_TTL = 600  # seconds from /start to /callback: WeChat's page answers at once
NEXT_MAX = 1024
_PURPOSE = "h5_oauth"


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site; anything that a browser could read as another site is refused."""
    if not value:
        raise BadRequest("缺少登录后要打开的页面", code="next_required")
    decoded = unquote(value)
    if (len(value) > NEXT_MAX or not value.startswith("/") or value.startswith("//") or "\\" in decoded
            or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in decoded)
            or decoded.startswith("//")):
        raise BadRequest("登录后只能打开本站页面", code="next_not_allowed")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        raise BadRequest("登录后只能打开本站页面", code="next_not_allowed")
    return value


def callback_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + PENDING_PATH + "/callback"


def authorize_url(settings: Settings, state: str) -> str:
    """WeChat's authorize page; its parameters must come in this order and end with ``#wechat_redirect``."""
    return (f"{settings.wechat_open_base.rstrip('/')}/connect/oauth2/authorize"
            f"?appid={quote(settings.wechat_app_id, safe='')}"
            f"&redirect_uri={quote(callback_url(settings), safe='')}"
            f"&response_type=code&scope=snsapi_base&state={state}#wechat_redirect")


def _secure(settings: Settings) -> bool:
    return settings.public_base_url.startswith("https://")


@bp.get("/start")
@openapi.definition(
    summary="Start WeChat sign-in for an H5 page",
    description="Redirects (302) to WeChat's OAuth page (scope snsapi_base); WeChat comes back to /h5/auth/callback. "
                "`next` must be a path on this site.",
    tag=TAG,
    parameter=Parameter("next", str, location="query", required=True,
                        description="the page to open after sign-in, e.g. /h5/repair"),
    response=[Response(status=302, description="to WeChat's authorize page"),
              Response(as_json(ErrorOut), status=400, description="missing or foreign `next`")],
)
async def start(request: Request) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    next_path = safe_next(request.args.get("next"))
    if not settings.wechat_app_id:
        raise UpstreamError("微信公众号未配置，请联系管理员", code="wechat_not_configured", status=503)
    nonce = secrets.token_hex(16)
    response = redirect(authorize_url(settings, nonce))
    response.add_cookie(PENDING_COOKIE, sign_link(settings.secret_key, _PURPOSE, {"next": next_path, "nonce": nonce}),
                        path=PENDING_PATH, httponly=True, samesite="Lax", secure=_secure(settings),
                        max_age=PENDING_TTL)
    return response


def _pending(request: Request, settings: Settings) -> dict:
    signed = request.cookies.get(PENDING_COOKIE)
    if not signed:
        raise Forbidden("登录已超时，请重新打开页面", code="oauth_state_expired")
    try:
        pending = read_link(settings.secret_key, _PURPOSE, signed, max_age=PENDING_TTL)
    except Forbidden as exc:
        if exc.code == "link_expired":
            raise Forbidden("登录已超时，请重新打开页面", code="oauth_state_expired") from None
        raise Forbidden("登录请求无效，请重新打开页面", code="oauth_state_invalid") from None
    state = request.args.get("state") or ""
    if not hmac.compare_digest(state.encode(), str(pending.get("nonce", "")).encode()):
        raise Forbidden("登录请求无效，请重新打开页面", code="oauth_state_invalid")
    return pending


@bp.get("/callback")
@openapi.definition(
    summary="WeChat's return from the OAuth page",
    description="Exchanges the code for the user's openid, sets the HttpOnly session cookie `medwx_h5` and "
                "redirects (302) to the `next` given to /h5/auth/start.",
    tag=TAG,
    parameter=[Parameter("code", str, location="query", description="WeChat's one-time code"),
               Parameter("state", str, location="query", required=True, description="as sent to WeChat")],
    response=[Response(status=302, description="signed in, to `next`"),
              Response(as_json(ErrorOut), status=400, description="no code, or WeChat refused it"),
              Response(as_json(ErrorOut), status=403, description="expired or forged state")],
)
async def callback(request: Request) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    pending = _pending(request, settings)
    code = request.args.get("code")
    if not code:
        raise BadRequest("微信授权未完成，请重新打开页面", code="oauth_no_code")
    user = await people.login_oauth(request.app.ctx.wechat, code)
    response = redirect(safe_next(pending.get("next")))
    response.add_cookie(H5_COOKIE, people.session_token(settings, user), path="/", httponly=True, samesite="Lax",
                        secure=_secure(settings), max_age=people.SESSION_TTL)
    response.delete_cookie(PENDING_COOKIE, path=PENDING_PATH)
    return response
