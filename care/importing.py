"""What the patient imports share: the per-record report and the photo queue.

Photos are embedded by a pluggable step (``vision`` by default: embed off the event loop, then enrol in the face
index). They run in a few workers beside the import, behind a bounded queue, so the records keep flowing while faces
are embedded, and a photo that fails is listed in the report without failing its patient.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from core.errors import AppError, ServiceBusy
from care.models import Patient

log = logging.getLogger(__name__)

# patient, image bytes, source (his | import) -> enrolled, or raises an AppError saying why not
PhotoStep = Callable[[Patient, bytes, str], Awaitable[None]]
Progress = Callable[[int, "int | None"], None]
RECORD_TYPES = ("Practitioner", "Patient", "Encounter", "Condition", "MedicationRequest")


async def enrol_with_vision(patient: Patient, image: bytes, source: str) -> None:
    """Embed the photo and add it to the face index (``vision.faces.FaceError`` when it has no usable face).

    Needs ``vision.runtime.start(settings)`` in this process (the app and the ``care`` commands do it)."""
    from vision import faces, index  # a sibling domain, reached only when photos are imported

    for attempt in range(30):  # the embedding queue is bounded: an import waits for room rather than fail
        try:
            vec = await faces.embed(image)
            break
        except ServiceBusy:
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
    else:
        raise ServiceBusy("人脸服务繁忙，照片未登记")
    await index.enrol(patient.id, vec, source=source)


@dataclass
class Issue:
    where: str  # "entry 3", "line 7", "row 12"
    resource: str  # "Patient/123", a patient number, or the resource type when there is no id
    reason: str  # Chinese, for the people who run the import
    kind: str = "failed"  # failed: not stored | photo: the record is stored, its photo is not enrolled

    def as_dict(self) -> dict:
        return {"where": self.where, "resource": self.resource, "reason": self.reason, "kind": self.kind}


@dataclass
class ImportReport:
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # type -> created/updated/failed
    skipped: Counter = field(default_factory=Counter)  # resource types not imported
    photos: Counter = field(default_factory=Counter)  # enrolled / unchanged / failed
    issues: list[Issue] = field(default_factory=list)

    @property
    def failed(self) -> list[Issue]:
        return [i for i in self.issues if i.kind == "failed"]

    def as_dict(self) -> dict:
        return {"counts": {t: dict(c) for t, c in self.counts.items()}, "skipped": dict(self.skipped),
                "photos": dict(self.photos), "issues": [i.as_dict() for i in self.issues]}

    def lines(self) -> list[str]:
        out = []
        for rtype in RECORD_TYPES:
            c = self.counts.get(rtype)
            if c:
                out.append(f"{rtype}: 新增 {c['created']}，更新 {c['updated']}，失败 {c['failed']}")
        if self.photos:
            out.append(f"照片: 登记 {self.photos['enrolled']}，未变 {self.photos['unchanged']}，"
                       f"失败 {self.photos['failed']}")
        if self.skipped:
            out.append("未导入的资源类型: " + "，".join(f"{t} {n}" for t, n in sorted(self.skipped.items())))
        for issue in self.issues:
            label = "失败" if issue.kind == "failed" else "照片"
            out.append(f"[{label}] {issue.where} {issue.resource}: {issue.reason}")
        return out


class PhotoQueue:
    """Photos waiting to be embedded, worked off by ``workers`` tasks; results go into ``report``."""

    def __init__(self, step: PhotoStep | None, report: ImportReport, *, source: str, workers: int = 2):
        self.step, self.report, self.source = step, report, source
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=workers * 2)
        self._workers = [asyncio.create_task(self._work()) for _ in range(workers)] if step else []

    async def put(self, patient: Patient, where: str, read: Callable[[], Awaitable[bytes]]) -> None:
        """Queue the patient's photo; ``read`` gives its bytes (fetched in the worker, not in the import loop)."""
        if self.step is not None:
            await self._queue.put((patient, where, read))

    async def close(self) -> None:
        for _ in self._workers:
            await self._queue.put(None)
        await asyncio.gather(*self._workers)
        self._workers = []

    async def _work(self) -> None:
        while (job := await self._queue.get()) is not None:
            patient, where, read = job
            try:
                await self._enrol(patient, await read())
            except AppError as exc:
                self._failed(patient, where, exc.message)
            except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the import
                log.exception("photo of %s failed", patient.number)
                self._failed(patient, where, f"照片处理出错：{type(exc).__name__}")

    def _failed(self, patient: Patient, where: str, reason: str) -> None:
        self.report.photos["failed"] += 1
        self.report.issues.append(Issue(where, patient.number, reason, "photo"))

    async def _enrol(self, patient: Patient, image: bytes) -> None:
        digest = hashlib.sha256(image).hexdigest()
        if digest == patient.his_photo_hash:  # imported before: one face, one embedding
            self.report.photos["unchanged"] += 1
            return
        await self.step(patient, image, self.source)
        patient.his_photo_hash = digest
        await patient.save(update_fields=["his_photo_hash", "updated_at"])
        self.report.photos["enrolled"] += 1
