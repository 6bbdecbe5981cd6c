"""Who is asking: the session from ``Authorization: Bearer <JWT>`` (mini program) or the ``medwx_h5`` cookie (H5
pages inside WeChat), and the user row behind it."""

from __future__ import annotations

from sanic import Request

from core.auth import Session, bearer_session, read_session
from core.errors import Forbidden, Unauthorized
from core.models import User

H5_COOKIE = "medwx_h5"


def current_session(request: Request) -> Session:
    """The request's session; a Bearer header wins over the cookie. No credentials, a bad or an expired one: 401."""
    cached = getattr(request.ctx, "session", None)
    if cached is not None:
        return cached
    secret = request.app.ctx.settings.secret_key
    header = request.headers.get("authorization")
    if header:
        session = bearer_session(secret, header)
    elif request.cookies.get(H5_COOKIE):
        session = read_session(secret, request.cookies.get(H5_COOKIE))
    else:
        raise Unauthorized("请先登录", code="login_required")
    request.ctx.session = session
    return session


async def current_user(request: Request) -> User:
    """The stored user of the session (role and hospital as they are now, not as the token says); a deactivated
    account is refused."""
    session = current_session(request)
    user = await User.get_or_none(id=session.user_id)
    if user is None:
        raise Unauthorized("登录信息无效，请重新进入", code="invalid_session")
    if not user.active:
        raise Forbidden("账号已停用，请联系管理员", code="account_disabled")
    return user
