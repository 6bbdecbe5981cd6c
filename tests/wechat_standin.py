"""A local stand-in of the WeChat server API (aiohttp.web), for tests and demos.

It answers the endpoints medwx uses the way the official docs describe them: tokens that live 7200 s, login codes
that work once, ``errcode``/``errmsg`` errors, JSON labelled ``text/plain`` on the ``/sns/`` endpoints like the real
server. Knobs let a test expire the token, inject errors, stall or break a path, and read what was received.

Run on its own for a demo (``python -m tests.wechat_standin --port 8801``): it prints its base URL and serves until
killed. Control endpoints under ``/_standin/`` then do what the knobs do in tests: ``POST /_standin/js_code``
``{"code", "openid", "unionid"?}``, ``POST /_standin/oauth_code`` ``{"code", "openid", "unionid"?, "scope"?}``,
``POST /_standin/expire_token`` ``{"token"?}``, ``POST /_standin/fail_next`` ``{"path", "errcode", "errmsg"?}``,
``POST /_standin/refuse_subscribe`` ``{"openid"}``, ``GET /_standin/messages``.

The mini program has an access_token of its own (``/cgi-bin/token`` with its appid and secret): subscribe messages
(``/cgi-bin/message/subscribe/send``) take only that one, the service account's API only the service account's.

``GET /connect/oauth2/authorize`` plays WeChat's web OAuth page: it redirects straight back to ``redirect_uri`` with
a fresh code for ``oauth_demo_openid`` (``--demo-openid``) and the ``state`` it was given, so the H5 sign-in runs
end to end against the stand-in (``WECHAT_OPEN_BASE=http://127.0.0.1:8801``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import signal
import time
import re
from typing import Any, NamedTuple
from urllib.parse import urlencode

from aiohttp import web

TOKEN_LIFETIME = 7200
QR_MAX_EXPIRE = 2_592_000
QR_DEFAULT_EXPIRE = 60
QR_LIMIT_SCENE_MAX = 100_000
CUSTOM_MSGTYPES = frozenset({"text", "image", "voice", "video", "music", "news", "mpnews", "mpnewsarticle",
                             "msgmenu", "wxcard", "miniprogrampage"})
MEDIA_MSGTYPES = frozenset({"image", "voice", "video"})
# Subscribe message values: characters allowed per kind (the key without its digits), and the time formats taken.
SUBSCRIBE_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "number": 32, "letter": 32,
                    "symbol": 5, "car_number": 8, "phone_number": 17}
_SUBSCRIBE_TIME = re.compile(r"^((\d{4}-\d{1,2}-\d{1,2}|\d{4}年\d{1,2}月\d{1,2}日) )?\d{1,2}:\d{2}(:\d{2})?$")


class Call(NamedTuple):
    method: str
    path: str
    query: dict
    json: Any  # the parsed body, None when absent or not JSON
    body: bytes  # the raw body, to check its encoding


class _Code(NamedTuple):
    openid: str
    unionid: str | None
    scope: str


def _error(errcode: int, errmsg: str) -> dict:
    return {"errcode": errcode, "errmsg": errmsg}


class WeChatStandIn:
    def __init__(self, *, app_id: str = "wx_standin_app", app_secret: str = "standin-app-secret",
                 mp_app_id: str = "wx_standin_mp", mp_app_secret: str = "standin-mp-secret",
                 token_lifetime: int = TOKEN_LIFETIME, oauth_demo_openid: str = "o_standin_h5_user",
                 oauth_demo_unionid: str | None = None):
        self.app_id, self.app_secret = app_id, app_secret
        self.mp_app_id, self.mp_app_secret = mp_app_id, mp_app_secret
        self.token_lifetime = token_lifetime
        self.calls: list[Call] = []
        self.custom_messages: list[dict] = []
        self.template_messages: list[dict] = []
        self.qrcodes: list[dict] = []
        self.subscribe_messages: list[dict] = []
        self.base_url = ""
        # Who "authorizes" on the stand-in's OAuth page; a test may change it between sign-ins.
        self.oauth_demo_openid, self.oauth_demo_unionid = oauth_demo_openid, oauth_demo_unionid
        self._tokens: dict[str, float] = {}  # access_token -> monotonic expiry
        self._mp_tokens: dict[str, float] = {}  # the mini program's access_tokens
        self._refused_subscribers: set[str] = set()
        self._tickets: dict[str, float] = {}
        self._js_codes: dict[str, _Code] = {}
        self._oauth_codes: dict[str, _Code] = {}
        self._used_codes: set[str] = set()
        self._failures: dict[str, list[dict]] = {}
        self._media: dict[str, tuple[bytes, str]] = {}
        self._stalls: dict[str, list[float]] = {}
        self._breaks: dict[str, list[int]] = {}
        self._msgids = itertools.count(2_000_000_001)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom_send)
        app.router.add_post("/cgi-bin/message/template/send", self._template_send)
        app.router.add_post("/cgi-bin/message/subscribe/send", self._subscribe_send)
        app.router.add_post("/cgi-bin/qrcode/create", self._qrcode_create)
        app.router.add_get("/cgi-bin/ticket/getticket", self._getticket)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_get("/sns/jscode2session", self._jscode2session)
        app.router.add_get("/sns/oauth2/access_token", self._oauth_access_token)
        app.router.add_get("/connect/oauth2/authorize", self._oauth_authorize)
        app.router.add_post("/_standin/js_code", self._control_js_code)
        app.router.add_post("/_standin/oauth_code", self._control_oauth_code)
        app.router.add_post("/_standin/expire_token", self._control_expire_token)
        app.router.add_post("/_standin/fail_next", self._control_fail_next)
        app.router.add_get("/_standin/messages", self._control_messages)
        app.router.add_post("/_standin/refuse_subscribe", self._control_refuse_subscribe)
        return app

    # -- knobs -----------------------------------------------------------------------------------------------------
    @property
    def token_fetches(self) -> int:
        return sum(1 for call in self.calls if call.path == "/cgi-bin/token")

    @property
    def ticket_fetches(self) -> int:
        return sum(1 for call in self.calls if call.path == "/cgi-bin/ticket/getticket")

    @property
    def current_token(self) -> str | None:
        """The newest access_token still valid."""
        return next(reversed(self._tokens), None)

    @property
    def current_mp_token(self) -> str | None:
        """The mini program's newest access_token still valid."""
        return next(reversed(self._mp_tokens), None)

    def token_fetches_for(self, app_id: str) -> int:
        return sum(1 for call in self.calls if call.path == "/cgi-bin/token" and call.query.get("appid") == app_id)

    def refuse_subscribe(self, openid: str) -> None:
        """Subscribe messages to ``openid`` answer 43101, as for a user who refused them or used their subscription."""
        self._refused_subscribers.add(openid)

    @property
    def current_ticket(self) -> str | None:
        return next(reversed(self._tickets), None)

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    def expire_token(self, token: str | None = None) -> None:
        """Make ``token`` (default: every token issued so far) invalid: its next use answers 40001."""
        if token is None:
            self._tokens.clear()
            self._mp_tokens.clear()
        else:
            self._tokens.pop(token, None)
            self._mp_tokens.pop(token, None)

    def add_js_code(self, code: str, openid: str, unionid: str | None = None) -> None:
        self._js_codes[code] = _Code(openid, unionid, "")

    def add_oauth_code(self, code: str, openid: str, unionid: str | None = None, scope: str = "snsapi_base") -> None:
        self._oauth_codes[code] = _Code(openid, unionid, scope)

    def add_media(self, media_id: str, data: bytes, content_type: str = "audio/amr") -> None:
        """A file a user sent, downloadable with /cgi-bin/media/get."""
        self._media[media_id] = (data, content_type)

    async def _media_get(self, request: web.Request) -> web.Response:
        failure = self._token_error(request)
        if failure:
            return self._answer(request, failure)
        found = self._media.get(request.query.get("media_id", ""))
        if found is None:
            return self._answer(request, _error(40007, "invalid media_id"))
        data, content_type = found
        return web.Response(body=data, content_type=content_type,
                            headers={"Content-Disposition": 'attachment; filename="media"'})

    def fail_next(self, path: str, errcode: int, errmsg: str = "") -> None:
        """The next request to ``path`` answers this error (queued: call again to fail several in a row)."""
        self._failures.setdefault(path, []).append(_error(errcode, errmsg or f"injected error {errcode}"))

    def stall_next(self, path: str, seconds: float) -> None:
        """The next request to ``path`` waits ``seconds`` before answering (a slow or hung upstream)."""
        self._stalls.setdefault(path, []).append(seconds)

    def break_next(self, path: str, status: int = 502) -> None:
        """The next request to ``path`` answers an HTML error page with ``status``, as a failing gateway would."""
        self._breaks.setdefault(path, []).append(status)

    # -- plumbing --------------------------------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler):
        if request.path.startswith("/_standin/"):
            return await handler(request)
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        self.calls.append(Call(request.method, request.path, dict(request.query), parsed, raw))
        if self._stalls.get(request.path):
            seconds = self._stalls[request.path].pop(0)
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        if self._breaks.get(request.path):
            status = self._breaks[request.path].pop(0)
            return web.Response(status=status, text=f"<html><body>{status}</body></html>", content_type="text/html")
        if self._failures.get(request.path):
            return self._answer(request, self._failures[request.path].pop(0))
        return await handler(request)

    @staticmethod
    def _answer(request: web.Request, data: dict) -> web.Response:
        """JSON as WeChat sends it: UTF-8 text; the /sns/ endpoints label it text/plain."""
        content_type = "text/plain" if request.path.startswith("/sns/") else "application/json"
        return web.Response(text=json.dumps(data, ensure_ascii=False), content_type=content_type, charset="utf-8")

    def _issue(self, store: dict[str, float]) -> str:
        value = secrets.token_urlsafe(96)
        store[value] = time.monotonic() + self.token_lifetime
        return value

    def _token_error(self, request: web.Request, store: dict[str, float] | None = None) -> dict | None:
        """Is the request's access_token one of ``store`` (the service account's by default) and still valid?"""
        token = request.query.get("access_token")
        if not token:
            return _error(41001, "access_token missing")
        expiry = (self._tokens if store is None else store).get(token)
        if expiry is None:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        if time.monotonic() > expiry:
            return _error(42001, "access_token expired")
        return None

    async def _posted(self, request: web.Request) -> tuple[dict | None, dict | None]:
        try:
            parsed = json.loads(await request.read())
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed, None
        return None, _error(47001, "data format error")

    def _login_code(self, codes: dict[str, _Code], code: str | None) -> tuple[_Code | None, dict | None]:
        """A code works once: unknown 40029, second use 40163."""
        if code in self._used_codes:
            return None, _error(40163, "code been used")
        found = codes.pop(code or "", None)
        if found is None:
            return None, _error(40029, "invalid code")
        self._used_codes.add(code)
        return found, None

    def _app_error(self, request: web.Request, app_id: str, secret: str) -> dict | None:
        if request.query.get("appid") != app_id:
            return _error(40013, "invalid appid")
        if request.query.get("secret") != secret:
            return _error(40125, "invalid appsecret")
        return None

    # -- endpoints -------------------------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        if request.query.get("grant_type") != "client_credential":
            return self._answer(request, _error(40002, "invalid grant_type"))
        if request.query.get("appid") == self.mp_app_id:  # the mini program has a token of its own
            app_id, secret, store = self.mp_app_id, self.mp_app_secret, self._mp_tokens
        else:
            app_id, secret, store = self.app_id, self.app_secret, self._tokens
        error = self._app_error(request, app_id, secret)
        if error:
            return self._answer(request, error)
        return self._answer(request, {"access_token": self._issue(store), "expires_in": self.token_lifetime})

    async def _message(self, request: web.Request, check, sent: list[dict], answer,
                       tokens: dict[str, float] | None = None) -> web.Response:
        """A message API: the token (of ``tokens``, the service account's by default), a JSON body, ``check(body)``;
        accepted → recorded in ``sent`` and answered ``answer()``, else the first error."""
        error = self._token_error(request, tokens)
        body = None
        if error is None:
            body, error = await self._posted(request)
        if error is None:
            error = check(body)
        if error:
            return self._answer(request, error)
        sent.append(body)
        return self._answer(request, answer())

    async def _custom_send(self, request: web.Request) -> web.Response:
        return await self._message(request, self._custom_error, self.custom_messages, lambda: _error(0, "ok"))

    @staticmethod
    def _custom_error(body: dict) -> dict | None:
        touser, msgtype = body.get("touser"), body.get("msgtype")
        if not isinstance(touser, str) or not touser:
            return _error(40003, "invalid openid")
        if msgtype not in CUSTOM_MSGTYPES:
            return _error(40008, "invalid message type")
        content = body.get(msgtype)
        if not isinstance(content, dict):
            return _error(47001, "data format error")
        if msgtype == "text" and not (isinstance(content.get("content"), str) and content["content"]):
            return _error(44004, "empty content")
        if msgtype in MEDIA_MSGTYPES and not content.get("media_id"):
            return _error(40007, "invalid media_id")
        if msgtype == "news":
            articles = content.get("articles")
            if not isinstance(articles, list) or not articles:
                return _error(44003, "empty news data")
            if len(articles) > 1:
                return _error(45008, "article size out of limit")
        return None

    async def _template_send(self, request: web.Request) -> web.Response:
        return await self._message(request, self._template_error, self.template_messages,
                                   lambda: {"errcode": 0, "errmsg": "ok", "msgid": next(self._msgids)})

    @staticmethod
    def _template_error(body: dict) -> dict | None:
        if not isinstance(body.get("touser"), str) or not body["touser"]:
            return _error(40003, "invalid openid")
        if not isinstance(body.get("template_id"), str) or not body["template_id"]:
            return _error(40037, "invalid template_id")
        data = body.get("data")
        if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("value"), str)
                                                 for v in data.values()):
            return _error(47001, "data format error")
        mini = body.get("miniprogram")
        if mini is not None and not (isinstance(mini, dict) and mini.get("appid")):
            return _error(40013, "invalid appid")
        return None

    async def _subscribe_send(self, request: web.Request) -> web.Response:
        """A mini-program subscribe message: the mini program's token only; 43101 for a user who holds no
        subscription (``refuse_subscribe``); 47003 for data missing or breaking the value limits."""
        return await self._message(request, self._subscribe_error, self.subscribe_messages, lambda: _error(0, "ok"),
                                   self._mp_tokens)

    def _subscribe_error(self, body: dict) -> dict | None:
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            return _error(40003, "invalid openid")
        if not isinstance(body.get("template_id"), str) or not body["template_id"]:
            return _error(40037, "invalid template_id")
        if body.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
            return _error(47003, "argument invalid! miniprogram_state")
        page = body.get("page")
        if page is not None and not isinstance(page, str):
            return _error(47003, "argument invalid! page")
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            return _error(47003, "argument invalid! data is empty")
        for key, item in data.items():
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(value, str) or not value:
                return _error(47003, f"argument invalid! data.{key}.value is empty")
            kind = key.rstrip("0123456789")
            limit = SUBSCRIBE_LIMITS.get(kind)
            if (limit and len(value) > limit) or (kind == "time" and not all(
                    _SUBSCRIBE_TIME.match(part.strip()) for part in value.split("~"))):
                return _error(47003, f"argument invalid! data.{key}.value invalid")
        if touser in self._refused_subscribers:
            return _error(43101, "user refuse to accept the msg")
        return None

    async def _qrcode_create(self, request: web.Request) -> web.Response:
        error = self._token_error(request)
        body = None
        if error is None:
            body, error = await self._posted(request)
        if error is None:
            error = self._qrcode_error(body)
        if error:
            return self._answer(request, error)
        self.qrcodes.append(body)
        ticket = secrets.token_urlsafe(72)
        answer: dict[str, Any] = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(18)}"}
        if body["action_name"] in ("QR_SCENE", "QR_STR_SCENE"):
            answer["expire_seconds"] = min(int(body.get("expire_seconds") or QR_DEFAULT_EXPIRE), QR_MAX_EXPIRE)
        return self._answer(request, answer)

    @staticmethod
    def _qrcode_error(body: dict) -> dict | None:
        action, scene = body.get("action_name"), (body.get("action_info") or {}).get("scene")
        if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE") \
                or not isinstance(scene, dict):
            return _error(40053, "invalid action info")
        if action.endswith("STR_SCENE"):
            value = scene.get("scene_str")
            if not isinstance(value, str) or not 1 <= len(value) <= 64:
                return _error(40053, "invalid action info")
        else:
            value = scene.get("scene_id")
            top = QR_LIMIT_SCENE_MAX if action == "QR_LIMIT_SCENE" else 2 ** 32 - 1
            if not isinstance(value, int) or not 1 <= value <= top:
                return _error(40053, "invalid action info")
        expire = body.get("expire_seconds")
        if expire is not None and (not isinstance(expire, int) or expire < 1):
            return _error(40009, "invalid expire_seconds")
        return None

    async def _getticket(self, request: web.Request) -> web.Response:
        error = self._token_error(request)
        if error is None and request.query.get("type") not in ("jsapi", "wx_card"):
            error = _error(40097, "invalid args")
        if error:
            return self._answer(request, error)
        ticket = self._issue(self._tickets)
        return self._answer(request, {"errcode": 0, "errmsg": "ok", "ticket": ticket,
                                      "expires_in": self.token_lifetime})

    async def _jscode2session(self, request: web.Request) -> web.Response:
        error = self._app_error(request, self.mp_app_id, self.mp_app_secret)
        if error is None and request.query.get("grant_type") != "authorization_code":
            error = _error(40002, "invalid grant_type")
        found = None
        if error is None:
            found, error = self._login_code(self._js_codes, request.query.get("js_code"))
        if error:
            return self._answer(request, error)
        answer = {"session_key": secrets.token_urlsafe(18), "openid": found.openid}
        if found.unionid:
            answer["unionid"] = found.unionid
        return self._answer(request, answer)

    async def _oauth_access_token(self, request: web.Request) -> web.Response:
        error = self._app_error(request, self.app_id, self.app_secret)
        if error is None and request.query.get("grant_type") != "authorization_code":
            error = _error(40002, "invalid grant_type")
        found = None
        if error is None:
            found, error = self._login_code(self._oauth_codes, request.query.get("code"))
        if error:
            return self._answer(request, error)
        answer = {"access_token": secrets.token_urlsafe(64), "expires_in": TOKEN_LIFETIME,
                  "refresh_token": secrets.token_urlsafe(64), "openid": found.openid, "scope": found.scope,
                  "is_snapshotuser": 0}
        if found.unionid:
            answer["unionid"] = found.unionid
        return self._answer(request, answer)

    async def _oauth_authorize(self, request: web.Request) -> web.Response:
        """The user "agrees" at once: back to ``redirect_uri`` with a new code and the same ``state``. WeChat shows
        an error page, not a redirect, for a wrong appid or request; so does this."""
        query = request.query
        redirect_uri = query.get("redirect_uri", "")
        if query.get("appid") != self.app_id:
            return web.Response(status=400, text="appid 参数错误")
        if not redirect_uri.startswith(("http://", "https://")):
            return web.Response(status=400, text="redirect_uri 参数错误")
        if query.get("response_type") != "code" or query.get("scope") not in ("snsapi_base", "snsapi_userinfo"):
            return web.Response(status=400, text="scope 参数错误")
        code = secrets.token_urlsafe(24)
        self.add_oauth_code(code, self.oauth_demo_openid, self.oauth_demo_unionid, query["scope"])
        back = urlencode({"code": code, "state": query.get("state", "")})
        raise web.HTTPFound(redirect_uri + ("&" if "?" in redirect_uri else "?") + back)

    # -- control endpoints for demos ---------------------------------------------------------------------------------
    async def _control_js_code(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.add_js_code(data["code"], data["openid"], data.get("unionid"))
        return web.json_response({"ok": True})

    async def _control_oauth_code(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.add_oauth_code(data["code"], data["openid"], data.get("unionid"), data.get("scope", "snsapi_base"))
        return web.json_response({"ok": True})

    async def _control_expire_token(self, request: web.Request) -> web.Response:
        data = await request.json() if request.can_read_body else {}
        self.expire_token(data.get("token"))
        return web.json_response({"ok": True})

    async def _control_fail_next(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.fail_next(data["path"], int(data["errcode"]), data.get("errmsg", ""))
        return web.json_response({"ok": True})

    async def _control_messages(self, request: web.Request) -> web.Response:
        return web.json_response({"custom": self.custom_messages, "template": self.template_messages,
                                  "qrcodes": self.qrcodes, "subscribe": self.subscribe_messages},
                                 dumps=lambda data: json.dumps(data, ensure_ascii=False))

    async def _control_refuse_subscribe(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.refuse_subscribe(data["openid"])
        return web.json_response({"ok": True})


# -- command line ----------------------------------------------------------------------------------------------------
def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.wechat_standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8801)
    parser.add_argument("--app-id", default="wx_standin_app")
    parser.add_argument("--app-secret", default="standin-app-secret")
    parser.add_argument("--mp-app-id", default="wx_standin_mp")
    parser.add_argument("--mp-app-secret", default="standin-mp-secret")
    parser.add_argument("--demo-openid", default="o_standin_h5_user",
                        help="who signs in through the stand-in's OAuth page")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    standin = WeChatStandIn(app_id=args.app_id, app_secret=args.app_secret, mp_app_id=args.mp_app_id,
                            mp_app_secret=args.mp_app_secret, oauth_demo_openid=args.demo_openid)
    await serve_until_signalled(standin, args.host, args.port)


async def serve_until_signalled(standin, host: str, port: int) -> None:
    """Run a stand-in (anything with ``start(host, port)`` → its URL, and ``stop()``) until SIGINT/SIGTERM."""
    print(await standin.start(host, port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await standin.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
