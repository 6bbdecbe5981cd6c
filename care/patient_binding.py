"""Binding a mini-program user to a patient: the patient, in a STRONG kiosk session (the second factor given), asks
the kiosk for a one-time code (shown as digits and as a QR code); the mini program sends it back; the user may then
act for that patient (their vitals, advice, consultations).

Codes live in Redis (``kiosk:bind:<code>`` → the patient), 8 digits, one use, at most ``BIND_CODE_TTL`` seconds and
never beyond the session. Wrong codes are counted per user: ``BIND_FAILURES_PER_USER`` in a window → 429.
"""

from __future__ import annotations

import json
import secrets

from core.errors import BadRequest, Forbidden, NotFound, ServiceBusy, TooManyRequests, Unauthorized
from core.models import User
from core.redis import Redis
from care import kiosks
from care.kiosks import KioskSession
from care.models import Patient

BIND_CODE_TTL = 300
BIND_FAILURES_PER_USER = 10
QR_PREFIX = "medwx-bind:"  # the QR code's text; the mini program's scanner reads the code after it
_CODE = "kiosk:bind:"


async def binding_code(redis: Redis, session: KioskSession) -> tuple[str, int]:
    """(code, seconds valid) for the session's patient. Needs a strong session: a face alone could be a photo."""
    kiosks.require_strong(session)
    ttl = min(BIND_CODE_TTL, session.expires_in)
    if ttl <= 0:
        raise Unauthorized("会话已过期，请重新刷脸", code="session_expired")
    value = json.dumps({"patient": session.patient_id, "kiosk": session.kiosk_id})
    for _ in range(10):
        code = f"{secrets.randbelow(10 ** 8):08d}"
        if await redis.set(_CODE + code, value, nx=True, ex=ttl):
            return code, ttl
    raise ServiceBusy("请稍后再试", code="busy", headers={"Retry-After": "1"})


def qr_text(code: str) -> str:
    return QR_PREFIX + code


async def bind_with_code(redis: Redis, user: User, code: str) -> Patient:
    """Bind ``user`` to the patient whose kiosk showed ``code`` (a QR text is accepted too). One use per code."""
    code = (code or "").strip()
    if code.startswith(QR_PREFIX):
        code = code[len(QR_PREFIX):]
    if len(code) != 8 or not code.isdigit():
        raise BadRequest("请输入终端上显示的 8 位绑定码", code="invalid_field", details={"field": "code"})
    fails_key = f"kiosk:bind-fails:{user.id}"
    fails = await redis.get(fails_key)
    if fails and int(fails) >= BIND_FAILURES_PER_USER:
        raise TooManyRequests("尝试次数过多，请稍后再试", code="too_many_attempts",
                              headers={"Retry-After": str(max(1, await redis.ttl(fails_key)))})
    raw = await redis.getdel(_CODE + code)
    patient = await Patient.get_or_none(id=json.loads(raw)["patient"]) if raw else None
    if patient is None:
        await redis.set(fails_key, 0, nx=True, ex=BIND_CODE_TTL)  # the window starts at the first mistake
        await redis.incr(fails_key)
        raise NotFound("绑定码无效或已过期，请以终端上显示的为准", code="invalid_binding_code",
                       details={"field": "code"})
    await kiosks.bind_patient(user, patient, actor_label=f"mini_program:{user.id}")
    return patient


async def acting_patient(user: User, number: str | None) -> Patient:
    """The patient ``user`` acts for: the one named by our number, or their only bound one."""
    bound = await kiosks.bound_patients(user)
    if number:
        for patient in bound:
            if patient.number == number:
                return patient
        raise Forbidden("您尚未绑定该就诊人", code="patient_not_bound", details={"field": "patient"})
    if not bound:
        raise Forbidden("请先在终端上绑定就诊人", code="patient_not_bound")
    if len(bound) > 1:
        raise BadRequest("您绑定了多位就诊人，请用 patient 指明是哪一位", code="invalid_field",
                         details={"field": "patient"})
    return bound[0]
