"""The doctor's side: ``/console/doctor`` (the page), ``/console/api/v1/doctor/consultations…`` and the room socket
``/console/rooms/<id>/ws``.

A doctor is a console user with role ``doctor`` linked to a Practitioner (``care.consultations.link_doctor``); they
see that practitioner's consultations only. The socket uses the console cookie (checked at the handshake, like
``/console/ws``; another site's page is refused) and the room token from the consultation's view as ``?token=``.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html, json
from sanic_ext.extensions.openapi import openapi

from care import consultations, rooms
from console.auth import console_user
from console.pages import PAGE_HEADERS, _templates
from console.ws import _foreign_origin
from core.errors import AppError

bp = Blueprint("console_consultations", url_prefix="/console")
API = "/api/v1/doctor/consultations"
TAG = "console: consultations"
SESSION = {"console_session": []}


def _view_args(request: Request) -> dict:
    settings = request.app.ctx.settings
    return {"secret": settings.secret_key, "side": "doctor", "ice_servers": settings.ice_servers}


@bp.get("/doctor", strict_slashes=False)
@openapi.definition(summary="The doctor's consultations and room (HTML)", tag="Console pages")
async def doctor_page(request: Request) -> HTTPResponse:
    settings = request.app.ctx.settings
    return html(_templates.get_template("doctor.html").render(timezone=settings.timezone), headers=PAGE_HEADERS)


@bp.get(API)
@openapi.definition(summary="The doctor's consultations, newest first (`?open=1`: not yet ended)", tag=TAG,
                    secured=SESSION)
async def mine(request: Request) -> HTTPResponse:
    user = await console_user(request, "doctor")
    found = await consultations.list_for_doctor(user, open_only=request.args.get("open") in ("1", "true"))
    practitioner = await consultations.doctor_practitioner(user)
    return json({"practitioner": {"id": practitioner.id, "name": practitioner.name,
                                  "department": practitioner.department},
                 "consultations": [await consultations.view(c) for c in found]})


@bp.get(f"{API}/<consultation_id:int>")
@openapi.definition(summary="One consultation with its chat history; `room` once accepted", tag=TAG,
                    secured=SESSION)
async def one(request: Request, consultation_id: int) -> HTTPResponse:
    user = await console_user(request, "doctor")
    c = await consultations.for_doctor(user, consultation_id)
    return json({**await consultations.view(c, **_view_args(request)),
                 "messages": [consultations.message_view(m) for m in await consultations.messages(c)]})


@bp.post(f"{API}/<consultation_id:int>/end")
@openapi.definition(summary="End the consultation", tag=TAG, secured=SESSION)
async def finish(request: Request, consultation_id: int) -> HTTPResponse:
    user = await console_user(request, "doctor")
    c = await consultations.for_doctor(user, consultation_id)
    c = await rooms.end(request.app.ctx.redis, c, "doctor", events=request.app.ctx.events)
    return json(await consultations.view(c))


@bp.websocket("/rooms/<consultation_id:int>/ws")
async def room(request: Request, ws, consultation_id: int):
    """The doctor's side of the room (frames: ``care.rooms``)."""
    app = request.app

    async def find():
        if _foreign_origin(request):
            raise AppError("来源不被允许", code="origin", status=403)
        user = await console_user(request, "doctor")
        return await consultations.for_doctor(user, consultation_id)

    await rooms.serve_socket(ws, find, "doctor", request.args.get("token"), secret=app.ctx.settings.secret_key,
                             redis=app.ctx.redis, events=app.ctx.events, ice_servers=app.ctx.settings.ice_servers)
