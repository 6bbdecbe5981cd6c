"""Kiosks and their patient sessions: API keys, face login or enrolment, the second factor.

- A kiosk authenticates with its API key (shown once by ``add_kiosk``; only its SHA-256 is stored).
- ``face_login`` identifies the face on a photo; an unknown face becomes a new patient with that face enrolled.
  The photo is embedded before anything is stored, so a photo without a usable face leaves no trace.
- A session is an opaque token bound to one kiosk and one patient, kept in Redis (``kiosk:session:<sha256>``) for
  ``KIOSK_SESSION_TTL`` seconds from its start. Ending it keeps a tombstone until then, so a replayed token is
  refused as ended rather than looking merely unknown.
- A face can be spoofed with a photo: a face-only session is *weak*. The last four digits of the patient's ID card or
  phone (5 wrong tries end the session), or a confirmation from the patient's mini program with a one-time code the
  kiosk shows, make it *strong*; history and records need a strong session.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from redis.exceptions import LockError
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import audit
from core.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceBusy, TooManyRequests, Unauthorized
from core.models import Hospital, User
from core.redis import Redis
from care import patients
from care.kiosk_models import Kiosk, PatientBinding
from care.models import Patient

log = logging.getLogger(__name__)

KEY_PREFIX = "mk_"
MAX_DIGIT_FAILURES = 5
CONFIRM_CODE_TTL = 300  # seconds a code shown on the kiosk stays usable (never beyond the session)
CONFIRM_FAILURES_PER_USER = 10  # wrong codes a mini-program user may send per CONFIRM_CODE_TTL
_LAST_SEEN_EVERY = timedelta(minutes=1)  # last_seen is for people: no database write per request
_SESSION = "kiosk:session:"
_CODE = "kiosk:confirm:"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- kiosks ---------------------------------------------------------------------------------------------------------
async def add_kiosk(name: str, *, hospital_id: int | None = None, actor_label: str = "system") -> tuple[Kiosk, str]:
    """A new kiosk and its API key. The key is returned here only: it cannot be read back later."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise BadRequest("终端名称须为 1–64 个字符", code="invalid_field")
    if hospital_id is not None and not await Hospital.exists(id=hospital_id):
        raise NotFound("未找到该医院", code="hospital_not_found")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        kiosk = await Kiosk.create(name=name, key_hash=_digest(key), key_hint=key[:8], hospital_id=hospital_id)
    except IntegrityError:
        raise Conflict(f"已有名为“{name}”的终端", code="kiosk_exists") from None
    await audit.record("kiosk.added", "kiosk", kiosk.id, actor_label=actor_label,
                       changes={"name": name, "hospital_id": hospital_id})
    return kiosk, key


async def list_kiosks() -> list[Kiosk]:
    return await Kiosk.all().order_by("id").prefetch_related("hospital")


async def find_kiosk(name_or_id: str) -> Kiosk:
    """By name, or by id when the text is a number (a kiosk named "12" is found by name first)."""
    kiosk = await Kiosk.get_or_none(name=name_or_id.strip())
    if kiosk is None and name_or_id.strip().isdigit():
        kiosk = await Kiosk.get_or_none(id=int(name_or_id))
    if kiosk is None:
        raise NotFound("未找到该终端", code="kiosk_not_found")
    return kiosk


async def revoke_kiosk(kiosk: Kiosk, *, actor_label: str = "system") -> Kiosk:
    """The key stops working at once; so do the kiosk's open sessions (every call checks the key)."""
    if kiosk.active:
        kiosk.active = False
        await kiosk.save(update_fields=["active"])
        await audit.record("kiosk.revoked", "kiosk", kiosk.id, actor_label=actor_label, changes={"name": kiosk.name})
    return kiosk


async def authenticate(key: str | None) -> Kiosk:
    """The active kiosk owning ``key`` (the ``X-Kiosk-Key`` header), or 401."""
    key = (key or "").strip()
    if not key:
        raise Unauthorized("缺少终端密钥（X-Kiosk-Key）", code="kiosk_key_required")
    kiosk = await Kiosk.get_or_none(key_hash=_digest(key))
    if kiosk is None or not kiosk.active:
        raise Unauthorized("终端密钥无效或已停用", code="invalid_kiosk_key")
    now = _now()
    if kiosk.last_seen is None or now - kiosk.last_seen > _LAST_SEEN_EVERY:
        kiosk.last_seen = now
        await Kiosk.filter(id=kiosk.id).update(last_seen=now)
    return kiosk


# -- sessions (Redis) -------------------------------------------------------------------------------------------------
# Change a live session only: a missing key (expired) or an ended one is left alone, atomically.
_SET_IF_LIVE = """
if redis.call('HGET', KEYS[1], 'ended') ~= '0' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
# One more wrong second factor; the last allowed one ends the session. -1: not live.
_COUNT_FAILURE = """
if redis.call('HGET', KEYS[1], 'ended') ~= '0' then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if n >= tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'ended', '1') end
return n
"""


@dataclass(frozen=True)
class KioskSession:
    sid: str  # the token's SHA-256: Redis never holds a usable token
    kiosk_id: int
    patient_id: int
    strong: bool
    failures: int
    expires_at: float  # epoch seconds

    @property
    def expires_in(self) -> int:
        return max(0, int(self.expires_at - time.time()))


@dataclass(frozen=True)
class Login:
    token: str
    session: KioskSession
    patient: Patient
    enrolled: bool  # True: the face was unknown and a new patient was created


async def start_session(redis: Redis, kiosk: Kiosk, patient: Patient, *, ttl: int) -> tuple[str, KioskSession]:
    token = secrets.token_urlsafe(32)
    sid = _digest(token)
    expires_at = time.time() + ttl
    key = _SESSION + sid
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"kiosk": kiosk.id, "patient": patient.id, "strong": "0", "failures": "0",
                                "ended": "0", "expires_at": f"{expires_at:.3f}"})
        pipe.expire(key, ttl)
        await pipe.execute()
    return token, KioskSession(sid, kiosk.id, patient.id, False, 0, expires_at)


async def _load(redis: Redis, sid: str) -> dict:
    return await redis.hgetall(_SESSION + sid)


def _session_from(sid: str, data: dict) -> KioskSession:
    return KioskSession(sid=sid, kiosk_id=int(data["kiosk"]), patient_id=int(data["patient"]),
                        strong=data.get("strong") == "1", failures=int(data.get("failures") or 0),
                        expires_at=float(data.get("expires_at") or 0))


async def read_session(redis: Redis, kiosk: Kiosk, token: str | None) -> KioskSession:
    """The live session of ``token`` for this kiosk; expired, ended, forged or another kiosk's → 401."""
    token = (token or "").strip()
    if not token:
        raise Unauthorized("缺少会话（Authorization: Bearer）", code="session_required")
    sid = _digest(token)
    data = await _load(redis, sid)
    if not data or "kiosk" not in data:
        raise Unauthorized("会话无效或已过期，请重新刷脸", code="session_expired")
    if data.get("ended") != "0":
        raise Unauthorized("会话已结束，请重新刷脸", code="session_ended")
    if int(data["kiosk"]) != kiosk.id:
        raise Unauthorized("该会话不属于此终端", code="session_of_other_kiosk")
    return _session_from(sid, data)


async def end_session(redis: Redis, session: KioskSession) -> None:
    data = await _load(redis, session.sid)
    await redis.eval(_SET_IF_LIVE, 1, _SESSION + session.sid, "ended", "1")
    if data.get("code"):
        await redis.delete(_CODE + data["code"])


async def _mark_strong(redis: Redis, sid: str, how: str) -> bool:
    return bool(await redis.eval(_SET_IF_LIVE, 1, _SESSION + sid, "strong", "1", "strong_by", how))


async def session_patient(session: KioskSession) -> Patient:
    patient = await Patient.get_or_none(id=session.patient_id)
    if patient is None:  # deleted since the login
        raise Unauthorized("会话无效，请重新刷脸", code="session_expired")
    return patient


def require_strong(session: KioskSession) -> None:
    if not session.strong:
        raise Forbidden("请先验证身份（身份证或手机号后四位，或在小程序中确认）", code="second_factor_required")


# -- face login -----------------------------------------------------------------------------------------------------
async def face_login(redis: Redis, kiosk: Kiosk, photo: bytes, *, ttl: int) -> Login:
    """Identify the face on ``photo`` and open a session; an unknown face is enrolled as a new patient."""
    from vision import faces, index  # the sibling domain doing the face work

    if not photo:
        raise BadRequest("请上传照片（字段 photo）", code="photo_required")
    # Too large, not an image, broken, no face, several: a 4xx here, before anything is stored.
    face = await faces.embed(photo)
    patient = await _identified(index, face.vector)
    enrolled = False
    if patient is None:
        # Two kiosks seeing the same new face at once must not make two patients: identify again under a lock.
        try:
            async with redis.lock("kiosk:enrol", timeout=30, blocking_timeout=10):
                patient = await _identified(index, face.vector)
                if patient is None:
                    patient = await _enrol(index, kiosk, face)
                    enrolled = True
        except LockError:
            raise ServiceBusy("登记繁忙，请稍后再试", code="busy", headers={"Retry-After": "2"}) from None
    token, session = await start_session(redis, kiosk, patient, ttl=ttl)
    log.info("kiosk %s: session for %s (%s)", kiosk.name, patient.number, "enrolled" if enrolled else "identified")
    return Login(token, session, patient, enrolled)


async def _identified(index, vector) -> Patient | None:
    match = await index.identify(vector)
    if match is None:
        return None
    return await Patient.get_or_none(id=match.patient_id)  # None: deleted meanwhile, treated as a new face


async def _enrol(index, kiosk: Kiosk, face) -> Patient:
    """A new patient and their face, both or neither (a patient without their face could never log in)."""
    async with in_transaction() as conn:
        patient = await patients.new_patient(hospital_id=kiosk.hospital_id, actor_label=f"kiosk:{kiosk.name}",
                                             using_db=conn)
        await index.enrol(patient.id, face, source="kiosk", using_db=conn)
    return patient


# -- second factor ----------------------------------------------------------------------------------------------------
async def give_digits(redis: Redis, session: KioskSession, digits: str) -> KioskSession:
    """The last four of the ID card or phone make the session strong; the fifth wrong try ends it."""
    digits = (digits or "").strip().upper()
    if len(digits) != 4 or not all(c in "0123456789X" for c in digits):
        raise BadRequest("请输入身份证或手机号的后四位", code="invalid_field")
    patient = await session_patient(session)
    if patients.verify_second_factor(patient, digits):
        if not await _mark_strong(redis, session.sid, "digits"):
            raise Unauthorized("会话已结束，请重新刷脸", code="session_ended")
        return _session_from(session.sid, await _load(redis, session.sid))
    failures = await redis.eval(_COUNT_FAILURE, 1, _SESSION + session.sid, MAX_DIGIT_FAILURES)
    if failures < 0:
        raise Unauthorized("会话已结束，请重新刷脸", code="session_ended")
    if failures >= MAX_DIGIT_FAILURES:
        raise Forbidden("验证失败次数过多，会话已结束，请重新刷脸", code="too_many_attempts")
    left = MAX_DIGIT_FAILURES - failures
    raise Forbidden(f"验证未通过，还可尝试 {left} 次", code="wrong_digits", details={"attempts_left": left})


async def confirmation_code(redis: Redis, session: KioskSession) -> tuple[str, int]:
    """A 6-digit one-time code for the kiosk to show; the bound patient enters it in the mini program.

    A new code replaces the session's previous one. Returns (code, seconds it stays valid)."""
    ttl = min(CONFIRM_CODE_TTL, session.expires_in)
    if ttl <= 0:
        raise Unauthorized("会话已过期，请重新刷脸", code="session_expired")
    for _ in range(10):
        code = f"{secrets.randbelow(10 ** 6):06d}"
        if await redis.set(_CODE + code, session.sid, nx=True, ex=ttl):
            break
    else:  # a million codes and ten collisions in a row: the kiosks are very busy
        raise ServiceBusy("请稍后再试", code="busy", headers={"Retry-After": "1"})
    previous = await redis.hget(_SESSION + session.sid, "code")
    if not await redis.eval(_SET_IF_LIVE, 1, _SESSION + session.sid, "code", code):
        await redis.delete(_CODE + code)
        raise Unauthorized("会话已结束，请重新刷脸", code="session_ended")
    if previous:
        await redis.delete(_CODE + previous)
    return code, ttl


async def confirm_from_mini_program(redis: Redis, user: User, code: str) -> Patient:
    """The bound user confirms the kiosk session showing ``code``: the session becomes strong. One use per code."""
    code = (code or "").strip()
    if len(code) != 6 or not code.isdigit():
        raise BadRequest("请输入终端上显示的 6 位确认码", code="invalid_field")
    fails_key = f"kiosk:confirm-fails:{user.id}"
    fails = await redis.get(fails_key)
    if fails and int(fails) >= CONFIRM_FAILURES_PER_USER:
        raise TooManyRequests("尝试次数过多，请稍后再试", code="too_many_attempts",
                              headers={"Retry-After": str(max(1, await redis.ttl(fails_key)))})
    sid = await redis.get(_CODE + code)
    data = await _load(redis, sid) if sid else {}
    if not data or data.get("ended") != "0" or data.get("code") != code:
        await redis.set(fails_key, 0, nx=True, ex=CONFIRM_CODE_TTL)  # the window starts at the first mistake
        await redis.incr(fails_key)
        raise NotFound("确认码无效或已过期，请以终端上显示的为准", code="invalid_confirmation_code")
    patient_id = int(data["patient"])
    if not await PatientBinding.exists(user_id=user.id, patient_id=patient_id):
        # The code stays usable: it belongs to someone else's session, which this mistake must not spoil.
        raise Forbidden("您尚未绑定该就诊人，无法确认", code="patient_not_bound")
    if await redis.getdel(_CODE + code) is None:  # used by a concurrent confirmation
        raise NotFound("确认码无效或已过期，请以终端上显示的为准", code="invalid_confirmation_code")
    if not await _mark_strong(redis, sid, f"mini_program:{user.id}"):
        raise NotFound("终端会话已结束", code="invalid_confirmation_code")
    return await Patient.get(id=patient_id)


# -- patients a mini-program user may act for --------------------------------------------------------------------------
async def bind_patient(user: User, patient: Patient, *, actor_label: str = "system") -> PatientBinding:
    binding, created = await PatientBinding.get_or_create(user=user, patient=patient)
    if created:
        await audit.record("patient.bound", "patient", patient.number, actor_label=actor_label,
                           changes={"user_id": user.id})
    return binding


async def bound_patients(user: User) -> list[Patient]:
    return [b.patient for b in await PatientBinding.filter(user=user).order_by("id").prefetch_related("patient")]
