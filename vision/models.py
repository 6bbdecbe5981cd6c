"""Face biometrics: a patient's face embeddings, encrypted at rest (``vision.crypto``)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

SOURCES = ("kiosk", "his", "import")


class FaceEmbedding(Model):
    id = fields.BigIntField(primary_key=True)
    # Deleting a patient deletes their biometrics with them.
    patient = fields.ForeignKeyField("models.Patient", related_name="face_embeddings", on_delete=fields.CASCADE)
    # AES-GCM ciphertext of the 128 float32 values (see vision.crypto); never the raw vector.
    vector = fields.BinaryField()
    source = fields.CharField(max_length=16)  # kiosk | his | import
    quality = fields.FloatField(default=0.0)  # the detector's score for the face the vector came from
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "face_embedding"
