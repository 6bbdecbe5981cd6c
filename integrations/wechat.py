"""Async client of the WeChat server API: the service account (messages, QR codes, web OAuth, JS-SDK) and the
mini program (login with ``jscode2session``, subscribe messages).

The access_tokens (one per app: the service account's, ``app="oa"``, and the mini program's, ``app="mp"``, each
cached under ``wx:token:<appid>``) and the jsapi_ticket are shared by every worker through Redis. WeChat caps the
fetches per day and a new token retires the previous one a few minutes later, so one worker fetches under a Redis
lock while the others wait and read the cache. A call refused because of the token (40001/42001/40014) drops that
exact token (compare-and-delete: a token another worker just fetched stays) and is retried once with a fresh one.

Every failure becomes a ``core.errors`` error with a Chinese message for users: ``WeChatAPIError`` for a non-zero
``errcode``, ``UpstreamError`` for the network, timeouts and unreadable answers. Query strings carry the app
secrets and tokens, so logs name the path only; ``session_key`` never reaches a log either.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import string
import time
from functools import partial
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import aiohttp
from redis.exceptions import LockError

from core.errors import BadRequest, UpstreamError, WeChatAPIError
from core.redis import Redis
from core.settings import Settings

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid, malformed, expired access_token
TOKEN_MARGIN = 300  # seconds cut from expires_in so that no worker uses a token in its last minutes
QR_MAX_EXPIRE = 2_592_000  # 30 days, the longest a temporary QR code lives
QR_SCENE_MAX = 64
SHOWQRCODE_URL = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
NEWS_FIELDS = ("title", "description", "url", "picurl")
APPS = ("oa", "mp")  # the service account (official account) and the mini program: two appids, two access_tokens
SUBSCRIBE_STATES = ("developer", "trial", "formal")  # which version of the mini program a subscribe message opens
# Characters a subscribe message's value may hold, by the kind its key names (``thing1`` is a thing).
SUBSCRIBE_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "number": 32, "letter": 32,
                    "symbol": 5, "car_number": 8, "phone_number": 17}
_NONCE_ALPHABET = string.ascii_letters + string.digits

# Deletes KEYS[1] only while it still holds ARGV[1]: a worker whose call failed with token A must not delete the
# token B another worker fetched in the meantime.
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_LOGIN_CODE = (400, "登录凭证无效或已使用，请重新进入")
_ERRORS: dict[int, tuple[int, str]] = {
    -1: (503, "微信系统繁忙，请稍后再试"),
    40001: (502, "微信接口凭证失效，请稍后再试"),
    40014: (502, "微信接口凭证失效，请稍后再试"),
    42001: (502, "微信接口凭证失效，请稍后再试"),
    40003: (400, "微信用户标识无效"),
    40013: (502, "微信 AppID 配置有误，请联系管理员"),
    40125: (502, "微信 AppSecret 配置有误，请联系管理员"),
    40164: (502, "服务器 IP 不在微信接口白名单中，请联系管理员"),
    40243: (502, "微信 AppSecret 已被冻结，请联系管理员"),
    40029: _LOGIN_CODE,
    40163: _LOGIN_CODE,
    40226: (403, "该微信账号存在安全风险，暂时无法使用"),
    40037: (502, "消息模板配置有误，请联系管理员"),
    43004: (409, "用户未关注公众号，无法发送消息"),
    45008: (400, "图文消息最多只能有一条"),
    45009: (503, "微信接口今日调用次数已达上限，请明天再试"),
    45011: (429, "请求太频繁，请稍后再试"),
    45015: (409, "超出客服消息时限，请等待用户再次发送消息"),
    45047: (409, "超出客服消息时限或条数上限，请等待用户再次发送消息"),
    48001: (502, "公众号未获得该接口权限，请联系管理员"),
    43101: (409, "用户未订阅该消息或订阅次数已用完"),
    47003: (400, "订阅消息内容不符合模板要求"),
}


def api_error(errcode: int, errmsg: str = "") -> WeChatAPIError:
    """The typed error for a non-zero ``errcode``, with its HTTP status and a message users can read."""
    status, message = _ERRORS.get(errcode, (502, f"微信接口错误（{errcode}），请稍后再试"))
    return WeChatAPIError(errcode, errmsg, message=message, status=status)


def jsapi_sign(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature: sha1 of the four fields in this exact order; the URL is the page's, without ``#``."""
    page = url.split("#", 1)[0]
    text = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={page}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def subscribe_kind(key: str) -> str:
    """The kind of a subscribe message's field from its key: ``thing1`` → ``thing``, ``phone_number4`` →
    ``phone_number``."""
    return key.rstrip("0123456789")


def fit_subscribe_data(values: dict[str, str]) -> dict[str, dict]:
    """Subscribe message data from plain strings, each cut to its kind's limit (WeChat refuses a value that is too
    long with 47003 and sends nothing). A cut ``thing`` ends with "…" so readers see it goes on; the other kinds take
    only their own characters (a ``name`` or ``phrase`` is Chinese only) and are cut short. Kinds without a length
    limit (time, date, amount) pass as they are: their format is the caller's business."""
    data = {}
    for key, value in values.items():
        text = " ".join(str(value).split())
        kind = subscribe_kind(key)
        limit = SUBSCRIBE_LIMITS.get(kind)
        if limit and len(text) > limit:
            text = text[:limit - 1] + "…" if kind == "thing" else text[:limit]
        data[key] = {"value": text}
    return data


def _cache_ttl(expires_in: int) -> int:
    if expires_in > 2 * TOKEN_MARGIN:
        return expires_in - TOKEN_MARGIN
    return max(expires_in // 2, 1)


def _as_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _describe(exc: BaseException) -> str:
    """An exception for the log without its URL (query strings hold secrets); connection errors name the host only."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}: {exc.host}:{exc.port}"
    return type(exc).__name__


class WeChatClient:
    def __init__(self, settings: Settings, redis: Redis, session: aiohttp.ClientSession | None = None, *,
                 timeout: float = 10.0):
        self._settings = settings
        self._redis = redis
        self._base = settings.wechat_api_base.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # The Redis lock outlives one HTTP call (so a slow fetch keeps it) and expires if its holder dies.
        self._lock_ttl = timeout + 10
        self._lock_wait = self._lock_ttl + 5
        self._local_locks: dict[str, asyncio.Lock] = {}
        self._compare_and_delete = redis.register_script(_COMPARE_AND_DELETE)

    async def __aenter__(self) -> "WeChatClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it; a session passed in belongs to the caller."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- access_token and jsapi_ticket -------------------------------------------------------------------------------
    @property
    def _token_key(self) -> str:
        return self._token_key_of("oa")

    def _token_key_of(self, app: str) -> str:
        return f"wx:token:{self._app_credentials(app)[1]}"

    def _app_credentials(self, app: str) -> tuple[str, str, str]:
        """(what users call it, appid, secret) of ``app``: "oa" the service account, "mp" the mini program."""
        if app == "mp":
            return "小程序", self._settings.wechat_mp_app_id, self._settings.wechat_mp_app_secret
        if app == "oa":
            return "公众号", self._settings.wechat_app_id, self._settings.wechat_app_secret
        raise ValueError(f"unknown WeChat app {app!r} (one of {APPS})")

    @property
    def _ticket_key(self) -> str:
        return f"wx:jsapi_ticket:{self._settings.wechat_app_id}"

    async def access_token(self, *, force_refresh: bool = False, app: str = "oa") -> str:
        """The access_token of ``app`` (the service account by default, "mp" the mini program), fetched by one
        worker for all.

        ``force_refresh`` retires the cached token first; callers refreshing at the same moment share one new token.
        """
        key = self._token_key_of(app)
        if force_refresh:
            current = _as_text(await self._redis.get(key))
            if current:
                await self._drop(key, current)
        return await self._shared(key, partial(self._fetch_access_token, app))

    async def jsapi_ticket(self) -> str:
        """The JS-SDK ticket, cached and fetched once for all workers like the access_token."""
        return await self._shared(self._ticket_key, self._fetch_jsapi_ticket)

    async def _fetch_access_token(self, app: str = "oa") -> tuple[str, int]:
        app_id, secret = self._credentials(*self._app_credentials(app))
        params = {"grant_type": "client_credential", "appid": app_id, "secret": secret}
        try:
            data = await self._request("GET", "/cgi-bin/token", params=params)
        except WeChatAPIError as exc:
            if exc.errcode == 40001:  # on this endpoint 40001 means a wrong AppSecret, not a stale token
                raise WeChatAPIError(40001, exc.errmsg, message=_ERRORS[40125][1], status=502) from None
            raise
        token, expires_in = self._field(data, "access_token"), int(data.get("expires_in") or 7200)
        log.info("fetched a new WeChat access_token for %s (expires in %s s)", app_id, expires_in)
        return token, expires_in

    async def _fetch_jsapi_ticket(self) -> tuple[str, int]:
        data = await self._call_with_token("GET", "/cgi-bin/ticket/getticket", params={"type": "jsapi"})
        ticket, expires_in = self._field(data, "ticket"), int(data.get("expires_in") or 7200)
        log.info("fetched a new WeChat jsapi_ticket (expires in %s s)", expires_in)
        return ticket, expires_in

    async def _shared(self, key: str, fetch: Callable[[], Awaitable[tuple[str, int]]]) -> str:
        """Read ``key`` from Redis, or fetch it once for every worker and cache it until shortly before it expires.

        An asyncio lock keeps this process's callers off Redis while one of them waits; the Redis lock does the
        same across processes. Both re-read the cache once held: the value usually arrived while waiting.
        """
        value = _as_text(await self._redis.get(key))
        if value:
            return value
        local = self._local_locks.setdefault(key, asyncio.Lock())
        async with local:
            value = _as_text(await self._redis.get(key))
            if value:
                return value
            lock = self._redis.lock(f"{key}:lock", timeout=self._lock_ttl, sleep=0.05,
                                    blocking_timeout=self._lock_wait)
            if not await lock.acquire():
                return await self._after_lock_timeout(key)
            try:
                value = _as_text(await self._redis.get(key))
                if value:
                    return value
                value, expires_in = await fetch()
                await self._redis.set(key, value, ex=_cache_ttl(expires_in))
                return value
            finally:
                await self._release(lock)

    async def _after_lock_timeout(self, key: str) -> str:
        value = _as_text(await self._redis.get(key))
        if value:
            return value
        log.warning("gave up waiting for the lock on %s", key)
        raise UpstreamError("获取微信接口凭证超时，请稍后再试", status=504)

    @staticmethod
    async def _release(lock) -> None:
        try:
            await lock.release()
        except LockError:  # it expired while the fetch ran long; another worker may hold it now
            log.warning("the WeChat token lock expired before its release")

    async def _drop(self, key: str, value: str) -> None:
        await self._compare_and_delete(keys=[key], args=[value])

    async def _call_with_token(self, method: str, path: str, *, params: dict | None = None,
                               payload: dict | None = None, app: str = "oa") -> dict:
        """Call an API that needs ``app``'s access_token; a refused token is replaced and the call retried once."""
        token = await self.access_token(app=app)
        try:
            return await self._request(method, path, params={**(params or {}), "access_token": token},
                                       payload=payload)
        except WeChatAPIError as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            log.info("WeChat refused the access_token on %s (errcode %s): refreshing it", path, exc.errcode)
        await self._drop(self._token_key_of(app), token)
        token = await self.access_token(app=app)
        return await self._request(method, path, params={**(params or {}), "access_token": token}, payload=payload)

    # -- messages ----------------------------------------------------------------------------------------------------
    async def send_custom_message(self, openid: str, msgtype: str, body: dict) -> None:
        """A customer-service message; WeChat accepts them only within its windows after the user's last action."""
        if not openid or not isinstance(openid, str):
            raise BadRequest("缺少接收消息的用户")
        if not msgtype or not isinstance(body, dict):
            raise BadRequest("消息格式有误")
        payload = {"touser": openid, "msgtype": msgtype, msgtype: body}
        await self._call_with_token("POST", "/cgi-bin/message/custom/send", payload=payload)

    async def send_text(self, openid: str, text: str) -> None:
        if not text:
            raise BadRequest("消息内容不能为空")
        await self.send_custom_message(openid, "text", {"content": text})

    async def send_news(self, openid: str, articles: list[dict]) -> None:
        """A link card. WeChat takes exactly one article in a customer-service news message (more: errcode 45008)."""
        if not articles:
            raise BadRequest("图文消息不能为空")
        if len(articles) > 1:
            raise BadRequest(_ERRORS[45008][1])
        cleaned = []
        for article in articles:
            if not article.get("title"):
                raise BadRequest("图文消息缺少标题")
            cleaned.append({k: article[k] for k in NEWS_FIELDS if article.get(k)})
        await self.send_custom_message(openid, "news", {"articles": cleaned})

    async def send_template(self, openid: str, template_id: str, data: dict, *, url: str | None = None,
                            miniprogram: dict | None = None) -> int:
        """A template message; ``data`` values may be plain strings, sent as ``{"value": s}``. Returns the msgid."""
        if not openid or not template_id:
            raise BadRequest("缺少接收用户或消息模板")
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id,
                                   "data": {key: self._template_value(value) for key, value in data.items()}}
        if url:
            payload["url"] = url
        if miniprogram:
            payload["miniprogram"] = miniprogram
        answer = await self._call_with_token("POST", "/cgi-bin/message/template/send", payload=payload)
        return int(self._field(answer, "msgid"))

    async def send_subscribe_message(self, openid: str, template_id: str, data: dict, *, page: str | None = None,
                                     state: str = "formal") -> int | None:
        """A mini-program subscribe message (one per "accept" the user gave for the template), sent with the mini
        program's access_token to its ``mp_openid``. ``data`` goes out as given, ``{"thing1": {"value": ...}}``:
        values over WeChat's limits are refused (47003), never cut here (``fit_subscribe_data`` cuts them for the
        caller). 43101: the user holds no subscription for it. Returns the msgid when WeChat gives one."""
        if not openid or not template_id:
            raise BadRequest("缺少接收用户或消息模板")
        if state not in SUBSCRIBE_STATES:
            raise BadRequest("小程序版本有误")
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data,
                                   "miniprogram_state": state, "lang": "zh_CN"}
        if page:
            payload["page"] = page
        answer = await self._call_with_token("POST", "/cgi-bin/message/subscribe/send", payload=payload, app="mp")
        return int(answer["msgid"]) if str(answer.get("msgid") or "").isdigit() else None

    @staticmethod
    def _template_value(value: Any) -> dict:
        if isinstance(value, dict):
            if "value" not in value:
                raise BadRequest("模板消息字段缺少内容")
            return value
        return {"value": str(value)}

    # -- QR codes ----------------------------------------------------------------------------------------------------
    async def create_qrcode(self, scene_str: str, *, permanent: bool = True,
                            expire_seconds: int = QR_MAX_EXPIRE) -> dict:
        """A parametric QR code carrying ``scene_str`` (scan events report it). Permanent ones are limited to
        100,000 per account; temporary ones live at most 30 days. Returns ``{"ticket", "url", "expire_seconds"}``
        (``expire_seconds`` is None for a permanent code)."""
        if not isinstance(scene_str, str) or not 1 <= len(scene_str) <= QR_SCENE_MAX:
            raise BadRequest(f"二维码场景值长度须为 1–{QR_SCENE_MAX} 个字符")
        payload: dict[str, Any] = {"action_info": {"scene": {"scene_str": scene_str}}}
        if permanent:
            payload["action_name"] = "QR_LIMIT_STR_SCENE"
        else:
            if not 1 <= expire_seconds <= QR_MAX_EXPIRE:
                raise BadRequest("临时二维码有效期须为 1 秒到 30 天")
            payload.update(action_name="QR_STR_SCENE", expire_seconds=int(expire_seconds))
        data = await self._call_with_token("POST", "/cgi-bin/qrcode/create", payload=payload)
        return {"ticket": self._field(data, "ticket"), "url": data.get("url"),
                "expire_seconds": data.get("expire_seconds")}

    @staticmethod
    def qrcode_image_url(ticket: str) -> str:
        return SHOWQRCODE_URL + quote(ticket, safe="")

    # -- logins ------------------------------------------------------------------------------------------------------
    async def code2session(self, js_code: str) -> dict:
        """Mini program login: ``{"openid", "session_key", "unionid"?}``. Keep ``session_key`` on the server."""
        if not js_code:
            raise BadRequest(_LOGIN_CODE[1])
        app_id, secret = self._credentials("小程序", self._settings.wechat_mp_app_id,
                                           self._settings.wechat_mp_app_secret)
        params = {"appid": app_id, "secret": secret, "js_code": js_code, "grant_type": "authorization_code"}
        data = await self._request("GET", "/sns/jscode2session", params=params)
        result = {"openid": self._field(data, "openid"), "session_key": data.get("session_key")}
        if data.get("unionid"):
            result["unionid"] = data["unionid"]
        return result

    async def oauth_openid(self, code: str) -> dict:
        """Web page OAuth: WeChat's answer as is (``openid``, ``scope``, ``unionid``?, the user's own tokens)."""
        if not code:
            raise BadRequest(_LOGIN_CODE[1])
        app_id, secret = self._credentials("公众号", self._settings.wechat_app_id, self._settings.wechat_app_secret)
        params = {"appid": app_id, "secret": secret, "code": code, "grant_type": "authorization_code"}
        data = await self._request("GET", "/sns/oauth2/access_token", params=params)
        self._field(data, "openid")
        return {k: v for k, v in data.items() if k not in ("errcode", "errmsg")}

    # -- media ---------------------------------------------------------------------------------------------------------
    async def download_media(self, media_id: str) -> bytes:
        """A temporary media file a user sent (voice, image; WeChat keeps them 3 days). Success is the bytes,
        failure is JSON with an errcode; a refused token is replaced and the call retried once."""
        if not media_id:
            raise BadRequest("缺少媒体文件编号")
        for attempt in (1, 2):
            token = await self.access_token()
            params = {"access_token": token, "media_id": media_id}
            try:
                async with self._http().get(self._base + "/cgi-bin/media/get", params=params,
                                            timeout=self._timeout) as response:
                    status, kind, body = response.status, response.content_type, await response.read()
            except asyncio.TimeoutError:
                raise UpstreamError("微信服务响应超时，请稍后再试", status=504) from None
            except aiohttp.ClientError as exc:
                log.warning("WeChat media download failed: %s", _describe(exc))
                raise UpstreamError("无法连接微信服务，请稍后再试", status=502) from None
            if status < 400 and kind not in ("application/json", "text/plain"):
                return body
            try:
                self._decode("/cgi-bin/media/get", status, body)
            except WeChatAPIError as exc:
                if exc.errcode in TOKEN_ERRORS and attempt == 1:
                    await self._drop(self._token_key, token)
                    continue
                raise
            raise UpstreamError("微信服务返回了无法识别的内容，请稍后再试", status=502)
        raise UpstreamError("微信服务暂时不可用，请稍后再试", status=502)

    # -- JS-SDK ------------------------------------------------------------------------------------------------------
    async def jsapi_signature(self, url: str) -> dict:
        """The ``wx.config`` fields for the page at ``url`` (its ``#fragment`` is not signed)."""
        if not url:
            raise BadRequest("缺少页面地址")
        ticket = await self.jsapi_ticket()
        nonce = "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(16))
        timestamp = int(time.time())
        return {"appId": self._settings.wechat_app_id, "timestamp": timestamp, "nonceStr": nonce,
                "signature": jsapi_sign(ticket, nonce, timestamp, url)}

    # -- HTTP --------------------------------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise UpstreamError("微信接口连接已关闭")
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _request(self, method: str, path: str, *, params: dict | None = None,
                       payload: dict | None = None) -> dict:
        """One call; returns the decoded answer or raises the typed error. JSON goes out as UTF-8 text, not
        ``\\u`` escapes, which WeChat would show to users as is."""
        data, headers = None, None
        if payload is not None:
            data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers = {"Content-Type": "application/json; charset=utf-8"}
        try:
            async with self._http().request(method, self._base + path, params=params, data=data, headers=headers,
                                            timeout=self._timeout) as response:
                status, body = response.status, await response.read()
        except asyncio.TimeoutError:
            log.warning("WeChat %s %s timed out", method, path)
            raise UpstreamError("微信服务响应超时，请稍后再试", status=504) from None
        except aiohttp.ClientError as exc:
            log.warning("WeChat %s %s failed: %s", method, path, _describe(exc))
            raise UpstreamError("无法连接微信服务，请稍后再试", status=502) from None
        return self._decode(path, status, body)

    @staticmethod
    def _decode(path: str, status: int, body: bytes) -> dict:
        """WeChat answers JSON, sometimes labelled text/plain: parse the body whatever the Content-Type says."""
        if status >= 400:
            log.warning("WeChat %s answered HTTP %s", path, status)
            raise UpstreamError("微信服务暂时不可用，请稍后再试", status=502)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            log.warning("WeChat %s answered something other than a JSON object (%d bytes)", path, len(body))
            raise UpstreamError("微信服务返回了无法识别的内容，请稍后再试", status=502)
        try:
            errcode = int(data.get("errcode") or 0)
        except (TypeError, ValueError):
            log.warning("WeChat %s answered an unreadable errcode", path)
            raise UpstreamError("微信服务返回了无法识别的内容，请稍后再试", status=502) from None
        if errcode:
            errmsg = str(data.get("errmsg") or "")
            log.warning("WeChat %s answered errcode %s: %s", path, errcode, errmsg)
            raise api_error(errcode, errmsg)
        return data

    @staticmethod
    def _field(data: dict, name: str) -> Any:
        value = data.get(name)
        if value is None or value == "":
            log.warning("a WeChat answer lacks %r", name)
            raise UpstreamError("微信服务返回了无法识别的内容，请稍后再试", status=502)
        return value

    @staticmethod
    def _credentials(what: str, app_id: str, secret: str) -> tuple[str, str]:
        if not app_id or not secret:
            raise UpstreamError(f"微信{what}未配置，请联系管理员", code="wechat_not_configured", status=503)
        return app_id, secret
