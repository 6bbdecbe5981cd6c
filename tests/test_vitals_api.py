"""Vitals as a kiosk, a hospital system and the patient's mini program use them, over real HTTP: readings recorded
in a kiosk session (201 with the stored FHIR and advice), refused input leaving nothing stored, ECG and stethoscope
files, the FHIR read API with its three kinds of reader, and FHIR round trips."""

from __future__ import annotations

import io
import json
import wave

import aiohttp
import pytest

from care import api_clients, kiosks, patients
from care.models import Patient
from care.vitals_models import Observation
from core.models import Hospital, MediaFile
from core.auth import read_session
from tests.conftest import need_conformance

PHONE = "13800005678"


def example(name: str) -> dict:
    return json.loads(need_conformance("fhir", f"observation-example-{name}.json").read_text())


@pytest.fixture
async def site(serve, settings_for, database_url, real_redis_url, standin):
    # Real Redis: the app's stream consumers need blocking reads. WeChat's API: the stand-in (mini-program login).
    live = await serve(settings_for(database_url, real_redis_url, wechat_api_base=standin.base_url,
                                    wechat_mp_app_id=standin.mp_app_id, wechat_mp_app_secret=standin.mp_app_secret))
    hospital = await Hospital.create(name="市第一人民医院")
    kiosk, key = await kiosks.add_kiosk("门诊大厅1号机", hospital_id=hospital.id)
    redis = live.app.ctx.redis

    async def open_session(patient: Patient, strong: bool = False) -> str:
        token, _ = await kiosks.start_session(redis, kiosk, patient, ttl=900)
        if strong:
            status, body = await call("POST", "/kiosk/v1/sessions/current/second-factor", session=token,
                                      json={"digits": PHONE[-4:]})
            assert status == 200 and body["second_factor"] is True
        return token

    async def call(method: str, path: str, *, session: str | None = None, key_: str | None = key,
                   bearer: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if session is not None:
            headers["X-Kiosk-Key"] = key_
            headers["Authorization"] = f"Bearer {session}"
        elif bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        status, resp_headers, body = await live.request(method, path, headers=headers, **kwargs)
        if resp_headers.get("content-type", "").startswith(("application/json", "application/fhir+json")):
            return status, json.loads(body)
        return status, body

    patient = await patients.new_patient(name="张三", sex="male", phone=PHONE, hospital_id=hospital.id)
    other = await patients.new_patient(name="李四", sex="female", phone="13900001111", hospital_id=hospital.id)
    return dict(live=live, call=call, open_session=open_session, patient=patient, other=other, kiosk=kiosk,
                settings=live.app.ctx.settings, standin=standin)


async def test_kiosk_records_simple_readings_and_gets_fhir_in_stored_units_with_advice(site):
    call, patient = site["call"], site["patient"]
    session = await site["open_session"](patient)  # a face is enough to record
    readings = [{"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mmHg",
                 "measured_at": "2026-03-02T09:30:00+08:00"},
                {"type": "body_temperature", "value": 100.4, "unit": "°F"},
                {"type": "body_weight", "value": 150, "unit": "lb"}]
    status, body = await call("POST", "/kiosk/v1/observations", session=session, json={"observations": readings})
    assert status == 201, body
    bp, temp, weight = body["observations"]
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [128, 82]
    assert bp["subject"] == {"reference": f"Patient/{patient.number}"}
    assert bp["effectiveDateTime"] == "2026-03-02T01:30:00+00:00"
    assert temp["valueQuantity"] == {"value": 38.0, "unit": "°C", "system": "http://unitsofmeasure.org",
                                     "code": "Cel"}
    assert weight["valueQuantity"]["value"] == 68.0 and weight["valueQuantity"]["code"] == "kg"
    # 38.0 °C is a fever: the advice is more than "normal" and names the temperature.
    assert body["advice"]["grade"] != "normal"
    assert "body_temperature" in {item["kind"] for item in body["advice"]["items"]}

    rows = await Observation.filter(patient=patient).order_by("id")
    assert [(r.kind, r.values, r.unit, r.source) for r in rows] == [
        ("blood_pressure", {"systolic": 128, "diastolic": 82}, "mm[Hg]", f"kiosk:{site['kiosk'].id}"),
        ("body_temperature", {"value": 38.0}, "Cel", f"kiosk:{site['kiosk'].id}"),
        ("body_weight", {"value": 68.0}, "kg", f"kiosk:{site['kiosk'].id}")]
    events = await site["live"].app.ctx.events.read_after("0-0")
    recorded = [e for e in events if e.name == "vitals.recorded"]
    assert [e.data for e in recorded] == [{"patient_id": patient.id, "observation_ids": [r.id for r in rows]}]


BAD_READINGS = [
    ({"type": "blood_pressure", "systolic": 128, "diastolic": 82}, "missing_unit", "unit"),
    ({"type": "heart_rate", "value": 400, "unit": "/min"}, "impossible_value", "value"),
    ({"type": "heart_rate", "value": 70, "unit": "/min", "measured_at": "2099-01-01T00:00:00+08:00"},
     "future_date", "measured_at"),
    ({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org",
                                                                             "code": "39156-5"}]},
      "valueQuantity": {"value": 22, "unit": "kg/m2"}}, "unknown_code", "code.coding"),
    ([{"type": "heart_rate", "value": 70, "unit": "/min"}, {"type": "spo2", "value": 30, "unit": "%"}],
     "impossible_value", "[1].value"),
]


async def test_bad_readings_are_refused_naming_the_field_and_nothing_is_stored(site):
    session = await site["open_session"](site["patient"])
    for payload, code, field in BAD_READINGS:
        status, body = await site["call"]("POST", "/kiosk/v1/observations", session=session, json=payload)
        assert status == 422, body
        assert (body["error"]["code"], body["error"]["details"]["field"]) == (code, field)
        assert body["error"]["message"]  # a sentence for the kiosk's screen
    status, body = await site["call"]("POST", "/kiosk/v1/observations", session=session, data=b"{not json",
                                      headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = await site["call"]("POST", "/kiosk/v1/observations", json={"type": "spo2", "value": 97,
                                                                             "unit": "%"})
    assert status == 401
    assert await Observation.all().count() == 0


async def test_a_fhir_subject_naming_another_of_our_patients_is_refused(site):
    session = await site["open_session"](site["patient"])
    hr = example("heart-rate")
    hr["subject"] = {"reference": f"Patient/{site['other'].number}"}
    status, body = await site["call"]("POST", "/kiosk/v1/observations", session=session, json=hr)
    assert status == 403 and body["error"]["code"] == "other_patient"
    assert body["error"]["details"]["field"] == "subject"
    hr["subject"] = {"reference": "Patient/example"}  # the device's own id for the patient: the session decides
    status, body = await site["call"]("POST", "/kiosk/v1/observations", session=session, json=hr)
    assert status == 201 and body["observations"][0]["subject"]["reference"] == f"Patient/{site['patient'].number}"


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 8000)
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def _form(observation: dict, data: bytes, filename: str, content_type: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("observation", json.dumps(observation))
    form.add_field("file", data, filename=filename, content_type=content_type)
    return form


async def test_ecg_waveform_and_stethoscope_audio_are_stored_as_attachments_and_served_to_readers(site):
    call, patient = site["call"], site["patient"]
    session = await site["open_session"](patient, strong=True)
    status, body = await call("POST", "/kiosk/v1/observations", session=session,
                              data=_form({"type": "ecg", "heart_rate": 76, "rhythm": "normal"}, PDF, "ecg.pdf",
                                         "application/pdf"))
    assert status == 201, body
    ecg = body["observations"][0]
    assert ecg["code"]["coding"][0]["code"] == "11524-6" and ecg["valueString"] == "normal"
    assert ecg["component"][0]["valueQuantity"]["value"] == 76
    attachment = ecg["extension"][0]["valueAttachment"]
    assert attachment["contentType"] == "application/pdf" and attachment["size"] == len(PDF)

    status, body = await call("POST", "/kiosk/v1/observations", session=session,
                              data=_form({"type": "stethoscope", "site": "心前区"}, _wav(), "heart.wav", "audio/wav"))
    assert status == 201, body
    assert body["observations"][0]["bodySite"] == {"text": "心前区"}

    # The files come back to a reader of this patient, byte for byte.
    path = attachment["url"].split("://", 1)[1].partition("/")[2]
    status, data = await call("GET", "/" + path, session=session)
    assert status == 200 and data == PDF.decode()
    assert await MediaFile.filter(kind="waveform").count() == 1 and await MediaFile.filter(kind="audio").count() == 1

    # An audio file is not an ECG waveform, and an ECG is not a recording: refused, nothing stored.
    status, body = await call("POST", "/kiosk/v1/observations", session=session,
                              data=_form({"type": "ecg", "heart_rate": 70}, _wav(), "ecg.wav", "audio/wav"))
    assert status == 422 and body["error"]["code"] == "not_waveform" and body["error"]["details"]["field"] == "file"
    status, body = await call("POST", "/kiosk/v1/observations", session=session,
                              data=_form({"type": "heart_rate", "value": 70, "unit": "/min"}, PDF, "x.pdf",
                                         "application/pdf"))
    assert status == 422 and body["error"]["code"] == "unexpected_file"
    assert await Observation.all().count() == 2


# -- reading back over FHIR --------------------------------------------------------------------------------------------
async def _record(site, patient, payload) -> list[dict]:
    session = await site["open_session"](patient)
    status, body = await site["call"]("POST", "/kiosk/v1/observations", session=session, json=payload)
    assert status == 201, body
    return body["observations"]


async def test_a_registered_hospital_system_reads_any_patient_with_its_token(site):
    call, patient = site["call"], site["patient"]
    names = ["bloodpressure", "heart-rate", "body-temperature", "respiratory-rate", "satO2"]
    await _record(site, patient, {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": example(n)} for n in names]})
    await _record(site, site["other"], {"type": "heart_rate", "value": 66, "unit": "/min"})
    client, token = await api_clients.add_api_client("HIS 集成平台")

    status, bundle = await call("GET", f"/fhir/Observation?patient={patient.number}", bearer=token)
    assert status == 200, bundle
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] == 5
    # newest first: the SpO2 (2014) before the blood pressure (2012) before the 1999 ones
    assert [e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]][:2] == ["59408-5", "85354-9"]
    assert all(e["resource"]["subject"]["reference"] == f"Patient/{patient.number}" for e in bundle["entry"])

    status, page = await call("GET", f"/fhir/Observation?patient=Patient/{patient.number}&_count=2", bearer=token)
    assert status == 200 and len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    status, page2 = await call("GET", "/" + nxt.split("://", 1)[1].partition("/")[2], bearer=token)
    assert [e["resource"]["id"] for e in page2["entry"]] == [e["resource"]["id"] for e in bundle["entry"][2:4]]

    status, only = await call("GET", f"/fhir/Observation?patient={patient.number}&code=http://loinc.org|8867-4",
                              bearer=token)
    assert [e["resource"]["valueQuantity"]["value"] for e in only["entry"]] == [44]
    status, dated = await call("GET", f"/fhir/Observation?patient={patient.number}&date=ge2012-01-01&date=le2013-01-01",
                               bearer=token)
    assert [e["resource"]["code"]["coding"][0]["code"] for e in dated["entry"]] == ["85354-9"]

    status, body = await call("GET", "/fhir/Observation?patient=P99999999", bearer=token)
    assert status == 200 and body["total"] == 0
    status, body = await call("GET", "/fhir/Observation", bearer=token)
    assert status == 400 and body["error"]["details"]["field"] == "patient"
    status, body = await call("GET", f"/fhir/Observation?patient={patient.number}&_count=0", bearer=token)
    assert status == 400 and body["error"]["details"]["field"] == "_count"

    await api_clients.revoke_api_client("HIS 集成平台")
    status, body = await call("GET", f"/fhir/Observation?patient={patient.number}", bearer=token)
    assert status == 401 and body["error"]["code"] == "invalid_api_token"
    status, body = await call("GET", f"/fhir/Observation?patient={patient.number}", bearer="mac_forged")
    assert status == 401


async def test_fhir_round_trip_through_the_hospital_system_and_back_to_a_kiosk(site):
    """The spec's examples in → our FHIR out validates as R4 → posted again, the same values are stored."""
    from fhir.resources.R4B.observation import Observation as R4Observation

    call, patient = site["call"], site["patient"]
    names = ["bloodpressure", "body-height", "f001-glucose", "satO2"]
    weight = json.loads(need_conformance("fhir", "observation-example.json").read_text())  # 185 lbs
    first = await _record(site, patient, {"resourceType": "Bundle", "type": "collection",
                                          "entry": [{"resource": example(n)} for n in names] + [{"resource": weight}]})
    _, token = await api_clients.add_api_client("HIS")
    for resource in first:
        status, read = await call("GET", f"/fhir/Observation/{resource['id']}", bearer=token)
        assert status == 200 and read == resource
        R4Observation.model_validate(read)
    stored_before = [(o.kind, o.values, o.measured_at) for o in await Observation.all().order_by("id")]

    second = await _record(site, patient, {"resourceType": "Bundle", "type": "collection",
                                           "entry": [{"resource": r} for r in first]})
    strip = [{k: v for k, v in r.items() if k not in ("id", "issued")} for r in second]
    assert strip == [{k: v for k, v in r.items() if k not in ("id", "issued")} for r in first]
    stored_after = [(o.kind, o.values, o.measured_at) for o in await Observation.all().order_by("id")]
    assert stored_after == stored_before * 2
    assert stored_before[-1][:2] == ("body_weight", {"value": 83.9})  # the spec's 185 lbs


async def test_a_kiosk_session_reads_its_own_patient_only_and_only_with_the_second_factor(site):
    call, patient, other = site["call"], site["patient"], site["other"]
    mine = await _record(site, patient, {"type": "spo2", "value": 97, "unit": "%"})
    theirs = await _record(site, other, {"type": "spo2", "value": 93, "unit": "%"})
    weak = await site["open_session"](patient)
    status, body = await call("GET", f"/fhir/Observation?patient={patient.number}", session=weak)
    assert status == 403 and body["error"]["code"] == "second_factor_required"

    strong = await site["open_session"](patient, strong=True)
    status, bundle = await call("GET", f"/fhir/Observation?patient={patient.number}", session=strong)
    assert status == 200 and [e["resource"]["id"] for e in bundle["entry"]] == [mine[0]["id"]]
    status, body = await call("GET", f"/fhir/Observation?patient={other.number}", session=strong)
    assert status == 403 and body["error"]["code"] == "other_patient"
    status, body = await call("GET", f"/fhir/Observation/{theirs[0]['id']}", session=strong)
    assert status == 404
    status, body = await call("GET", "/fhir/Observation?patient=P99999999", session=strong)
    assert status == 403  # whether another number exists is not told


# -- the mini program --------------------------------------------------------------------------------------------------
async def test_binding_the_mini_program_then_reading_my_vitals_and_trends(site):
    call, patient = site["call"], site["patient"]
    site["standin"].add_js_code("wx-login-code-1", "oMpZhang")  # what wx.login() gives the phone
    status, login = await call("POST", "/mp/v1/auth/login", json={"code": "wx-login-code-1"})
    assert status == 200, login
    token = login["token"]

    weak = await site["open_session"](patient)
    status, body = await call("POST", "/kiosk/v1/sessions/current/binding-code", session=weak)
    assert status == 403 and body["error"]["code"] == "second_factor_required"
    strong = await site["open_session"](patient, strong=True)
    status, shown = await call("POST", "/kiosk/v1/sessions/current/binding-code", session=strong)
    assert status == 201 and len(shown["code"]) == 8 and shown["qr"].endswith(shown["code"])

    status, body = await call("GET", "/mp/v1/patient/vitals", bearer=token)
    assert status == 403 and body["error"]["code"] == "patient_not_bound"
    status, body = await call("POST", "/mp/v1/patient/bind", bearer=token, json={"code": "00000000"})
    assert status == 404 and body["error"]["code"] == "invalid_binding_code"
    status, bound = await call("POST", "/mp/v1/patient/bind", bearer=token, json={"code": shown["qr"]})
    assert status == 200 and bound["patient"]["number"] == patient.number
    status, body = await call("POST", "/mp/v1/patient/bind", bearer=token, json={"code": shown["code"]})
    assert status == 404  # one use
    token = bound["token"]
    assert "patient" in read_session(site["settings"].secret_key, token).roles
    status, me = await call("GET", "/mp/v1/patient/me", bearer=token)
    assert status == 200 and [p["number"] for p in me["patients"]] == [patient.number]

    for systolic, diastolic, when in [(150, 95, "2026-01-05T08:00:00+08:00"), (138, 88, "2026-01-12T08:00:00+08:00")]:
        await _record(site, patient, {"type": "blood_pressure", "systolic": systolic, "diastolic": diastolic,
                                      "unit": "mmHg", "measured_at": when})
    await _record(site, patient, {"type": "heart_rate", "value": 70, "unit": "/min",
                                  "measured_at": "2026-01-12T08:01:00+08:00"})
    await _record(site, site["other"], {"type": "heart_rate", "value": 90, "unit": "/min"})

    status, vit = await call("GET", "/mp/v1/patient/vitals?since=2026-01-01", bearer=token)
    assert status == 200, vit
    assert [h["kind"] for h in vit["history"]] == ["heart_rate", "blood_pressure", "blood_pressure"]
    bp = next(s for s in vit["series"] if s["kind"] == "blood_pressure")
    assert bp["values"] == {"systolic": [150, 138], "diastolic": [95, 88]} and bp["unit"] == "mmHg"
    assert bp["times"] == ["2026-01-05T00:00:00+00:00", "2026-01-12T00:00:00+00:00"]
    status, vit = await call("GET", "/mp/v1/patient/vitals?kind=heart_rate&since=2026-01-01", bearer=token)
    assert [s["kind"] for s in vit["series"]] == ["heart_rate"] and vit["series"][0]["values"] == {"value": [70]}
    status, body = await call("GET", "/mp/v1/patient/vitals?kind=mood", bearer=token)
    assert status == 400 and body["error"]["details"]["field"] == "kind"
    status, body = await call("GET", f"/mp/v1/patient/vitals?patient={site['other'].number}", bearer=token)
    assert status == 403 and body["error"]["code"] == "patient_not_bound"

    # The same token reads the FHIR record of its patient, and not another's.
    status, bundle = await call("GET", f"/fhir/Observation?patient={patient.number}", bearer=token)
    assert status == 200 and bundle["total"] == 3
    status, body = await call("GET", f"/fhir/Observation?patient={site['other'].number}", bearer=token)
    assert status == 403 and body["error"]["code"] == "other_patient"

    # Documented for the kiosk, hospital-system and mini-program developers.
    status, spec = await call("GET", "/docs/openapi.json")
    assert status == 200
    for path in ("/kiosk/v1/observations", "/kiosk/v1/sessions/current/binding-code", "/fhir/Observation",
                 "/fhir/Observation/{observation_id}", "/mp/v1/patient/bind", "/mp/v1/patient/vitals"):
        assert path in spec["paths"], path
