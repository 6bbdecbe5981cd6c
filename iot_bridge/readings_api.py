"""``POST /iot/v1/readings``: a gateway's batch of readings over HTTP.

Body (the same as an MQTT message's, without its ``key``)::

    {"readings": [{"device": "<system number>", "metric": "temperature", "value": 36.8,
                   "t": "2026-11-23T08:00:00+08:00"}, ...]}

``t`` is ISO 8601 with a zone, or Unix seconds / milliseconds; left out, the time of arrival. ``metric`` is lower
case (``temperature``, ``pressure``, ``run_hours``, ``cycle_count``, ``error_code`` whose ``value`` is the code, …).
A bare list of readings is accepted too. Up to 1,000 readings per request.
"""

from __future__ import annotations

import json as jsonlib

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.builders import SpecificationBuilder

from core.errors import BadRequest, Unauthorized, Unprocessable
from kiosk_bridge.schemas import error, json_body, ok
from monitoring import gateways, ingest

bp = Blueprint("iot_readings", url_prefix="/iot/v1")
TAG = "iot"


@bp.before_server_start
async def document_security(app):
    SpecificationBuilder().add_security_scheme(
        "gateway_key", "apiKey", location="header", name="X-Gateway-Key",
        description="the gateway's API key, printed once by `python -m monitoring add-gateway NAME --hospital ID`")


class ReadingBody(BaseModel):
    device: str = Field(description="the device's system number (printed on its label), of the gateway's hospital")
    metric: str = Field(description="lower-case name: temperature, pressure, run_hours, cycle_count, error_code, …")
    value: float | str = Field(description="a finite number; for `error_code` the code")
    t: str | float | None = Field(None, description="ISO 8601 with zone, or Unix seconds/ms; default: arrival")


class ReadingsBody(BaseModel):
    readings: list[ReadingBody] = Field(description="1–1000 readings")


class RefusalOut(BaseModel):
    index: int
    code: str
    message: str


class IngestOut(BaseModel):
    accepted: int = Field(description="readings buffered for storage")
    duplicates: int = Field(description="already received (same device, metric and time): not stored again")
    refused: int = Field(description="readings refused (unknown device, malformed, absurd value, too old, …)")
    refusals: list[RefusalOut] = Field(description="the first 100 refusals, by index in the request")


_EXAMPLE = {"readings": [{"device": "SH-0001", "metric": "temperature", "value": 4.2, "t": "2026-11-23T08:00:00Z"},
                         {"device": "SH-0001", "metric": "error_code", "value": "E21", "t": 1795420800}]}


def readings_of(body) -> list:
    """The readings list of an HTTP body or an MQTT message (a bare list is accepted too)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("readings"), list):
        return body["readings"]
    raise BadRequest("请求体须为 {\"readings\": [...]}", code="malformed")


@bp.post("/readings")
@openapi.definition(
    summary="Send readings",
    description="Each reading is checked on its own: good ones are buffered (stored within about a second), "
                "duplicates (same device, metric and time) are counted and skipped, bad ones are refused with a "
                "reason and counted. 200 when at least one was accepted or a duplicate; 422 when every reading "
                "was refused. Over the gateway's rate: 429 with `Retry-After`, nothing of the request taken. "
                "Buffer full: 503 with `Retry-After`. Send the same request again in both cases: duplicates are "
                "recognised.",
    tag=TAG, secured={"gateway_key": []},
    body=json_body(ReadingsBody, _EXAMPLE, "the readings"),
    response=[ok(200, IngestOut, {"accepted": 2, "duplicates": 0, "refused": 0, "refusals": []}, "buffered"),
              error(400, "malformed", "请求体须为 {\"readings\": [...]}", "not JSON, or no readings list"),
              error(401, "invalid_gateway_key", "网关密钥无效或已停用", "no, a wrong or a revoked X-Gateway-Key"),
              error(413, "too_many_readings", "每次最多 1000 条读数", "more than 1,000 readings"),
              error(422, "all_refused", "读数均未通过检查", "every reading refused; `details.refusals` says why"),
              error(429, "rate_limited", "该网关发送过于频繁，请稍后重发", "over the gateway's rate limit"),
              error(503, "buffer_full", "读数缓冲已满，请稍后重发", "the buffer is full; retry after Retry-After")],
)
async def post_readings(request: Request) -> HTTPResponse:
    try:
        gateway = await gateways.authenticate(request.headers.get("x-gateway-key"))
    except Unauthorized:
        await ingest.count_unauthenticated(request.app.ctx.redis)
        raise
    try:
        body = jsonlib.loads(request.body or b"")
    except ValueError:
        raise BadRequest("请求体不是有效的 JSON", code="malformed") from None
    result = await ingest.accept(gateway, readings_of(body), redis=request.app.ctx.redis,
                                 settings=request.app.ctx.settings)
    answer = result.as_dict()
    if result.refused and not (result.accepted or result.duplicates):
        raise Unprocessable("读数均未通过检查", code="all_refused", details=answer)
    return json(answer)
