"""``/mp/v1``: repair for staff in the mini program — scans, the three backup ways to find a device, my devices and
claims, tickets (open with photos and voice, list, detail, confirm/reopen/escalate)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext.extensions.openapi import openapi

from core.errors import BadRequest, Forbidden, NotFound
from core.models import Hospital, User
from repair import claims, labels, lookup, reporting, tickets
from repair.devices import device_card, find_by_identifier
from repair.groups import group_card
from repair.models import Device, DeviceGroup, Ticket
from repair.tickets import STATE_LABELS, Actor
from miniprogram_api.schemas import ClaimBody, DecisionBody, parse
from miniprogram_api.session import current_user

bp = Blueprint("mp_repair", url_prefix="/mp/v1")
TAG = "mini program: repair"
BEARER = {"bearer": []}


def _doc(summary: str, description: str = ""):
    """OpenAPI summary, tag and the bearer requirement for one route."""
    def decorate(handler):
        return openapi.definition(summary=summary, description=description or summary, tag=TAG,
                                  secured=BEARER)(handler)
    return decorate


async def _card(settings, target: Device | DeviceGroup) -> dict:
    card = await (device_card(target) if isinstance(target, Device) else group_card(target))
    card["kind"] = "device" if isinstance(target, Device) else "group"
    card["repair_url"] = labels.repair_link(settings, target.scene)
    return card


async def _may_report_on(user: User, target: Device | DeviceGroup) -> bool:
    return await lookup.may_see_hospital(user, await Hospital.get(id=target.hospital_id))


async def _own_hospital_target(user: User, target: Device | DeviceGroup) -> Device | DeviceGroup:
    if not await _may_report_on(user, target):
        raise Forbidden("该设备不属于您绑定的医院", code="device_of_other_hospital")
    return target


def _float_arg(request: Request, name: str) -> float | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadRequest(f"参数 {name} 须为数字", code="invalid_field") from None


# -- finding a device ---------------------------------------------------------------------------------------------
@bp.get("/scan")
@_doc("Resolve a scanned label", "The `t` token of a label or scan link → the device or group card.")
async def scan(request: Request) -> HTTPResponse:
    user = await current_user(request)
    token = request.args.get("t") or ""
    target = await labels.resolve_scene(labels.read_repair_token(request.app.ctx.settings, token))
    await _own_hospital_target(user, target)
    return json(await _card(request.app.ctx.settings, target))


@bp.get("/devices/lookup")
@_doc("Find a device by nameplate ID or system number", "The label is gone: type what the nameplate says.")
async def device_lookup(request: Request) -> HTTPResponse:
    user = await current_user(request)
    query = (request.args.get("q") or "").strip()
    if not query:
        raise BadRequest("请输入铭牌号或系统编号", code="empty_query")
    found = await find_by_identifier(query)
    mine = [d for d in found if await _may_report_on(user, d)]
    if found and not mine:
        raise Forbidden("该设备不属于您绑定的医院", code="device_of_other_hospital")
    if not mine:
        raise NotFound("没有找到该编号的设备，请核对铭牌", code="device_not_found")
    settings = request.app.ctx.settings
    return json({"devices": [await _card(settings, d) for d in mine]})


@bp.get("/hospitals")
@_doc("Search hospitals by name")
async def hospital_search(request: Request) -> HTTPResponse:
    await current_user(request)
    matches = await lookup.search_hospitals(request.args.get("q") or "")
    return json({"hospitals": [{"id": m.hospital.id, "name": m.hospital.name, "address": m.hospital.address,
                                "score": m.score} for m in matches]})


@bp.get("/hospitals/<hospital_id:int>/devices")
@_doc("A hospital's devices", "Only for people bound to the hospital, and only near it when `lat`/`lng` are given.")
async def hospital_devices(request: Request, hospital_id: int) -> HTTPResponse:
    user = await current_user(request)
    devices = await lookup.hospital_devices_for(user, hospital_id, latitude=_float_arg(request, "lat"),
                                                longitude=_float_arg(request, "lng"))
    settings = request.app.ctx.settings
    return json({"devices": [await _card(settings, d) for d in devices]})


# -- my devices -----------------------------------------------------------------------------------------------------
def _ticket_brief(ticket: Ticket) -> dict:
    return {"number": ticket.number, "state": ticket.state, "state_label": STATE_LABELS[ticket.state],
            "description": ticket.description[:80], "created_at": ticket.created_at.isoformat()}


@bp.get("/my/devices")
@_doc("My devices", "Devices and groups I own or claimed (approved), each with its latest tickets.")
async def my_devices(request: Request) -> HTTPResponse:
    user = await current_user(request)
    settings = request.app.ctx.settings
    items = []
    for entry in await claims.my_devices(user):
        card = await _card(settings, entry["item"])
        card["tickets"] = [_ticket_brief(t) for t in entry["tickets"]]
        items.append(card)
    return json({"items": items})


def _claim_out(made) -> dict:
    return {"id": made.id, "device_id": made.device_id, "group_id": made.group_id, "state": made.state}


@bp.post("/my/claims")
@_doc("Claim a device or group", "Body `{\"device_id\": …}` or `{\"group_id\": …}`; the owner or an admin approves.")
async def claim(request: Request) -> HTTPResponse:
    user = await current_user(request)
    body = parse(request, ClaimBody)
    made = await claims.claim(user, device_id=body.device_id, group_id=body.group_id)
    return json(_claim_out(made), status=201 if made.state == "pending" else 200)


@bp.get("/my/claims/pending")
@_doc("Claims waiting for my approval")
async def pending_claims(request: Request) -> HTTPResponse:
    user = await current_user(request)
    return json({"claims": [dict(_claim_out(c), user=c.user.label()) for c in await claims.pending_for(user)]})


@bp.post("/claims/<claim_id:int>/decision")
@_doc("Approve or reject a claim", "Body `{\"approve\": true|false}`.")
async def decide_claim(request: Request, claim_id: int) -> HTTPResponse:
    user = await current_user(request)
    body = parse(request, DecisionBody)
    return json(_claim_out(await claims.decide(claim_id, user, body.approve)))


# -- tickets ----------------------------------------------------------------------------------------------------------
@bp.post("/tickets")
@_doc("Open a ticket (multipart)",
      "Fields: `t` (a label/scan token) or `system_number` or `group_id`; `description`; files `photos` (≤6), "
      "`voices` (≤2); `member_ids` for a group; `client_request_id` (a repeat returns the same ticket).")
async def open_ticket(request: Request) -> HTTPResponse:
    user = await current_user(request)
    settings = request.app.ctx.settings
    form = request.form or {}
    target = await _form_target(request, form)
    await _own_hospital_target(user, target)
    uploads = [reporting.Upload(f.body, kind, f.name or "")
               for field, kind in (("photos", "photo"), ("voices", "voice"))
               for f in (request.files.getlist(field) or [])]
    try:
        member_ids = [int(v) for v in form.getlist("member_ids") or []]
    except ValueError:
        raise BadRequest("member_ids 须为整数", code="invalid_field") from None
    ticket, created = await reporting.submit_report(
        settings, request.app.ctx.events, target, description=form.get("description") or "", uploads=uploads,
        member_ids=member_ids, reporter=user, reporter_openid=user.openid,
        client_request_id=(form.get("client_request_id") or None), channel="mp")
    return json({"number": ticket.number, "state": ticket.state, "state_label": STATE_LABELS[ticket.state]},
                status=201 if created else 200)


async def _form_target(request: Request, form) -> Device | DeviceGroup:
    settings = request.app.ctx.settings
    if form.get("t"):
        return await labels.resolve_scene(labels.read_repair_token(settings, form.get("t")))
    if form.get("system_number"):
        return await labels.resolve_scene(f"d:{form.get('system_number').strip()}")
    if form.get("group_id"):
        return await labels.resolve_scene(f"g:{form.get('group_id').strip()}")
    raise BadRequest("请指定报修的设备（扫码、系统编号或设备组）", code="no_device")


@bp.get("/tickets")
@_doc("My tickets", "Tickets I reported, newest first (`state` filters).")
async def my_tickets(request: Request) -> HTTPResponse:
    user = await current_user(request)
    query = Ticket.filter(reporter_id=user.id)
    state = request.args.get("state")
    if state:
        if state not in STATE_LABELS:
            raise BadRequest("未知的工单状态", code="invalid_field")
        query = query.filter(state=state)
    return json({"tickets": [_ticket_brief(t) for t in await query.order_by("-created_at").limit(100)]})


async def _viewable(request: Request, number: str) -> tuple[User, Ticket]:
    user = await current_user(request)
    ticket = await tickets.get_ticket(number)
    if not reporting.may_view(ticket, user):
        raise Forbidden("无权查看该工单", code="not_your_ticket")
    return user, ticket


@bp.get("/tickets/<number:str>")
@_doc("A ticket with its history and attachments")
async def ticket_detail(request: Request, number: str) -> HTTPResponse:
    _user, ticket = await _viewable(request, number)
    details = await reporting.ticket_details(ticket)
    target = details.device or details.group
    return json({
        **_ticket_brief(ticket), "description": ticket.description, "tier": ticket.tier,
        "target": await _card(request.app.ctx.settings, target) if target else None,
        "members": [m.system_number for m in details.members],
        "photos": [{"id": a.media_id, "url": f"/h5/media/{a.media_id}", "thumb": f"/h5/media/{a.media_id}/thumb"}
                   for a in details.photos],
        "voices": [{"id": a.media_id, "url": f"/h5/media/{a.media_id}", "transcript": a.transcript}
                   for a in details.voices],
        "history": [{"from": h.from_state, "to": h.to_state, "label": STATE_LABELS[h.to_state],
                     "actor": h.actor_label, "note": h.note, "at": h.created_at.isoformat()}
                    for h in details.history],
    })


_REPORTER_MOVES = {"confirm": ("closed", "报修人确认已修好"), "reopen": ("reopened", "报修人反馈仍有问题"),
                   "escalate": ("with_agent", "报修人要求转人工")}


@bp.post("/tickets/<number:str>/<move:str>")
@_doc("The reporter confirms, reopens or escalates", "confirm: done → closed; reopen: done/closed → reopened; "
      "escalate: the robot's answer did not help → with an agent.")
async def reporter_move(request: Request, number: str, move: str) -> HTTPResponse:
    if move not in _REPORTER_MOVES:
        raise NotFound("未知的操作", code="not_found")
    user, ticket = await _viewable(request, number)
    if not reporting.is_reporter(ticket, user):
        raise Forbidden("只有报修人可以这样操作", code="not_reporter")
    to_state, note = _REPORTER_MOVES[move]
    ticket = await tickets.change_state(ticket, to_state, events=request.app.ctx.events, actor=Actor(user=user),
                                        note=note)
    return json(_ticket_brief(ticket))


# -- labels -----------------------------------------------------------------------------------------------------------
async def _label_printer(request: Request, hospital_id: int) -> User:
    """Administrators, and the hospital's own engineers, print its labels."""
    user = await current_user(request)
    if user.role == "admin" or (user.role == "engineer" and user.hospital_id == hospital_id):
        return user
    raise Forbidden("只有管理员或本院工程师可以打印标签", code="label_printer_required")


@bp.get("/labels/<scene:str>/label.png")
@_doc("One printable label (PNG)", "`scene` is `d:<system number>` or `g:<group id>`. The QR is WeChat's "
      "permanent code for the scene when the account is configured, otherwise the signed repair-page link.")
async def label_png(request: Request, scene: str) -> HTTPResponse:
    target = await labels.resolve_scene(scene)
    await _label_printer(request, target.hospital_id)
    png = await labels.label_png(request.app.ctx.settings, target, wechat=request.app.ctx.wechat)
    return raw(png, content_type="image/png",
               headers={"Content-Disposition": f'inline; filename="label-{target.scene.replace(":", "-")}.png"'})


@bp.get("/hospitals/<hospital_id:int>/labels.pdf")
@_doc("A sheet of labels (A4 PDF)", "Every device and group in use in a department (`department_id`) or the "
      "whole hospital.")
async def label_sheet(request: Request, hospital_id: int) -> HTTPResponse:
    await _label_printer(request, hospital_id)
    raw_department = request.args.get("department_id")
    if raw_department is not None and not raw_department.isdigit():
        raise BadRequest("department_id 须为整数", code="invalid_field")
    pdf = await labels.department_sheet_pdf(request.app.ctx.settings, hospital_id,
                                            int(raw_department) if raw_department else None,
                                            wechat=request.app.ctx.wechat)
    return raw(pdf, content_type="application/pdf",
               headers={"Content-Disposition": f'inline; filename="labels-{hospital_id}.pdf"'})
