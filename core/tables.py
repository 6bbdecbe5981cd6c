"""Reading a spreadsheet someone uploads: CSV (UTF-8 with or without BOM, GBK/GB18030 from Chinese Excel, UTF-16
"Unicode text"; comma, tab or semicolon) or XLSX, as (row number, cells) the way Excel numbers rows. Shared by the
imports (devices, patients); each import maps the columns itself."""

from __future__ import annotations

import csv
import io
import zipfile

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 5000
HEADER_SEARCH_ROWS = 10  # exports often carry a title row or two above the header


class FileRejected(Exception):
    """The file as a whole cannot be read (format, encoding, header)."""


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")  # Excel's "Unicode text"
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")  # a superset of GBK: what Chinese Excel writes as "CSV"
    except UnicodeDecodeError as exc:
        raise FileRejected("无法识别文件编码，请另存为 CSV（UTF-8）或 Excel（.xlsx）") from exc


def _csv_rows(data: bytes) -> list[tuple[int, list]]:
    text = _decode(data)
    # The separator is the one the header line uses most: comma (Excel's CSV), tab ("Unicode text"), semicolon.
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(",\t;", key=first.count)
    return [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1)]


def _xlsx_rows(data: bytes) -> list[tuple[int, list]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a damaged file
        raise FileRejected("无法读取该 Excel 文件，请确认文件未损坏且为 .xlsx 格式") from exc
    try:
        sheet = workbook.active or workbook.worksheets[0]
        rows = []
        for n, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            rows.append((n, list(row)))
            if len(rows) > MAX_ROWS + HEADER_SEARCH_ROWS:
                break
        return rows
    finally:
        workbook.close()


def read_table(data: bytes, filename: str = "") -> list[tuple[int, list]]:
    """(row number, cells) of the first sheet of an XLSX, or of a CSV; raises ``FileRejected``."""
    if len(data) > MAX_BYTES:
        raise FileRejected(f"文件太大（最多 {MAX_BYTES // 1024 // 1024} MB）")
    if not data.strip():
        raise FileRejected("文件是空的")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileRejected("不支持旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV（UTF-8）")
    if data.startswith(b"PK\x03\x04") or filename.lower().endswith((".xlsx", ".xlsm")):
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise FileRejected("无法读取该 Excel 文件，请确认文件未损坏且为 .xlsx 格式")
        return _xlsx_rows(data)
    return _csv_rows(data)
