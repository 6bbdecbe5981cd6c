"""``/console/api/v1/admin``: administrators manage hospitals, departments, console accounts (doctors linked to a
practitioner), invitation codes, the knowledge base's review queue and proposals, and import devices. Agents and
engineers are refused (403 ``role``).

Each route parses, calls one domain service (which validates, stores and audits) and renders the result.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from care import doctors
from care.consultations import link_doctor
from care.models import Practitioner
from console.auth import console_user, end_user_sessions, hash_password
from core import accounts, hospitals, people
from core.errors import BadRequest, Forbidden, Unprocessable
from core.models import Department, Hospital, InvitationCode, User
from knowledge import learning
from miniprogram_api.schemas import DecisionBody, InvitationBody, invitation_out, parse
from repair.importer import ImportReport, import_devices

log = logging.getLogger(__name__)

bp = Blueprint("console_admin", url_prefix="/console/api/v1/admin")
TAG = "console: administration"


async def _admin(request: Request) -> User:
    user = await console_user(request)
    if user.role != "admin":
        log.warning("console %s %s refused: %s is %s, not admin", request.method, request.path, user.id, user.role)
        raise Forbidden("只有管理员可以进行此操作", code="role")
    return user


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class HospitalBody(_Body):
    name: StrictStr = Field(min_length=1, max_length=128)
    aliases: StrictStr = Field("", max_length=512, description="other names, separated by commas")
    address: StrictStr = Field("", max_length=256)
    latitude: StrictFloat | StrictInt | None = Field(None, ge=-90, le=90)
    longitude: StrictFloat | StrictInt | None = Field(None, ge=-180, le=180)


class HospitalPatch(_Body):
    name: StrictStr | None = Field(None, min_length=1, max_length=128)
    aliases: StrictStr | None = Field(None, max_length=512)
    address: StrictStr | None = Field(None, max_length=256)
    latitude: StrictFloat | StrictInt | None = Field(None, ge=-90, le=90)
    longitude: StrictFloat | StrictInt | None = Field(None, ge=-180, le=180)


class DepartmentBody(_Body):
    name: StrictStr = Field(min_length=1, max_length=64)


class UserBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(description=f"at least {accounts.MIN_PASSWORD} characters")
    role: StrictStr = Field(description="agent | engineer | admin | doctor")
    name: StrictStr = Field("", max_length=64)
    hospital_ids: list[StrictInt] = Field(default_factory=list, description="hospitals an agent serves")
    practitioner_id: StrictInt | None = Field(None, description="the practitioner a doctor is (role doctor only)")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: StrictStr | None = Field(None, max_length=64)
    role: StrictStr | None = None
    active: StrictBool | None = None
    hospital_ids: list[StrictInt] | None = None
    password: StrictStr | None = Field(None, description="a new password (reset)")
    practitioner_id: StrictInt | None = Field(None, description="the practitioner a doctor is; needed when the role "
                                                                "becomes doctor, another one relinks")


def _set(body: BaseModel) -> dict:
    """The fields the request sent (a PUT changes only those); an explicit null is refused except for coordinates."""
    sent = body.model_dump(exclude_unset=True)
    for key, value in sent.items():
        if value is None and key not in ("latitude", "longitude"):
            raise BadRequest(f"字段 {key} 不能为空", code="invalid_field", details={"field": key})
    return sent


def hospital_out(h: Hospital) -> dict:
    return {"id": h.id, "name": h.name, "aliases": h.aliases, "address": h.address, "latitude": h.latitude,
            "longitude": h.longitude, "created_at": h.created_at.isoformat()}


def department_out(d: Department) -> dict:
    return {"id": d.id, "hospital_id": d.hospital_id, "name": d.name}


# What ``user_out`` reads: fetch these first (``fetch_related`` / ``User.fetch_for_list``).
USER_RELATIONS = ("served_hospitals", "hospital", "doctor_account__practitioner")


def practitioner_out(p: Practitioner) -> dict:
    return {"id": p.id, "his_id": p.his_id, "name": p.name, "department": p.department, "active": p.active}


def user_out(u: User) -> dict:
    """``u`` with ``USER_RELATIONS`` fetched; ``practitioner`` is the one a doctor is linked to (else null)."""
    account = u.doctor_account
    return {"id": u.id, "username": u.username, "name": u.name, "role": u.role, "active": u.active,
            "phone": u.phone, "hospital": {"id": u.hospital.id, "name": u.hospital.name} if u.hospital else None,
            "hospitals": [{"id": h.id, "name": h.name} for h in sorted(u.served_hospitals, key=lambda h: h.id)],
            "practitioner": practitioner_out(account.practitioner) if account else None,
            "created_at": u.created_at.isoformat()}


def invitation_row(i: InvitationCode) -> dict:
    return {**invitation_out(i), "hospital": i.hospital.name, "department": i.department.name if i.department else None,
            "created_by": i.created_by.label() if i.created_by else None, "created_at": i.created_at.isoformat()}


def _int_arg(request: Request, name: str) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise BadRequest(f"参数 {name} 须为编号", code="invalid_field", details={"field": name})
    return int(value)


# -- hospitals and departments -------------------------------------------------------------------------------------
@bp.get("/hospitals")
@openapi.definition(summary="Hospitals", tag=TAG)
async def list_hospitals(request: Request) -> HTTPResponse:
    await _admin(request)
    return json({"items": [hospital_out(h) for h in await hospitals.list_hospitals()]})


@bp.post("/hospitals")
@openapi.definition(summary="Create a hospital (`name` unique)", tag=TAG)
async def create_hospital(request: Request) -> HTTPResponse:
    admin = await _admin(request)
    hospital = await hospitals.create_hospital(admin, parse(request, HospitalBody).model_dump())
    return json(hospital_out(hospital), status=201)


@bp.put("/hospitals/<hospital_id:int>")
@openapi.definition(summary="Change a hospital (only the fields sent)", tag=TAG)
async def update_hospital(request: Request, hospital_id: int) -> HTTPResponse:
    admin = await _admin(request)
    hospital = await hospitals.update_hospital(admin, hospital_id, _set(parse(request, HospitalPatch)))
    return json(hospital_out(hospital))


@bp.get("/hospitals/<hospital_id:int>/departments")
@openapi.definition(summary="A hospital's departments", tag=TAG)
async def list_departments(request: Request, hospital_id: int) -> HTTPResponse:
    await _admin(request)
    return json({"items": [department_out(d) for d in await hospitals.list_departments(hospital_id)]})


@bp.post("/hospitals/<hospital_id:int>/departments")
@openapi.definition(summary="Add a department (`name` unique in the hospital)", tag=TAG)
async def create_department(request: Request, hospital_id: int) -> HTTPResponse:
    admin = await _admin(request)
    department = await hospitals.create_department(admin, hospital_id, parse(request, DepartmentBody).name)
    return json(department_out(department), status=201)


# -- console accounts ---------------------------------------------------------------------------------------------
@bp.get("/users")
@openapi.definition(summary="Console users (`role=agent|engineer|admin|doctor`, or `staff` for WeChat-bound staff)",
                    tag=TAG)
async def list_users(request: Request) -> HTTPResponse:
    await _admin(request)
    users = await accounts.list_users(request.args.get("role") or None)
    await User.fetch_for_list(users, "doctor_account__practitioner")
    return json({"items": [user_out(u) for u in users]})


@bp.post("/users")
@openapi.definition(summary="Create a console user (username, password ≥ 10 characters, role, served hospitals; "
                            "a doctor: `practitioner_id`)",
                    description="A doctor's practitioner must exist, be active and belong to no other account "
                                "(404 / 409 naming `practitioner_id`); refused, no account is created.", tag=TAG)
async def create_user(request: Request) -> HTTPResponse:
    admin = await _admin(request)
    body = parse(request, UserBody)
    user = await accounts.create_console_user(admin, hasher=hash_password, link_doctor=link_doctor,
                                              **body.model_dump())
    await user.fetch_related(*USER_RELATIONS)
    return json(user_out(user), status=201)


@bp.put("/users/<user_id:int>")
@openapi.definition(summary="Change a console user: name, role, active, hospital_ids, password (reset), "
                            "practitioner_id (a doctor's)",
                    description="Disabling, a new role, practitioner or password ends the user's sessions at once. "
                                "Becoming a doctor needs `practitioner_id`; another role drops the doctor's link.",
                    tag=TAG)
async def update_user(request: Request, user_id: int) -> HTTPResponse:
    admin = await _admin(request)
    user, sessions_void = await accounts.update_console_user(admin, user_id, _set(parse(request, UserPatch)),
                                                             hasher=hash_password, link_doctor=link_doctor)
    if sessions_void:
        await end_user_sessions(request.app.ctx.redis, user.id)
    await user.fetch_related(*USER_RELATIONS)
    return json(user_out(user))


PRACTITIONER_CHOICES = 20


def _linked_to(p: Practitioner) -> dict | None:
    account = p.account
    return {"id": account.user.id, "username": account.user.username, "name": account.user.name} if account else None


@bp.get("/practitioners")
@openapi.definition(summary="Active practitioners to link a doctor's account to (`q`: name, department or HIS id; "
                            "at most 20), each with the account already linked to it", tag=TAG)
async def list_practitioners(request: Request) -> HTTPResponse:
    await _admin(request)
    found = await doctors.search_practitioners(request.args.get("q") or "", limit=PRACTITIONER_CHOICES)
    return json({"items": [{**practitioner_out(p), "linked_to": _linked_to(p)} for p in found]})


# -- invitation codes ---------------------------------------------------------------------------------------------
@bp.get("/invitations")
@openapi.definition(summary="Invitation codes, newest first (`hospital_id=` to narrow)", tag=TAG)
async def list_invitations(request: Request) -> HTTPResponse:
    await _admin(request)
    hospital_id = _int_arg(request, "hospital_id")
    if hospital_id is not None:
        await hospitals.get_hospital(hospital_id)
    found = await people.list_invitations(None if hospital_id is None else {hospital_id})
    return json({"items": [invitation_row(i) for i in found]})


@bp.post("/invitations")
@openapi.definition(summary="Create an invitation code for staff, agents or engineers to bind in WeChat", tag=TAG)
async def create_invitation(request: Request) -> HTTPResponse:
    admin = await _admin(request)
    body = parse(request, InvitationBody)
    invitation = await people.create_invitation(admin, body.hospital_id, role=body.role,
                                                department_id=body.department_id, max_uses=body.max_uses,
                                                ttl_days=body.ttl_days)
    await invitation.fetch_related("hospital", "department", "created_by")
    return json(invitation_row(invitation), status=201)


# -- knowledge base: review queue and proposals -------------------------------------------------------------------
def _proposal_out(p) -> dict:
    by = getattr(p, "proposed_by", None)
    return {"id": p.id, "kind": p.kind, "entry_id": p.entry_id, "question": p.question, "answer": p.answer,
            "device_type": p.device_type, "tier": p.tier, "status": p.status,
            "proposed_by": by.label() if isinstance(by, User) else None, "created_at": p.created_at.isoformat()}


@bp.get("/kb/review")
@openapi.definition(summary="Questions the robot answered badly or not at all, oldest first", tag=TAG)
async def kb_review(request: Request) -> HTTPResponse:
    await _admin(request)
    return json({"items": [{"id": q.id, "text": q.text, "kind": q.kind, "entry_id": q.entry_id,
                            "confidence": q.confidence, "feedback": q.feedback, "at": q.created_at.isoformat()}
                           for q in await learning.review_queue()]})


@bp.post("/kb/review/<log_id:int>/done")
@openapi.definition(summary="Take a question off the review queue", tag=TAG)
async def kb_reviewed(request: Request, log_id: int) -> HTTPResponse:
    question = await learning.mark_reviewed(log_id, await _admin(request))
    return json({"id": question.id, "reviewed_at": question.reviewed_at.isoformat()})


@bp.get("/kb/proposals")
@openapi.definition(summary="Agents' proposals (`status=pending|applied|approved|rejected`)", tag=TAG)
async def kb_proposals(request: Request) -> HTTPResponse:
    await _admin(request)
    status = request.args.get("status") or None
    if status not in (None, "pending", "applied", "approved", "rejected"):
        raise BadRequest("参数 status 须为 pending、applied、approved 或 rejected", code="invalid_field",
                         details={"field": "status"})
    return json({"items": [_proposal_out(p) for p in await learning.proposals(status)]})


@bp.post("/kb/proposals/<proposal_id:int>/decide")
@openapi.definition(summary="Approve or reject a proposal (`{\"approve\": true|false}`)", tag=TAG)
async def kb_decide(request: Request, proposal_id: int) -> HTTPResponse:
    admin = await _admin(request)
    proposal = await learning.decide(proposal_id, admin, parse(request, DecisionBody).approve)
    await request.app.ctx.events.publish("kb.changed", {"proposal": proposal.id})
    return json(_proposal_out(proposal))


# -- device import ------------------------------------------------------------------------------------------------
def _report_out(report: ImportReport) -> dict:
    return {"hospital": report.hospital, "filename": report.filename, "dry_run": report.dry_run,
            "stored": report.stored, "accepted": report.accepted, "summary": report.summary(), "text": report.text(),
            "created": report.count("created"), "updated": report.count("updated"),
            "unchanged": report.count("unchanged"), "new_departments": report.new_departments,
            "file_errors": report.file_errors, "notes": report.notes,
            "rows": [{"row": r.row, "system_number": r.system_number, "outcome": r.outcome, "errors": r.errors,
                      "line": r.line()} for r in report.rows]}


@bp.post("/devices/import")
@openapi.definition(summary="Import a hospital's devices (multipart: `file` CSV/XLSX, `hospital_id`, `dry_run`)",
                    description="All rows or none. A refused file answers 422 `import_refused` with the per-row "
                                "report in `error.details.report`.", tag=TAG)
async def devices_import(request: Request) -> HTTPResponse:
    admin = await _admin(request)
    upload = request.files.get("file") if request.files else None
    if upload is None or not upload.body:
        raise BadRequest("请上传设备文件（字段 file）", code="file_required", details={"field": "file"})
    form = request.form or {}
    hospital_id = (form.get("hospital_id") or "").strip()
    if not hospital_id.isdigit():
        raise BadRequest("请选择医院（字段 hospital_id）", code="invalid_field", details={"field": "hospital_id"})
    dry_run = (form.get("dry_run") or "").strip().lower() in ("1", "true", "yes", "on")
    hospital = await hospitals.get_hospital(int(hospital_id))
    report = await import_devices(hospital, upload.body, upload.name or "devices.csv", dry_run=dry_run, actor=admin)
    if not report.accepted:
        raise Unprocessable(report.summary(), code="import_refused", details={"report": _report_out(report)})
    return json(_report_out(report), status=200)
