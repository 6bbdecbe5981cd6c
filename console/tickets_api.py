"""``/console/api/v1`` tickets: the scoped queue, one ticket with everything around it, and the agents' actions
(take, reply, resolve, assign/reassign, close, reopen, canned replies, save a reply to the knowledge base);
``/console/media/<id>``: a ticket's photos and voice clips for those who may see the ticket.

Parse, authenticate, call one service (``repair.work``, ``repair.ticket_views``), answer JSON. Who may do what
is decided in ``repair.work``.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sanic import Blueprint, Request
from sanic.handlers import ContentRangeHandler
from sanic.response import HTTPResponse, file, json
from sanic_ext.extensions.openapi import openapi

from console.auth import console_user, served_hospital_ids
from core.errors import BadRequest, Forbidden, NotFound
from core.media import media_path
from knowledge import learning
from miniprogram_api.h5_repair import _form_files
from miniprogram_api.schemas import parse
from repair import reporting, ticket_views, work

bp = Blueprint("console_tickets", url_prefix="/console")
API = "/api/v1"
TAG = "console: tickets"
SESSION = {"cookie": []}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class ReplyBody(_Body):
    text: StrictStr = Field(min_length=1, max_length=work.REPLY_MAX, description="the message to the reporter")
    via: Literal["custom", "template"] = Field("custom", description="customer-service or template message")


class NoteBody(_Body):
    note: StrictStr = Field("", max_length=work.NOTE_MAX)


class AssignBody(_Body):
    engineer_id: StrictInt
    note: StrictStr = Field("", max_length=work.NOTE_MAX)


class SaveToKbBody(_Body):
    kind: Literal["variant", "entry"] = Field(description="variant: the question joins an entry; entry: a new one")
    entry_id: StrictStr = Field(max_length=64)
    question: StrictStr = Field(min_length=1, max_length=256)
    answer: StrictStr = Field("", max_length=5000, description="a new entry's answer")
    device_type: StrictStr = Field("", max_length=32, description="a new entry's device type (default: the "
                                                                   "ticket's device)")
    tier: Literal["basic", "advanced"] | None = Field(None, description="a new entry's tier (default: the ticket's)")


class CannedBody(_Body):
    title: StrictStr = Field(min_length=1, max_length=64)
    text: StrictStr = Field(min_length=1, max_length=work.REPLY_MAX)
    hospital_id: StrictInt | None = Field(None, description="null: every hospital (administrators only)")


def _optional(request: Request, model: type[BaseModel]):
    """Bodies of actions where everything is optional: no body at all means the defaults."""
    return parse(request, model) if (request.body or b"").strip() else model()


def _int_arg(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"参数 {name} 须为整数", code="invalid_field") from None


async def _who(request: Request, *roles: str):
    user = await console_user(request, *roles)
    return user, await served_hospital_ids(user)


async def _ticket_answer(request: Request, number: str, user, scope) -> HTTPResponse:
    ticket = await work.ticket_for(number, user, scope)
    return json(await ticket_views.ticket_view(ticket, user, scope))


# -- reading ---------------------------------------------------------------------------------------------------------
@bp.get(f"{API}/tickets")
@openapi.definition(summary="The ticket queue (scoped)", tag=TAG, secured=SESSION,
                    description="Query: `state` (a state, several comma-separated, or `open`), `tier` "
                                "(basic|advanced|none), `hospital_id`, `q` (number, text, device), `mine=1`, "
                                "`page` (50 per page). Agents see their hospitals, engineers their own tickets.")
async def list_tickets(request: Request) -> HTTPResponse:
    user, scope = await _who(request)
    items, total = await ticket_views.list_tickets(
        user, scope, state=request.args.get("state"), tier=request.args.get("tier"),
        hospital_id=_int_arg(request, "hospital_id"), q=request.args.get("q"),
        mine=request.args.get("mine") in ("1", "true"), page=_int_arg(request, "page", 1))
    return json({"items": items, "total": total, "page_size": ticket_views.PAGE_SIZE})


@bp.get(f"{API}/tickets/<number:str>")
@openapi.definition(summary="One ticket: device card and history, attachments, robot attempt, messages, trail, "
                            "allowed actions", tag=TAG, secured=SESSION)
async def get_ticket(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request)
    return await _ticket_answer(request, number, user, scope)


@bp.get(f"{API}/engineers")
@openapi.definition(summary="Engineers an agent may assign (`hospital_id` optional)", tag=TAG, secured=SESSION)
async def engineers(request: Request) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    found = await work.engineers_for(user, scope, _int_arg(request, "hospital_id"))
    return json({"items": [{"id": e.id, "name": e.label(), "phone": e.phone, "hospital_id": e.hospital_id}
                           for e in found]})


# -- agents' actions -------------------------------------------------------------------------------------------------
@bp.post(f"{API}/tickets/<number:str>/take")
@openapi.definition(summary="The agent takes the ticket (with_agent, agent = me)", tag=TAG, secured=SESSION)
async def take(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    await work.take(number, user, scope, events=request.app.ctx.events)
    return await _ticket_answer(request, number, user, scope)


@bp.post(f"{API}/tickets/<number:str>/reply")
@openapi.definition(summary="Reply to the reporter over WeChat (`via`: custom | template)", tag=TAG,
                    secured=SESSION, description="201 with the stored message; `delivery` is `sent`, or `failed` "
                                                 "with `delivery_error` (the message is kept).")
async def reply(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    body = parse(request, ReplyBody)
    app = request.app
    message = await work.reply(number, user, scope, text=body.text, via=body.via, settings=app.ctx.settings,
                               wechat=app.ctx.wechat, events=app.ctx.events)
    return json(ticket_views.message_item(message), status=201)


@bp.post(f"{API}/tickets/<number:str>/resolve")
@openapi.definition(summary="Resolved remotely (→ remote → done, as the state machine allows)", tag=TAG,
                    secured=SESSION)
async def resolve(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    body = _optional(request, NoteBody)
    await work.resolve(number, user, scope, note=body.note, events=request.app.ctx.events)
    return await _ticket_answer(request, number, user, scope)


@bp.post(f"{API}/tickets/<number:str>/assign")
@openapi.definition(summary="Assign or reassign an engineer (template message to the engineer)", tag=TAG,
                    secured=SESSION)
async def assign(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    body = parse(request, AssignBody)
    await work.assign(number, user, scope, engineer_id=body.engineer_id, note=body.note,
                      events=request.app.ctx.events)
    return await _ticket_answer(request, number, user, scope)


@bp.post(f"{API}/tickets/<number:str>/close")
@openapi.definition(summary="Close the ticket", tag=TAG, secured=SESSION)
async def close(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    body = _optional(request, NoteBody)
    await work.close(number, user, scope, note=body.note, events=request.app.ctx.events)
    return await _ticket_answer(request, number, user, scope)


@bp.post(f"{API}/tickets/<number:str>/reopen")
@openapi.definition(summary="Reopen a done or closed ticket", tag=TAG, secured=SESSION)
async def reopen(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    body = _optional(request, NoteBody)
    await work.reopen(number, user, scope, note=body.note, events=request.app.ctx.events)
    return await _ticket_answer(request, number, user, scope)


@bp.post(f"{API}/tickets/<number:str>/save-to-kb")
@openapi.definition(summary="Save a reply to the knowledge base (a variant at once, a new entry after review)",
                    tag=TAG, secured=SESSION)
async def save_to_kb(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    body = parse(request, SaveToKbBody)
    ticket = await work.ticket_for(number, user, scope)
    if "save_to_kb" not in work.allowed_actions(ticket, user, scope):
        raise Forbidden("该工单当前不能存入知识库", code="not_allowed")
    await ticket.fetch_related("device")
    proposal = await learning.save_reply(
        user, question=body.question, kind=body.kind, entry_id=body.entry_id, answer=body.answer,
        device_type=body.device_type or (ticket.device.device_type if ticket.device else ""),
        tier=body.tier or ticket.tier or "basic")
    await work.record_action(ticket, user, "save_to_kb", f"{body.question} → {body.entry_id}",
                             proposal=proposal.id, kind=body.kind)
    return json({"id": proposal.id, "kind": proposal.kind, "entry_id": proposal.entry_id,
                 "status": proposal.status}, status=201)


# -- engineers at a desk (the same work as on their mobile page) ------------------------------------------------------
def _engineer_input(request: Request, field: str) -> tuple[str, list]:
    """(text, photos) from a JSON body ``{field: …}`` or a multipart form with ``photos``."""
    if request.form is not None and (request.form or request.files):
        return (request.form.get(field) or "") if request.form else "", _form_files(request, "photos", "photo")
    if not (request.body or b"").strip():
        return "", []
    body = parse(request, NoteText)
    return body.text or body.note, []


class NoteText(_Body):
    text: StrictStr = Field("", max_length=work.NOTE_MAX)
    note: StrictStr = Field("", max_length=work.NOTE_MAX)


@bp.post(f"{API}/tickets/<number:str>/accept")
@openapi.definition(summary="The assigned engineer accepts the job", tag=TAG, secured=SESSION)
async def accept(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "engineer")
    await work.accept(number, user, events=request.app.ctx.events)
    return await _ticket_answer(request, number, user, scope)


@bp.post(f"{API}/tickets/<number:str>/notes")
@openapi.definition(summary="The assigned engineer's note (JSON `{text}` or multipart `text` + `photos`)", tag=TAG,
                    secured=SESSION)
async def add_note(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "engineer")
    text, photos = _engineer_input(request, "text")
    message = await work.add_note(number, user, text=text, photos=photos, settings=request.app.ctx.settings,
                                  events=request.app.ctx.events)
    return json(ticket_views.message_item(message), status=201)


@bp.post(f"{API}/tickets/<number:str>/done")
@openapi.definition(summary="The assigned engineer marks the job done (JSON `{note}` or multipart)", tag=TAG,
                    secured=SESSION)
async def done(request: Request, number: str) -> HTTPResponse:
    user, scope = await _who(request, "engineer")
    note, photos = _engineer_input(request, "note")
    await work.mark_done(number, user, note=note, photos=photos, settings=request.app.ctx.settings,
                         events=request.app.ctx.events)
    return await _ticket_answer(request, number, user, scope)


# -- canned replies --------------------------------------------------------------------------------------------------
def _canned_out(c) -> dict:
    return {"id": c.id, "title": c.title, "text": c.text, "hospital_id": c.hospital_id}


@bp.get(f"{API}/canned-replies")
@openapi.definition(summary="Canned replies (all hospitals + mine, or `hospital_id`)", tag=TAG, secured=SESSION)
async def canned_list(request: Request) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    found = await work.canned_replies(user, scope, _int_arg(request, "hospital_id"))
    return json({"items": [_canned_out(c) for c in found]})


@bp.post(f"{API}/canned-replies")
@openapi.definition(summary="Add a canned reply", tag=TAG, secured=SESSION)
async def canned_add(request: Request) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    body = parse(request, CannedBody)
    canned = await work.add_canned_reply(user, scope, title=body.title, text=body.text, hospital_id=body.hospital_id)
    return json(_canned_out(canned), status=201)


@bp.delete(f"{API}/canned-replies/<reply_id:int>")
@openapi.definition(summary="Remove a canned reply", tag=TAG, secured=SESSION)
async def canned_remove(request: Request, reply_id: int) -> HTTPResponse:
    user, scope = await _who(request, "agent")
    await work.remove_canned_reply(user, scope, reply_id)
    return json({"removed": reply_id})


# -- media -----------------------------------------------------------------------------------------------------------
async def _media(request: Request, media_id: int, thumbnail: bool) -> HTTPResponse:
    user, scope = await _who(request)
    media, attached_to = await reporting.media_tickets(media_id)
    if media is None or not attached_to:
        raise NotFound("文件不存在", code="media_not_found")
    if not any(work.may_see(t, user, scope) for t in attached_to):
        raise Forbidden("无权查看该文件", code="media_forbidden")
    if thumbnail and not media.thumbnail_path:
        raise NotFound("该文件没有缩略图", code="no_thumbnail")
    path = media_path(request.app.ctx.settings, media, thumbnail=thumbnail)
    if not path.is_file():
        raise NotFound("文件不存在", code="media_missing")
    mime = "image/jpeg" if thumbnail else media.content_type
    headers = {"Cache-Control": "private, max-age=3600", "Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; sandbox"}
    ranged = ContentRangeHandler(request, os.stat(path)) if request.headers.get("range") else None
    return await file(path, mime_type=mime, headers=headers, request_headers=request.headers, _range=ranged)


@bp.get("/media/<media_id:int>")
@openapi.definition(summary="A ticket's photo or voice clip (for those who may see the ticket)", tag=TAG,
                    secured=SESSION)
async def media_file(request: Request, media_id: int) -> HTTPResponse:
    return await _media(request, media_id, thumbnail=False)


@bp.get("/media/<media_id:int>/thumb")
@openapi.definition(summary="A photo's thumbnail (JPEG)", tag=TAG, secured=SESSION)
async def media_thumbnail(request: Request, media_id: int) -> HTTPResponse:
    return await _media(request, media_id, thumbnail=True)
