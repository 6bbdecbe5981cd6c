"""Starting and stopping faces in one process: the app does it around serving, commands (imports) around their
work. Start checks the weights (a clear error instead of a download on the first photo), binds the key, threshold
and event bus, and loads the index. The embedding processes start on the first photo, or right away in the
background with FACE_PRELOAD (starting one takes seconds: importing DeepFace and loading the models).
"""

from __future__ import annotations

import asyncio
import logging

from core.events import EventBus
from core.settings import Settings
from vision import crypto, faces, index
from vision.pool import EmbeddingPool
from vision.setup import check_weights, deepface_home

log = logging.getLogger(__name__)

_preloading: asyncio.Task | None = None


async def start(settings: Settings, events: EventBus | None = None) -> None:
    global _preloading
    check_weights(settings)
    index.limit_blas_threads()
    pool = EmbeddingPool(str(deepface_home(settings)), workers=settings.face_workers, queue=settings.face_queue)
    faces.configure(pool, settings.face_max_bytes)
    index.configure(key=crypto.derive_key(settings), threshold=settings.face_threshold, events=events)
    await index.load_index()
    if settings.face_preload:
        _preloading = asyncio.create_task(_preload(pool), name="faces-preload")


async def _preload(pool: EmbeddingPool) -> None:
    try:
        await pool.warm_up()
        log.info("face embedding processes ready")
    except Exception:  # noqa: BLE001 - the first photo will try again (and report the error to its caller)
        log.exception("face embedding processes failed to start")


async def stop() -> None:
    global _preloading
    if _preloading is not None:
        _preloading.cancel()
        _preloading = None
    try:
        await faces.pool().aclose()
    except RuntimeError:
        pass  # never started
    faces.configure(None, 0)
    index.INDEX.replace([], [], index.np.zeros((0, index.DIMENSIONS), dtype=index.np.float32))
    index.configure(key=None, threshold=0.0, events=None)
