"""Advice on stored vitals with the patient's age, sex and history; doctors recommended from it (the history doctor
first); departments and slots from the HIS stand-in; the kiosk and mini-program endpoints."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from care import advice, doctors, kiosks, patients, vitals
from care.doctor_models import PractitionerSlot
from care.models import PatientRecord, Practitioner, Visit
from core.auth import issue_session
from core.models import Hospital, User
from tests.conftest import need_conformance

NOW = datetime.now(timezone.utc)
ROOT = Path(__file__).resolve().parents[1]


async def _record(patient, *items):
    return await vitals.record(patient, list(items), source="test")


def _bp(s, d):
    return {"type": "blood_pressure", "systolic": s, "diastolic": d, "unit": "mmHg"}


async def test_advice_combines_new_vitals_with_age_sex_and_history(db):
    diabetic = await patients.new_patient(name="陈海", sex="male", birth_date=date(1960, 5, 1))
    await Visit.create(patient=diabetic, department="内分泌科", diagnosis="2型糖尿病；高脂血症",
                       start_at=NOW - timedelta(days=200))
    older_man = await patients.new_patient(name="刘伟", sex="male", birth_date=date(1960, 5, 1))
    copd = await patients.new_patient(name="赵军", sex="male", birth_date=date(1950, 2, 1))
    await PatientRecord.create(patient=copd, kind="diagnosis", title="慢性阻塞性肺疾病", source="his")
    unknown = await patients.new_patient(name="")  # enrolled by face: no birth date, no sex

    got = await advice.advise(diabetic, await _record(diabetic, _bp(132, 78)))
    assert (got.grade, got.items[0]["rule"]) == ("see_doctor", "bp.diabetes_target")
    assert got.departments == ["内分泌科", "心血管内科"]
    assert "糖尿病" not in got.items[0]["text"]  # the history is used, not shown on a kiosk screen
    assert (await advice.advise(older_man, await _record(older_man, _bp(125, 75)))).items[0]["rule"] == \
        "bp.high_normal_with_age"
    # A diagnosis kept without a visit counts too: 89 % is within a COPD patient's target range
    got = await advice.advise(copd, await _record(copd, {"type": "spo2", "value": 89, "unit": "%"}))
    assert (got.grade, got.items[0]["rule"]) == ("normal", "spo2.copd.in_range")
    plain = await advice.advise(unknown, await _record(unknown, _bp(125, 75)))
    assert plain.items[0]["rule"] == "bp.high_normal" and plain.departments == ["全科医学科"]

    # A weight sent in pounds is stored in kg; with the height stored earlier it gives the BMI.
    await _record(older_man, {"type": "body_height", "value": 170, "unit": "cm"})
    rows = await _record(older_man, {"type": "body_weight", "value": 154.3, "unit": "lb"})
    got = await advice.advise(older_man, rows)
    assert [(i["kind"], i["reading"], i["grade"]) for i in got.items] == [("bmi", "24.2", "watch")]

    # Several readings at once: the worst grade leads, the normal ones follow
    rows = await _record(unknown, {"type": "body_temperature", "value": 102.4, "unit": "[degF]"},
                         {"type": "spo2", "value": 98, "unit": "%"},
                         {"type": "blood_glucose", "value": 126, "unit": "mg/dL", "context": "fasting"})
    got = await advice.advise(unknown, rows)
    assert got.grade == "see_doctor"
    assert [(i["kind"], i["rule"]) for i in got.items] == [
        ("body_temperature", "temp.high"), ("blood_glucose", "glu.fasting.high"), ("spo2", "spo2.normal")]
    assert got.items[0]["reading"] == "39.1℃" and got.items[1]["reading"] == "7 mmol/L"
    assert got.departments == ["发热门诊", "全科医学科", "内分泌科"]


@pytest.fixture
async def clinic(db):
    """A patient who has seen 王建国 twice in cardiology (the HIS filed him under no department), and the
    cardiologists and others of the hospital with their slots."""
    hospital = await Hospital.create(name="市第一人民医院")
    other_hospital = await Hospital.create(name="市第二人民医院")
    patient = await patients.new_patient(name="张三", sex="male", birth_date=date(1986, 1, 1),
                                         hospital_id=hospital.id)
    doc = {}
    for key, name, department, specialties in [
            ("history", "王建国", "", []), ("fit", "李明", "心血管内科", ["高血压", "冠心病"]),
            ("fit_no_slot", "孙强", "Cardiology", ["Hypertension clinic"]), ("soonest", "赵丽", "心内科", []),
            ("endocrine", "周敏", "内分泌科", ["糖尿病"])]:
        doc[key] = await Practitioner.create(name=name, department=department, specialties=specialties,
                                             hospital=hospital)
    doc["inactive"] = await Practitioner.create(name="钱进", department="心血管内科", specialties=["高血压"],
                                                active=False, hospital=hospital)
    doc["elsewhere"] = await Practitioner.create(name="吴刚", department="心血管内科", specialties=["高血压"],
                                                 hospital=other_hospital)
    for days in (400, 30):
        await Visit.create(patient=patient, practitioner=doc["history"], department="心内科", diagnosis="头晕",
                           start_at=NOW - timedelta(days=days))
    await Visit.create(patient=patient, practitioner=doc["endocrine"], department="内分泌科",
                       start_at=NOW - timedelta(days=10))  # seen, but not in a department the advice names

    async def slot(who, hours, status="free"):
        start = NOW + timedelta(hours=hours)
        return await PractitionerSlot.create(practitioner=doc[who], start=start, end=start + timedelta(minutes=15),
                                             status=status)

    slots = {"fit": await slot("fit", 72), "soonest": await slot("soonest", 1)}
    await slot("fit", -2)  # past
    await slot("fit", 24, "booked")
    await slot("fit_no_slot", 5, "booked")
    await slot("elsewhere", 1)
    return dict(patient=patient, doc=doc, slots=slots)


async def test_recommendation_proposes_the_history_doctor_first_then_fit_then_availability(clinic):
    patient, doc = clinic["patient"], clinic["doc"]
    got = await advice.advise(patient, await _record(patient, _bp(150, 95)))
    assert got.departments == ["心血管内科", "全科医学科"]
    recs = await doctors.recommend(patient, got)
    assert [r.practitioner.name for r in recs] == ["王建国", "李明", "孙强", "赵丽"]
    first = recs[0]
    assert first.from_history and first.department == "心血管内科" and first.next_slot is None
    assert first.reason.startswith("曾为您诊治 2 次") and "暂无可约时段" in first.reason
    fit = recs[1]
    assert not fit.from_history and fit.specialty_fit == ["高血压"] and fit.next_slot.id == clinic["slots"]["fit"].id
    local = clinic["slots"]["fit"].start.astimezone(doctors.ZoneInfo("Asia/Shanghai"))
    assert fit.reason == f"血压建议就医 · 心血管内科，擅长高血压；最近可约 {local.month}月{local.day}日 {local:%H:%M}"
    assert recs[2].specialty_fit == ["hypertension"] and recs[2].next_slot is None
    assert recs[3].next_slot.id == clinic["slots"]["soonest"].id and recs[3].specialty_fit == []
    out = doctors.recommendation_out(recs[1])
    assert out["practitioner"]["id"] == doc["fit"].id and out["next_slot"]["status"] == "free"

    # Normal readings call for no doctor
    calm = await advice.advise(patient, await _record(patient, _bp(115, 75)))
    assert calm.departments == [] and await doctors.recommend(patient, calm) == []
    # A fever sends to the fever clinic: nobody here works there, nor has the patient been seen there
    fever = await advice.advise(patient, await _record(patient, {"type": "body_temperature", "value": 38.6,
                                                                  "unit": "Cel"}))
    assert await doctors.recommend(patient, fever) == []


async def test_slots_of_a_doctor_and_refusals(clinic):
    doc = clinic["doc"]
    assert [s.id for s in await doctors.free_slots(doc["fit"])] == [clinic["slots"]["fit"].id]
    with pytest.raises(doctors.NotFound):
        await doctors.get_doctor(doc["inactive"].id)
    with pytest.raises(doctors.BadRequest) as refused:
        await doctors.add_slot(doc["fit"], NOW + timedelta(hours=2), NOW + timedelta(hours=1))
    assert refused.value.details == {"field": "end"}


async def test_departments_specialties_and_slots_from_the_his(db):
    from integrations.his import HISClient
    from tests.his_standin import HISStandIn
    from care.fhir_import import import_from_server

    his = HISStandIn()
    base = await his.start()
    try:
        his.load(need_conformance("fhir", "practitioner-example.json"))  # HL7's Dr Adam Careful, id "example"
        his.add({"resourceType": "PractitionerRole", "id": "r1", "active": True,
                 "practitioner": {"reference": "Practitioner/example"},
                 "organization": {"display": "心血管内科"},
                 "specialty": [{"text": "高血压"}, {"coding": [{"code": "394579002", "display": "Cardiology"}]}]},
                {"resourceType": "PractitionerRole", "id": "r2", "practitioner": {"reference": "Practitioner/nobody"}},
                {"resourceType": "Schedule", "id": "sch1", "actor": [{"reference": "Practitioner/example"}]})

        def iso(hours):
            return (NOW + timedelta(hours=hours)).isoformat()

        his.add(*({"resourceType": "Slot", "id": sid, "schedule": {"reference": "Schedule/sch1"}, "status": status,
                   "start": iso(h), "end": iso(h + 0.25)}
                  for sid, status, h in [("free1", "free", 3), ("busy1", "busy", 4), ("gone", "free", -5),
                                         ("oops", "entered-in-error", 6)]))
        async with HISClient(base) as client:
            await import_from_server(client, types=("Practitioner",), photos=None)
            first = await doctors.sync_from_his(client)
            again = await doctors.sync_from_his(client)
            assert first == again == {"roles": 1, "slots": 2, "skipped": 2}
            doctor = await Practitioner.get(his_id="example")
            assert doctor.department == "心血管内科"
            assert doctor.specialties == ["Bachelor of Science", "高血压", "Cardiology"]
            slots = {s.his_id: s.status for s in await PractitionerSlot.filter(practitioner=doctor)}
            assert slots == {"free1": "free", "busy1": "booked"}
            # Booked in the HIS meanwhile; a slot withdrawn as entered in error goes away
            his.resources["Slot"]["free1"]["status"] = "busy"
            his.resources["Slot"]["busy1"]["status"] = "entered-in-error"
            await doctors.sync_from_his(client)
            assert {s.his_id: s.status for s in await PractitionerSlot.filter(practitioner=doctor)} == \
                {"free1": "booked"}
        # The same from the command line, against HIS_BASE_URL
        env = {**os.environ, "DATABASE_URL": db.effective_database_url, "VAR_DIR": str(db.var_dir),
               "SECRET_KEY": "test", "HIS_BASE_URL": base}
        code, out, err = await _run(["-m", "care.doctors", "sync-his"], env)
        assert code == 0, err
        assert "医生科室与专长 1 位，号源 1 个，跳过 2 条" in out
        code, out, err = await _run(["-m", "care.doctors", "sync-his"], {**env, "HIS_BASE_URL": ""})
        assert code == 1 and "HIS_BASE_URL" in err
    finally:
        await his.stop()


async def _run(args: list[str], env: dict) -> tuple[int, str, str]:
    """A command in a child process, while this event loop keeps serving the HIS stand-in."""
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, out.decode(), err.decode()


# -- the endpoints ---------------------------------------------------------------------------------------------------
async def _call(live, method, path, headers=None, **kwargs):
    status, _, body = await live.request(method, path, headers=headers or {}, **kwargs)
    return status, (json.loads(body) if body else None)


async def test_kiosk_and_mini_program_advice_and_doctors(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    redis = live.app.ctx.redis
    hospital = await Hospital.create(name="市第一人民医院")
    kiosk, key = await kiosks.add_kiosk("门诊大厅1号机", hospital_id=hospital.id)
    patient = await patients.new_patient(name="张三", sex="male", phone="13912345678", birth_date=date(1980, 3, 1),
                                         hospital_id=hospital.id)
    history_doc = await Practitioner.create(name="王建国", department="心血管内科", specialties=["高血压"],
                                            hospital=hospital)
    other_doc = await Practitioner.create(name="李明", department="心内科", hospital=hospital)
    start = NOW + timedelta(hours=3)
    slot = await PractitionerSlot.create(practitioner=other_doc, start=start, end=start + timedelta(minutes=15))
    await Visit.create(patient=patient, practitioner=history_doc, department="心血管内科",
                       start_at=NOW - timedelta(days=90))
    token, session = await kiosks.start_session(redis, kiosk, patient, ttl=900)
    at_kiosk = {"X-Kiosk-Key": key, "Authorization": f"Bearer {token}"}

    # HL7's blood-pressure example (107/60 mmHg) at the kiosk: normal, said so in the answer
    example = json.loads(need_conformance("fhir", "observation-example-bloodpressure.json").read_text())
    status, body = await _call(live, "POST", "/kiosk/v1/observations", at_kiosk, json=example)
    assert status == 201, body
    assert body["advice"]["grade"] == "normal"
    assert [(i["rule"], i["reading"]) for i in body["advice"]["items"]] == [("bp.normal", "107/60 mmHg")]
    status, body = await _call(live, "POST", "/kiosk/v1/observations", at_kiosk, json=_bp(165, 100))
    assert status == 201 and body["advice"]["grade"] == "see_doctor"
    assert body["advice"]["departments"] == ["心血管内科"] and body["advice"]["items"][0]["source"]

    # The doctors need the second factor (they come from the visit history)
    status, body = await _call(live, "GET", "/kiosk/v1/doctors", at_kiosk)
    assert status == 403 and body["error"]["code"] == "second_factor_required"
    await kiosks.give_digits(redis, session, "5678")
    status, body = await _call(live, "GET", "/kiosk/v1/doctors", at_kiosk)
    assert status == 200
    assert [(d["practitioner"]["name"], d["from_history"]) for d in body["doctors"]] == \
        [("王建国", True), ("李明", False)]
    assert body["doctors"][1]["next_slot"]["id"] == slot.id and body["advice"]["grade"] == "see_doctor"
    status, body = await _call(live, "GET", f"/kiosk/v1/doctors/{other_doc.id}/slots", at_kiosk)
    assert status == 200 and [s["id"] for s in body["slots"]] == [slot.id]
    status, body = await _call(live, "GET", "/kiosk/v1/doctors/99999/slots", at_kiosk)
    assert status == 404 and body["error"]["code"] == "practitioner_not_found"

    # The mini program of a user bound to the patient
    user = await User.create(mp_openid="o-zhangsan", name="张三")
    await kiosks.bind_patient(user, patient)
    jwt = issue_session(live.app.ctx.settings.secret_key, user_id=user.id, openid="o-zhangsan", roles=["patient"])
    mine = {"Authorization": f"Bearer {jwt}"}
    status, body = await _call(live, "GET", "/mp/v1/patient/advice", mine)
    assert status == 200 and body["patient"]["number"] == patient.number
    assert body["grade"] == "see_doctor" and body["items"][0]["reading"] == "165/100 mmHg"  # latest only
    status, body = await _call(live, "GET", "/mp/v1/patient/doctors", mine)
    assert status == 200 and body["doctors"][0]["from_history"] and "曾为您诊治 1 次" in body["doctors"][0]["reason"]
    status, body = await _call(live, "GET", f"/mp/v1/patient/doctors/{other_doc.id}/slots", mine)
    assert status == 200 and len(body["slots"]) == 1

    # Another user cannot read this patient's advice; nobody signed in gets nothing
    stranger = await User.create(mp_openid="o-stranger", name="路人")
    other_patient = await patients.new_patient(name="李四")
    await kiosks.bind_patient(stranger, other_patient)
    theirs = {"Authorization": "Bearer " + issue_session(live.app.ctx.settings.secret_key, user_id=stranger.id,
                                                         openid="o-stranger", roles=["patient"])}
    for path in ("/mp/v1/patient/advice", "/mp/v1/patient/doctors"):
        status, body = await _call(live, "GET", f"{path}?patient={patient.number}", theirs)
        assert status == 403 and body["error"]["code"] == "patient_not_bound"
        status, body = await _call(live, "GET", path)
        assert status == 401
    status, body = await _call(live, "GET", "/mp/v1/patient/advice", theirs)
    assert status == 200 and body["grade"] == "normal" and body["items"] == []  # nothing measured yet


async def test_the_server_reads_doctors_schedules_from_the_his(serve, settings_for, database_url):
    from tests.his_standin import HISStandIn

    his = HISStandIn()
    base = await his.start()
    try:
        start = NOW + timedelta(days=1)
        his.add({"resourceType": "Schedule", "id": "s1", "actor": [{"reference": "Practitioner/d1"}]},
                {"resourceType": "Slot", "id": "slot1", "schedule": {"reference": "Schedule/s1"}, "status": "free",
                 "start": start.isoformat(), "end": (start + timedelta(minutes=20)).isoformat()})
        await serve(settings_for(database_url, his_base_url=base, his_poll_interval=0, his_schedule_interval=0.2))
        doctor = await Practitioner.create(his_id="d1", name="王建国", department="心血管内科")
        # The server reads the HIS's schedules in rounds: the imported doctor's free slot shows up by itself.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not await doctors.free_slots(doctor) and loop.time() < deadline:
            await asyncio.sleep(0.1)
        assert [s.his_id for s in await doctors.free_slots(doctor)] == ["slot1"]
    finally:
        await his.stop()
