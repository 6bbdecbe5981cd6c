"""Fixtures for the patient-import tests: real face embedding and the face index on the test database."""

from __future__ import annotations

import numpy as np
import pytest

from vision import crypto, faces, index
from vision.pool import EmbeddingPool
from vision.setup import check_weights, deepface_home


@pytest.fixture
async def faces_on(db):
    """Embedding (one process, on this test's event loop) and the face index working on the test database, as
    ``vision.runtime.start`` sets them up."""
    check_weights(db)
    pool = EmbeddingPool(str(deepface_home(db)), workers=1, queue=8)
    faces.configure(pool, 10 * 1024 * 1024)
    index.configure(key=crypto.derive_key(db.with_(face_key="k")), threshold=db.face_threshold, events=None)
    await index.load_index()
    yield
    index.INDEX.replace([], [], np.zeros((0, index.DIMENSIONS), dtype=np.float32))
    index.configure(key=None, threshold=0.0, events=None)
    faces.configure(None, 0)
    await pool.aclose()
