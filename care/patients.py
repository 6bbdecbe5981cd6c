"""Patients: numbers, identity fields, the second factor, deletion with their biometrics.

The ID-card number is kept only as a masked form (for display and the second factor) and an HMAC-SHA256 keyed with
SECRET_KEY (so a number typed at a desk or found in an import finds the patient, while a stolen database does not
give the numbers back).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from typing import Any

from tortoise.transactions import in_transaction

from core import audit
from core.errors import NotFound, Unprocessable
from care.models import SEXES, Patient, PatientRecord, Visit

_ID_CARD_18 = re.compile(r"^\d{17}[\dX]$")
_ID_CARD_15 = re.compile(r"^\d{15}$")
_ID_CARD_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CARD_CHECK = "10X98765432"
_PHONE = re.compile(r"^\+?\d{5,20}$")
_NUMBER = re.compile(r"^P\d{8}$")

# Fields new_patient / update_patient accept besides ``id_card`` (which needs ``secret_key``).
_PLAIN_FIELDS = {"his_id", "name", "sex", "birth_date", "phone", "hospital", "hospital_id"}


def normalise_id_card(text: Any) -> str:
    """A resident ID-card number in canonical form (18 characters with its check digit verified, or 15 digits)."""
    value = re.sub(r"[\s-]", "", str(text or "")).upper()
    if _ID_CARD_15.match(value):
        return value
    if not _ID_CARD_18.match(value):
        raise Unprocessable("身份证号格式不正确", code="bad_id_card")
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_CARD_WEIGHTS))
    if _ID_CARD_CHECK[total % 11] != value[17]:
        raise Unprocessable("身份证号校验位不正确", code="bad_id_card")
    return value


def id_card_hash(secret_key: str, id_card: str) -> str:
    if not secret_key:
        raise ValueError("SECRET_KEY is needed to hash ID-card numbers")
    return hmac.new(secret_key.encode(), b"id-card:" + normalise_id_card(id_card).encode(), hashlib.sha256).hexdigest()


def mask_id_card(id_card: str) -> str:
    value = normalise_id_card(id_card)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def normalise_phone(text: Any) -> str:
    value = re.sub(r"[\s()-]", "", str(text or ""))
    if value and not _PHONE.match(value):
        raise Unprocessable("电话号码格式不正确", code="bad_phone")
    return value


def _clean(fields: dict, secret_key: str | None) -> dict:
    unknown = set(fields) - _PLAIN_FIELDS - {"id_card"}
    if unknown:
        raise TypeError(f"unknown patient fields: {sorted(unknown)}")
    values = {k: v for k, v in fields.items() if k != "id_card"}
    if "name" in values:
        values["name"] = str(values["name"] or "").strip()[:64]
    if "sex" in values:
        values["sex"] = values["sex"] if values["sex"] in SEXES else "unknown"
    if "birth_date" in values and values["birth_date"] is not None and not isinstance(values["birth_date"], date):
        raise Unprocessable("出生日期格式不正确", code="bad_birth_date")
    if "phone" in values:
        values["phone"] = normalise_phone(values["phone"])
    if fields.get("id_card"):
        if not secret_key:
            raise TypeError("secret_key is needed with id_card")
        values["id_card_masked"] = mask_id_card(fields["id_card"])
        values["id_card_hash"] = id_card_hash(secret_key, fields["id_card"])
    return values


class _same:
    """Use a caller's open transaction as if it were a new one."""

    def __init__(self, conn):
        self.conn = conn

    async def __aenter__(self):
        return self.conn

    async def __aexit__(self, *exc):
        return False


async def next_number(using_db=None) -> str:
    """``P`` + an 8-digit sequence, incremented atomically in the database (safe across workers)."""
    conn = using_db or Patient._meta.db
    mark = "$1" if conn.capabilities.dialect == "postgres" else "?"
    rows = await conn.execute_query_dict(
        f"INSERT INTO patient_counter (name, value) VALUES ({mark}, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = patient_counter.value + 1 RETURNING value", ["patient"])
    return f"P{rows[0]['value']:08d}"


async def new_patient(*, secret_key: str | None = None, actor_label: str = "system", using_db=None,
                      **fields) -> Patient:
    """Store a new patient with the next number. Fields: his_id, name, sex, birth_date, phone, hospital(_id),
    and id_card (in clear, with ``secret_key``; only its mask and hash are stored)."""
    values = _clean(fields, secret_key)
    async with in_transaction() if using_db is None else _same(using_db) as conn:
        patient = await Patient.create(number=await next_number(conn), using_db=conn, **values)
        await audit.record("patient.created", "patient", patient.number, actor_label=actor_label,
                           changes={"his_id": patient.his_id}, using_db=conn)
    return patient


async def update_patient(patient: Patient, *, secret_key: str | None = None, using_db=None, **fields) -> Patient:
    values = _clean(fields, secret_key)
    for key, value in values.items():
        setattr(patient, key, value)
    if values:
        await patient.save(using_db=using_db)
    return patient


async def get_by_number(number: str) -> Patient:
    value = str(number or "").strip().upper()
    patient = await Patient.get_or_none(number=value) if _NUMBER.match(value) else None
    if patient is None:
        raise NotFound("未找到该患者", code="patient_not_found")
    return patient


async def find_by_id_card(secret_key: str, id_card: str) -> Patient | None:
    return await Patient.filter(id_card_hash=id_card_hash(secret_key, id_card)).first()


def _last4_digits(text: str) -> str:
    tail = text[-4:].upper()
    return tail if len(tail) == 4 and "*" not in tail else ""


def verify_second_factor(patient: Patient, digits: str) -> bool:
    """True when ``digits`` are the last four characters of the patient's ID card (X allowed) or of their phone.

    Both comparisons always run, in constant time, so the answer's timing tells nothing about which one matched.
    """
    given = str(digits or "").strip().upper()
    if len(given) != 4:
        return False
    card = _last4_digits(patient.id_card_masked or "")
    phone = _last4_digits(re.sub(r"\D", "", patient.phone or ""))
    # compare_digest against a placeholder keeps the work the same when a factor is missing.
    card_ok = hmac.compare_digest(given.encode(), (card or "\0\0\0\0").encode()) and bool(card)
    phone_ok = hmac.compare_digest(given.encode(), (phone or "\0\0\0\0").encode()) and bool(phone)
    return card_ok or phone_ok


async def history(patient: Patient) -> dict:
    """The patient's visits and records, newest first, as plain data for an API answer."""
    visits = await Visit.filter(patient=patient).prefetch_related("practitioner")
    records = await PatientRecord.filter(patient=patient)
    return {
        "visits": [{
            "hospital": v.hospital_name, "department": v.department,
            "doctor": v.practitioner.name if v.practitioner else v.doctor_name,
            "diagnosis": v.diagnosis, "medication": v.medication, "kind": v.kind, "status": v.status,
            "start": v.start_at.isoformat() if v.start_at else None,
            "end": v.end_at.isoformat() if v.end_at else None,
        } for v in visits],
        "records": [{
            "kind": r.kind, "title": r.title, "data": r.data, "source": r.source,
            "recorded_at": r.recorded_at.isoformat(),
        } for r in records],
    }


async def delete_patient(patient: Patient, *, actor_label: str = "system") -> None:
    """Delete the patient, their visits and records, and their biometrics (every worker's face index too)."""
    from vision import index as face_index  # vision is a sibling domain; imported late, only when deleting

    # Biometrics first: if the row deletion then fails, the face is already unusable, never the reverse.
    await face_index.forget(patient.id)
    async with in_transaction() as conn:
        await audit.record("patient.deleted", "patient", patient.number, actor_label=actor_label, using_db=conn)
        await patient.delete(using_db=conn)
