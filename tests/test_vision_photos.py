"""Real photos through the embedding processes: who is who on the labelled set, bad photos, a full queue, a process
that dies."""

from __future__ import annotations

import asyncio
import csv
import io

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from core.errors import PayloadTooLarge, ServiceBusy
from core.settings import Settings
from tests.conftest import need_conformance
from vision import faces
from vision.faces import FaceError
from vision.index import FaceIndex
from vision.pool import EmbeddingPool
from vision.setup import check_weights, deepface_home

THRESHOLD = Settings().face_threshold  # the shipped, calibrated default

# One event loop for the module, so that one embedding process (bound to its loop) serves every test.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(tmp_path_factory):
    """One embedding process for the whole module (it loads the models once, as in the server)."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"), secret_key="s")
    check_weights(settings)
    shared = EmbeddingPool(str(deepface_home(settings)), workers=1, queue=8)
    yield shared
    await shared.aclose()


@pytest.fixture
def embedding(pool):
    faces.configure(pool, 10 * 1024 * 1024)
    yield pool
    faces.configure(None, 0)


def labelled() -> list[dict]:
    folder = need_conformance("faces", "labels.csv").parent
    rows = list(csv.DictReader((folder / "labels.csv").open(encoding="utf-8")))
    for row in rows:
        row["path"] = folder / row["image"]
    return rows


def photo(name: str) -> bytes:
    return (need_conformance("faces") / name).read_bytes()


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


# -- who is who --------------------------------------------------------------------------------------------------
async def test_labelled_photos_identify_the_right_person_and_strangers_nobody(embedding):
    rows = labelled()
    gallery: list[tuple[str, np.ndarray]] = []
    for row in rows:
        if row["image"].startswith("train/"):
            gallery.append((row["identity"], (await faces.embed(row["path"].read_bytes())).vector))
    people = sorted({identity for identity, _ in gallery})
    queries = [r for r in rows if not r["image"].startswith("train/") and r["faces"] == "1"]
    assert len(gallery) == 9 and len(people) == 5 and len(queries) >= 4

    def index_of(enrolled: list[str]) -> FaceIndex:
        idx = FaceIndex()
        for n, (identity, vector) in enumerate(gallery):
            if identity in enrolled:
                idx.add(n + 1, people.index(identity) + 1, vector)
        return idx

    everyone = index_of(people)
    for row in queries:
        identity = row["identity"].split(" ")[0]  # "obama (partial face)" is obama
        vec = await faces.embed(row["path"].read_bytes())
        hit = everyone.nearest(vec.vector)
        assert people[hit.patient_id - 1] == identity, row["image"]
        assert hit.distance <= THRESHOLD, (row["image"], hit.distance)
        # The same photo against everyone but this person: no false accept (an unknown face enrols anew).
        others = index_of([p for p in people if p != identity]).nearest(vec.vector)
        assert others.distance > THRESHOLD, (row["image"], people[others.patient_id - 1], others.distance)


async def test_two_faces_the_larger_one_counts_unless_they_are_alike_in_size(embedding):
    kit = await faces.embed(photo("train/kit_harington/john2.jpeg"))
    rose = await faces.embed(photo("train/rose_leslie/img1.jpg"))
    with_rose = await faces.embed(photo("test/kit_with_rose.jpg"))
    assert with_rose.faces == 2
    assert 1 - float(with_rose.vector @ kit.vector) <= THRESHOLD < 1 - float(with_rose.vector @ rose.vector)

    with pytest.raises(FaceError) as raised:
        await faces.embed(photo("test/obama_and_biden.jpg"))  # two faces of the same size: who is at the kiosk?
    assert (raised.value.status, raised.value.code) == (422, "ambiguous_faces")


async def test_a_face_vector_is_unit_length_with_its_box_in_the_original_photo(embedding):
    data = photo("test/obama1.jpg")
    width, height = Image.open(io.BytesIO(data)).size
    vec = await faces.embed(data)
    assert vec.vector.dtype == np.float32 and vec.vector.shape == (128,)
    assert float(np.linalg.norm(vec.vector)) == pytest.approx(1.0, abs=1e-5)
    x, y, w, h = vec.box
    assert 0 <= x < width and 0 <= y < height and 0 < w <= width and 0 < h <= height
    assert vec.quality > 0


# -- bad photos -------------------------------------------------------------------------------------------------
async def test_bad_photos_are_refused_with_clear_codes(embedding):
    cases = {
        "not an image": (b"%PDF-1.7\n" + b"0" * 2000, 422, "bad_image"),
        "empty": (b"", 422, "empty_image"),
        "no face": (jpeg(Image.linear_gradient("L").resize((640, 480)).convert("RGB")), 422, "no_face"),
    }
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    cases["truncated jpeg"] = (jpeg(noise)[:20_000], 422, "bad_image")
    for name, (data, status, code) in cases.items():
        with pytest.raises(FaceError) as raised:
            await faces.embed(data)
        assert (raised.value.status, raised.value.code) == (status, code), name
        assert raised.value.to_body()["error"]["message"], name  # a Chinese message for the kiosk

    with pytest.raises(FaceError) as raised:
        await faces.embed(jpeg(noise)[:20_000])
    assert raised.value.message == "图片已损坏或无法识别"
    with pytest.raises(PayloadTooLarge) as too_large:
        await faces.embed(b"\xff\xd8\xff\xe0" + b"\0" * (30 * 1024 * 1024))
    assert (too_large.value.status, too_large.value.code) == (413, "image_too_large")


async def test_a_truncated_photo_of_a_face_is_refused_not_half_read(embedding):
    data = photo("train/obama/obama.jpg")
    assert (await faces.embed(data)).faces == 1
    with pytest.raises(FaceError) as raised:
        await faces.embed(data[: len(data) * 2 // 3])
    assert raised.value.code == "bad_image"


async def test_a_full_queue_answers_busy_at_once_with_retry_after(embedding):
    data = photo("train/biden/biden.jpg")
    embedding.limit = embedding.workers  # no waiting room: one photo at a time
    try:
        results = await asyncio.gather(faces.embed(data), faces.embed(data), return_exceptions=True)
    finally:
        embedding.limit = embedding.workers + 8
    busy = [r for r in results if isinstance(r, ServiceBusy)]
    done = [r for r in results if isinstance(r, faces.FaceVector)]
    assert len(busy) == 1 and len(done) == 1
    assert busy[0].status == 503 and busy[0].headers["Retry-After"].isdigit()
    assert embedding.in_flight == 0
    assert (await faces.embed(data)).faces == 1  # the queue drained: served again


async def test_an_embedding_process_that_dies_is_replaced(embedding):
    data = photo("train/biden/biden.jpg")
    await faces.embed(data)
    (process,) = embedding._all
    process.proc.kill()
    await process.proc.wait()
    try:
        await faces.embed(data)  # served by a new process, or a 503 for this one photo
    except ServiceBusy as exc:
        assert exc.code == "face_unavailable" and exc.headers["Retry-After"]
    assert (await faces.embed(data)).faces == 1
    assert [p.proc.pid for p in embedding._all] != [process.proc.pid]
