"""The equipment-repair domain's data: devices, device groups, tickets and what hangs off them."""

from tortoise import fields
from tortoise.models import Model

DEVICE_STATUSES = ("in_service", "under_repair", "retired")
TICKET_STATES = ("new", "answered_by_robot", "with_agent", "remote", "with_engineer", "done", "closed", "reopened")


class Device(Model):
    id = fields.IntField(primary_key=True)
    hospital = fields.ForeignKeyField("models.Hospital", related_name="devices", on_delete=fields.RESTRICT)
    department = fields.ForeignKeyField("models.Department", related_name="devices", null=True,
                                        on_delete=fields.SET_NULL)
    # Ours, printed on the label, unique across all hospitals; the QR scene is ``d:<system_number>``.
    system_number = fields.CharField(max_length=32, unique=True)
    # The maker's serial on the nameplate: what people read when the label is gone.
    nameplate_id = fields.CharField(max_length=64, db_index=True)
    name = fields.CharField(max_length=64)
    model = fields.CharField(max_length=64, default="")
    device_type = fields.CharField(max_length=32, db_index=True)  # ventilator, centrifuge, analyser, …
    manufacturer = fields.CharField(max_length=64, default="")
    install_date = fields.DateField(null=True)
    owner = fields.ForeignKeyField("models.User", related_name="owned_devices", null=True, on_delete=fields.SET_NULL)
    maintenance_score = fields.IntField(default=100)  # 0–100; lower means more maintenance trouble
    repair_count = fields.IntField(default=0)
    status = fields.CharField(max_length=16, default="in_service")
    group = fields.ForeignKeyField("models.DeviceGroup", related_name="members", null=True,
                                   on_delete=fields.SET_NULL)
    group_position = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "device"

    @property
    def scene(self) -> str:
        return f"d:{self.system_number}"


class DeviceGroup(Model):
    """Devices that report as one (a lab line of analysers)."""

    id = fields.IntField(primary_key=True)
    hospital = fields.ForeignKeyField("models.Hospital", related_name="device_groups", on_delete=fields.RESTRICT)
    department = fields.ForeignKeyField("models.Department", related_name="device_groups", null=True,
                                        on_delete=fields.SET_NULL)
    name = fields.CharField(max_length=64)
    # The models the line is expected to hold (e.g. ["AU5800", "AU5800", "DxI800"]); members are compared to it.
    expected_models = fields.JSONField(default=list)
    owner = fields.ForeignKeyField("models.User", related_name="owned_groups", null=True, on_delete=fields.SET_NULL)
    repair_count = fields.IntField(default=0)
    active = fields.BooleanField(default=True)  # false once merged into another group or dissolved
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "device_group"

    @property
    def scene(self) -> str:
        return f"g:{self.id}"


class Ticket(Model):
    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=16, unique=True)  # R + yymmdd + 4-digit daily sequence
    hospital = fields.ForeignKeyField("models.Hospital", related_name="tickets", on_delete=fields.RESTRICT)
    device = fields.ForeignKeyField("models.Device", related_name="tickets", null=True, on_delete=fields.SET_NULL)
    group = fields.ForeignKeyField("models.DeviceGroup", related_name="tickets", null=True, on_delete=fields.SET_NULL)
    # For a group ticket: the member devices the reporter pointed at (may be empty: "the line").
    member_devices = fields.ManyToManyField("models.Device", related_name="group_tickets", through="ticket_member")
    kind = fields.CharField(max_length=16, default="repair")  # repair | preventive
    channel = fields.CharField(max_length=16, default="h5")  # h5 | wechat | mp | console | iot
    state = fields.CharField(max_length=20, default="new", db_index=True)
    tier = fields.CharField(max_length=16, null=True)  # basic | advanced, once known
    description = fields.TextField(default="")
    reporter = fields.ForeignKeyField("models.User", related_name="reported_tickets", null=True,
                                      on_delete=fields.SET_NULL)
    reporter_openid = fields.CharField(max_length=64, null=True)
    agent = fields.ForeignKeyField("models.User", related_name="agent_tickets", null=True, on_delete=fields.SET_NULL)
    engineer = fields.ForeignKeyField("models.User", related_name="engineer_tickets", null=True,
                                      on_delete=fields.SET_NULL)
    robot_answer = fields.TextField(null=True)
    robot_confidence = fields.FloatField(null=True)
    # The client's own id for this submission: a repeated submit returns the same ticket.
    client_request_id = fields.CharField(max_length=64, null=True, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    updated_at = fields.DatetimeField(auto_now=True)
    done_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    # When the assigned engineer accepted the job (cleared when another engineer is assigned).
    engineer_accepted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "ticket"


class TicketTransition(Model):
    id = fields.BigIntField(primary_key=True)
    ticket = fields.ForeignKeyField("models.Ticket", related_name="transitions", on_delete=fields.CASCADE)
    from_state = fields.CharField(max_length=20, null=True)
    to_state = fields.CharField(max_length=20)
    actor = fields.ForeignKeyField("models.User", related_name="ticket_transitions", null=True,
                                   on_delete=fields.SET_NULL)
    actor_label = fields.CharField(max_length=64, default="system")
    note = fields.TextField(default="")
    # Empty for a change of state. Otherwise an action on the ticket that is part of its trail (reply, note,
    # accept, take, reassign, save_to_kb): such rows may keep the state (from_state == to_state), so code counting
    # state changes filters ``action=""``.
    action = fields.CharField(max_length=24, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ticket_transition"


class TicketAttachment(Model):
    id = fields.BigIntField(primary_key=True)
    ticket = fields.ForeignKeyField("models.Ticket", related_name="attachments", on_delete=fields.CASCADE)
    media = fields.ForeignKeyField("models.MediaFile", related_name="ticket_attachments", on_delete=fields.RESTRICT)
    kind = fields.CharField(max_length=16)  # photo | voice | video | document
    # WeChat's speech recognition (or a transcript) for voice.
    transcript = fields.TextField(null=True)
    # Photos an engineer added with a note; null for the reporter's own attachments.
    message = fields.ForeignKeyField("models.TicketMessage", related_name="attachments", null=True,
                                     on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ticket_attachment"


class DeviceClaim(Model):
    """A staff member asks to see a device or group under "my devices"; its owner or an admin decides."""

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="device_claims", on_delete=fields.CASCADE)
    device = fields.ForeignKeyField("models.Device", related_name="claims", null=True, on_delete=fields.CASCADE)
    group = fields.ForeignKeyField("models.DeviceGroup", related_name="claims", null=True, on_delete=fields.CASCADE)
    state = fields.CharField(max_length=16, default="pending")  # pending | approved | rejected
    decided_by = fields.ForeignKeyField("models.User", related_name="claims_decided", null=True,
                                        on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)
    decided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "device_claim"


class ServiceGroup(Model):
    """The people around a hospital's (or a device group's) equipment: robot, agents, engineers, owners, staff."""

    id = fields.IntField(primary_key=True)
    hospital = fields.ForeignKeyField("models.Hospital", related_name="service_groups", on_delete=fields.CASCADE)
    device_group = fields.ForeignKeyField("models.DeviceGroup", related_name="service_groups", null=True,
                                          on_delete=fields.CASCADE)
    name = fields.CharField(max_length=96)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "service_group"


class ServiceGroupMember(Model):
    id = fields.IntField(primary_key=True)
    service_group = fields.ForeignKeyField("models.ServiceGroup", related_name="members", on_delete=fields.CASCADE)
    user = fields.ForeignKeyField("models.User", related_name="service_groups", on_delete=fields.CASCADE)
    role = fields.CharField(max_length=16)  # agent | engineer | owner | staff
    joined_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "service_group_member"
        unique_together = (("service_group", "user"),)


class Notification(Model):
    """One template message owed to one person for one ticket transition: sent, retried, or failed (kept)."""

    id = fields.BigIntField(primary_key=True)
    ticket = fields.ForeignKeyField("models.Ticket", related_name="notifications", on_delete=fields.CASCADE)
    transition = fields.ForeignKeyField("models.TicketTransition", related_name="notifications", null=True,
                                        on_delete=fields.SET_NULL)
    user = fields.ForeignKeyField("models.User", related_name="notifications", null=True, on_delete=fields.SET_NULL)
    openid = fields.CharField(max_length=64)
    role = fields.CharField(max_length=16)  # reporter | agent | engineer | owner
    template = fields.CharField(max_length=32)
    status = fields.CharField(max_length=16, default="pending")  # pending | sent | failed
    attempts = fields.IntField(default=0)
    last_error = fields.TextField(default="")
    wechat_msgid = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    sending_until = fields.DatetimeField(null=True)  # a send in flight holds the row until then (core.delivery)

    class Meta:
        table = "notification"
        unique_together = (("transition", "openid"),)


class TicketCounter(Model):
    """The last ticket number given on a day (yymmdd); incremented atomically in the database."""

    day = fields.CharField(max_length=6, primary_key=True)
    value = fields.IntField(default=0)

    class Meta:
        table = "ticket_counter"


class LabelQr(Model):
    """The permanent WeChat QR code of one scene, created once and reused for every print.

    An account has 100,000 permanent codes (``QR_LIMIT_STR_SCENE``), so a reprint must never ask for a new one.
    ``url`` is the content WeChat encodes in its QR image; labels encode it themselves.
    """

    id = fields.IntField(primary_key=True)
    scene = fields.CharField(max_length=64, unique=True)  # d:<system_number> | g:<group_id>
    ticket = fields.CharField(max_length=255)
    url = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "label_qr"


class TicketMessage(Model):
    """What people wrote on a ticket: an agent's reply to the reporter (sent over WeChat) or a working note
    (an engineer's notes and photos, the engineer accepting the job). Text is stored as written; pages escape it."""

    id = fields.BigIntField(primary_key=True)
    ticket = fields.ForeignKeyField("models.Ticket", related_name="messages", on_delete=fields.CASCADE)
    author = fields.ForeignKeyField("models.User", related_name="ticket_messages", null=True,
                                    on_delete=fields.SET_NULL)
    author_label = fields.CharField(max_length=64, default="")
    author_role = fields.CharField(max_length=16)  # agent | engineer | admin
    kind = fields.CharField(max_length=16)  # reply | note | accept
    text = fields.TextField(default="")
    via = fields.CharField(max_length=16, null=True)  # replies: custom (customer-service message) | template
    # internal (not sent anywhere) | pending | sent | failed (kept, with the reason)
    delivery = fields.CharField(max_length=16, default="internal")
    delivery_error = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ticket_message"


class CannedReply(Model):
    """A prepared reply agents pick from; for one hospital, or for all (hospital null)."""

    id = fields.IntField(primary_key=True)
    hospital = fields.ForeignKeyField("models.Hospital", related_name="canned_replies", null=True,
                                      on_delete=fields.CASCADE)
    title = fields.CharField(max_length=64)
    text = fields.TextField()
    created_by = fields.ForeignKeyField("models.User", related_name="canned_replies", null=True,
                                        on_delete=fields.SET_NULL)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "canned_reply"
