"""Photo → face vector, off the event loop.

``embed(image_bytes)`` checks the upload (size, that it is an image), then has ``vision.engine.embed_photo`` run in
one of the embedding processes (``vision.pool``). ``vision.runtime.start(settings)`` must have run in this process
(the app does it at start; commands call it themselves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import PayloadTooLarge, Unprocessable
from core.media import sniff
from vision.pool import EmbeddingPool, PhotoRefused

# Formats Pillow decodes without plugins; HEIC (iPhones) needs one, so it is refused with a clear message.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff"})

MESSAGES = {
    "no_face": "未检测到人脸",
    "ambiguous_faces": "照片中有多张人脸，请只让一人正对镜头",
    "bad_image": "图片已损坏或无法识别",
    "unsupported_image": "请上传 JPEG 或 PNG 格式的照片",
    "empty_image": "照片为空",
}


class FaceError(Unprocessable):
    """422 with one of the codes in ``MESSAGES``."""

    code, message = "no_face", MESSAGES["no_face"]

    @classmethod
    def of(cls, code: str) -> "FaceError":
        return cls(MESSAGES.get(code, MESSAGES["bad_image"]), code=code)


@dataclass(frozen=True)
class FaceVector:
    vector: np.ndarray  # float32, 128 values, L2-normalised
    box: tuple[int, int, int, int]  # x, y, width, height in the original photo's pixels
    quality: float  # dlib's detector score for the face (about 0–3.5; higher is clearer)
    faces: int = 1  # faces seen in the photo (the largest one was used)


_pool: EmbeddingPool | None = None
_max_bytes: int = 10 * 1024 * 1024


def configure(pool: EmbeddingPool | None, max_bytes: int) -> None:
    """Called by ``vision.runtime``: the pool this process embeds with."""
    global _pool, _max_bytes
    _pool, _max_bytes = pool, max_bytes


def pool() -> EmbeddingPool:
    if _pool is None:
        raise RuntimeError("face embedding is not started: call vision.runtime.start(settings) first")
    return _pool


def check_photo(image_bytes: bytes) -> None:
    """The checks that need no decoding (cheap, on the event loop): empty, too large, not an image."""
    if not image_bytes:
        raise FaceError.of("empty_image")
    if len(image_bytes) > _max_bytes:
        raise PayloadTooLarge(f"照片太大（上限 {_max_bytes // (1024 * 1024)} MB）", code="image_too_large")
    mime = sniff(image_bytes)
    if mime == "image/heic":
        raise FaceError.of("unsupported_image")
    if mime not in PHOTO_TYPES:
        raise FaceError.of("bad_image")


async def embed(image_bytes: bytes) -> FaceVector:
    """The vector of the photo's one clear face. ``FaceError`` (422: ``no_face``, ``ambiguous_faces``,
    ``bad_image``…), ``PayloadTooLarge`` (413), ``ServiceBusy`` (503 with Retry-After) when the queue is full."""
    check_photo(image_bytes)
    try:
        result = await pool().embed(image_bytes)
    except PhotoRefused as exc:
        raise FaceError.of(exc.args[0]) from None
    return FaceVector(vector=np.frombuffer(result["vector"], dtype=np.float32).copy(), box=tuple(result["box"]),
                      quality=result["quality"], faces=result["faces"])
