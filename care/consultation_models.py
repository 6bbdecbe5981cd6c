"""Consultations: a patient's request to see a doctor remotely, the HIS's answer, the room and its chat.

A consultation's life: ``requested`` (sent to the HIS as a FHIR Appointment, status proposed) → ``accepted`` or
``declined`` (the HIS's answer, polled or called back) → ``active`` (both sides in the room) → ``ended`` (either side
ends it). The patient may cancel before it starts (``cancelled``). Declined and cancelled free the slot.
"""

from tortoise import fields
from tortoise.models import Model

STATUSES = ("requested", "accepted", "declined", "cancelled", "active", "ended")
OPEN_STATUSES = ("requested", "accepted", "active")
SENDERS = ("patient", "doctor")


class DoctorAccount(Model):
    """A console user (role ``doctor``) who is this practitioner: they see and answer the practitioner's
    consultations."""

    id = fields.IntField(primary_key=True)
    user = fields.OneToOneField("models.User", related_name="doctor_account", on_delete=fields.CASCADE)
    practitioner = fields.OneToOneField("models.Practitioner", related_name="account", on_delete=fields.CASCADE)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "doctor_account"


class Consultation(Model):
    id = fields.IntField(primary_key=True)
    patient = fields.ForeignKeyField("models.Patient", related_name="consultations", on_delete=fields.CASCADE)
    practitioner = fields.ForeignKeyField("models.Practitioner", related_name="consultations",
                                          on_delete=fields.RESTRICT)
    slot = fields.ForeignKeyField("models.PractitionerSlot", related_name="consultations", null=True,
                                  on_delete=fields.SET_NULL)
    status = fields.CharField(max_length=16, default="requested", db_index=True)
    source = fields.CharField(max_length=16, default="")  # kiosk | mp
    kiosk = fields.ForeignKeyField("models.Kiosk", related_name="consultations", null=True, on_delete=fields.SET_NULL)
    requested_by = fields.ForeignKeyField("models.User", related_name="consultations_requested", null=True,
                                          on_delete=fields.SET_NULL)  # the mini-program user who asked
    reason = fields.CharField(max_length=500, default="")
    his_appointment_id = fields.CharField(max_length=64, null=True, unique=True)
    answer_note = fields.CharField(max_length=500, default="")  # the HIS's comment on a decline
    # A random id naming the room: room tokens carry it, Redis channels are named after it.
    room = fields.CharField(max_length=32, unique=True)
    requested_at = fields.DatetimeField(auto_now_add=True)
    answered_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    ended_by = fields.CharField(max_length=16, default="")  # patient | doctor | system
    duration_seconds = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "consultation"
        ordering = ["-id"]


class ConsultationMessage(Model):
    id = fields.IntField(primary_key=True)
    consultation = fields.ForeignKeyField("models.Consultation", related_name="messages", on_delete=fields.CASCADE)
    sender = fields.CharField(max_length=8)  # patient | doctor
    kind = fields.CharField(max_length=8, default="text")
    body = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "consultation_message"
        ordering = ["id"]
