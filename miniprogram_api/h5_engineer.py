"""``/h5/engineer``: the engineer's job pages inside WeChat. The assignment's template message links to
``/h5/engineer/tickets/<number>``; WeChat OAuth (``/h5/auth``) identifies the engineer, who sees only the tickets
assigned to them: accept the job, add notes and photos, mark it done (the reporter and the agent are then told by
template message, ``repair.messaging``).

Pages answer errors as pages; the posts answer JSON like the rest of the API. The page style, its CSP and the
media route (``/h5/media/<id>``, which lets a ticket's engineer see its files) are those of the repair pages.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html, json, redirect
from sanic_ext.extensions.openapi import openapi
from sanic_ext.extensions.openapi.definitions import RequestBody, Response

from core.errors import Forbidden, NotFound, Unauthorized
from core.models import User
from core.settings import Settings
from miniprogram_api.h5_repair import HERE, _PAGE_HEADERS, _asset as _repair_asset, _error_page, _form_files, \
    _same_origin
from miniprogram_api.schemas import ErrorOut
from miniprogram_api.session import current_user
from repair import ticket_views, tickets, work

bp = Blueprint("h5_engineer", url_prefix="/h5/engineer")
TAG = "H5 pages: engineer"
STATIC_DIR = HERE / "static" / "h5_engineer"
STATIC_URL = "/h5/engineer/static"
bp.static("/static", STATIC_DIR, name="h5_engineer_static")

_templates = Environment(loader=ChoiceLoader([FileSystemLoader(HERE / "templates" / "h5_engineer"),
                                              FileSystemLoader(HERE / "templates" / "h5_repair")]),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    """Our own script from here (with a content hash, like the repair pages'), the shared stylesheet and icon from
    the repair pages."""
    if (STATIC_DIR / name).is_file():
        return f"{STATIC_URL}/{name}?v={hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]}"
    return _repair_asset(name)


_templates.globals["asset"] = _asset


def _page(name: str, status: int = 200, **context) -> HTTPResponse:
    return html(_templates.get_template(name).render(**context), status=status, headers=_PAGE_HEADERS)


def _local(settings: Settings, when: datetime | str | None) -> str:
    if not when:
        return ""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    return when.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")


# -- who is asking ---------------------------------------------------------------------------------------------------
async def _engineer(request: Request) -> User:
    """The signed-in engineer; 401 without a session, 403 for anyone else (JSON endpoints)."""
    user = await current_user(request)
    if user.role != "engineer":
        raise Forbidden("只有工程师可以使用该页面", code="not_an_engineer")
    return user


async def _engineer_or_page(request: Request) -> User | HTTPResponse:
    """For the pages: the engineer, or the page to show instead (WeChat sign-in first, or a refusal)."""
    settings: Settings = request.app.ctx.settings
    try:
        return await _engineer(request)
    except Unauthorized as exc:
        if settings.wechat_app_id:
            here = request.path + (f"?{request.query_string}" if request.query_string else "")
            return redirect(f"/h5/auth/start?next={quote(here, safe='')}")
        return _error_page(exc, title="请在微信中打开", hint="请从公众号的派工消息进入该页面。")
    except Forbidden as exc:
        return _error_page(exc, title="无法打开该页面")


# -- pages -----------------------------------------------------------------------------------------------------------
@bp.get("/tickets")
@openapi.definition(summary="The engineer's jobs (HTML)", tag=TAG,
                    description="Tickets assigned to the signed-in engineer, jobs to do first. Without a session: "
                                "302 to WeChat sign-in.",
                    response=[Response({"text/html": str}, status=200, description="the page"),
                              Response(status=302, description="sign in first"),
                              Response({"text/html": str}, status=403, description="not an engineer (a page)")])
async def jobs_page(request: Request) -> HTTPResponse:
    engineer = await _engineer_or_page(request)
    if isinstance(engineer, HTTPResponse):
        return engineer
    settings: Settings = request.app.ctx.settings
    jobs = await ticket_views.engineer_jobs(engineer)
    for job in jobs:
        job["updated"] = _local(settings, job["updated_at"])
    return _page("jobs.html", engineer=engineer, jobs=jobs)


@bp.get("/tickets/<number:str>")
@openapi.definition(summary="One job of the engineer (HTML): accept, notes and photos, mark done", tag=TAG,
                    response=[Response({"text/html": str}, status=200, description="the page"),
                              Response(status=302, description="sign in first"),
                              Response({"text/html": str}, status=403, description="not your ticket (a page)"),
                              Response({"text/html": str}, status=404, description="no such ticket (a page)")])
async def job_page(request: Request, number: str) -> HTTPResponse:
    engineer = await _engineer_or_page(request)
    if isinstance(engineer, HTTPResponse):
        return engineer
    settings: Settings = request.app.ctx.settings
    try:
        ticket = await work.ticket_for(number, engineer, None)
    except NotFound as exc:
        return _error_page(exc, hint="请核对工单号。")
    except Forbidden as exc:
        return _error_page(exc, title="无法查看该工单", hint="该工单可能已改派给其他工程师。")
    view = await ticket_views.ticket_view(ticket, engineer, None, media_prefix="/h5/media")
    photos_by_id = {a["id"]: a for a in view["attachments"]}
    notes = [{**m, "time": _local(settings, m["created_at"]), "photos": [photos_by_id[i] for i in m["attachments"]]}
             for m in view["messages"] if m["kind"] in ("note", "accept")]
    steps = [{**t, "time": _local(settings, t["created_at"])} for t in reversed(view["transitions"])
             if t["action"] not in ("reply", "save_to_kb")]  # the reporter's conversation is the agent's
    reporter_files = [a for a in view["attachments"] if a["from"] == "reporter"]
    return _page("job.html", t=view, notes=notes, steps=steps, created=_local(settings, view["created_at"]),
                 photos=[a for a in reporter_files if a["kind"] == "photo"],
                 voices=[a for a in reporter_files if a["kind"] == "voice"],
                 can=set(view["actions"]), max_photos=work.MAX_PHOTOS)


# -- actions ---------------------------------------------------------------------------------------------------------
_ACTION_RESPONSES = [Response({"application/json": dict}, status=200, description="{number, state, state_label}"),
                     Response({"application/json": ErrorOut}, status=401, description="not signed in"),
                     Response({"application/json": ErrorOut}, status=403, description="not your ticket"),
                     Response({"application/json": ErrorOut}, status=404, description="no such ticket"),
                     Response({"application/json": ErrorOut}, status=409, description="not in a state for it"),
                     Response({"application/json": ErrorOut}, status=422, description="empty note, bad photo")]


def _state(ticket) -> HTTPResponse:
    return json({"number": ticket.number, "state": ticket.state,
                 "state_label": tickets.STATE_LABELS.get(ticket.state, ticket.state)})


def _text(request: Request, name: str) -> str:
    form = request.form
    if form is not None and form.get(name) is not None:
        return form.get(name) or ""
    body = request.json if request.headers.get("content-type", "").startswith("application/json") else None
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


@bp.post("/tickets/<number:str>/accept")
@openapi.definition(summary="The engineer accepts the job", tag=TAG, response=_ACTION_RESPONSES)
async def accept(request: Request, number: str) -> HTTPResponse:
    _same_origin(request)
    engineer = await _engineer(request)
    return _state(await work.accept(number, engineer, events=request.app.ctx.events))


@bp.post("/tickets/<number:str>/notes")
@openapi.definition(summary="A working note with photos (multipart: `text`, `photos` up to 6)", tag=TAG,
                    body=RequestBody({"multipart/form-data": dict}, required=True),
                    response=[Response({"application/json": dict}, status=201, description="the stored note"),
                              *_ACTION_RESPONSES[1:]])
async def add_note(request: Request, number: str) -> HTTPResponse:
    _same_origin(request)
    engineer = await _engineer(request)
    message = await work.add_note(number, engineer, text=_text(request, "text"),
                                  photos=_form_files(request, "photos", "photo"),
                                  settings=request.app.ctx.settings, events=request.app.ctx.events)
    return json(ticket_views.message_item(message), status=201)


@bp.post("/tickets/<number:str>/done")
@openapi.definition(summary="The engineer marks the job done (multipart or JSON: `note`, `photos`)", tag=TAG,
                    body=RequestBody({"multipart/form-data": dict}), response=_ACTION_RESPONSES)
async def done(request: Request, number: str) -> HTTPResponse:
    _same_origin(request)
    engineer = await _engineer(request)
    ticket = await work.mark_done(number, engineer, note=_text(request, "note"),
                                  photos=_form_files(request, "photos", "photo"),
                                  settings=request.app.ctx.settings, events=request.app.ctx.events)
    return _state(ticket)

