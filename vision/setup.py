"""The offline weights: DeepFace reads ``DEEPFACE_HOME/.deepface/weights/`` and would download what is missing,
which cannot work in a hospital's closed network. We link the two dlib files shipped by the PyPI package
``face-recognition-models`` there, and refuse to start when they are missing. Nothing here downloads anything.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from core.settings import Settings

# The files DeepFace's Dlib recognition model and dlib detector look for, as named in ``face-recognition-models``.
WEIGHT_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")


class WeightsMissing(RuntimeError):
    """Raised at start-up: the server would otherwise try to download weights on the first photo."""


def deepface_home(settings: Settings) -> Path:
    return Path(settings.deepface_home) if settings.deepface_home else settings.var_dir / "deepface"


def weights_dir(settings: Settings) -> Path:
    return deepface_home(settings) / ".deepface" / "weights"


def packaged_weights() -> Path | None:
    """The ``models/`` folder of the installed ``face-recognition-models`` package (not imported: its
    ``__init__`` needs setuptools' ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def missing_weights(settings: Settings) -> list[str]:
    folder = weights_dir(settings)
    return [name for name in WEIGHT_FILES if not (folder / name).is_file()]


def prepare_weights(settings: Settings) -> Path:
    """Link the packaged weight files into the weights folder (idempotent); returns the folder."""
    folder = weights_dir(settings)
    source = packaged_weights()
    if source is None:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in WEIGHT_FILES:
        target, origin = folder / name, source / name
        if target.is_file() or not origin.is_file():
            continue
        if target.is_symlink():  # a dangling link (the package moved, e.g. a new virtualenv)
            target.unlink()
        try:
            os.symlink(origin, target)
        except OSError:  # a filesystem without symlinks: a copy is as good
            target.write_bytes(origin.read_bytes())
    return folder


def check_weights(settings: Settings) -> Path:
    """The weights folder, prepared from the installed package if needed; ``WeightsMissing`` with what to do."""
    if missing_weights(settings):
        prepare_weights(settings)
    missing = missing_weights(settings)
    if missing:
        raise WeightsMissing(
            f"face recognition weights missing in {weights_dir(settings)}: {', '.join(missing)}. "
            "Install the package face-recognition-models (requirements.txt) and run "
            "`python -m vision prepare-weights`, or place the files there yourself; they are never downloaded.")
    return weights_dir(settings)
