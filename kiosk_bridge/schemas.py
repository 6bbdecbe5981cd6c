"""Request and answer shapes of the kiosk API: they validate bodies and document the routes (with examples)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sanic_ext.extensions.openapi.definitions import Component, RequestBody, Response

from miniprogram_api.schemas import ErrorOut


class DigitsBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    digits: str = Field(min_length=4, max_length=4, description="last four characters of the ID card (X allowed) "
                                                                "or of the phone number")


class PatientBrief(BaseModel):
    number: str = Field(description="our patient number, P + 8 digits")
    name: str = Field(description="empty for a patient just enrolled at a kiosk")


class LoginOut(BaseModel):
    session: str = Field(description="send as Authorization: Bearer with this kiosk's X-Kiosk-Key")
    patient: PatientBrief
    enrolled: bool = Field(description="true: the face was unknown; a new patient was created and the face saved")
    second_factor: bool = Field(description="always false at login: a face alone is a weak proof")
    expires_in: int = Field(description="seconds the session lasts")


class SessionOut(BaseModel):
    patient: PatientBrief
    second_factor: bool
    expires_in: int


class MeOut(BaseModel):
    number: str
    name: str
    second_factor: bool


class CodeOut(BaseModel):
    code: str = Field(description="show it on the screen; the patient enters it in the mini program")
    expires_in: int


class Visit(BaseModel):
    hospital: str
    department: str
    doctor: str
    diagnosis: str
    medication: str
    kind: str
    status: str
    start: str | None
    end: str | None


class Record(BaseModel):
    kind: str
    title: str
    data: dict
    source: str
    recorded_at: str


class RecordsOut(BaseModel):
    patient: PatientBrief
    visits: list[Visit]
    records: list[Record]


PATIENT_EXAMPLE = {"number": "P00000042", "name": "张三"}


def content(model: type[BaseModel], example: Any) -> dict:
    """JSON content naming ``model`` as a component, with an example."""
    return {"application/json": {"schema": Component(model), "example": example}}


def json_body(model: type[BaseModel], example: Any, description: str) -> RequestBody:
    return RequestBody(content(model, example), required=True, description=description)


def ok(status: int, model: type[BaseModel], example: Any, description: str) -> Response:
    return Response(content(model, example), status=status, description=description)


def error(status: int, code: str, message: str, description: str) -> Response:
    return Response(content(ErrorOut, {"error": {"code": code, "message": message}}), status=status,
                    description=description)


UNAUTHORIZED = error(401, "invalid_kiosk_key", "终端密钥无效或已停用",
                     "no or a wrong X-Kiosk-Key; or the session is missing, expired, ended (`session_ended`) or "
                     "another kiosk's (`session_of_other_kiosk`)")
