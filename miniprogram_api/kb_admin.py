"""``/mp/v1/admin/kb``: administrators import and export the knowledge base."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext.extensions.openapi import openapi

from core.errors import BadRequest, Unprocessable
from core.people import require_admin
from knowledge.entries import export_entries, import_entries
from miniprogram_api.session import current_user

bp = Blueprint("mp_kb_admin", url_prefix="/mp/v1/admin/kb")
TAG = "administration: knowledge base"
BEARER = {"bearer": []}


@bp.post("/import")
@openapi.definition(summary="Import knowledge-base entries (multipart `file`: JSON or CSV)",
                    description="All rows or none; a re-import updates entries by id. Every worker uses the new "
                                "entries within seconds.", tag=TAG, secured=BEARER)
async def kb_import(request: Request) -> HTTPResponse:
    admin = require_admin(await current_user(request))
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("请上传文件（字段 file）", code="file_required")
    report = await import_entries(upload.body, upload.name or "upload.json", actor=admin)
    if not report.accepted:
        raise Unprocessable(report.text(), code="kb_import_refused", details={"rows": report.rows})
    await request.app.ctx.events.publish("kb.changed", {"by": admin.id})
    return json({"created": report.created, "updated": report.updated, "message": report.text()})


@bp.get("/export")
@openapi.definition(summary="Export the knowledge base (`format=json|csv`)", tag=TAG, secured=BEARER)
async def kb_export(request: Request) -> HTTPResponse:
    require_admin(await current_user(request))
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest("format 须为 json 或 csv", code="invalid_field")
    body = await export_entries(fmt)
    kind = "application/json" if fmt == "json" else "text/csv; charset=utf-8"
    return raw(body, content_type=kind, headers={"Content-Disposition": f'attachment; filename="kb.{fmt}"'})
