"""Kiosks (the machines patients log in at by face) and the patients a mini-program user may act for.

Kiosk sessions themselves are short-lived and live in Redis (``care.kiosks``); only what must outlast them is here.
"""

from tortoise import fields
from tortoise.models import Model


class Kiosk(Model):
    """A kiosk and its API key. Only the key's SHA-256 is stored: the key is shown once, when the kiosk is added."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    # The key is 32 random bytes: a plain digest is enough to look it up without keeping it (no password stretching
    # needed for a secret nobody chose).
    key_hash = fields.CharField(max_length=64, unique=True)
    key_hint = fields.CharField(max_length=12, default="")  # the key's first characters, to tell keys apart in lists
    hospital = fields.ForeignKeyField("models.Hospital", related_name="kiosks", null=True, on_delete=fields.SET_NULL)
    active = fields.BooleanField(default=True)
    last_seen = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "kiosk"

    def __str__(self) -> str:
        return self.name


class PatientBinding(Model):
    """A mini-program user who may act for a patient (themself, or a relative they look after).

    Minimal for now: it lets the bound user confirm a kiosk session from the mini program.
    """

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="patient_bindings", on_delete=fields.CASCADE)
    patient = fields.ForeignKeyField("models.Patient", related_name="bindings", on_delete=fields.CASCADE)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "patient_binding"
        unique_together = (("user", "patient"),)
