"""The face index: encrypted storage, 1:N search, enrol / identify / forget, and every worker kept in step.

Vectors here are synthetic (no photos, no embedding processes); tests/test_vision_photos.py uses real photos.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from core.events import EventBus
from core.redis import create_redis
from core.settings import Settings
from vision import crypto, index, runtime
from vision.index import FaceIndex, Match
from vision.models import FaceEmbedding
from vision.setup import WeightsMissing

rng = np.random.default_rng(6)


def random_unit(n: int = 1) -> np.ndarray:
    v = rng.standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(vector: np.ndarray, distance: float) -> np.ndarray:
    """A unit vector at about ``distance`` (cosine) from ``vector``."""
    noise = random_unit()[0]
    noise -= (noise @ vector) * vector
    noise /= np.linalg.norm(noise)
    angle = np.arccos(1.0 - distance)
    return (np.cos(angle) * vector + np.sin(angle) * noise).astype(np.float32)


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


# -- the matrix alone -------------------------------------------------------------------------------------------
def test_nearest_row_wins_and_removal_keeps_the_others_findable():
    idx = FaceIndex(capacity=4)  # small on purpose: adding 50 rows grows it several times
    vectors = random_unit(50)
    for i, v in enumerate(vectors):
        idx.add(1000 + i, 1 + i // 2, v)  # two embeddings per patient
    assert len(idx) == 50
    hit = idx.nearest(near(vectors[17], 0.02))
    assert (hit.patient_id, hit.embedding_id) == (9, 1017) and hit.distance == pytest.approx(0.02, abs=1e-3)

    idx.remove_patient(9)  # rows 16 and 17
    assert len(idx) == 48 and 1016 not in idx and 1017 not in idx
    assert idx.nearest(vectors[17]).patient_id != 9
    for i in (0, 15, 18, 49):  # rows moved into the holes are still found under their own ids
        assert idx.nearest(vectors[i]).embedding_id == 1000 + i


def test_a_vector_must_have_128_finite_values():
    idx = FaceIndex()
    with pytest.raises(ValueError):
        idx.add(1, 1, np.ones(64, dtype=np.float32))
    with pytest.raises(ValueError):
        idx.add(1, 1, np.zeros(128, dtype=np.float32))
    assert len(idx) == 0


# -- encryption at rest -------------------------------------------------------------------------------------------
def test_sealed_vector_is_not_the_raw_floats_and_needs_the_key():
    settings = Settings(face_key="site-face-key", secret_key="s")
    key = crypto.derive_key(settings)
    vector = random_unit()[0]
    blob = crypto.seal(vector, key)
    assert vector.tobytes() not in blob
    assert blob != crypto.seal(vector, key)  # a fresh nonce each time
    np.testing.assert_array_equal(crypto.unseal(blob, key), vector)
    with pytest.raises(crypto.UndecryptableEmbedding):
        crypto.unseal(blob, crypto.derive_key(settings.with_(face_key="another-key")))
    tampered = bytearray(blob)
    tampered[20] ^= 1
    with pytest.raises(crypto.UndecryptableEmbedding):
        crypto.unseal(bytes(tampered), key)


# -- enrol / identify / forget on a database ---------------------------------------------------------------------
@pytest.fixture
async def faces(db):
    """Faces started on the test database, with an in-process event bus; yields (settings, bus)."""
    settings = db.with_(face_key="test-face-key", face_threshold=0.07)
    redis = create_redis(Settings(redis_url="", secret_key="t"))
    bus = EventBus(redis)
    await runtime.start(settings, bus)
    yield settings, bus
    await runtime.stop()
    await redis.aclose()


async def patient(name: str = "张三"):
    from care.patients import new_patient

    return await new_patient(name=name)


async def test_enrol_stores_ciphertext_and_identify_finds_the_patient(faces):
    settings, bus = faces
    zhang, li = await patient("张三"), await patient("李四")
    face_zhang, face_li = random_unit(2)
    row = await index.enrol(zhang.id, face_zhang, "kiosk")
    await index.enrol(li.id, face_li, "his")

    stored = await FaceEmbedding.get(id=row.id)
    assert face_zhang.tobytes() not in bytes(stored.vector)
    np.testing.assert_array_equal(crypto.unseal(stored.vector, crypto.derive_key(settings)), face_zhang)
    assert (stored.source, stored.patient_id) == ("kiosk", zhang.id)

    match = await index.identify(near(face_zhang, 0.03))
    assert isinstance(match, Match) and match.patient_id == zhang.id and match.distance == pytest.approx(0.03, abs=1e-3)
    assert await index.identify(near(face_zhang, 0.2)) is None  # beyond FACE_THRESHOLD: a stranger
    assert await index.identify(random_unit()[0]) is None

    events = [(e.name, e.data) for e in await bus.read_after("0-0")]
    assert ("face.enrolled", {"embedding_id": row.id, "patient_id": zhang.id, "source": "kiosk"}) in events
    with pytest.raises(ValueError):
        await index.enrol(zhang.id, face_zhang, "selfie")


async def test_forget_removes_every_embedding_of_the_patient(faces):
    _settings, bus = faces
    zhang, li = await patient("张三"), await patient("李四")
    first, second, other = random_unit(3)
    await index.enrol(zhang.id, first, "kiosk")
    await index.enrol(zhang.id, second, "his")  # several photos of one person
    await index.enrol(li.id, other, "kiosk")
    assert (await index.identify(near(second, 0.02))).patient_id == zhang.id

    assert await index.forget(zhang.id) == 2
    assert await FaceEmbedding.filter(patient_id=zhang.id).count() == 0
    assert await index.identify(near(first, 0.02)) is None
    assert await index.identify(near(second, 0.02)) is None
    assert (await index.identify(near(other, 0.02))).patient_id == li.id
    assert ("face.forgotten", {"patient_id": zhang.id}) in [(e.name, e.data) for e in await bus.read_after("0-0")]


async def test_deleting_a_patient_deletes_their_biometrics(faces):
    from care.patients import delete_patient

    zhang = await patient()
    face = random_unit()[0]
    await index.enrol(zhang.id, face, "import")
    await delete_patient(zhang)
    assert await FaceEmbedding.all().count() == 0
    assert await index.identify(face) is None


async def test_the_database_stays_the_truth_when_events_are_late(faces):
    """What another process did, without its event reaching us yet: its enrolment is found, its deletion is never
    matched."""
    settings, _bus = faces
    key = crypto.derive_key(settings)
    zhang = await patient()
    face = random_unit()[0]
    # Enrolled by another process (e.g. an import command): the row exists, this worker's matrix lacks it.
    await FaceEmbedding.create(patient_id=zhang.id, vector=crypto.seal(face, key), source="import")
    assert (await index.identify(near(face, 0.02))).patient_id == zhang.id
    # Forgotten by another process: rows gone, this worker's matrix still has them.
    await FaceEmbedding.filter(patient_id=zhang.id).delete()
    assert await index.identify(face) is None


async def test_the_index_loads_at_start_and_skips_rows_of_another_key(faces, caplog):
    settings, bus = faces
    zhang, li = await patient("张三"), await patient("李四")
    face_zhang, face_li = random_unit(2)
    await index.enrol(zhang.id, face_zhang, "kiosk")
    foreign = crypto.derive_key(settings.with_(face_key="a key from elsewhere"))
    await FaceEmbedding.create(patient_id=li.id, vector=crypto.seal(face_li, foreign), source="import")
    await runtime.stop()
    await runtime.start(settings, bus)  # a restart: everything comes from the database
    assert len(index.INDEX) == 1
    assert (await index.identify(face_zhang)).patient_id == zhang.id
    assert await index.identify(face_li) is None
    assert "does not decrypt" in caplog.text
    caplog.clear()
    assert await index.identify(face_li) is None  # known unreadable: not fetched and tried again at every miss
    assert "does not decrypt" not in caplog.text


async def test_every_worker_follows_enrolments_and_deletions(faces, redis_client):
    """This worker's listener (registered as app.register_listeners does) applies another worker's events."""
    settings, _ = faces
    key = crypto.derive_key(settings)
    this_worker, other_worker = EventBus(redis_client, block_ms=100), EventBus(redis_client, block_ms=100)
    this_worker.on("face.enrolled", "face.forgotten")(index.apply_event)
    await this_worker.start()
    try:
        zhang = await patient()
        face = random_unit()[0]
        # The other worker stores a row and announces it (what its enrol does).
        row = await FaceEmbedding.create(patient_id=zhang.id, vector=crypto.seal(face, key), source="kiosk")
        await other_worker.publish("face.enrolled", {"embedding_id": row.id, "patient_id": zhang.id})
        await until(lambda: row.id in index.INDEX)
        assert index.INDEX.nearest(face).patient_id == zhang.id

        await FaceEmbedding.filter(patient_id=zhang.id).delete()
        await other_worker.publish("face.forgotten", {"patient_id": zhang.id})
        await until(lambda: row.id not in index.INDEX)
    finally:
        await this_worker.stop()


# -- start-up without weights -------------------------------------------------------------------------------------
async def test_start_refuses_without_weights_instead_of_downloading(tmp_path, monkeypatch):
    monkeypatch.setattr("vision.setup.packaged_weights", lambda: None)  # as if face-recognition-models were absent
    settings = Settings(var_dir=tmp_path, secret_key="s", deepface_home=str(tmp_path / "empty"))
    with pytest.raises(WeightsMissing) as raised:
        await runtime.start(settings)
    assert "prepare-weights" in str(raised.value)
    assert "dlib_face_recognition_resnet_model_v1.dat" in str(raised.value)


async def test_the_served_app_keeps_its_face_index_in_step(database_url, serve, settings_for):
    """The app starts faces (index loaded from the database) and follows face events published by any worker."""
    settings = settings_for(database_url, face_key="served-face-key")
    live = await serve(settings)
    key = crypto.derive_key(settings)
    zhang = await patient()
    face = random_unit()[0]
    row = await FaceEmbedding.create(patient_id=zhang.id, vector=crypto.seal(face, key), source="kiosk")
    await live.app.ctx.events.publish("face.enrolled", {"embedding_id": row.id, "patient_id": zhang.id})
    await until(lambda: row.id in index.INDEX)
    await live.app.ctx.events.publish("face.forgotten", {"patient_id": zhang.id})
    await until(lambda: row.id not in index.INDEX)
