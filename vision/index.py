"""The face index: every stored embedding, decrypted into one in-memory matrix per server worker, for 1:N search.

Search is one matrix-vector product on L2-normalised float32 rows (cosine distance = 1 − dot): ~1–3 ms at
100,000 embeddings (``bench/face.py``). Several embeddings per patient are simply several rows.

Keeping workers in step: ``enrol`` and ``forget`` publish ``face.enrolled`` / ``face.forgotten``; every worker's
listener (``apply_event``, registered in ``app.register_listeners``) updates its matrix. The database stays the
truth, so a late or lost event cannot mislead a search: a match is confirmed against the database before it is
returned (a patient forgotten by another worker is never matched), and a miss compares the database with the
matrix and takes in what another process enrolled (e.g. an import command).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import numpy as np

from core.events import Event, EventBus
from vision import crypto
from vision.models import SOURCES, FaceEmbedding

log = logging.getLogger(__name__)

DIMENSIONS = crypto.DIMENSIONS


@dataclass(frozen=True)
class Match:
    patient_id: int
    distance: float  # cosine distance, 0 = identical; at most the threshold
    embedding_id: int = 0


class FaceIndex:
    """Rows of unit vectors with their embedding and patient ids. Not thread-safe: used from the event loop."""

    def __init__(self, capacity: int = 1024):
        self._matrix = np.zeros((capacity, DIMENSIONS), dtype=np.float32)
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._patients = np.zeros(capacity, dtype=np.int64)
        self._row_of: dict[int, int] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __contains__(self, embedding_id: int) -> bool:
        return embedding_id in self._row_of

    @property
    def max_id(self) -> int:
        return int(self._ids[: self.size].max()) if self.size else 0

    def ids(self) -> set[int]:
        return set(self._row_of)

    def replace(self, embedding_ids, patient_ids, matrix: np.ndarray) -> None:
        n = len(embedding_ids)
        capacity = max(1024, 1 << max(n, 1).bit_length())
        self._matrix = np.zeros((capacity, DIMENSIONS), dtype=np.float32)
        self._matrix[:n] = matrix
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._ids[:n] = embedding_ids
        self._patients = np.zeros(capacity, dtype=np.int64)
        self._patients[:n] = patient_ids
        self._row_of = {int(e): i for i, e in enumerate(self._ids[:n])}
        self.size = n

    def add(self, embedding_id: int, patient_id: int, vector: np.ndarray) -> None:
        if embedding_id in self._row_of:
            return
        if self.size == len(self._ids):  # grow by doubling: appends stay amortised O(1)
            grow = len(self._ids)
            self._matrix = np.concatenate([self._matrix, np.zeros((grow, DIMENSIONS), dtype=np.float32)])
            self._ids = np.concatenate([self._ids, np.zeros(grow, dtype=np.int64)])
            self._patients = np.concatenate([self._patients, np.zeros(grow, dtype=np.int64)])
        row = self.size
        self._matrix[row] = unit(vector)
        self._ids[row] = embedding_id
        self._patients[row] = patient_id
        self._row_of[embedding_id] = row
        self.size += 1

    def remove_ids(self, embedding_ids) -> None:
        for embedding_id in embedding_ids:
            row = self._row_of.pop(int(embedding_id), None)
            if row is None:
                continue
            last = self.size - 1
            if row != last:  # move the last row into the hole
                self._matrix[row] = self._matrix[last]
                self._ids[row] = self._ids[last]
                self._patients[row] = self._patients[last]
                self._row_of[int(self._ids[row])] = row
            self.size = last

    def remove_patient(self, patient_id: int) -> None:
        rows = np.nonzero(self._patients[: self.size] == patient_id)[0]
        self.remove_ids([int(self._ids[r]) for r in rows])

    def nearest(self, vector: np.ndarray) -> Match | None:
        """The closest row, whatever its distance."""
        if not self.size:
            return None
        scores = self._matrix[: self.size] @ unit(vector)
        row = int(np.argmax(scores))
        return Match(patient_id=int(self._patients[row]), distance=float(1.0 - scores[row]),
                     embedding_id=int(self._ids[row]))


def limit_blas_threads() -> None:
    """One BLAS thread per server process. A 1:N search is one memory-bound matrix-vector product; OpenBLAS's
    threads only wait for each other on a machine whose cores the server workers and embedding processes already
    share (measured at 100,000 rows with other work running: ~2 ms CPU single-threaded, ~7 ms with two threads)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def unit(vector) -> np.ndarray:
    v = np.asarray(getattr(vector, "vector", vector), dtype=np.float32).reshape(-1)
    if v.shape != (DIMENSIONS,):
        raise ValueError(f"a face vector has {DIMENSIONS} values, not {v.shape[0]}")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("a face vector must be finite and non-zero")
    return v / norm


# -- this worker's index and its settings (set by vision.runtime.start) -------------------------------------------
INDEX = FaceIndex()


@dataclass
class _Config:
    key: bytes | None = None
    threshold: float = 0.07
    events: EventBus | None = None
    # Serialises loads and catch-ups (each awaits the database between reading and changing the matrix).
    lock: asyncio.Lock | None = None
    # Stored rows this FACE_KEY cannot open: counted as known, so they are not fetched again at every miss.
    unreadable: set = field(default_factory=set)


_config = _Config()


def configure(*, key: bytes | None, threshold: float, events: EventBus | None) -> None:
    _config.key, _config.threshold, _config.events = key, threshold, events
    _config.lock = asyncio.Lock()  # made here, inside the loop that will use it
    _config.unreadable = set()


def _key() -> bytes:
    if _config.key is None or _config.lock is None:
        raise RuntimeError("the face index is not started: call vision.runtime.start(settings) first")
    return _config.key


def _lock() -> asyncio.Lock:
    _key()
    return _config.lock


async def _decrypt_rows(rows: list[tuple[int, int, bytes]]) -> tuple[list[int], list[int], np.ndarray]:
    key = _key()

    def decrypt():
        ids, patients, vectors = [], [], []
        for embedding_id, patient_id, blob in rows:
            try:
                vectors.append(unit(crypto.unseal(blob, key)))
            except (crypto.UndecryptableEmbedding, ValueError):
                log.error("face embedding %s does not decrypt with this FACE_KEY; left out of the index", embedding_id)
                _config.unreadable.add(embedding_id)
                continue
            ids.append(embedding_id)
            patients.append(patient_id)
        matrix = np.vstack(vectors) if vectors else np.zeros((0, DIMENSIONS), dtype=np.float32)
        return ids, patients, matrix

    # Many rows (the start-up load) are decrypted off the event loop.
    return await asyncio.to_thread(decrypt) if len(rows) > 500 else decrypt()


async def load_index() -> int:
    """Read every embedding into this worker's matrix (at start); returns how many."""
    async with _lock():
        rows = await FaceEmbedding.all().values_list("id", "patient_id", "vector")
        _config.unreadable = set()
        ids, patients, matrix = await _decrypt_rows(rows)
        INDEX.replace(ids, patients, matrix)
    log.info("face index loaded: %d embeddings", len(INDEX))
    return len(INDEX)


async def catch_up() -> None:
    """Bring the matrix in line with the database: rows added elsewhere in, rows deleted elsewhere out."""
    async with _lock():
        seen = max(INDEX.max_id, max(_config.unreadable, default=0))
        newer = await FaceEmbedding.filter(id__gt=seen).values_list("id", "patient_id", "vector")
        ids, patients, matrix = await _decrypt_rows(newer)
        for embedding_id, patient_id, vector in zip(ids, patients, matrix):
            INDEX.add(embedding_id, patient_id, vector)
        if await FaceEmbedding.all().count() != len(INDEX) + len(_config.unreadable):
            stored = set(await FaceEmbedding.all().values_list("id", flat=True))
            INDEX.remove_ids(INDEX.ids() - stored)
            _config.unreadable &= stored
            missing = stored - INDEX.ids() - _config.unreadable
            if missing:
                rows = await FaceEmbedding.filter(id__in=list(missing)).values_list("id", "patient_id", "vector")
                ids, patients, matrix = await _decrypt_rows(rows)
                for embedding_id, patient_id, vector in zip(ids, patients, matrix):
                    INDEX.add(embedding_id, patient_id, vector)


async def identify(vec) -> Match | None:
    """The enrolled patient whose face is nearest to ``vec`` (a ``FaceVector`` or 128 floats), if within
    ``FACE_THRESHOLD``; otherwise None."""
    query = unit(vec)
    caught_up = False
    while True:
        match = INDEX.nearest(query)
        if match is None or match.distance > _config.threshold:
            if caught_up:
                return None
            await catch_up()  # something enrolled by another process whose event has not arrived yet?
            caught_up = True
            continue
        if await FaceEmbedding.exists(id=match.embedding_id):
            return match
        INDEX.remove_ids([match.embedding_id])  # forgotten meanwhile: never match deleted biometrics


async def enrol(patient_id: int, vec, source: str, *, events: EventBus | None = None,
                using_db=None) -> FaceEmbedding:
    """Store one more embedding of the patient's face (encrypted) and add it to every worker's index.

    ``vec``: a ``FaceVector`` (its quality is kept) or 128 floats. ``source``: kiosk | his | import."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    vector = unit(vec)
    row = await FaceEmbedding.create(patient_id=patient_id, vector=crypto.seal(vector, _key()), source=source,
                                     quality=float(getattr(vec, "quality", 0.0) or 0.0), using_db=using_db)
    INDEX.add(row.id, patient_id, vector)
    bus = events or _config.events
    if bus is not None:
        await bus.publish("face.enrolled", {"embedding_id": row.id, "patient_id": patient_id, "source": source})
    return row


async def forget(patient_id: int, *, events: EventBus | None = None, using_db=None) -> int:
    """Delete every embedding of the patient (their biometrics), here and in every worker; returns how many."""
    query = FaceEmbedding.filter(patient_id=patient_id)
    deleted = await (query.using_db(using_db) if using_db is not None else query).delete()
    INDEX.remove_patient(patient_id)
    bus = events or _config.events
    if bus is not None:
        await bus.publish("face.forgotten", {"patient_id": patient_id})
    return deleted


async def apply_event(event: Event) -> None:
    """Listener (every worker): ``face.enrolled`` adds that row, ``face.forgotten`` removes the patient's rows."""
    if _config.key is None:
        return  # faces not started in this process
    if event.name == "face.forgotten":
        INDEX.remove_patient(int(event.data["patient_id"]))
    elif event.name == "face.enrolled":
        embedding_id = int(event.data["embedding_id"])
        if embedding_id in INDEX:
            return
        async with _lock():
            rows = await FaceEmbedding.filter(id=embedding_id).values_list("id", "patient_id", "vector")
            ids, patients, matrix = await _decrypt_rows(rows)
            for eid, pid, vector in zip(ids, patients, matrix):
                INDEX.add(eid, pid, vector)
