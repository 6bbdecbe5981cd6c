"""``/h5`` repair pages: the report form a label's link opens, the submit, and the reporter's ticket page.

Who is reporting: inside WeChat the reporter signs in through ``/h5/auth/start`` (session cookie ``medwx_h5``); in
any other browser they leave a name and a mobile number instead, and the browser keeps a signed cookie listing the
tickets it reported, which is what lets that anonymous reporter see and confirm them later.

Pages answer errors as pages (Chinese, with the status); the JSON endpoints answer ``{"error": {...}}`` like the rest
of the API.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sanic import Blueprint, Request
from sanic.handlers import ContentRangeHandler
from sanic.response import HTTPResponse, file, html, json, redirect
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import Parameter, RequestBody, Response

from core.auth import read_link, sign_link
from core.errors import AppError, BadRequest, Forbidden, NotFound, Unauthorized
from core.media import media_path
from core.models import User
from core.settings import Settings
from miniprogram_api.schemas import ErrorOut
from miniprogram_api.session import current_user
from repair import labels, reporting, tickets
from repair.devices import device_card
from repair.groups import group_card
from repair.models import Device, DeviceGroup, Ticket

bp = Blueprint("h5_repair", url_prefix="/h5")
TAG = "H5 pages: repair"
HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static" / "h5_repair"
STATIC_URL = "/h5/static/repair"
bp.static("/static/repair", STATIC_DIR, name="h5_repair_static")

REPORTS_COOKIE = "medwx_reports"
REPORTS_PURPOSE = "h5_reports"
REPORTS_TTL = 180 * 24 * 3600
REPORTS_KEPT = 20
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
_PAGE_HEADERS = {
    # Everything the pages use is served from here; blob: for the previews of what the user picked or recorded.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                               "script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",  # the repair link's token must not travel on to other sites
    "X-Content-Type-Options": "nosniff",
}
_templates = Environment(loader=FileSystemLoader(HERE / "templates" / "h5_repair"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    """A static file's URL with a content hash, so a phone never runs yesterday's script with today's page."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]
    return f"{STATIC_URL}/{name}?v={digest}"


_templates.globals["asset"] = _asset


def _page(name: str, status: int = 200, **context) -> HTTPResponse:
    return html(_templates.get_template(name).render(**context), status=status, headers=_PAGE_HEADERS)


def _error_page(exc: AppError, *, title: str | None = None, hint: str | None = None,
                ways: tuple[str, ...] = ()) -> HTTPResponse:
    return _page("error.html", status=exc.status, title=title or exc.message, message=exc.message, hint=hint,
                 ways=ways)


# The backup ways when a label's link does not work (the bot answers each of them).
_OTHER_WAYS = ("重新扫描设备上的二维码；",
               "标签损坏或看不清时，在公众号对话框输入设备铭牌号（或标签上的系统编号）报修；",
               "在公众号中打开“我的设备”，或发送医院名称查找设备报修。")


# -- who is asking ---------------------------------------------------------------------------------------------------
async def _viewer(request: Request) -> User | None:
    """The signed-in user, or None for a visitor without a (valid) session: pages never fail for a stale cookie."""
    try:
        return await current_user(request)
    except AppError:
        return None


def _in_wechat(request: Request) -> bool:
    return "MicroMessenger" in request.headers.get("user-agent", "")


def _sign_in_first(request: Request, settings: Settings) -> HTTPResponse | None:
    """Inside WeChat (when the account is configured) the reporter is identified by OAuth rather than by typing."""
    if not (_in_wechat(request) and settings.wechat_app_id):
        return None
    here = request.path + (f"?{request.query_string}" if request.query_string else "")
    return redirect(f"/h5/auth/start?next={quote(here, safe='')}")


def _reported_here(request: Request, settings: Settings) -> list[str]:
    """The ticket numbers this browser reported without signing in (from the signed cookie)."""
    signed = request.cookies.get(REPORTS_COOKIE)
    if not signed:
        return []
    try:
        data = read_link(settings.secret_key, REPORTS_PURPOSE, signed, max_age=REPORTS_TTL)
    except Forbidden:
        return []
    numbers = data.get("n") if isinstance(data, dict) else None
    return [n for n in numbers if isinstance(n, str)] if isinstance(numbers, list) else []


def _remember_report(request: Request, response: HTTPResponse, settings: Settings, number: str) -> None:
    numbers = [n for n in _reported_here(request, settings) if n != number] + [number]
    response.add_cookie(REPORTS_COOKIE, sign_link(settings.secret_key, REPORTS_PURPOSE, {"n": numbers[-REPORTS_KEPT:]}),
                        path="/h5", httponly=True, samesite="Lax", max_age=REPORTS_TTL,
                        secure=settings.public_base_url.startswith("https://"))


async def _reporter_access(request: Request, ticket: Ticket) -> tuple[User | None, bool, bool]:
    """(viewer, may see the ticket, is its reporter)."""
    settings: Settings = request.app.ctx.settings
    user = await _viewer(request)
    anonymous_reporter = ticket.reporter_id is None and ticket.number in _reported_here(request, settings)
    reporter = anonymous_reporter or reporting.is_reporter(ticket, user)
    return user, reporter or reporting.may_view(ticket, user), reporter


def _same_origin(request: Request) -> None:
    """State-changing posts come from our own pages: a browser names the page's origin, and another site's form
    cannot submit in the name of a signed-in reporter."""
    origin = request.headers.get("origin")
    if not origin:
        return  # not a browser (or a very old one): nothing rides on ambient cookies from another site
    settings: Settings = request.app.ctx.settings
    ours = {settings.public_base_url.rstrip("/"), f"{request.scheme}://{request.host}"}
    if origin.rstrip("/") not in ours:
        raise Forbidden("请从报修页面提交", code="cross_origin")


# -- the report form -------------------------------------------------------------------------------------------------
@bp.get("/repair")
@openapi.definition(
    summary="The repair report page (HTML)",
    description="Opened from a label's QR code or a scan reply: shows the device (or group) of the signed link and "
                "the report form. Inside WeChat without a session it first redirects to /h5/auth/start.",
    tag=TAG,
    parameter=Parameter("t", str, location="query", required=True, description="the signed repair-link token"),
    response=[Response({"text/html": str}, status=200, description="the page"),
              Response(status=302, description="inside WeChat: sign in first"),
              Response({"text/html": str}, status=403, description="expired or forged link (a page)"),
              Response({"text/html": str}, status=404, description="the device no longer exists (a page)")],
)
async def repair_page(request: Request) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    token = request.args.get("t", "")
    try:
        scene = labels.read_repair_token(settings, token)
        target = await labels.resolve_scene(scene)
    except Forbidden as exc:
        return _error_page(exc, title="链接已失效" if exc.code == "link_expired" else "链接无效", ways=_OTHER_WAYS)
    except AppError as exc:
        return _error_page(exc, ways=_OTHER_WAYS)
    user = await _viewer(request)
    if user is None and (signing_in := _sign_in_first(request, settings)):
        return signing_in
    if isinstance(target, Device):
        card, group, usable = await device_card(target), None, target.status != "retired"
    else:
        card, group, usable = None, await group_card(target), target.active
    config = {"token": token, "submitUrl": "/h5/repair/tickets", "anonymous": user is None,
              "maxPhotos": reporting.MAX_PHOTOS, "maxVoices": reporting.MAX_VOICES, "maxVoiceSeconds": 60}
    return _page("repair.html", device=card, group=group, usable=usable, reporter=user, config=config)


def _form_files(request: Request, field: str, kind: str) -> list[reporting.Upload]:
    files = request.files.getlist(field) if request.files else None
    # An untouched file input still sends an empty, unnamed part: that is "no file", not an empty file.
    return [reporting.Upload(f.body, kind, f.name or "") for f in files or () if f.body or f.name]


def _member_ids(values: list[str] | None) -> list[int]:
    try:
        ids = [int(v) for v in values or () if str(v).strip()]
    except ValueError:
        raise BadRequest("所选设备有误，请刷新页面后重试", code="bad_member_id") from None
    if any(i <= 0 or i > 2**31 - 1 for i in ids):
        raise BadRequest("所选设备有误，请刷新页面后重试", code="bad_member_id")
    return sorted(set(ids))


@bp.post("/repair/tickets")
@openapi.definition(
    summary="Submit a repair report from the H5 page",
    description="multipart/form-data: `t` (the page's link token), `description`, `photos` (up to 6 images), "
                "`voices` (up to 2 audio clips), `member_ids` (group reports: the devices meant), "
                "`client_request_id` (one per page load: a repeat returns the same ticket with 200), and "
                "`name`/`phone` when not signed in. 201 with the new ticket.",
    tag=TAG,
    body=RequestBody({"multipart/form-data": dict}, required=True),
    response=[Response({"application/json": dict}, status=201, description="{number, state, url}"),
              Response({"application/json": dict}, status=200, description="a repeated submit: the same ticket"),
              Response({"application/json": ErrorOut}, status=400, description="bad phone or field"),
              Response({"application/json": ErrorOut}, status=403, description="expired or forged link"),
              Response({"application/json": ErrorOut}, status=409, description="request id used by someone else"),
              Response({"application/json": ErrorOut}, status=413, description="a file is too large"),
              Response({"application/json": ErrorOut}, status=422, description="not an image/audio, too many "
                                                                                  "files, empty report")],
)
async def submit(request: Request) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    _same_origin(request)
    form = request.form
    scene = labels.read_repair_token(settings, (form.get("t") if form else "") or "")
    target = await labels.resolve_scene(scene)
    user = await _viewer(request)
    contact = None
    if user is None:
        if _in_wechat(request) and settings.wechat_app_id and not (form and form.get("phone")):
            # The page was opened signed in (no phone field) and the session ran out before the submit.
            raise Unauthorized("登录已过期，请刷新页面后重新提交", code="login_expired")
        contact = reporting.contact_line(form.get("name") if form else "", form.get("phone") if form else "")
    request_id = ((form.get("client_request_id") if form else "") or "").strip() or None
    if request_id is not None and not _REQUEST_ID.match(request_id):
        raise BadRequest("提交编号格式有误，请刷新页面后重试", code="bad_client_request_id")
    member_ids = _member_ids(form.getlist("member_ids") if form else None)
    if member_ids and not isinstance(target, DeviceGroup):
        raise BadRequest("单台设备的报修不能选择设备组成员", code="not_a_group")
    uploads = _form_files(request, "photos", "photo") + _form_files(request, "voices", "voice")
    ticket, created = await reporting.submit_report(
        settings, request.app.ctx.events, target, description=(form.get("description") if form else "") or "",
        uploads=uploads, member_ids=member_ids, reporter=user, reporter_openid=user.openid if user else None,
        client_request_id=request_id, contact=contact)
    response = json({"number": ticket.number, "state": ticket.state, "url": f"/h5/tickets/{ticket.number}"},
                    status=201 if created else 200)
    if user is None:
        _remember_report(request, response, settings, ticket.number)
    return response


# -- the reporter's ticket page --------------------------------------------------------------------------------------
def _local(settings: Settings, when: datetime | None) -> str:
    return when.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M") if when else ""


@bp.get("/tickets/<number:str>")
@openapi.definition(
    summary="The reporter's ticket page (HTML)",
    description="Device, description, photos, voice clips and the state history; the reporter can confirm the "
                "repair or say it is not fixed. Others get a 403 page.",
    tag=TAG,
    response=[Response({"text/html": str}, status=200, description="the page"),
              Response({"text/html": str}, status=403, description="not the reporter (a page)"),
              Response({"text/html": str}, status=404, description="no such ticket (a page)")],
)
async def ticket_page(request: Request, number: str) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    try:
        ticket = await tickets.get_ticket(number)
    except NotFound as exc:
        return _error_page(exc, hint="请核对工单号，或在公众号中查询我的报修。")
    user, allowed, reporter = await _reporter_access(request, ticket)
    if not allowed:
        if user is None and (signing_in := _sign_in_first(request, settings)):
            return signing_in
        return _error_page(Forbidden("只有报修人可以查看该工单"), title="无法查看该工单",
                           hint="请在提交报修的手机上打开，或在微信中通过公众号消息进入。")
    details = await reporting.ticket_details(ticket)
    steps = [{"label": tickets.STATE_LABELS.get(t.to_state, t.to_state), "time": _local(settings, t.created_at),
              "actor": "系统" if t.actor_label == "system" else t.actor_label, "note": t.note}
             for t in reversed(details.history)]  # newest first: what the reporter came to see
    where = details.device or details.group
    place = " · ".join(p for p in (details.ticket.hospital.name,
                                   where.department.name if where and where.department else "") if p)
    return _page("ticket.html", d=details, steps=steps, state_label=tickets.STATE_LABELS.get(ticket.state, ""),
                 created=_local(settings, ticket.created_at), place=place,
                 can_confirm=reporter and ticket.state == "done",
                 can_reopen=reporter and ticket.state in tickets.ALLOWED["reopened"])


async def _reporter_moves(request: Request, number: str, to_state: str, default_note: str) -> HTTPResponse:
    _same_origin(request)
    ticket = await tickets.get_ticket(number)
    user, _, reporter = await _reporter_access(request, ticket)
    if not reporter:
        raise Forbidden("只有报修人可以确认或重新打开工单", code="not_the_reporter")
    body = request.json if request.headers.get("content-type", "").startswith("application/json") else None
    note = body.get("note") if isinstance(body, dict) else None
    note = note.strip()[:500] if isinstance(note, str) and note.strip() else default_note
    actor = tickets.Actor(user=user) if user is not None and reporting.is_reporter(ticket, user) \
        else tickets.Actor(label="报修人")
    moved = await tickets.change_state(ticket, to_state, events=request.app.ctx.events, actor=actor, note=note)
    return json({"number": moved.number, "state": moved.state, "state_label": tickets.STATE_LABELS[moved.state]})


_MOVE_RESPONSES = [Response({"application/json": dict}, status=200, description="{number, state, state_label}"),
                   Response({"application/json": ErrorOut}, status=403, description="not the reporter"),
                   Response({"application/json": ErrorOut}, status=404, description="no such ticket"),
                   Response({"application/json": ErrorOut}, status=409, description="not in a state that allows it")]


@bp.post("/tickets/<number:str>/confirm")
@openapi.definition(summary="The reporter confirms the repair (done → closed)", tag=TAG, response=_MOVE_RESPONSES)
async def confirm(request: Request, number: str) -> HTTPResponse:
    return await _reporter_moves(request, number, "closed", "报修人确认已修好")


@bp.post("/tickets/<number:str>/reopen")
@openapi.definition(summary="The reporter says it is not fixed (done/closed → reopened)", tag=TAG,
                    body=RequestBody({"application/json": dict}, description="optional {note}"),
                    response=_MOVE_RESPONSES)
async def reopen(request: Request, number: str) -> HTTPResponse:
    return await _reporter_moves(request, number, "reopened", "报修人反馈还没修好")


# -- media of a ticket -----------------------------------------------------------------------------------------------
async def _media(request: Request, media_id: int, thumbnail: bool) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    media, attached_to = await reporting.media_tickets(media_id)
    if media is None or not attached_to:
        raise NotFound("文件不存在", code="media_not_found")
    for ticket in attached_to:
        if (await _reporter_access(request, ticket))[1]:
            break
    else:
        raise Forbidden("无权查看该文件", code="media_forbidden")
    if thumbnail and not media.thumbnail_path and media.kind != "image":
        raise NotFound("该文件没有缩略图", code="no_thumbnail")
    path = media_path(settings, media, thumbnail=thumbnail)
    if not path.is_file():
        raise NotFound("文件不存在", code="media_missing")
    mime = "image/jpeg" if thumbnail and media.thumbnail_path else media.content_type
    headers = {"Cache-Control": "private, max-age=3600", "Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff"}
    # Safari plays audio only from servers that answer byte ranges.
    ranged = ContentRangeHandler(request, os.stat(path)) if request.headers.get("range") else None
    return await file(path, mime_type=mime, headers=headers, request_headers=request.headers, _range=ranged)


_MEDIA_RESPONSES = [Response({"application/octet-stream": bytes}, status=200, description="the file"),
                    Response({"application/json": ErrorOut}, status=403, description="not allowed to see the ticket"),
                    Response({"application/json": ErrorOut}, status=404, description="no such file")]


@bp.get("/media/<media_id:int>")
@openapi.definition(summary="A photo or voice clip of a ticket", tag=TAG, response=_MEDIA_RESPONSES)
async def media_file(request: Request, media_id: int) -> HTTPResponse:
    return await _media(request, media_id, thumbnail=False)


@bp.get("/media/<media_id:int>/thumb")
@openapi.definition(summary="A photo's thumbnail (JPEG)", tag=TAG, response=_MEDIA_RESPONSES)
async def media_thumbnail(request: Request, media_id: int) -> HTTPResponse:
    return await _media(request, media_id, thumbnail=True)
