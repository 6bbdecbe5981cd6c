"""Typed errors. Domains raise these; one handler in ``app.py`` turns them into
``{"error": {"code", "message"}}`` with the status below, and the WeChat transport into a polite text reply.

``message`` is shown to users, so it is Chinese; ``code`` is a stable English identifier for programs.
"""

from __future__ import annotations


class AppError(Exception):
    status = 400
    code = "bad_request"
    message = "请求有误"

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None,
                 headers: dict | None = None, details: dict | None = None):
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.details = details
        super().__init__(self.message)

    def to_body(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(AppError):
    status, code, message = 400, "bad_request", "请求有误"


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "请先登录"


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "没有权限"


class NotFound(AppError):
    status, code, message = 404, "not_found", "未找到"


class Conflict(AppError):
    status, code, message = 409, "conflict", "与现有数据冲突"


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "内容太大"


class Unprocessable(AppError):
    status, code, message = 422, "unprocessable", "内容无法处理"


class TooManyRequests(AppError):
    status, code, message = 429, "too_many_requests", "请求太频繁，请稍后再试"


class ServiceBusy(AppError):
    status, code, message = 503, "busy", "服务繁忙，请稍后再试"


class UpstreamError(AppError):
    """A system we call (WeChat, the HIS) failed or refused."""

    status, code, message = 502, "upstream_error", "外部服务暂时不可用"


class WeChatAPIError(UpstreamError):
    """A WeChat API answer with a non-zero ``errcode``."""

    code = "wechat_error"

    def __init__(self, errcode: int, errmsg: str = "", message: str | None = None, status: int | None = None):
        self.errcode = errcode
        self.errmsg = errmsg
        super().__init__(message or f"微信接口错误（{errcode}）", status=status,
                         details={"errcode": errcode, "errmsg": errmsg})
