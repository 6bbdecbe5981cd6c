"""Import from the hospital information system: FHIR R4 ``Patient``, ``Practitioner``, ``Encounter`` (and the
``Condition`` / ``MedicationRequest`` that give a visit its diagnosis and medication), from a Bundle or NDJSON file
or page by page from a FHIR server.

- Every resource is validated against the FHIR R4 model (``fhir.resources``' R4B package, whose Patient,
  Practitioner, Encounter, Condition and MedicationRequest are R4's; it validates the official R4 examples and
  Synthea bundles) off the event loop. An invalid resource is listed in the report with the reason, the rest are
  imported. Input that is not FHIR at all raises ``NotFHIR`` before anything is stored.
- Rows are matched by the HIS id (the resource id): a re-import updates them, never duplicates.
- Each patient's photo (inline base64 ``data`` or a ``url`` read through the HIS client) is embedded and enrolled
  by the photo step (``vision`` by default). A photo that fails (no face, not an image) is listed in the report;
  the patient record stands. The same photo imported again is not enrolled twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import audit
from core.errors import AppError, Unprocessable
from care import patients
from care.importing import (RECORD_TYPES, ImportReport, Issue, PhotoQueue, PhotoStep, Progress,
                            enrol_with_vision)
from care.models import Patient, PatientRecord, Practitioner, Visit

log = logging.getLogger(__name__)

# In the order they are stored: what a resource refers to is stored before it.
IMPORTED = RECORD_TYPES
# Read only to resolve references (a hospital's name, a photo held in the bundle).
CONTEXT = ("Organization", "Binary")
# Identifier systems / types that carry a PRC resident ID-card number: the OID the national health-record
# standards use for it, and HL7 v2 table 0203's national-person-identifier type for China.
ID_CARD_SYSTEMS = frozenset({"urn:oid:2.16.156.10011.1.3"})
ID_CARD_TYPES = frozenset({"NNCHN"})
MAX_PHOTO = 10 * 1024 * 1024
ENCOUNTER_KINDS = {"AMB": "outpatient", "IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient",
                   "EMER": "emergency", "HH": "home", "VR": "virtual", "OBSENC": "observation"}
SEX = {"male": "male", "female": "female", "other": "other", "unknown": "unknown"}

class NotFHIR(Unprocessable):
    code, message = "not_fhir", "文件不是 FHIR 资源（需要 Bundle、单个资源或 NDJSON）"


# -- reading the input -------------------------------------------------------------------------------------------
@dataclass
class Entry:
    where: str
    resource: dict | None
    full_url: str = ""
    error: str = ""  # why the entry could not be read at all

    @property
    def rtype(self) -> str:
        return (self.resource or {}).get("resourceType", "") if isinstance(self.resource, dict) else ""

    @property
    def label(self) -> str:
        rid = (self.resource or {}).get("id") if isinstance(self.resource, dict) else None
        return f"{self.rtype}/{rid}" if rid else (self.rtype or "?")


def _is_resource(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def read_entries(data: bytes | str | dict) -> list[Entry]:
    """The resources of a Bundle, a single resource, or NDJSON (one resource a line). ``NotFHIR`` otherwise."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise NotFHIR("文件不是 UTF-8 文本，不是 FHIR JSON") from None
    if isinstance(data, str):
        try:
            doc = json.loads(data)
        except ValueError:
            return _ndjson_entries(data)
    else:
        doc = data
    if not _is_resource(doc):
        raise NotFHIR()
    if doc["resourceType"] != "Bundle":
        return [Entry("resource", doc)]
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise NotFHIR("Bundle 的 entry 不是列表")
    out = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not _is_resource(entry.get("resource")):
            out.append(Entry(f"entry {n}", None, error="Bundle 条目没有资源"))
        else:
            out.append(Entry(f"entry {n}", entry["resource"], full_url=str(entry.get("fullUrl") or "")))
    return out


def _ndjson_entry(n: int, line: str) -> Entry | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return Entry(f"line {n}", None, error="该行不是 JSON")
    if _is_resource(value):
        return Entry(f"line {n}", value)
    return Entry(f"line {n}", None, error="该行不是 FHIR 资源")


def _ndjson_entries(text: str) -> list[Entry]:
    out = [e for e in (_ndjson_entry(n, line) for n, line in enumerate(text.splitlines(), 1)) if e is not None]
    if not any(e.resource is not None for e in out):
        raise NotFHIR()
    return out


def _validation_reason(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or '(资源)'}: {e.get('msg', '')}" for e in errors()[:3]]
        more = len(errors()) - 3
        return "不符合 FHIR R4：" + "；".join(parts) + (f"（另有 {more} 处）" if more > 0 else "")
    return f"不符合 FHIR R4：{exc}"


def validate(entries: Iterable[Entry]) -> None:
    """Mark every imported resource that the FHIR R4 model refuses (CPU-bound: run it in a thread)."""
    from fhir.resources.R4B import get_fhir_model_class

    for entry in entries:
        if entry.error or entry.rtype not in IMPORTED:
            continue
        try:
            get_fhir_model_class(entry.rtype).model_validate(entry.resource)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            entry.error = _validation_reason(exc)


# -- small FHIR readers ----------------------------------------------------------------------------------------------
_CJK = re.compile(r"[\u3400-\u9fff]")
_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def _text(concept: Any) -> str:
    """A CodeableConcept's words: its text, or the first coding's display, or code."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _human_name(names: Any) -> str:
    if not names:
        return ""
    chosen = next((n for n in names if n.get("use") == "official"), names[0])
    if chosen.get("text"):
        return str(chosen["text"]).strip()
    family, given = chosen.get("family") or "", [g for g in chosen.get("given") or [] if g]
    if _CJK.search(family + "".join(given)):
        return family + "".join(given)  # Chinese names: family name first, no spaces
    return " ".join(given + ([family] if family else []))


def _date(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None  # partial dates (a year, a month) are not a birth date we can show


def _datetime(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        day = _date(text if len(text) >= 10 else None)
        if day is None:
            try:  # YYYY or YYYY-MM
                parts = [int(p) for p in text.split("-")[:2]]
                day = date(parts[0], parts[1] if len(parts) > 1 else 1, 1)
            except ValueError:
                return None
        moment = datetime(day.year, day.month, day.day)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _merge_lines(old: str, new: Iterable[str]) -> str:
    lines = [x for x in old.split("；") if x] if old else []
    for item in new:
        if item and item not in lines:
            lines.append(item)
    return "；".join(lines)


# -- the import ------------------------------------------------------------------------------------------------------
class FHIRImporter:
    """One import run. ``his`` (an ``integrations.his.HISClient``) fetches photos given by URL."""

    def __init__(self, *, secret_key: str | None = None, photos: PhotoStep | None = enrol_with_vision, his=None,
                 progress: Progress | None = None, photo_workers: int = 2, actor_label: str = "his-import"):
        self.secret_key = secret_key
        self.his = his
        self.progress = progress
        self.actor_label = actor_label
        self.report = ImportReport()
        self.refs: dict[str, tuple[str, str]] = {}  # fullUrl or Type/id -> (type, id)
        self.context: dict[tuple[str, str], dict] = {}  # (type, id) -> Organization / Binary resource
        self.done = 0
        self.total: int | None = None
        self._photos = PhotoQueue(photos, self.report, source="his", workers=photo_workers)

    async def close(self) -> ImportReport:
        """Wait for the queued photos; the final report."""
        await self._photos.close()
        await audit.record("his.import", "his", "fhir", actor_label=self.actor_label,
                           changes=self.report.as_dict() | {"issues": len(self.report.issues)})
        return self.report

    # -- batches --------------------------------------------------------------------------------------------------
    async def add(self, entries: list[Entry]) -> None:
        """Validate and store one batch (a file, or one page from a server)."""
        await asyncio.to_thread(validate, entries)
        for entry in entries:
            if entry.resource is None:
                continue
            rid = entry.resource.get("id")
            if rid:
                key = (entry.rtype, str(rid))
                self.refs[f"{entry.rtype}/{rid}"] = key
                if entry.full_url:
                    self.refs[entry.full_url] = key
                if entry.rtype in CONTEXT:
                    self.context[key] = entry.resource
        for entry in entries:  # progress counts every entry read, stored or not
            if entry.resource is None:
                self._fail(entry, entry.error)
                self._step()
            elif entry.rtype not in IMPORTED:
                if entry.rtype not in CONTEXT:
                    self.report.skipped[entry.rtype] += 1
                self._step()
        for rtype in IMPORTED:
            for entry in entries:
                if entry.rtype == rtype:
                    await self._one(entry)
                    self._step()

    def _step(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    def _fail(self, entry: Entry, reason: str) -> None:
        self.report.issues.append(Issue(entry.where, entry.label, reason))
        if entry.rtype in IMPORTED:
            self.report.counts[entry.rtype]["failed"] += 1

    async def _one(self, entry: Entry) -> None:
        if entry.error:
            self._fail(entry, entry.error)
            return
        if not entry.resource.get("id"):
            self._fail(entry, "资源缺少 id，无法按 HIS 编号更新")
            return
        store = {"Practitioner": self._practitioner, "Patient": self._patient, "Encounter": self._encounter,
                 "Condition": self._condition, "MedicationRequest": self._medication}[entry.rtype]
        try:
            outcome = await store(entry.resource)
        except AppError as exc:
            self._fail(entry, exc.message)
        except IntegrityError:
            log.warning("import of %s hit a uniqueness conflict", entry.label, exc_info=True)
            self._fail(entry, "与已有数据冲突（可能正被另一导入同时写入）")
        else:
            self.report.counts[entry.rtype][outcome] += 1

    def _ref(self, reference: Any, rtype: str) -> str | None:
        """The id of the ``rtype`` resource a Reference points to (in this import or on the HIS), if it does."""
        text = (reference or {}).get("reference") if isinstance(reference, dict) else None
        if not text:
            return None
        if text in self.refs:
            found_type, found_id = self.refs[text]
            return found_id if found_type == rtype else None
        if text.startswith("urn:"):
            return None  # a bundle-local reference to something not in the bundle
        match = _REF.search(text.split("?")[0])
        return match.group(2) if match and match.group(1) == rtype else None

    # -- resources ------------------------------------------------------------------------------------------------
    async def _practitioner(self, r: dict) -> str:
        specialties = [t for t in (_text(q.get("code")) for q in r.get("qualification") or []) if t]
        values = {"name": _human_name(r.get("name"))[:64], "specialties": specialties,
                  "active": r.get("active", True) is not False}
        existing = await Practitioner.get_or_none(his_id=r["id"])
        if existing:
            await existing.update_from_dict(values).save()
            return "updated"
        await Practitioner.create(his_id=r["id"], **values)
        return "created"

    def _id_card(self, r: dict) -> str | None:
        for ident in r.get("identifier") or []:
            codes = {c.get("code") for c in (ident.get("type") or {}).get("coding") or []}
            if ident.get("value") and (ident.get("system") in ID_CARD_SYSTEMS or codes & ID_CARD_TYPES):
                return ident["value"]
        return None

    async def _patient(self, r: dict) -> str:
        phones = [t for t in r.get("telecom") or [] if t.get("system") in ("phone", "sms") and t.get("value")]
        phone = next((t for t in phones if t.get("use") == "mobile"), phones[0] if phones else None)
        values: dict[str, Any] = {"name": _human_name(r.get("name")), "sex": SEX.get(r.get("gender"), "unknown"),
                                  "birth_date": _date(r.get("birthDate"))}
        if phone:
            values["phone"] = phone["value"]
        id_card = self._id_card(r)
        if id_card:
            if not self.secret_key:
                raise Unprocessable("未配置 SECRET_KEY，无法保存身份证号")
            values["id_card"] = id_card
        existing = await Patient.get_or_none(his_id=r["id"])
        if existing:
            patient = await patients.update_patient(existing, secret_key=self.secret_key, **values)
            outcome = "updated"
        else:
            patient = await patients.new_patient(secret_key=self.secret_key, his_id=r["id"],
                                                 actor_label=self.actor_label, **values)
            outcome = "created"
        photo = next((p for p in r.get("photo") or [] if p.get("data") or p.get("url")), None)
        if photo:
            await self._photos.put(patient, f"Patient/{r['id']}", lambda: self._photo_bytes(photo))
        return outcome

    async def _encounter(self, r: dict) -> str:
        patient = await self._patient_of(r.get("subject"))
        doctor, doctor_name = None, ""
        for participant in r.get("participant") or []:
            pid = self._ref(participant.get("individual"), "Practitioner")
            if pid or (participant.get("individual") or {}).get("display"):
                doctor = await Practitioner.get_or_none(his_id=pid) if pid else None
                doctor_name = (participant.get("individual") or {}).get("display", "") or ""
                break
        provider = r.get("serviceProvider") or {}
        org = self.context.get(("Organization", self._ref(provider, "Organization") or ""))
        hospital = (org or {}).get("name") or provider.get("display") or ""
        locations = [(loc.get("location") or {}).get("display") for loc in r.get("location") or []]
        department = _text(r.get("serviceType")) or next((x for x in locations if x), "") or ""
        reasons = [_text(c) for c in r.get("reasonCode") or []]
        reasons += [(d.get("condition") or {}).get("display", "") for d in r.get("diagnosis") or []]
        klass = r.get("class") or {}
        period = r.get("period") or {}
        values = {"patient": patient, "hospital_name": hospital[:128], "department": department[:64],
                  "practitioner": doctor, "doctor_name": doctor_name[:64],
                  "kind": ENCOUNTER_KINDS.get(klass.get("code"), str(klass.get("code") or "").lower())[:32],
                  "status": str(r.get("status") or "")[:16],
                  "start_at": _datetime(period.get("start")), "end_at": _datetime(period.get("end"))}
        existing = await Visit.get_or_none(his_id=r["id"])
        if existing:
            values["diagnosis"] = _merge_lines(existing.diagnosis, reasons)
            await existing.update_from_dict(values).save()
            return "updated"
        await Visit.create(his_id=r["id"], diagnosis=_merge_lines("", reasons), **values)
        return "created"

    async def _patient_of(self, reference: Any) -> Patient:
        pid = self._ref(reference, "Patient")
        patient = await Patient.get_or_none(his_id=pid) if pid else None
        if patient is None:
            shown = (reference or {}).get("reference", "") if isinstance(reference, dict) else ""
            raise Unprocessable(f"找不到所指的患者（{shown or '未指明'}）", code="patient_not_found")
        return patient

    async def _attach(self, r: dict, *, what: str, text: str, kind: str) -> str:
        """Add a diagnosis or medication to the visit it belongs to, or keep it as a record of the patient."""
        if not text:
            raise Unprocessable("没有可读的名称或编码")
        visit_id = self._ref(r.get("encounter"), "Encounter")
        visit = await Visit.get_or_none(his_id=visit_id) if visit_id else None
        if visit is not None:
            before = getattr(visit, what)
            setattr(visit, what, _merge_lines(before, [text]))
            await visit.save(update_fields=[what, "updated_at"])
            return "updated" if text in before.split("；") else "created"
        patient = await self._patient_of(r.get("subject"))
        his_id = f"{r['resourceType']}/{r['id']}"
        async with in_transaction() as conn:
            record = await PatientRecord.filter(his_id=his_id).using_db(conn).select_for_update().first()
            if record:
                record.title, record.data = text[:128], {"text": text}
                await record.save(using_db=conn)
                return "updated"
            await PatientRecord.create(his_id=his_id, patient=patient, kind=kind, title=text[:128],
                                       data={"text": text}, source="his", using_db=conn)
        return "created"

    async def _condition(self, r: dict) -> str:
        return await self._attach(r, what="diagnosis", text=_text(r.get("code")), kind="diagnosis")

    async def _medication(self, r: dict) -> str:
        name = _text(r.get("medicationCodeableConcept")) or \
            ((r.get("medicationReference") or {}).get("display") or "")
        dosage = "，".join(d.get("text", "") for d in r.get("dosageInstruction") or [] if d.get("text"))
        return await self._attach(r, what="medication", text=f"{name}（{dosage}）" if name and dosage else name,
                                  kind="medication")

    # -- photos ---------------------------------------------------------------------------------------------------
    async def _photo_bytes(self, photo: dict) -> bytes:
        if photo.get("data"):
            try:
                image = base64.b64decode(photo["data"], validate=True)
            except (binascii.Error, ValueError):
                raise Unprocessable("照片数据不是有效的 base64", code="bad_image") from None
        else:
            url = str(photo["url"])
            binary = self.context.get(("Binary", self._ref({"reference": url}, "Binary") or ""))
            if binary and binary.get("data"):
                return await self._photo_bytes({"data": binary["data"]})
            if self.his is None:
                raise Unprocessable(f"照片为链接（{url}），但未配置 HIS_BASE_URL，无法获取", code="photo_unreachable")
            image = await self.his.fetch_binary(url)
        if len(image) > MAX_PHOTO:
            raise Unprocessable("照片超过 10 MB", code="bad_image")
        return image


async def import_bundle(data: bytes | str | dict, *, progress: Progress | None = None, secret_key: str | None = None,
                        photos: PhotoStep | None = enrol_with_vision, his=None, photo_workers: int = 2) -> ImportReport:
    """Import a Bundle, a single resource or NDJSON. Raises ``NotFHIR`` (nothing stored) when it is not FHIR."""
    entries = await asyncio.to_thread(read_entries, data)
    importer = FHIRImporter(secret_key=secret_key, photos=photos, his=his, progress=progress,
                            photo_workers=photo_workers)
    importer.total = len(entries)
    try:
        await importer.add(entries)
    finally:
        report = await importer.close()
    return report


def _streamable_ndjson(path: Path) -> bool:
    """NDJSON whose first line is a resource (not a one-line Bundle): read in batches, not whole."""
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                try:
                    first = json.loads(raw.decode("utf-8-sig"))
                except ValueError:
                    return False
                return _is_resource(first) and first["resourceType"] != "Bundle"
    return False


async def import_file(path: Path, *, batch: int = 500, progress: Progress | None = None,
                      secret_key: str | None = None, photos: PhotoStep | None = enrol_with_vision,
                      his=None, photo_workers: int = 2) -> ImportReport:
    """Import a file. NDJSON (a bulk export can be large) is read and stored ``batch`` lines at a time, so memory
    stays flat; a Bundle is read whole. References across batches resolve by HIS id (``Patient/123``)."""
    path = Path(path)
    if not await asyncio.to_thread(_streamable_ndjson, path):
        data = await asyncio.to_thread(path.read_bytes)
        return await import_bundle(data, progress=progress, secret_key=secret_key, photos=photos, his=his,
                                   photo_workers=photo_workers)

    def count_lines() -> int:
        with path.open("rb") as f:
            return sum(1 for raw in f if raw.strip())

    importer = FHIRImporter(secret_key=secret_key, photos=photos, his=his, progress=progress,
                            photo_workers=photo_workers)
    importer.total = await asyncio.to_thread(count_lines)
    with path.open("r", encoding="utf-8-sig", errors="replace") as f:
        lines = enumerate(f, 1)

        def next_batch() -> list[Entry]:
            out: list[Entry] = []
            for n, line in lines:
                entry = _ndjson_entry(n, line)
                if entry is not None:
                    out.append(entry)
                    if len(out) >= batch:
                        break
            return out

        try:
            while entries := await asyncio.to_thread(next_batch):
                await importer.add(entries)
        finally:
            report = await importer.close()
    return report


async def import_from_server(his, *, types: Iterable[str] = ("Organization", "Practitioner", "Patient", "Encounter"),
                             params: dict | None = None, progress: Progress | None = None,
                             secret_key: str | None = None, photos: PhotoStep | None = enrol_with_vision,
                             photo_workers: int = 2) -> ImportReport:
    """Import every resource of ``types`` from the HIS, page by page (each page is stored before the next is asked)."""
    importer = FHIRImporter(secret_key=secret_key, photos=photos, his=his, progress=progress,
                            photo_workers=photo_workers)
    try:
        for rtype in types:
            page = 0
            async for bundle in his.pages(rtype, params):
                page += 1
                if page == 1 and isinstance(bundle.get("total"), int):  # each type announces its own
                    importer.total = (importer.total or 0) + bundle["total"]
                entries = [Entry(f"{rtype} page {page}", e["resource"], full_url=str(e.get("fullUrl") or ""))
                           for e in bundle.get("entry") or []
                           if isinstance(e, dict) and _is_resource(e.get("resource"))
                           and (e.get("search") or {}).get("mode", "match") == "match"]
                await importer.add(entries)
    finally:
        report = await importer.close()
    return report
