"""Patients: numbers, ID cards kept masked and hashed, the second factor, deletion with their biometrics."""

from __future__ import annotations

import asyncio
from datetime import date

import numpy as np
import pytest
from tortoise import connections

from care import patients
from care.models import Patient, PatientRecord, Visit
from core.errors import NotFound, Unprocessable
from core.models import AuditEntry
from vision import crypto, index
from vision.models import FaceEmbedding

SECRET = "test"  # the db fixture's SECRET_KEY
ID_CARD = "11010519491231002X"  # a valid check digit (X)


async def test_numbers_are_sequential_and_unique_under_concurrency(db):
    made = await asyncio.gather(*(patients.new_patient() for _ in range(20)))
    numbers = sorted(p.number for p in made)
    assert numbers == [f"P{n:08d}" for n in range(1, 21)]
    assert (await patients.new_patient(name="李四")).number == "P00000021"


async def test_id_card_is_stored_masked_and_hashed_never_in_clear(db):
    p = await patients.new_patient(secret_key=SECRET, name="张三", sex="male", id_card="110105 19491231 002x",
                                   phone="138-0013-8000", birth_date=date(1949, 12, 31))
    stored = await Patient.get(id=p.id)
    assert stored.id_card_masked == "1101**********002X"
    assert stored.phone == "13800138000" and stored.birth_date == date(1949, 12, 31)
    rows = await connections.get("default").execute_query_dict("SELECT * FROM patient")
    assert not any(ID_CARD in str(v) or "19491231" in str(v) for v in rows[0].values())
    assert (await patients.find_by_id_card(SECRET, ID_CARD.lower())).number == p.number
    assert await patients.find_by_id_card("another-secret", ID_CARD) is None  # the hash is keyed
    assert await AuditEntry.filter(action="patient.created", entity_id=p.number).exists()


@pytest.mark.parametrize("card, reason", [("110105194912310021", "校验位"), ("1101051949", "格式"),
                                          ("11010519491231002Y", "格式")])
async def test_a_wrong_id_card_number_is_refused_and_nothing_stored(db, card, reason):
    with pytest.raises(Unprocessable) as refused:
        await patients.new_patient(secret_key=SECRET, name="王五", id_card=card)
    assert reason in refused.value.message and refused.value.code == "bad_id_card"
    assert await Patient.all().count() == 0


async def test_get_by_number(db):
    p = await patients.new_patient(name="赵六")
    assert (await patients.get_by_number(p.number.lower())).id == p.id
    for wrong in ("P99999999", "x'; drop table patient; --", ""):
        with pytest.raises(NotFound) as missing:
            await patients.get_by_number(wrong)
        assert missing.value.to_body() == {"error": {"code": "patient_not_found", "message": "未找到该患者"}}


async def test_second_factor_is_the_last_four_of_the_id_card_or_phone(db):
    p = await patients.new_patient(secret_key=SECRET, name="张三", id_card=ID_CARD, phone="+86 138 0013 8000")
    assert patients.verify_second_factor(p, "002x") and patients.verify_second_factor(p, "002X")
    assert patients.verify_second_factor(p, "8000")
    for wrong in ("0000", "1234", "", "02X", "8000 1", None, "****"):
        assert not patients.verify_second_factor(p, wrong)
    bare = await patients.new_patient(name="无证件")  # a face-only enrolment: no second factor can pass
    assert not patients.verify_second_factor(bare, "\0\0\0\0") and not patients.verify_second_factor(bare, "****")


async def test_deleting_a_patient_deletes_visits_records_and_biometrics_everywhere(db):
    index.configure(key=crypto.derive_key(db.with_(face_key="k")), threshold=0.07, events=None)
    try:
        keep, gone = await patients.new_patient(name="留下"), await patients.new_patient(name="删除")
        rng = np.random.default_rng(3)
        vectors = rng.standard_normal((3, 128)).astype(np.float32)
        await index.enrol(keep.id, vectors[0], source="kiosk")
        await index.enrol(gone.id, vectors[1], source="his")
        await index.enrol(gone.id, vectors[2], source="kiosk")
        await Visit.create(patient=gone, hospital_name="市一院", diagnosis="感冒")
        await PatientRecord.create(patient=gone, kind="vitals", data={"pulse": 72}, source="kiosk")
        assert (await index.identify(vectors[1])).patient_id == gone.id

        await patients.delete_patient(gone, actor_label="管理员")

        assert not await Patient.exists(id=gone.id)
        assert await FaceEmbedding.filter(patient_id=gone.id).count() == 0
        assert await Visit.all().count() == 0 and await PatientRecord.all().count() == 0
        assert await index.identify(vectors[1]) is None and await index.identify(vectors[2]) is None
        assert (await index.identify(vectors[0])).patient_id == keep.id
        assert await AuditEntry.filter(action="patient.deleted", entity_id=gone.number).exists()
    finally:
        index.INDEX.replace([], [], np.zeros((0, index.DIMENSIONS), dtype=np.float32))
        index.configure(key=None, threshold=0.0, events=None)
