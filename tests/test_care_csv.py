"""Patients from a table and a photo folder (care/csv_import.py); photos are real, read in place."""

from __future__ import annotations

from datetime import date

import pytest

from care import patients
from care.csv_import import TableRejected, import_table
from care.models import Patient
from tests.care_fixtures import faces_on  # noqa: F401 - a fixture
from tests.conftest import need_conformance
from vision.models import FaceEmbedding

SECRET = "test"  # the db fixture's SECRET_KEY
CARD_F = "11010519491231002X"  # 17th digit even: a woman born 1949-12-31
CARD_M = "110105198003050011"  # 17th digit odd: a man born 1980-03-05

TABLE = f"""患者名单（导出）
姓名,HIS编号,性别,出生日期,身份证号,手机,照片
奥巴马,H001,男,1961-08-04,,13800138000,obama.jpg
李雷,H002,女,1990/3/5,{CARD_F},,
王五,,,,{CARD_M},139 0000 1111,
,H005,男,,,,
赵六,H006,男,1990-02-30,,,
钱七,,男,,,,
孙八,H008,男,,,,../biden/biden.jpg
周九,H009,,,,,nobody.jpg
"""


def test_the_card_numbers_here_are_valid():
    assert patients.normalise_id_card(CARD_F) == CARD_F and patients.normalise_id_card(CARD_M) == CARD_M


async def test_table_in_gbk_with_photos(faces_on):
    photos = need_conformance("faces", "train", "obama")  # holds obama.jpg; ../biden/ is outside it
    data = TABLE.encode("gbk")  # what Chinese Excel writes as CSV

    report = await import_table(data, "患者.csv", photo_dir=photos, secret_key=SECRET)

    assert dict(report.counts["Patient"]) == {"created": 5, "failed": 3}
    failed = {i.where: i.reason for i in report.failed}
    assert failed == {"第 6 行": "姓名为空",
                      "第 7 行": "出生日期“1990-02-30”无法识别，请写成 1980-03-05",
                      "第 8 行": "需要 HIS编号 或 身份证号，重复导入时用来识别同一患者"}
    photo_issues = {i.where: i.reason for i in report.issues if i.kind == "photo"}
    assert photo_issues == {"第 9 行": "照片“../biden/biden.jpg”不在照片文件夹内", "第 10 行": "照片文件“nobody.jpg”不存在"}
    assert dict(report.photos) == {"enrolled": 1, "failed": 2}

    obama = await Patient.get(his_id="H001")
    assert (obama.name, obama.sex, obama.birth_date, obama.phone) == ("奥巴马", "male", date(1961, 8, 4),
                                                                      "13800138000")
    assert [e.source for e in await FaceEmbedding.filter(patient=obama)] == ["import"]
    li = await Patient.get(his_id="H002")
    assert (li.sex, li.birth_date, li.id_card_masked) == ("female", date(1990, 3, 5), "1101**********002X")
    wang = await patients.find_by_id_card(SECRET, CARD_M)
    assert (wang.name, wang.his_id, wang.sex, wang.birth_date) == ("王五", None, "male", date(1980, 3, 5))
    assert await Patient.filter(his_id="H008").exists() and await Patient.filter(his_id="H009").exists()

    again = await import_table(data, "患者.csv", photo_dir=photos, secret_key=SECRET)
    assert dict(again.counts["Patient"]) == {"updated": 5, "failed": 3}
    assert again.photos["unchanged"] == 1 and again.photos["enrolled"] == 0
    assert await Patient.all().count() == 5 and await FaceEmbedding.all().count() == 1


@pytest.mark.parametrize("data, reason", [
    ("name_missing,phone\n张三,13800138000\n".encode(), "姓名"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, ".xls"),
    (b"", "空"),
])
async def test_an_unreadable_table_is_refused_and_nothing_stored(db, data, reason):
    with pytest.raises(TableRejected) as refused:
        await import_table(data, "x.csv", secret_key=SECRET, photos=None)
    assert refused.value.status == 422 and reason in refused.value.message
    assert await Patient.all().count() == 0


async def test_a_missing_photo_folder_is_refused_before_anything_is_stored(db, tmp_path):
    with pytest.raises(TableRejected):
        await import_table(TABLE.encode(), "x.csv", photo_dir=tmp_path / "nowhere", secret_key=SECRET, photos=None)
    assert await Patient.all().count() == 0
