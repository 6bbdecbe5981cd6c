"""The knowledge base's data: entries, the version every worker's index follows, and what the robot was asked."""

from tortoise import fields
from tortoise.models import Model

TIERS = ("basic", "advanced")
ANSWER_KINDS = ("answer", "clarify", "handoff", "decline")


class KBEntry(Model):
    """One question the robot can answer, in the import/export shape
    ``{"id","device_type","question","variants","answer","tier","docs","videos"}``."""

    id = fields.CharField(max_length=64, primary_key=True)
    device_type = fields.CharField(max_length=32, db_index=True)
    question = fields.CharField(max_length=256)
    variants = fields.JSONField(default=list)
    answer = fields.TextField()
    tier = fields.CharField(max_length=16, default="basic")
    docs = fields.JSONField(default=list)  # [{"title", "url"}]: manual sections, links
    videos = fields.JSONField(default=list)  # [{"title", "url"}]: video courses
    active = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "kb_entry"


class KBState(Model):
    """A single row: the knowledge base's version, bumped by every change (commands included), so that every
    worker rebuilds its index without a restart."""

    id = fields.IntField(primary_key=True)
    version = fields.IntField(default=0)
    changed_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "kb_state"


class QuestionLog(Model):
    """Every question the robot answered: what it chose, how sure it was, and what the person said of it."""

    id = fields.BigIntField(primary_key=True)
    openid = fields.CharField(max_length=64, db_index=True)
    text = fields.TextField()
    device_type = fields.CharField(max_length=32, null=True)  # from a recent scan
    kind = fields.CharField(max_length=16)  # answer | clarify | handoff | decline
    entry_id = fields.CharField(max_length=64, null=True, db_index=True)
    confidence = fields.FloatField(null=True)
    feedback = fields.CharField(max_length=16, null=True)  # helpful | unhelpful
    ticket_number = fields.CharField(max_length=16, null=True)
    reviewed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "kb_question_log"


class KBProposal(Model):
    """What an agent's reply to a handed-off question teaches the robot: a new variant of an entry (used at once,
    an administrator may still reject it) or a new entry (used once an administrator approves)."""

    id = fields.IntField(primary_key=True)
    kind = fields.CharField(max_length=16)  # variant | entry
    entry_id = fields.CharField(max_length=64)  # the entry a variant joins, or the new entry's id
    question = fields.CharField(max_length=256)
    answer = fields.TextField(default="")  # a new entry's answer
    device_type = fields.CharField(max_length=32, default="")
    tier = fields.CharField(max_length=16, default="basic")
    source_log = fields.ForeignKeyField("models.QuestionLog", related_name="proposals", null=True,
                                        on_delete=fields.SET_NULL)
    proposed_by = fields.ForeignKeyField("models.User", related_name="kb_proposals", null=True,
                                         on_delete=fields.SET_NULL)
    status = fields.CharField(max_length=16)  # applied (variant, in use) | pending (entry) | approved | rejected
    decided_by = fields.ForeignKeyField("models.User", related_name="kb_decisions", null=True,
                                        on_delete=fields.SET_NULL)
    decided_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "kb_proposal"
