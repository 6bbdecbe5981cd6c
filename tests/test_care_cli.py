"""``python -m care import-fhir | import-csv`` run as a person would: a separate process on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

from tests.conftest import need_conformance
from tests.his_standin import HISStandIn

PROJECT = Path(__file__).resolve().parent.parent


async def care(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "cli-test-secret-key-0123456789abcdef", "LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "care", *args, cwd=PROJECT, env=base | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


def count(tmp_path: Path, table: str) -> int:
    with sqlite3.connect(tmp_path / "var" / "medwx.sqlite3") as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


async def test_import_fhir_file_twice_then_a_file_that_is_not_fhir(tmp_path):
    bundle = next(need_conformance("fhir", "synthea").glob("Bibi254*.json"))

    rc, out, err = await care(tmp_path, "import-fhir", str(bundle), "--no-photos",
                              "--report", str(tmp_path / "report.json"))
    assert rc == 0, err
    assert "Patient: 新增 1，更新 0，失败 0" in out and "Encounter: 新增 13，更新 0，失败 0" in out
    assert "导入 94/94" in err  # progress on stderr: every entry of the bundle read
    assert json.loads((tmp_path / "report.json").read_text())["counts"]["Encounter"] == {"created": 13}

    rc, out, _ = await care(tmp_path, "import-fhir", str(bundle), "--no-photos")
    assert rc == 0 and "Patient: 新增 0，更新 1，失败 0" in out
    assert (count(tmp_path, "patient"), count(tmp_path, "visit")) == (1, 13)

    rc, out, err = await care(tmp_path, "import-fhir", str(PROJECT / "requirements.txt"), "--no-photos")
    assert rc == 1 and "文件不是 FHIR 资源" in err and out == ""
    assert count(tmp_path, "patient") == 1


async def test_some_records_failing_gives_exit_status_3_with_the_reasons(tmp_path):
    ndjson = tmp_path / "patients.ndjson"
    ndjson.write_text(json.dumps({"resourceType": "Patient", "id": "a", "name": [{"text": "甲"}]}) + "\n"
                      + json.dumps({"resourceType": "Patient", "id": "b", "birthDate": "1990-13-45"}) + "\n",
                      encoding="utf-8")
    rc, out, _ = await care(tmp_path, "import-fhir", str(ndjson), "--no-photos")
    assert rc == 3
    assert "Patient: 新增 1，更新 0，失败 1" in out and "[失败] line 2 Patient/b: 不符合 FHIR R4" in out


async def test_import_from_the_fhir_server_at_his_base_url(tmp_path):
    his = HISStandIn(page_size=4)
    his.load(next(need_conformance("fhir", "synthea").glob("Hipolito984*.json")))
    await his.start()
    try:
        rc, out, err = await care(tmp_path, "import-fhir", "--server", "--count", "4", "--no-photos",
                                  HIS_BASE_URL=his.base_url)
        no_url = await care(tmp_path, "import-fhir", "--server", "--no-photos")
    finally:
        await his.stop()
    assert rc == 0, err
    assert "Patient: 新增 1" in out and "Encounter: 新增 13，更新 0，失败 0" in out
    assert [c.query.get("_offset") for c in his.calls if c.path == "/fhir/Encounter"] == [None, "4", "8", "12"]
    assert no_url[0] == 1 and "HIS_BASE_URL" in no_url[2]


async def test_import_csv_with_a_photo_folder_enrols_the_face(tmp_path):
    photos = need_conformance("faces", "train", "rose_leslie")
    table = tmp_path / "patients.csv"
    table.write_text("姓名,HIS编号,性别,照片\n罗斯,H100,女,img1.jpg\n", encoding="utf-8")

    rc, out, err = await care(tmp_path, "import-csv", str(table), "--photos", str(photos))

    assert rc == 0, err
    assert "Patient: 新增 1，更新 0，失败 0" in out and "照片: 登记 1，未变 0，失败 0" in out
    assert count(tmp_path, "face_embedding") == 1
