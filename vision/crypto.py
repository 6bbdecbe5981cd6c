"""Embeddings encrypted at rest: AES-256-GCM with a key derived (HKDF-SHA256) from FACE_KEY.

Stored form: ``b"\\x01" + nonce (12) + ciphertext of 128 float32 + tag (16)``. The version byte leaves room for a
later key or algorithm. Without FACE_KEY (development) the key is derived from SECRET_KEY under another label, so
the two never coincide.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import Settings

log = logging.getLogger(__name__)

VERSION = b"\x01"
_AAD = b"medwx face embedding v1"
DIMENSIONS = 128


class UndecryptableEmbedding(ValueError):
    """A stored vector that this FACE_KEY cannot open (another key, or tampered bytes)."""


def derive_key(settings: Settings) -> bytes:
    if settings.face_key:
        material, label = settings.face_key, b"medwx face key"
    else:
        if not settings.secret_key:
            raise ValueError("FACE_KEY (or at least SECRET_KEY) is needed to encrypt face embeddings")
        log.warning("FACE_KEY is not set: face embeddings are encrypted with a key derived from SECRET_KEY")
        material, label = settings.secret_key, b"medwx face key from secret key"
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(material.encode())


def seal(vector: np.ndarray, key: bytes) -> bytes:
    raw = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
    if len(raw) != DIMENSIONS * 4:
        raise ValueError(f"a face vector has {DIMENSIONS} values")
    nonce = os.urandom(12)
    return VERSION + nonce + AESGCM(key).encrypt(nonce, raw, _AAD)


def unseal(blob: bytes, key: bytes) -> np.ndarray:
    blob = bytes(blob)
    if blob[:1] != VERSION:
        raise UndecryptableEmbedding("unknown embedding format")
    try:
        raw = AESGCM(key).decrypt(blob[1:13], blob[13:], _AAD)
    except InvalidTag as exc:
        raise UndecryptableEmbedding("face embedding does not decrypt with this FACE_KEY") from exc
    return np.frombuffer(raw, dtype=np.float32).copy()
