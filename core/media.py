"""Uploaded files: the type is sniffed from the content (never the name or Content-Type), sizes are limited,
the bytes go under MEDIA_ROOT and the database keeps what we know of them. Images get a thumbnail.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import filetype
from PIL import Image, UnidentifiedImageError

from core.errors import PayloadTooLarge, Unprocessable
from core.models import MediaFile, User
from core.settings import Settings

THUMBNAIL_SIZE = (320, 320)
Image.MAX_IMAGE_PIXELS = 40_000_000  # a 40-megapixel photo is plenty; larger is refused (decompression bombs)


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # what users call it, for messages
    mimes: frozenset
    max_bytes: int


IMAGE = Kind("image", "图片", frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/heic"}),
             10 * 1024 * 1024)
# Browsers record webm (Chrome, Android) or mp4/m4a (iOS); WeChat's own voice is AMR; uploads may be mp3/wav/ogg.
AUDIO = Kind("audio", "语音", frozenset({"audio/amr", "audio/mpeg", "audio/x-wav", "audio/ogg", "audio/mp4",
                                        "audio/m4a", "audio/aac", "audio/x-flac", "video/webm", "video/mp4",
                                        "audio/webm"}), 8 * 1024 * 1024)
# Recordings from medical devices (an ECG's waveform): formats recognisable by their bytes only.
WAVEFORM = Kind("waveform", "波形文件", frozenset({"application/pdf", "application/dicom"}), 20 * 1024 * 1024)
KINDS = {k.name: k for k in (IMAGE, AUDIO, WAVEFORM)}
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif",
               "image/heic": "heic", "audio/amr": "amr", "audio/mpeg": "mp3", "audio/x-wav": "wav",
               "audio/ogg": "ogg", "audio/mp4": "m4a", "audio/m4a": "m4a", "audio/aac": "aac",
               "audio/x-flac": "flac", "video/webm": "webm", "audio/webm": "webm", "video/mp4": "mp4",
               "application/pdf": "pdf", "application/dicom": "dcm"}


def sniff(data: bytes) -> str | None:
    guess = filetype.guess(data[:8192])
    return guess.mime if guess else None


def _image_facts(data: bytes) -> tuple[int, int, bytes | None]:
    """(width, height, JPEG thumbnail) — verifies the image really decodes. Runs in a thread."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            img.thumbnail(THUMBNAIL_SIZE)
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=80)
            return width, height, out.getvalue()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise Unprocessable("图片已损坏或无法识别", code="bad_image") from exc


async def store_upload(settings: Settings, data: bytes, *, kind: str, original_name: str = "",
                       uploaded_by: User | None = None) -> MediaFile:
    """Check and store one upload of the expected ``kind`` ("image" or "audio")."""
    expected = KINDS[kind]
    if not data:
        raise Unprocessable(f"{expected.label}文件为空", code="empty_file")
    if len(data) > expected.max_bytes:
        raise PayloadTooLarge(f"{expected.label}文件太大（上限 {expected.max_bytes // (1024 * 1024)} MB）",
                              code="file_too_large")
    mime = sniff(data)
    if mime not in expected.mimes:
        raise Unprocessable(f"文件不是有效的{expected.label}", code=f"not_{kind}")
    width = height = None
    thumbnail = None
    if expected is IMAGE and mime != "image/heic":
        width, height, thumbnail = await asyncio.to_thread(_image_facts, data)

    digest = hashlib.sha256(data).hexdigest()
    relative = Path(kind) / digest[:2] / f"{digest}.{_EXTENSIONS.get(mime, 'bin')}"
    thumb_relative = relative.with_name(f"{digest}.thumb.jpg") if thumbnail else None
    await asyncio.to_thread(_write, settings.media_root, relative, data, thumb_relative, thumbnail)
    return await MediaFile.create(kind=kind, content_type=mime, size=len(data), sha256=digest,
                                  path=str(relative), thumbnail_path=str(thumb_relative) if thumb_relative else None,
                                  width=width, height=height, original_name=(original_name or "")[:128],
                                  uploaded_by=uploaded_by)


def _write(root: Path, relative: Path, data: bytes, thumb_relative: Path | None, thumbnail: bytes | None) -> None:
    # Content-addressed: the same bytes land on the same path, so a repeated upload costs no space.
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        # A unique temporary name: two uploads of the same bytes at once must not share one.
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as tmp:
            tmp.write(data)
        Path(tmp.name).replace(target)
    if thumb_relative and thumbnail:
        (root / thumb_relative).write_bytes(thumbnail)


def media_path(settings: Settings, media: MediaFile, *, thumbnail: bool = False) -> Path:
    relative = media.thumbnail_path if thumbnail and media.thumbnail_path else media.path
    return settings.media_root / relative
