"""The kiosk API as a kiosk uses it: face login of an enrolled patient, enrolment of a new face, the second factor
(digits or the mini program), session end and replay, and every refused input leaving nothing stored.

Photos are the labelled ones in ../shared/conformance/faces/ (read in place; skipped where absent).
"""

from __future__ import annotations

import asyncio
import io
import json
import random

import aiohttp
import pytest
from PIL import Image

from care import kiosks, patients
from care.models import Patient, Visit
from core import people
from core.models import Hospital, User
from tests.conftest import need_conformance
from vision.models import FaceEmbedding

ID_CARD = "11010519491231002X"
PHONE = "13800005678"


def photo(path: str) -> bytes:
    return need_conformance("faces", path).read_bytes()


def photo_form(data: bytes, filename: str = "camera.jpg", content_type: str = "image/jpeg") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("photo", data, filename=filename, content_type=content_type)
    return form


@pytest.fixture
async def kiosk_site(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    hospital = await Hospital.create(name="市第一人民医院")
    lobby, lobby_key = await kiosks.add_kiosk("门诊大厅1号机", hospital_id=hospital.id)
    _, ward_key = await kiosks.add_kiosk("住院部2号机", hospital_id=hospital.id)

    async def call(method: str, path: str, *, key: str | None = lobby_key, session: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["X-Kiosk-Key"] = key
        if session is not None:
            headers["Authorization"] = f"Bearer {session}"
        status, _, body = await live.request(method, path, headers=headers, **kwargs)
        return status, (json.loads(body) if body else None)

    return dict(live=live, settings=live.app.ctx.settings, hospital=hospital, lobby=lobby, lobby_key=lobby_key,
                ward_key=ward_key, call=call)


async def enrolled_obama(settings) -> Patient:
    """A patient imported from the HIS with their photo enrolled, and one visit."""
    from vision import faces, index

    patient = await patients.new_patient(name="奥巴马", sex="male", phone=PHONE, id_card=ID_CARD,
                                         secret_key=settings.secret_key)
    face = await faces.embed(photo("train/obama/obama.jpg"))
    await index.enrol(patient.id, face.vector, source="his")
    await Visit.create(patient=patient, hospital_name="市第一人民医院", department="心内科", doctor_name="李医生",
                       diagnosis="高血压", medication="氨氯地平 5mg qd", kind="outpatient", status="finished")
    return patient


async def log_in(call, path: str, **kwargs) -> tuple[int, dict]:
    return await call("POST", "/kiosk/v1/sessions", data=photo_form(photo(path)), **kwargs)


# -- login and enrolment -----------------------------------------------------------------------------------------------
async def test_enrolled_patient_logs_in_and_needs_the_second_factor_for_records(kiosk_site):
    call = kiosk_site["call"]
    obama = await enrolled_obama(kiosk_site["settings"])

    status, body = await log_in(call, "test/obama1.jpg")  # another photo than the enrolled one
    assert status == 200, body
    assert body["patient"] == {"number": obama.number, "name": "奥巴马"}
    assert (body["enrolled"], body["second_factor"]) == (False, False)
    session = body["session"]
    assert await Patient.all().count() == 1

    status, me = await call("GET", "/kiosk/v1/me", session=session)
    assert status == 200 and me == {"number": obama.number, "name": "奥巴马", "second_factor": False}
    status, body = await call("GET", "/kiosk/v1/me/records", session=session)
    assert status == 403 and body["error"]["code"] == "second_factor_required"

    status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=session,
                              json={"digits": "0000"})
    assert status == 403 and body["error"]["code"] == "wrong_digits"
    assert body["error"]["details"]["attempts_left"] == 4
    status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=session,
                              json={"digits": "12ab"})
    assert status == 400 and body["error"]["code"] == "invalid_field"
    status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=session,
                              json={"digits": PHONE[-4:]})
    assert status == 200 and body["second_factor"] is True

    status, records = await call("GET", "/kiosk/v1/me/records", session=session)
    assert status == 200, records
    assert records["patient"]["number"] == obama.number
    assert [(v["department"], v["diagnosis"], v["doctor"]) for v in records["visits"]] == [("心内科", "高血压", "李医生")]


async def test_id_card_digits_with_x_are_a_second_factor(kiosk_site):
    call = kiosk_site["call"]
    await enrolled_obama(kiosk_site["settings"])
    _, body = await log_in(call, "train/obama/obama2.jpg")
    status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=body["session"],
                              json={"digits": ID_CARD[-4:].lower()})
    assert status == 200 and body["second_factor"] is True


async def test_unknown_face_is_enrolled_as_a_new_patient_and_recognised_next_time(kiosk_site):
    call = kiosk_site["call"]
    status, first = await log_in(call, "train/biden/biden.jpg")
    assert status == 201, first
    assert first["enrolled"] is True and first["second_factor"] is False
    number = first["patient"]["number"]
    patient = await Patient.get(number=number)
    assert patient.hospital_id == kiosk_site["hospital"].id
    assert [e.source for e in await FaceEmbedding.filter(patient=patient)] == ["kiosk"]

    status, again = await log_in(call, "train/biden/biden2.jpg", key=kiosk_site["ward_key"])
    assert status == 200, again
    assert again["patient"]["number"] == number and again["enrolled"] is False

    status, other = await log_in(call, "train/rose_leslie/img1.jpg")
    assert status == 201 and other["patient"]["number"] != number
    assert await Patient.all().count() == 2


async def test_the_same_new_face_at_two_kiosks_at_once_is_one_patient(kiosk_site):
    call = kiosk_site["call"]
    answers = await asyncio.gather(log_in(call, "train/alex_lacamoire/img1.jpg"),
                                   log_in(call, "train/alex_lacamoire/img1.jpg", key=kiosk_site["ward_key"]))
    assert sorted(status for status, _ in answers) == [200, 201]
    assert len({body["patient"]["number"] for _, body in answers}) == 1
    assert await Patient.all().count() == 1


# -- refused photos store nothing --------------------------------------------------------------------------------------
def _noise_jpeg() -> bytes:
    rng = random.Random(6)
    img = Image.frombytes("RGB", (480, 360), bytes(rng.randrange(256) for _ in range(480 * 360 * 3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


async def test_refused_photos_leave_nothing_stored(kiosk_site):
    call = kiosk_site["call"]
    real = photo("train/kit_harington/john1.jpeg")
    cases = [
        (photo_form(b"%PDF-1.4 not a photo at all" * 10, "scan.pdf", "application/pdf"), 422, "bad_image"),
        (photo_form(real[: len(real) // 3]), 422, "bad_image"),  # a truncated JPEG
        (photo_form(real + b"\0" * (30 * 1024 * 1024)), 413, "image_too_large"),  # 30 MB
        (photo_form(_noise_jpeg()), 422, "no_face"),
    ]
    for form, want_status, want_code in cases:
        status, body = await call("POST", "/kiosk/v1/sessions", data=form)
        assert (status, body["error"]["code"]) == (want_status, want_code), body
        assert body["error"]["message"]  # a sentence for the screen

    empty = aiohttp.FormData()
    empty.add_field("note", "no photo")
    status, body = await call("POST", "/kiosk/v1/sessions", data=empty)
    assert status == 400 and body["error"]["code"] == "photo_required"

    assert await Patient.all().count() == 0
    assert await FaceEmbedding.all().count() == 0


async def test_no_face_message_is_chinese(kiosk_site):
    status, body = await kiosk_site["call"]("POST", "/kiosk/v1/sessions", data=photo_form(_noise_jpeg()))
    assert status == 422 and body["error"] == {"code": "no_face", "message": "未检测到人脸"}


# -- keys and sessions -------------------------------------------------------------------------------------------------
async def test_kiosk_keys_and_session_binding(kiosk_site):
    call = kiosk_site["call"]
    await enrolled_obama(kiosk_site["settings"])

    status, body = await log_in(call, "test/obama1.jpg", key=None)
    assert status == 401 and body["error"]["code"] == "kiosk_key_required"
    status, body = await log_in(call, "test/obama1.jpg", key="mk_not-a-real-key")
    assert status == 401 and body["error"]["code"] == "invalid_kiosk_key"
    assert await Patient.all().count() == 1

    _, body = await log_in(call, "test/obama1.jpg")
    session = body["session"]
    # The lobby kiosk's session is refused with another kiosk's key.
    status, body = await call("GET", "/kiosk/v1/me", key=kiosk_site["ward_key"], session=session)
    assert status == 401 and body["error"]["code"] == "session_of_other_kiosk"
    status, body = await call("GET", "/kiosk/v1/me", session="forged-token")
    assert status == 401 and body["error"]["code"] == "session_expired"
    status, body = await call("GET", "/kiosk/v1/me")
    assert status == 401 and body["error"]["code"] == "session_required"

    # Ending the session: a replay of its token is refused.
    status, _ = await call("DELETE", "/kiosk/v1/sessions/current", session=session)
    assert status == 204
    for method, path in (("GET", "/kiosk/v1/me"), ("GET", "/kiosk/v1/sessions/current"),
                         ("DELETE", "/kiosk/v1/sessions/current")):
        status, body = await call(method, path, session=session)
        assert status == 401 and body["error"]["code"] == "session_ended"
    status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=session,
                              json={"digits": PHONE[-4:]})
    assert status == 401 and body["error"]["code"] == "session_ended"

    # A revoked kiosk's key and its open sessions stop working at once.
    _, body = await log_in(call, "test/obama1.jpg")
    await kiosks.revoke_kiosk(kiosk_site["lobby"])
    status, body = await call("GET", "/kiosk/v1/me", session=body["session"])
    assert status == 401 and body["error"]["code"] == "invalid_kiosk_key"


async def test_five_wrong_digits_end_the_session(kiosk_site):
    call = kiosk_site["call"]
    await enrolled_obama(kiosk_site["settings"])
    _, body = await log_in(call, "test/obama1.jpg")
    session = body["session"]
    for left in (4, 3, 2, 1):
        status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=session,
                                  json={"digits": "9999"})
        assert status == 403 and body["error"]["details"]["attempts_left"] == left
    status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=session,
                              json={"digits": "9999"})
    assert status == 403 and body["error"]["code"] == "too_many_attempts"
    # Even the right digits come too late now.
    status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=session,
                              json={"digits": PHONE[-4:]})
    assert status == 401 and body["error"]["code"] == "session_ended"


async def test_session_expires_after_its_time(serve, settings_for, database_url):
    live = await serve(settings_for(database_url, kiosk_session_ttl=1))
    await enrolled_obama(live.app.ctx.settings)
    kiosk, key = await kiosks.add_kiosk("自助机")
    form = photo_form(photo("test/obama1.jpg"))
    status, _, body = await live.request("POST", "/kiosk/v1/sessions", data=form, headers={"X-Kiosk-Key": key})
    token = json.loads(body)["session"]
    assert status == 200 and json.loads(body)["expires_in"] <= 1
    await asyncio.sleep(1.5)
    status, _, body = await live.request("GET", "/kiosk/v1/me",
                                         headers={"X-Kiosk-Key": key, "Authorization": f"Bearer {token}"})
    assert status == 401 and json.loads(body)["error"]["code"] == "session_expired"


# -- the second factor from the mini program ---------------------------------------------------------------------------
async def test_bound_patient_confirms_the_kiosk_session_in_the_mini_program(kiosk_site):
    call, live, settings = kiosk_site["call"], kiosk_site["live"], kiosk_site["settings"]
    obama = await enrolled_obama(settings)
    son = await User.create(name="小奥", role="patient", mp_openid="oMpSon")
    stranger = await User.create(name="路人", role="patient", mp_openid="oMpStranger")
    await kiosks.bind_patient(son, obama)

    def bearer(user):
        return {"Authorization": f"Bearer {people.session_token(settings, user)}"}

    _, body = await log_in(call, "test/obama1.jpg")
    session = body["session"]
    status, shown = await call("POST", "/kiosk/v1/sessions/current/confirmation-code", session=session)
    assert status == 201 and len(shown["code"]) == 6 and 0 < shown["expires_in"] <= 300

    status, _, body = await live.request("POST", "/mp/v1/patient/confirm-kiosk", json={"code": shown["code"]},
                                         headers=bearer(stranger))
    assert status == 403 and json.loads(body)["error"]["code"] == "patient_not_bound"
    status, body = await call("GET", "/kiosk/v1/sessions/current", session=session)
    assert status == 200 and body["second_factor"] is False

    status, _, body = await live.request("POST", "/mp/v1/patient/confirm-kiosk", json={"code": shown["code"]},
                                         headers=bearer(son))
    assert status == 200 and json.loads(body) == {"confirmed": True,
                                                  "patient": {"number": obama.number, "name": "奥巴马"}}
    status, body = await call("GET", "/kiosk/v1/sessions/current", session=session)
    assert status == 200 and body["second_factor"] is True
    status, body = await call("GET", "/kiosk/v1/me/records", session=session)
    assert status == 200 and body["visits"][0]["diagnosis"] == "高血压"

    # A code works once; without a sign-in nothing happens.
    status, _, body = await live.request("POST", "/mp/v1/patient/confirm-kiosk", json={"code": shown["code"]},
                                         headers=bearer(son))
    assert status == 404 and json.loads(body)["error"]["code"] == "invalid_confirmation_code"
    status, _, body = await live.request("POST", "/mp/v1/patient/confirm-kiosk", json={"code": shown["code"]})
    assert status == 401


async def test_a_new_code_replaces_the_old_and_ending_the_session_voids_it(kiosk_site):
    call, live, settings = kiosk_site["call"], kiosk_site["live"], kiosk_site["settings"]
    obama = await enrolled_obama(settings)
    son = await User.create(name="小奥", role="patient", mp_openid="oMpSon")
    await kiosks.bind_patient(son, obama)
    headers = {"Authorization": f"Bearer {people.session_token(settings, son)}"}

    _, body = await log_in(call, "test/obama1.jpg")
    session = body["session"]
    _, old = await call("POST", "/kiosk/v1/sessions/current/confirmation-code", session=session)
    _, new = await call("POST", "/kiosk/v1/sessions/current/confirmation-code", session=session)
    status, _, body = await live.request("POST", "/mp/v1/patient/confirm-kiosk", json={"code": old["code"]},
                                         headers=headers)
    assert status == 404
    await call("DELETE", "/kiosk/v1/sessions/current", session=session)
    status, _, body = await live.request("POST", "/mp/v1/patient/confirm-kiosk", json={"code": new["code"]},
                                         headers=headers)
    assert status == 404 and json.loads(body)["error"]["code"] == "invalid_confirmation_code"


async def test_guessing_confirmation_codes_is_cut_short(kiosk_site):
    live, settings = kiosk_site["live"], kiosk_site["settings"]
    guesser = await User.create(name="猜码者", role="patient", mp_openid="oMpGuess")
    headers = {"Authorization": f"Bearer {people.session_token(settings, guesser)}"}
    statuses = []
    for guess in range(kiosks.CONFIRM_FAILURES_PER_USER + 1):
        status, _, _ = await live.request("POST", "/mp/v1/patient/confirm-kiosk", json={"code": f"{guess:06d}"},
                                          headers=headers)
        statuses.append(status)
    assert statuses == [404] * kiosks.CONFIRM_FAILURES_PER_USER + [429]


# -- the contract, documented ------------------------------------------------------------------------------------------
async def test_openapi_documents_every_kiosk_route_with_examples(kiosk_site):
    status, _, body = await kiosk_site["live"].request("GET", "/docs/openapi.json")
    spec = json.loads(body)
    assert status == 200
    paths = spec["paths"]
    expected = {("/kiosk/v1/sessions", "post"), ("/kiosk/v1/sessions/current", "get"),
                ("/kiosk/v1/sessions/current", "delete"), ("/kiosk/v1/sessions/current/second-factor", "post"),
                ("/kiosk/v1/sessions/current/confirmation-code", "post"), ("/kiosk/v1/me", "get"),
                ("/kiosk/v1/me/records", "get"), ("/mp/v1/patient/confirm-kiosk", "post")}
    for path, method in expected:
        operation = paths[path][method]
        assert operation["summary"], (path, method)
        assert any("example" in media for answer in operation["responses"].values()
                   for media in answer.get("content", {}).values()), (path, method)
    login = paths["/kiosk/v1/sessions"]["post"]
    assert "photo" in login["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert login["responses"]["201"]["content"]["application/json"]["example"]["enrolled"] is True
    assert login["responses"]["422"]["content"]["application/json"]["example"]["error"]["code"] == "no_face"
    schemes = spec["components"]["securitySchemes"]
    assert schemes["kiosk_key"] == {"type": "apiKey", "in": "header", "name": "X-Kiosk-Key",
                                    "description": schemes["kiosk_key"]["description"]}
    assert {"kiosk_key": [], "kiosk_session": []} in paths["/kiosk/v1/me/records"]["get"]["security"]
