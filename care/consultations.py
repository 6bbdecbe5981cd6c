"""Consultations: booking a doctor's slot, asking the HIS (a FHIR ``Appointment``, status ``proposed``), its answer,
the room, the chat record and the end.

- ``request`` books the slot (a conditional UPDATE: two patients, one slot → one wins, the other 409), stores the
  consultation, then creates the Appointment on the HIS. When the HIS refuses or does not answer, the consultation
  is removed and the slot freed: nothing stays behind a request that never reached the hospital.
- The HIS answers later: ``apply_answer`` takes an Appointment (read back by ``poll_pending``, or pushed to the
  callback) and moves ``requested`` to ``accepted`` or ``declined``; a decline frees the slot.
- Each side joins the room with a room token (``room_token``): signed, naming the consultation and the side, so a
  token of one consultation opens no other. Both sides present → ``active``; either side ends → ``ended`` with its
  duration. Chat messages are stored; WebRTC signalling is relayed only (``care.rooms``).

Events (after commit): ``consultation.requested``, ``consultation.accepted``, ``consultation.declined``,
``consultation.cancelled``, ``consultation.started``, ``consultation.message``, ``consultation.ended``, each with
``consultation_id``, ``patient_id``, ``practitioner_id`` (and ``status``).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone
from typing import Any

from tortoise.transactions import in_transaction

from core import audit
from core.auth import read_link, sign_link
from core.errors import BadRequest, Conflict, Forbidden, NotFound, UpstreamError
from core.events import EventBus
from care.consultation_models import OPEN_STATUSES, Consultation, ConsultationMessage, DoctorAccount
from care.doctor_models import PractitionerSlot
from care.models import Patient, Practitioner

log = logging.getLogger(__name__)

IDENTIFIER_SYSTEM = "urn:medwx:consultation"
PATIENT_SYSTEM = "urn:medwx:patient"
ROOM_TOKEN_PURPOSE = "consultation-room"
ROOM_TOKEN_MAX_AGE = 12 * 3600
MAX_MESSAGE = 2000  # characters of one chat message
ACCEPTED_STATUSES = ("booked", "arrived", "fulfilled", "checked-in")
DECLINED_STATUSES = ("cancelled", "noshow", "entered-in-error")


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _publish(events: EventBus | None, name: str, c: Consultation, **extra: Any) -> None:
    if events is None:
        return
    await events.publish(name, {"consultation_id": c.id, "patient_id": c.patient_id,
                                "practitioner_id": c.practitioner_id, "status": c.status, **extra})


# -- requesting -------------------------------------------------------------------------------------------------------
async def request(patient: Patient, practitioner_id: Any, slot_id: Any, *, his, events: EventBus | None,
                  source: str, kiosk_id: int | None = None, user_id: int | None = None,
                  reason: str = "") -> Consultation:
    """Book ``slot_id`` of ``practitioner_id`` for ``patient`` and ask the HIS (``his``: an ``HISClient``)."""
    practitioner_id, slot_id = _int_field(practitioner_id, "practitioner_id"), _int_field(slot_id, "slot_id")
    reason = (reason or "").strip()
    if len(reason) > 500:
        raise BadRequest("字段 reason 不能超过 500 个字符", code="invalid_field", details={"field": "reason"})
    practitioner = await Practitioner.get_or_none(id=practitioner_id)
    if practitioner is None or not practitioner.active:
        raise NotFound("未找到该医生", code="practitioner_not_found", details={"field": "practitioner_id"})
    slot = await PractitionerSlot.get_or_none(id=slot_id)
    if slot is None or slot.practitioner_id != practitioner.id:
        raise NotFound("该医生没有这个号源", code="slot_not_found", details={"field": "slot_id"})
    if slot.status != "free" or _aware(slot.start) <= _now():
        raise Conflict("该时段已不可预约，请选择其他时段", code="slot_unavailable", details={"field": "slot_id"})
    if his is None:
        raise UpstreamError("未连接医院信息系统，暂不能预约", code="his_not_configured", status=503)
    if await Consultation.exists(patient_id=patient.id, practitioner_id=practitioner.id, status__in=OPEN_STATUSES):
        raise Conflict("您已向该医生发起问诊，请勿重复预约", code="consultation_open")

    async with in_transaction() as conn:
        taken = await PractitionerSlot.filter(id=slot.id, status="free").using_db(conn).update(status="booked")
        if not taken:
            raise Conflict("该时段已被预约，请选择其他时段", code="slot_unavailable", details={"field": "slot_id"})
        consultation = await Consultation.create(
            patient_id=patient.id, practitioner_id=practitioner.id, slot_id=slot.id, source=source,
            kiosk_id=kiosk_id, requested_by_id=user_id, reason=reason, room=secrets.token_hex(16), using_db=conn)

    try:
        created = await his.create("Appointment", appointment_resource(consultation, patient, practitioner, slot))
        his_id = str(created.get("id") or "")
        if not his_id:
            raise UpstreamError("医院信息系统未返回预约编号")
    except BaseException:  # also a cancelled request (the client went away mid-call)
        # The request never reached the hospital (or we cannot know its id): leave nothing behind it.
        async with in_transaction() as conn:
            await Consultation.filter(id=consultation.id).using_db(conn).delete()
            await PractitionerSlot.filter(id=slot.id, status="booked").using_db(conn).update(status="free")
        raise
    consultation.his_appointment_id = his_id
    await consultation.save(update_fields=["his_appointment_id", "updated_at"])
    await audit.record("consultation.requested", "consultation", consultation.id,
                       actor_label=f"{source}:{kiosk_id or user_id or patient.number}",
                       changes={"practitioner_id": practitioner.id, "slot_id": slot.id, "his_id": his_id})
    await _publish(events, "consultation.requested", consultation)
    if created.get("status") not in (None, "proposed", "pending"):  # a HIS that decides at once
        consultation = await apply_answer(created, events=events) or consultation
    return consultation


def _int_field(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise BadRequest(f"字段 {field} 须为正整数", code="invalid_field", details={"field": field})
    return int(value)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return _aware(value).isoformat() if value else None


def appointment_resource(c: Consultation, patient: Patient, practitioner: Practitioner, slot) -> dict:
    """The FHIR R4 Appointment (status ``proposed``) asking the HIS for this consultation."""
    if patient.his_id:
        patient_actor = {"reference": f"Patient/{patient.his_id}", "display": patient.name or patient.number}
    else:  # enrolled at a kiosk: the HIS knows them by our number only
        patient_actor = {"identifier": {"system": PATIENT_SYSTEM, "value": patient.number},
                         "display": patient.name or patient.number}
    doctor_actor = {"display": practitioner.name}
    if practitioner.his_id:
        doctor_actor["reference"] = f"Practitioner/{practitioner.his_id}"
    resource = {
        "resourceType": "Appointment",
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": str(c.id)}],
        "status": "proposed",
        "serviceType": [{"text": "远程问诊"}],
        "description": c.reason or "远程问诊（视频/语音/文字）",
        "start": _iso(slot.start),
        "end": _iso(slot.end),
        "created": _iso(c.requested_at or _now()),
        "participant": [
            {"actor": patient_actor, "required": "required", "status": "accepted"},
            {"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                   "code": "ATND"}]}],
             "actor": doctor_actor, "required": "required", "status": "needs-action"},
        ],
    }
    if getattr(slot, "his_id", None):
        resource["slot"] = [{"reference": f"Slot/{slot.his_id}"}]
    return resource


# -- the HIS's answer ---------------------------------------------------------------------------------------------------
def answer_of(appointment: dict) -> str | None:
    """``accepted``, ``declined`` or None (still undecided) from an Appointment as the HIS returns it."""
    status = appointment.get("status")
    if status in DECLINED_STATUSES:
        return "declined"
    doctors = [p for p in appointment.get("participant") or [] if isinstance(p, dict)
               and "Practitioner/" in str((p.get("actor") or {}).get("reference", ""))]
    if any(p.get("status") == "declined" for p in doctors):
        return "declined"
    if status in ACCEPTED_STATUSES:
        return "accepted"
    return None


def _consultation_id_of(appointment: dict) -> int | None:
    for identifier in appointment.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == IDENTIFIER_SYSTEM:
            value = str(identifier.get("value", ""))
            return int(value) if value.isdigit() else None
    return None


async def apply_answer(appointment: dict, *, events: EventBus | None) -> Consultation | None:
    """Apply the HIS's Appointment to its consultation; None when it names none of ours (or nothing changed)."""
    if not isinstance(appointment, dict) or appointment.get("resourceType") != "Appointment":
        raise BadRequest("内容须为 FHIR Appointment", code="not_an_appointment")
    his_id = str(appointment.get("id") or "")
    consultation = await Consultation.get_or_none(his_appointment_id=his_id) if his_id else None
    if consultation is None:
        cid = _consultation_id_of(appointment)
        consultation = await Consultation.get_or_none(id=cid) if cid else None
        if consultation is not None and consultation.his_appointment_id not in (None, his_id):
            consultation = None  # our identifier on another appointment: not this one's answer
    if consultation is None:
        return None
    answer = answer_of(appointment)
    if answer is None:
        return None
    why = appointment.get("cancelationReason")
    note = str(appointment.get("comment") or (why.get("text", "") if isinstance(why, dict) else ""))[:500]
    now = _now()
    if answer == "accepted":
        changed = await Consultation.filter(id=consultation.id, status="requested").update(
            status="accepted", answered_at=now, answer_note=note, updated_at=now)
        name = "consultation.accepted"
    else:
        # A decline before the start, or the HIS cancelling an accepted appointment: the slot is free again.
        async with in_transaction() as conn:
            changed = await Consultation.filter(id=consultation.id, status__in=("requested", "accepted")).using_db(
                conn).update(status="declined", answered_at=now, answer_note=note, updated_at=now)
            if changed and consultation.slot_id:
                await PractitionerSlot.filter(id=consultation.slot_id).using_db(conn).update(status="free")
        name = "consultation.declined"
    if not changed:
        return None
    consultation = await Consultation.get(id=consultation.id)
    await audit.record(name, "consultation", consultation.id, actor_label="his", changes={"note": note})
    await _publish(events, name, consultation)
    log.info("consultation %s %s by the HIS", consultation.id, consultation.status)
    return consultation


async def poll_pending(his, *, events: EventBus | None, limit: int = 200) -> int:
    """Read back every unanswered request from the HIS; how many changed. One failure does not stop the rest."""
    changed = 0
    pending = await Consultation.filter(status="requested", his_appointment_id__not_isnull=True).order_by(
        "id").limit(limit)
    for consultation in pending:
        try:
            appointment = await his.read("Appointment", consultation.his_appointment_id)
            if await apply_answer(appointment, events=events):
                changed += 1
        except Exception:  # noqa: BLE001 - the next round tries again
            log.warning("consultation %s: appointment %s not read back", consultation.id,
                        consultation.his_appointment_id, exc_info=True)
    return changed


async def apply_notification(body: Any, *, events: EventBus | None) -> list[Consultation]:
    """A callback from the HIS: an Appointment, or a Bundle (e.g. a subscription notification) holding some."""
    if not isinstance(body, dict):
        raise BadRequest("内容须为 FHIR Appointment 或 Bundle", code="not_an_appointment")
    if body.get("resourceType") == "Bundle":
        appointments = [e.get("resource") for e in body.get("entry") or []
                        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                        and e["resource"].get("resourceType") == "Appointment"]
        if not appointments:
            raise BadRequest("Bundle 中没有 Appointment", code="not_an_appointment")
    else:
        appointments = [body]
    changed = []
    for appointment in appointments:
        consultation = await apply_answer(appointment, events=events)
        if consultation is not None:
            changed.append(consultation)
    return changed


# -- telling the HIS what happened here ---------------------------------------------------------------------------------
# What the Appointment at the HIS becomes when the consultation ends here; the HIS's own final states are left as is.
HIS_STATUS_AFTER = {"consultation.cancelled": "cancelled", "consultation.ended": "fulfilled"}
HIS_FINAL_STATUSES = ("cancelled", "noshow", "entered-in-error", "fulfilled")
CANCELLATION_REASONS = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"


def appointment_after(appointment: dict, event_name: str) -> dict | None:
    """The Appointment as the HIS should now hold it after ``event_name``; None when it needs no change."""
    target = HIS_STATUS_AFTER.get(event_name)
    if target is None or appointment.get("status") in HIS_FINAL_STATUSES:
        return None
    updated = dict(appointment, status=target)
    if target == "cancelled":
        updated["cancelationReason"] = {"coding": [{"system": CANCELLATION_REASONS, "code": "pat",
                                                    "display": "Patient"}], "text": "患者取消问诊"}
        updated["participant"] = [dict(p, status="declined") if _is_patient(p) else p
                                  for p in appointment.get("participant") or [] if isinstance(p, dict)]
    return updated


def _is_patient(participant: dict) -> bool:
    actor = participant.get("actor") or {}
    return (str(actor.get("reference", "")).startswith("Patient/")
            or (actor.get("identifier") or {}).get("system") == PATIENT_SYSTEM)


async def tell_his(event, *, his) -> None:
    """A listener (one worker per event): a consultation the patient cancelled, or that ended in the room, is
    ``cancelled`` / ``fulfilled`` at the HIS too, so its schedule frees the doctor or records the visit.

    The Appointment is read afresh and written back with its version (``If-Match``): a change the HIS made meanwhile
    is never overwritten (412 → this raises, and the event bus delivers the event again, which reads it again).
    A HIS that fails is asked again the same way; an appointment the HIS no longer has needs nothing."""
    c = await Consultation.get_or_none(id=event.data.get("consultation_id"))
    if c is None or not c.his_appointment_id or event.name not in HIS_STATUS_AFTER:
        return
    try:
        appointment = await his.read("Appointment", c.his_appointment_id)
    except UpstreamError as exc:
        if (exc.details or {}).get("status") in (404, 410):
            log.warning("consultation %s: appointment %s is gone from the HIS", c.id, c.his_appointment_id)
            return
        raise
    updated = appointment_after(appointment, event.name)
    if updated is None:
        return
    await his.update(updated)
    await audit.record("consultation.his_updated", "consultation", c.id, actor_label="system",
                       changes={"his_id": c.his_appointment_id, "status": updated["status"]})
    log.info("consultation %s: appointment %s is %s at the HIS", c.id, c.his_appointment_id, updated["status"])


# -- who may see which ------------------------------------------------------------------------------------------------
async def for_patient(patient: Patient, consultation_id: Any) -> Consultation:
    """The patient's own consultation; another patient's is as unknown as a missing one (404)."""
    c = await Consultation.get_or_none(id=_int_field(consultation_id, "id"), patient_id=patient.id)
    if c is None:
        raise NotFound("未找到该问诊", code="consultation_not_found")
    return c


async def list_for_patient(patient: Patient, limit: int = 50) -> list[Consultation]:
    return await Consultation.filter(patient_id=patient.id).order_by("-id").limit(limit).prefetch_related(
        "practitioner", "slot")


async def doctor_practitioner(user) -> Practitioner:
    """The practitioner a console user (role ``doctor``) is."""
    account = await DoctorAccount.get_or_none(user_id=user.id).prefetch_related("practitioner")
    if account is None:
        raise Forbidden("该账号未关联医生", code="not_a_doctor")
    return account.practitioner


async def for_doctor(user, consultation_id: Any) -> Consultation:
    practitioner = await doctor_practitioner(user)
    c = await Consultation.get_or_none(id=_int_field(consultation_id, "id"), practitioner_id=practitioner.id)
    if c is None:
        raise NotFound("未找到该问诊", code="consultation_not_found")
    return c


async def list_for_doctor(user, *, open_only: bool = False, limit: int = 100) -> list[Consultation]:
    practitioner = await doctor_practitioner(user)
    query = Consultation.filter(practitioner_id=practitioner.id)
    if open_only:
        query = query.filter(status__in=OPEN_STATUSES)
    return await query.order_by("-id").limit(limit).prefetch_related("patient", "slot")


async def link_doctor(user, practitioner: Practitioner | int | None, *, actor_label: str | None = None, actor=None,
                      using_db=None) -> DoctorAccount | None:
    """Make a console user this practitioner (their role becomes ``doctor``), or, with ``practitioner=None``, no
    practitioner any more (the link removed; the caller gives the account its new role in the same transaction).

    The one implementation of the link: the admin screen (``core.accounts``, which is handed this function, since
    core imports no domain) and ``python -m care link-doctor | unlink-doctor`` come here. ``practitioner``: a row or
    its id; unknown → 404, inactive or already another account's → 409 (naming that account), each with
    ``details.field = practitioner_id``. ``using_db``: the caller's transaction, so that a refusal undoes the account
    change around it; without one, a transaction of its own. Audited (``doctor.linked`` / ``doctor.unlinked``)."""
    from tortoise.exceptions import IntegrityError

    from core.models import User

    if using_db is None:
        async with in_transaction() as conn:
            return await link_doctor(user, practitioner, actor_label=actor_label, actor=actor, using_db=conn)
    conn, who = using_db, {"actor": actor, "actor_label": actor_label or (None if actor else "system")}
    current = await DoctorAccount.filter(user_id=user.id).using_db(conn).first()
    if practitioner is None:
        if current is not None:
            await current.delete(using_db=conn)
            await audit.record("doctor.unlinked", "user", user.id, changes={"practitioner_id": current.practitioner_id},
                               using_db=conn, **who)
        return None
    if not isinstance(practitioner, Practitioner):
        practitioner_id = _int_field(practitioner, "practitioner_id")
        practitioner = await Practitioner.filter(id=practitioner_id).using_db(conn).first()
        if practitioner is None:
            raise NotFound(f"未找到编号为 {practitioner_id} 的医生", code="practitioner_not_found",
                           details={"field": "practitioner_id"})
    if not practitioner.active:
        raise Conflict(f"医生“{practitioner.name}”已停用，不能关联账号", code="practitioner_inactive",
                       details={"field": "practitioner_id"})
    taken = await DoctorAccount.filter(practitioner_id=practitioner.id).exclude(user_id=user.id).using_db(conn).first()
    if taken is not None:
        other = await User.filter(id=taken.user_id).using_db(conn).values_list("username", flat=True)
        raise Conflict(f"医生“{practitioner.name}”已关联账号“{other[0] if other else taken.user_id}”",
                       code="practitioner_linked", details={"field": "practitioner_id"})
    changes: dict = {"practitioner_id": practitioner.id}
    try:
        if current is None:
            current = await DoctorAccount.create(user_id=user.id, practitioner_id=practitioner.id, using_db=conn)
        elif current.practitioner_id != practitioner.id:
            changes["previous_practitioner_id"] = current.practitioner_id
            current.practitioner_id = practitioner.id
            await current.save(update_fields=["practitioner_id"], using_db=conn)
        elif user.role == "doctor":
            return current  # already so: nothing to record
    except IntegrityError:  # another account took this practitioner meanwhile
        raise Conflict(f"医生“{practitioner.name}”已关联其他账号", code="practitioner_linked",
                       details={"field": "practitioner_id"}) from None
    if user.role != "doctor":
        changes["role"] = [user.role, "doctor"]
        user.role = "doctor"
        await user.save(update_fields=["role"], using_db=conn)
    await audit.record("doctor.linked", "user", user.id, changes=changes, using_db=conn, **who)
    return current


# -- the room ---------------------------------------------------------------------------------------------------------
def room_token(secret: str, c: Consultation, side: str) -> str:
    return sign_link(secret, ROOM_TOKEN_PURPOSE, {"c": c.id, "r": c.room, "s": side})


def check_room_token(secret: str, c: Consultation, side: str, token: str | None) -> None:
    """The token must be this consultation's, for this side; a token of another consultation is refused (403)."""
    if not token:
        raise Forbidden("缺少问诊房间令牌", code="room_token_required")
    data = read_link(secret, ROOM_TOKEN_PURPOSE, token, max_age=ROOM_TOKEN_MAX_AGE)
    if data.get("c") != c.id or data.get("r") != c.room or data.get("s") != side:
        raise Forbidden("房间令牌与该问诊不符", code="room_token_mismatch")


def require_open_room(c: Consultation) -> None:
    if c.status in ("accepted", "active"):
        return
    if c.status == "requested":
        raise Conflict("医院尚未接受该问诊，请稍候", code="consultation_not_accepted")
    raise Conflict("该问诊已结束或未被接受", code="consultation_closed")


async def mark_started(c: Consultation, *, events: EventBus | None) -> Consultation:
    """Both sides are in the room: ``accepted`` → ``active`` (once)."""
    now = _now()
    if await Consultation.filter(id=c.id, status="accepted").update(status="active", started_at=now,
                                                                     updated_at=now):
        c = await Consultation.get(id=c.id)
        await _publish(events, "consultation.started", c)
    return c


async def post_message(c: Consultation, sender: str, body: Any, *, events: EventBus | None) -> ConsultationMessage:
    """Store a chat message of ``sender`` (patient | doctor) in an open room."""
    if sender not in ("patient", "doctor"):
        raise BadRequest("发送方有误", code="invalid_field", details={"field": "sender"})
    text = body.strip() if isinstance(body, str) else ""
    if not text:
        raise BadRequest("消息内容不能为空", code="invalid_field", details={"field": "body"})
    if len(text) > MAX_MESSAGE:
        raise BadRequest(f"消息不能超过 {MAX_MESSAGE} 个字", code="invalid_field", details={"field": "body"})
    c = await Consultation.get(id=c.id)
    require_open_room(c)
    message = await ConsultationMessage.create(consultation_id=c.id, sender=sender, body=text)
    await _publish(events, "consultation.message", c, message_id=message.id, sender=sender)
    return message


async def messages(c: Consultation, *, after_id: int = 0, limit: int = 500) -> list[ConsultationMessage]:
    return await ConsultationMessage.filter(consultation_id=c.id, id__gt=after_id).order_by("id").limit(limit)


async def end(c: Consultation, by: str, *, events: EventBus | None) -> Consultation:
    """Either side ends the consultation; the record keeps when and how long. Ending twice is harmless."""
    now = _now()
    c = await Consultation.get(id=c.id)
    if c.status == "ended":
        return c
    if c.status not in ("accepted", "active"):
        raise Conflict("该问诊尚未开始或已关闭，无法结束", code="consultation_closed")
    duration = int((now - _aware(c.started_at)).total_seconds()) if c.started_at else 0
    if not await Consultation.filter(id=c.id, status__in=("accepted", "active")).update(
            status="ended", ended_at=now, ended_by=by, duration_seconds=duration, updated_at=now):
        return await Consultation.get(id=c.id)
    c = await Consultation.get(id=c.id)
    await audit.record("consultation.ended", "consultation", c.id, actor_label=by,
                       changes={"duration_seconds": duration})
    await _publish(events, "consultation.ended", c, ended_by=by)
    return c


async def cancel(c: Consultation, by: str, *, events: EventBus | None) -> Consultation:
    """The patient withdraws a request not yet started; the slot is free again."""
    now = _now()
    async with in_transaction() as conn:
        changed = await Consultation.filter(id=c.id, status__in=("requested", "accepted")).using_db(conn).update(
            status="cancelled", ended_at=now, ended_by=by, updated_at=now)
        if changed and c.slot_id:
            await PractitionerSlot.filter(id=c.slot_id).using_db(conn).update(status="free")
    if not changed:
        raise Conflict("该问诊已开始或已结束，不能取消", code="consultation_closed")
    c = await Consultation.get(id=c.id)
    await _publish(events, "consultation.cancelled", c, cancelled_by=by)
    return c


# -- views --------------------------------------------------------------------------------------------------------------
async def view(c: Consultation, *, secret: str | None = None, side: str | None = None,
               ice_servers: list | None = None) -> dict:
    """The consultation as a client sees it; with ``secret`` and ``side``, the room to join when it is open."""
    await c.fetch_related("practitioner", "slot", "patient")
    slot = c.slot
    out = {
        "id": c.id, "status": c.status, "source": c.source, "reason": c.reason,
        "patient": {"number": c.patient.number, "name": c.patient.name},
        "practitioner": {"id": c.practitioner.id, "name": c.practitioner.name,
                         "department": c.practitioner.department},
        "slot": {"id": slot.id, "start": _iso(slot.start), "end": _iso(slot.end)} if slot else None,
        "his_appointment_id": c.his_appointment_id, "answer_note": c.answer_note,
        "requested_at": _iso(c.requested_at), "answered_at": _iso(c.answered_at),
        "started_at": _iso(c.started_at), "ended_at": _iso(c.ended_at), "ended_by": c.ended_by,
        "duration_seconds": c.duration_seconds,
    }
    if secret and side and c.status in ("accepted", "active"):
        out["room"] = {"token": room_token(secret, c, side), "ice_servers": list(ice_servers or [])}
    return out


def message_view(m: ConsultationMessage) -> dict:
    return {"id": m.id, "sender": m.sender, "kind": m.kind, "body": m.body, "created_at": _iso(m.created_at)}
