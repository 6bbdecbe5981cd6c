"""Doctors' availability: the slots a practitioner can be booked in (FHIR ``Slot``, from the HIS or entered here).

A slot is ``free`` or ``booked``; booking one is an atomic change of its status (``care.doctors.take_slot``), so two
patients can never get the same slot.
"""

from tortoise import fields
from tortoise.models import Model

SLOT_STATES = ("free", "booked")


class PractitionerSlot(Model):
    id = fields.IntField(primary_key=True)
    his_id = fields.CharField(max_length=64, unique=True, null=True)  # the HIS's Slot id, when it came from there
    practitioner = fields.ForeignKeyField("models.Practitioner", related_name="slots", on_delete=fields.CASCADE)
    start = fields.DatetimeField()
    end = fields.DatetimeField()
    status = fields.CharField(max_length=8, default="free")  # free | booked
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "practitioner_slot"
        ordering = ["start", "id"]
        indexes = (("practitioner_id", "status", "start"),)  # the column: migrations index columns
