"""Models every domain shares: who a WeChat user is."""

from tortoise import fields
from tortoise.models import Model


class WechatUser(Model):
    """A person known to the public account by their openid (follower or not)."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    unionid = fields.CharField(max_length=64, null=True)
    subscribed = fields.BooleanField(default=False)
    # The QR scene of the last follow (``d:<system number>``, ``g:<group id>``): where the person came from.
    subscribe_scene = fields.CharField(max_length=64, null=True)
    subscribed_at = fields.DatetimeField(null=True)
    unsubscribed_at = fields.DatetimeField(null=True)
    # When the person last wrote to the account: customer-service messages are allowed for 48 h after it.
    last_interaction_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "wechat_user"

    def __str__(self) -> str:
        return self.openid


class Hospital(Model):
    """A hospital served: staff, devices, kiosks and patients belong to one."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=128, unique=True)
    # Other names people type when searching ("市一院", "第一人民医院"), separated by commas.
    aliases = fields.CharField(max_length=512, default="")
    address = fields.CharField(max_length=256, default="")
    latitude = fields.FloatField(null=True)
    longitude = fields.FloatField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hospital"


class Department(Model):
    id = fields.IntField(primary_key=True)
    hospital = fields.ForeignKeyField("models.Hospital", related_name="departments", on_delete=fields.CASCADE)
    name = fields.CharField(max_length=64)

    class Meta:
        table = "department"
        unique_together = (("hospital", "name"),)


class User(Model):
    """A person who works with medwx: hospital staff, agents, engineers, administrators.

    WeChat identities: ``openid`` for the public account, ``mp_openid`` for the mini program (they differ; the
    ``unionid`` ties them). Console users also have a username and password hash.
    """

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, default="")
    phone = fields.CharField(max_length=32, default="")
    role = fields.CharField(max_length=16, default="staff")  # staff | agent | engineer | admin
    hospital = fields.ForeignKeyField("models.Hospital", related_name="users", null=True, on_delete=fields.SET_NULL)
    department = fields.ForeignKeyField("models.Department", related_name="users", null=True,
                                        on_delete=fields.SET_NULL)
    # Agents serve several hospitals and see only theirs.
    served_hospitals = fields.ManyToManyField("models.Hospital", related_name="agents", through="user_served_hospital")
    openid = fields.CharField(max_length=64, unique=True, null=True)
    mp_openid = fields.CharField(max_length=64, unique=True, null=True)
    unionid = fields.CharField(max_length=64, null=True, db_index=True)
    username = fields.CharField(max_length=64, unique=True, null=True)
    password_hash = fields.CharField(max_length=256, null=True)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "app_user"

    def label(self) -> str:
        return self.name or self.username or (self.openid or "")[-6:] or f"#{self.id}"


class InvitationCode(Model):
    """A code an administrator gives to staff so they can bind their WeChat identity to a hospital."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=16, unique=True)
    hospital = fields.ForeignKeyField("models.Hospital", related_name="invitations", on_delete=fields.CASCADE)
    department = fields.ForeignKeyField("models.Department", related_name="invitations", null=True,
                                        on_delete=fields.SET_NULL)
    role = fields.CharField(max_length=16, default="staff")
    max_uses = fields.IntField(default=1)
    uses = fields.IntField(default=0)
    expires_at = fields.DatetimeField()
    created_by = fields.ForeignKeyField("models.User", related_name="invitations_made", null=True,
                                        on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "invitation_code"


class AuditEntry(Model):
    """Who changed what, when: every change to devices, groups, tickets, users."""

    id = fields.BigIntField(primary_key=True)
    actor = fields.ForeignKeyField("models.User", related_name="audit_entries", null=True, on_delete=fields.SET_NULL)
    actor_label = fields.CharField(max_length=64, default="system")
    action = fields.CharField(max_length=48)  # device.created, group.merged, ticket.state_changed, …
    entity = fields.CharField(max_length=32)
    entity_id = fields.CharField(max_length=64)
    changes = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_entry"
        indexes = (("entity", "entity_id"),)


class MediaFile(Model):
    """An uploaded file: the bytes live under MEDIA_ROOT, the database holds what we know of them."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=16)  # image | audio | video | document | waveform
    content_type = fields.CharField(max_length=64)
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64, db_index=True)
    path = fields.CharField(max_length=256)  # relative to MEDIA_ROOT
    thumbnail_path = fields.CharField(max_length=256, null=True)
    width = fields.IntField(null=True)
    height = fields.IntField(null=True)
    original_name = fields.CharField(max_length=128, default="")
    uploaded_by = fields.ForeignKeyField("models.User", related_name="uploads", null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "media_file"
