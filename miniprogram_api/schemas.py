"""Request and answer shapes of the mini program API: they validate input and document the routes in OpenAPI."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from sanic import Request
from sanic_ext.extensions.openapi.definitions import Component

from core.errors import BadRequest
from core.models import InvitationCode, User

M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class LoginBody(_Body):
    code: str = Field(min_length=1, max_length=128, description="the code from wx.login()")


class BindBody(_Body):
    code: str = Field(min_length=1, max_length=32, description="the invitation code (spaces and dashes ignored)")
    name: str | None = Field(None, max_length=64, description="the person's real name; required on first binding")
    phone: str | None = Field(None, max_length=32, description="a phone number")


class ClaimBody(_Body):
    device_id: StrictInt | None = Field(None, description="the device to claim")
    group_id: StrictInt | None = Field(None, description="or the device group")


class DecisionBody(_Body):
    approve: StrictBool = Field(description="true approves, false rejects")


class ProposalBody(_Body):
    kind: Literal["variant", "entry"] = Field(description="variant: add the question to an entry; entry: a new one")
    entry_id: StrictStr = Field(max_length=64)
    question: StrictStr = Field(min_length=1, max_length=256)
    answer: StrictStr = Field("", max_length=5000, description="a new entry's answer")
    device_type: StrictStr = Field("", max_length=32)
    tier: Literal["basic", "advanced"] = "basic"
    source_log_id: StrictInt | None = Field(None, description="the robot's question record the reply answers")


class InvitationBody(_Body):
    hospital_id: int | None = Field(None, description="defaults to the administrator's hospital")
    role: Literal["staff", "agent", "engineer"] = "staff"
    department_id: int | None = None
    max_uses: int = Field(1, ge=1, le=1000)
    ttl_days: int = Field(7, ge=1, le=90)


class HospitalOut(BaseModel):
    id: int
    name: str


class DepartmentOut(BaseModel):
    id: int
    name: str


class UserOut(BaseModel):
    id: int
    name: str
    phone: str
    role: str
    hospital: HospitalOut | None
    department: DepartmentOut | None
    bound: bool = Field(description="true once the user belongs to a hospital")


class SessionOut(BaseModel):
    token: str = Field(description="the JWT to send as Authorization: Bearer")
    user: UserOut


class InvitationOut(BaseModel):
    code: str
    hospital_id: int
    department_id: int | None
    role: str
    max_uses: int
    uses: int
    expires_at: datetime


class ErrorDetail(BaseModel):
    code: str
    message: str = Field(description="shown to users, in Chinese")


class ErrorOut(BaseModel):
    error: ErrorDetail


def as_json(model: type[BaseModel]) -> dict:
    """OpenAPI content referring to ``model`` as a named component (nested models become components too)."""
    return {"application/json": Component(model)}


def parse(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; anything else is a 400 with a Chinese message naming the field."""
    try:
        data = json.loads(request.body or b"null")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BadRequest("请求内容须为 JSON 对象", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        field = path or "请求"
        details = {"field": path} if path else None  # programs (the console's forms) mark the field by this
        if first["type"] == "missing":
            raise BadRequest(f"缺少字段 {field}", code="invalid_field", details=details) from None
        raise BadRequest(f"字段 {field} 的值有误", code="invalid_field", details=details) from None


async def user_out(user: User) -> dict:
    await user.fetch_related("hospital", "department")
    hospital, department = user.hospital, user.department
    return UserOut(
        id=user.id, name=user.name, phone=user.phone, role=user.role,
        hospital=HospitalOut(id=hospital.id, name=hospital.name) if hospital else None,
        department=DepartmentOut(id=department.id, name=department.name) if department else None,
        bound=hospital is not None,
    ).model_dump(mode="json")


def invitation_out(invitation: InvitationCode) -> dict:
    return InvitationOut(code=invitation.code, hospital_id=invitation.hospital_id,
                         department_id=invitation.department_id, role=invitation.role, max_uses=invitation.max_uses,
                         uses=invitation.uses, expires_at=invitation.expires_at).model_dump(mode="json")
