"""The CPU-bound part of face embedding; runs inside the embedding processes (``vision.worker``), never on the
event loop. Imports only image and model libraries, so a worker process stays small (~110 MB, no TensorFlow).

The path, chosen by measurement (``bench/face.py``): decode with JPEG draft scaling, downscale the long side to
640 px, dlib's HOG detector at the image's own scale (again with one upsampling only when nothing is found, for small
faces), dlib's 5-point landmarks → the aligned 150×150 chip dlib's ResNet was trained on, then DeepFace's ``Dlib``
model on that chip (``detector_backend="skip"``). That is ~4× faster than DeepFace's own ``dlib`` detector path
and separates people at least as well on the labelled photos.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

LONG_SIDE = 640
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib_face_recognition_resnet_model_v1 expects
# A second face at least this large (area, relative to the largest) makes the photo ambiguous: we cannot tell who
# is in front of the camera. Smaller faces are people in the background.
AMBIGUOUS_AREA_RATIO = 0.8
MAX_PIXELS = 40_000_000  # decompression bombs are refused before decoding


class PhotoRejected(Exception):
    """Why a photo gives no embedding: ``bad_image``, ``no_face`` or ``ambiguous_faces`` (picklable)."""

    @property
    def code(self) -> str:
        return self.args[0]


@dataclass
class _Models:
    detector: object
    landmarks: object
    represent: object


_models: _Models | None = None


def init_worker(deepface_home: str) -> None:
    """Once per process: point DeepFace at the prepared weights, forbid downloads, load the models once."""
    global _models
    # DeepFace reads DEEPFACE_HOME when imported; this process's environment is ours to set.
    os.environ["DEEPFACE_HOME"] = deepface_home
    weights = Path(deepface_home) / ".deepface" / "weights"

    import dlib
    from deepface import DeepFace
    from deepface.commons import weight_utils

    def no_download(file_name: str, source_url=None, compress_type=None) -> str:
        path = weights / file_name
        if not path.is_file():
            raise RuntimeError(f"weights file {file_name} missing in {weights}; downloading is disabled")
        return str(path)

    # DeepFace downloads a missing weight file on first use; here a missing file is an error, never a download.
    weight_utils.download_weights_if_necessary = no_download

    DeepFace.build_model(model_name="Dlib", task="facial_recognition")

    def represent(chip_rgb):
        # DeepFace takes BGR; the chip is already aligned and cropped, so no detector ("skip").
        result = DeepFace.represent(chip_rgb[:, :, ::-1], model_name="Dlib", detector_backend="skip", align=False)
        return result[0]["embedding"]

    _models = _Models(
        detector=dlib.get_frontal_face_detector(),
        landmarks=dlib.shape_predictor(no_download("shape_predictor_5_face_landmarks.dat")),
        represent=represent,
    )


def ready() -> bool:
    """Whether the models are loaded (the warm-up asks it of a fresh process)."""
    return _models is not None


def _decode(data: bytes):
    """RGB array with the long side at most ``LONG_SIDE`` px, and the factor back to the original's pixels."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as img:
            original = max(img.size)
            # JPEG: decode at 1/2, 1/4 or 1/8 scale straight away (a 12 MP photo decodes in a few ms instead of 200).
            img.draft("RGB", (LONG_SIDE, LONG_SIDE))
            img = ImageOps.exif_transpose(img)  # phones store portraits sideways with an orientation tag
            img = img.convert("RGB")
            img.thumbnail((LONG_SIDE, LONG_SIDE))
            # Orientation swaps the sides, not the long one: the scale is the long sides' ratio.
            scale = original / max(img.size)
            return np.asarray(img), scale
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        # Truncated JPEGs raise OSError on load: nothing half-decoded is ever embedded.
        raise PhotoRejected("bad_image") from exc


def embed_photo(data: bytes) -> dict:
    """The embedding of the photo's one clear face: ``{"vector": bytes (128 float32, L2-normalised), "box":
    [x, y, w, h] in the original photo's pixels, "quality": detector score, "faces": faces seen}``."""
    import numpy as np

    if _models is None:
        raise RuntimeError("init_worker was not called in this process")
    import dlib

    image, scale = _decode(data)
    found = []
    for upsample in (0, 1):  # a face smaller than ~80 px is found only with upsampling (slower): try it second
        rects, scores, _ = _models.detector.run(image, upsample)
        found = sorted(zip(rects, scores), key=lambda rs: rs[0].area(), reverse=True)
        if found:
            break
    if not found:
        raise PhotoRejected("no_face")
    (rect, score) = found[0]
    if len(found) > 1 and found[1][0].area() >= AMBIGUOUS_AREA_RATIO * rect.area():
        raise PhotoRejected("ambiguous_faces")
    chip = dlib.get_face_chip(image, _models.landmarks(image, rect), size=CHIP_SIZE, padding=CHIP_PADDING)
    vector = np.asarray(_models.represent(chip), dtype=np.float32)
    vector /= np.linalg.norm(vector)
    box = [round(v * scale) for v in (max(rect.left(), 0), max(rect.top(), 0), rect.width(), rect.height())]
    return {"vector": vector.tobytes(), "box": box, "quality": round(float(score), 3), "faces": len(found)}
