"""The FHIR R4 import (care/fhir_import.py) on real data: HL7's R4 examples and Synthea bundles, real face photos.

Data is read in place from ../shared/conformance/ (the tests skip when it is absent).
"""

from __future__ import annotations

import base64
import json
from datetime import date

import pytest

from care import patients
from care.fhir_import import NotFHIR, import_bundle, import_from_server
from care.models import Patient, PatientRecord, Practitioner, Visit
from core.models import AuditEntry
from integrations.his import HISClient
from tests.conftest import need_conformance
from tests.his_standin import HISStandIn
from tests.care_fixtures import faces_on  # noqa: F401 - a fixture
from vision import faces, index
from vision.models import FaceEmbedding

SECRET = "test"  # the db fixture's SECRET_KEY
BIBI = "475d72ca-91c7-7211-97e3-f000af33fc04"


def synthea(name: str) -> bytes:
    folder = need_conformance("fhir", "synthea")
    return next(folder.glob(f"{name}*.json")).read_bytes()


def example(name: str) -> dict:
    return json.loads(need_conformance("fhir", name).read_text(encoding="utf-8"))


def face(path: str) -> bytes:
    return need_conformance("faces", *path.split("/")).read_bytes()


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


# -- Synthea and the R4 examples ---------------------------------------------------------------------------------------
async def test_synthea_bundle_imports_patient_practitioners_visits_and_diagnoses(db):
    report = await import_bundle(synthea("Bibi254"), secret_key=SECRET, photos=None)

    assert report.failed == []
    assert dict(report.counts["Patient"]) == {"created": 1}
    assert dict(report.counts["Encounter"]) == {"created": 13}
    assert dict(report.counts["Practitioner"]) == {"created": 2}
    assert report.skipped["Claim"] == 13 and report.skipped["Observation"] == 16
    p = await Patient.get(his_id=BIBI)
    assert (p.name, p.sex, p.birth_date, p.phone) == ("Bibi254 Schowalter414", "female", date(2009, 4, 29),
                                                      "5552599533")
    assert p.number.startswith("P") and len(p.number) == 9
    history = await patients.history(p)
    assert len(history["visits"]) == 13
    covid = [v for v in history["visits"] if "COVID-19" in v["diagnosis"]]
    assert covid and "Fever (finding)" in covid[0]["diagnosis"]
    assert all(v["doctor"] and v["hospital"] and v["kind"] == "outpatient" for v in history["visits"])
    assert await Visit.filter(practitioner=None).count() == 0


async def test_reimport_updates_by_his_id_and_never_duplicates(db):
    data = synthea("Bibi254")
    await import_bundle(data, secret_key=SECRET, photos=None)
    before = {v.his_id: v.diagnosis for v in await Visit.all()}
    practitioners = await import_bundle(synthea("practitionerInformation"), secret_key=SECRET, photos=None)
    assert dict(practitioners.counts["Practitioner"]) == {"created": 15, "updated": 2}

    again = await import_bundle(data, secret_key=SECRET, photos=None)

    assert dict(again.counts["Patient"]) == {"updated": 1} and dict(again.counts["Encounter"]) == {"updated": 13}
    assert await Patient.all().count() == 1 and await Visit.all().count() == 13
    assert await Practitioner.all().count() == 17
    assert {v.his_id: v.diagnosis for v in await Visit.all()} == before  # diagnoses not repeated


async def test_r4_examples_patient_then_encounter(db):
    await import_bundle(example("patient-example.json"), secret_key=SECRET, photos=None)
    report = await import_bundle(example("encounter-example.json"), secret_key=SECRET, photos=None)
    assert dict(report.counts["Encounter"]) == {"created": 1}
    p = await Patient.get(his_id="example")
    assert (p.name, p.sex, p.birth_date, p.phone) == ("Peter James Chalmers", "male", date(1974, 12, 25),
                                                      "0334105613")  # the mobile number, not work or old
    visit = await Visit.get(his_id="example")
    assert (visit.patient_id, visit.kind, visit.status) == (p.id, "inpatient", "in-progress")


async def test_id_card_identifier_is_kept_masked_and_hashed(db):
    r = {"resourceType": "Patient", "id": "cn1", "name": [{"family": "张", "given": ["三"]}], "gender": "male",
         "identifier": [{"system": "urn:oid:2.16.156.10011.1.3", "value": "11010519491231002X"}]}
    await import_bundle(bundle(r), secret_key=SECRET, photos=None)
    p = await Patient.get(his_id="cn1")
    assert (p.name, p.id_card_masked) == ("张三", "1101**********002X")
    assert (await patients.find_by_id_card(SECRET, "11010519491231002X")).id == p.id


# -- bad input ---------------------------------------------------------------------------------------------------------
async def test_invalid_resources_are_listed_with_the_reason_and_the_rest_imported(db):
    lines = [
        {"resourceType": "Patient", "id": "ok1", "name": [{"text": "李雷"}], "gender": "male"},
        {"resourceType": "Patient", "id": "bad1", "birthDate": "1990-13-45"},
        "{not json",
        {"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"code": "AMB"}, "subject": {"reference": "Patient/ghost"}},
        {"resourceType": "Patient", "name": [{"text": "无编号"}]},
        {"resourceType": "Patient", "id": "bad2", "identifier": [
            {"type": {"coding": [{"code": "NNCHN"}]}, "value": "110105194912310021"}]},
        {"resourceType": "Patient", "id": "bad3", "gender": "male", "hobby": "chess"},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines)

    report = await import_bundle(text.encode(), secret_key=SECRET, photos=None)

    assert await Patient.all().values_list("his_id", flat=True) == ["ok1"]
    assert await Visit.all().count() == 0
    reasons = {i.where: i.reason for i in report.failed}
    assert set(reasons) == {"line 2", "line 3", "line 4", "line 5", "line 6", "line 7"}
    assert "birthDate" in reasons["line 2"] and reasons["line 2"].startswith("不符合 FHIR R4")
    assert reasons["line 3"] == "该行不是 JSON"
    assert "Patient/ghost" in reasons["line 4"]
    assert "缺少 id" in reasons["line 5"]
    assert "身份证号校验位不正确" in reasons["line 6"]
    assert "hobby" in reasons["line 7"]
    assert dict(report.counts["Patient"]) == {"created": 1, "failed": 4}


@pytest.mark.parametrize("data", [b"name,phone\n\xe5\xbc\xa0\xe4\xb8\x89,13800138000\n", b'{"name": "x"}', b"[]",
                                  b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"",
                                  b'{"resourceType": "Bundle", "entry": "oops"}'])
async def test_a_file_that_is_not_fhir_is_refused_and_nothing_stored(db, data):
    with pytest.raises(NotFHIR) as refused:
        await import_bundle(data, secret_key=SECRET, photos=None)
    assert refused.value.status == 422 and refused.value.code == "not_fhir"
    assert await Patient.all().count() == 0
    assert not await AuditEntry.filter(action="his.import").exists()


# -- photos, embedded for real ---------------------------------------------------------------------------------------
async def test_inline_photos_are_enrolled_and_a_photo_without_a_face_is_reported(faces_on):
    obama = {"resourceType": "Patient", "id": "ob1", "name": [{"text": "奥巴马"}],
             "photo": [{"contentType": "image/jpeg", "data": base64.b64encode(face("test/obama1.jpg")).decode()}]}
    data = bundle(obama, example("patient-example-a.json"))  # HL7's pat1: a tiny GIF, no face in it

    report = await import_bundle(data, secret_key=SECRET)

    assert dict(report.counts["Patient"]) == {"created": 2}
    assert dict(report.photos) == {"enrolled": 1, "failed": 1}
    [issue] = report.issues
    pat1 = await Patient.get(his_id="pat1")
    assert (issue.kind, issue.resource, issue.reason) == ("photo", pat1.number, "未检测到人脸")
    ob1 = await Patient.get(his_id="ob1")
    assert [e.source for e in await FaceEmbedding.filter(patient=ob1)] == ["his"]
    match = await index.identify(await faces.embed(face("train/obama/obama.jpg")))  # another photo of him
    assert match is not None and match.patient_id == ob1.id
    assert await index.identify(await faces.embed(face("train/biden/biden.jpg"))) is None

    again = await import_bundle(data, secret_key=SECRET)
    assert again.photos["unchanged"] == 1 and again.photos["enrolled"] == 0
    assert await FaceEmbedding.filter(patient=ob1).count() == 1  # the same photo is not enrolled twice


async def test_photo_by_url_is_read_from_the_his(faces_on):
    his = HISStandIn()
    await his.start()
    try:
        his.add_binary("f006", face("train/kit_harington/john1.jpeg"))
        roel = example("patient-example-f201-roel.json")  # photo: {"url": "Binary/f006"}
        async with HISClient(his.base_url) as client:
            report = await import_bundle(roel, secret_key=SECRET, his=client)
        without_his = await import_bundle(roel, secret_key=SECRET)
    finally:
        await his.stop()

    assert report.issues == [] and report.photos["enrolled"] == 1
    assert [c.path for c in his.calls] == ["/fhir/Binary/f006"]
    p = await Patient.get(his_id="f201")
    assert p.name == "Roel" and await FaceEmbedding.filter(patient=p).count() == 1
    [issue] = without_his.issues
    assert issue.kind == "photo" and "HIS_BASE_URL" in issue.reason


# -- from a FHIR server ----------------------------------------------------------------------------------------------
async def test_import_from_server_pages_through_next_links(db):
    his = HISStandIn(page_size=5)
    for name in ("Bibi254", "Cris921"):
        folder = need_conformance("fhir", "synthea")
        his.load(next(folder.glob(f"{name}*.json")))
    await his.start()
    progress = []
    try:
        async with HISClient(his.base_url) as client:
            report = await import_from_server(client, params={"_count": "5"}, secret_key=SECRET, photos=None,
                                              progress=lambda done, total: progress.append((done, total)))
            again = await import_from_server(client, params={"_count": "5"}, secret_key=SECRET, photos=None)
    finally:
        await his.stop()

    assert report.failed == []
    assert dict(report.counts["Patient"]) == {"created": 2} and dict(report.counts["Encounter"]) == {"created": 24}
    assert dict(again.counts["Encounter"]) == {"updated": 24}
    assert await Patient.all().count() == 2 and await Visit.all().count() == 24
    encounter_pages = [c.query.get("_offset") for c in his.calls if c.path == "/fhir/Encounter"]
    assert encounter_pages[:5] == [None, "5", "10", "15", "20"]
    assert progress[-1] == (34, 34)  # 4 organizations, 4 practitioners, 2 patients, 24 encounters
    assert await PatientRecord.all().count() == 0


async def test_large_ndjson_is_read_in_batches_with_references_across_them(db, tmp_path):
    """A bulk export: one resource a line, references as Type/id (a server's form), stored a few lines at a time."""
    from care.fhir_import import import_file
    from tests.his_standin import _rewrite_references

    doc = json.loads(synthea("Bibi254"))
    local = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in doc["entry"]}
    order = {"Practitioner": 0, "Patient": 1, "Encounter": 2}
    resources = sorted((_rewrite_references(e["resource"], local) for e in doc["entry"]
                        if e["resource"]["resourceType"] in order), key=lambda r: order[r["resourceType"]])
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in resources) + "\n", encoding="utf-8")
    progress = []

    report = await import_file(path, batch=3, secret_key=SECRET, photos=None,
                               progress=lambda done, total: progress.append((done, total)))

    assert report.failed == [] and dict(report.counts["Encounter"]) == {"created": 13}
    assert progress[-1] == (16, 16) and len({p for p in progress}) == 16
    p = await Patient.get(his_id=BIBI)
    assert await Visit.filter(patient=p).count() == 13 and await Visit.filter(practitioner=None).count() == 0
