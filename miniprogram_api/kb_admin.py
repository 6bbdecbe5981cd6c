"""``/mp/v1/admin/kb``: administrators import and export the knowledge base, review what the robot could not
answer, and approve what agents teach it."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext.extensions.openapi import openapi

from core.errors import BadRequest, Unprocessable
from core.people import require_admin
from knowledge import learning
from knowledge.entries import export_entries, import_entries
from miniprogram_api.schemas import DecisionBody, ProposalBody, parse
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


# -- learning ---------------------------------------------------------------------------------------------------------
def _proposal_out(p) -> dict:
    return {"id": p.id, "kind": p.kind, "entry_id": p.entry_id, "question": p.question, "answer": p.answer,
            "status": p.status, "created_at": p.created_at.isoformat()}


@bp.get("/review")
@openapi.definition(summary="The review queue: unhelpful answers and unanswered questions", tag=TAG, secured=BEARER)
async def review(request: Request) -> HTTPResponse:
    require_admin(await current_user(request))
    return json({"questions": [{"id": q.id, "text": q.text, "kind": q.kind, "entry_id": q.entry_id,
                                "confidence": q.confidence, "feedback": q.feedback,
                                "at": q.created_at.isoformat()} for q in await learning.review_queue()]})


@bp.post("/review/<log_id:int>/done")
@openapi.definition(summary="Take a question off the review queue", tag=TAG, secured=BEARER)
async def reviewed(request: Request, log_id: int) -> HTTPResponse:
    log = await learning.mark_reviewed(log_id, await current_user(request))
    return json({"id": log.id, "reviewed_at": log.reviewed_at.isoformat()})


@bp.post("/proposals")
@openapi.definition(summary="Save an agent's reply to the knowledge base",
                    description="Body: `kind` (`variant`: add `question` to entry `entry_id`, used at once; `entry`: "
                                "a new entry `entry_id` with `answer`, `device_type`, `tier`, used once an admin "
                                "approves), optional `source_log_id` (the robot's question record).",
                    tag=TAG, secured=BEARER)
async def propose(request: Request) -> HTTPResponse:
    agent = await current_user(request)
    body = parse(request, ProposalBody)
    proposal = await learning.save_reply(agent, **body.model_dump())
    await request.app.ctx.events.publish("kb.changed", {"proposal": proposal.id})
    return json(_proposal_out(proposal), status=201)


@bp.get("/proposals")
@openapi.definition(summary="Proposals (`status=pending|applied|approved|rejected`)", tag=TAG, secured=BEARER)
async def list_proposals(request: Request) -> HTTPResponse:
    require_admin(await current_user(request))
    return json({"proposals": [_proposal_out(p) for p in await learning.proposals(request.args.get("status"))]})


@bp.post("/proposals/<proposal_id:int>/decision")
@openapi.definition(summary="Approve or reject a proposal (`{\"approve\": true|false}`)", tag=TAG, secured=BEARER)
async def decide_proposal(request: Request, proposal_id: int) -> HTTPResponse:
    admin = await current_user(request)
    proposal = await learning.decide(proposal_id, admin, parse(request, DecisionBody).approve)
    await request.app.ctx.events.publish("kb.changed", {"proposal": proposal.id})
    return json(_proposal_out(proposal))
