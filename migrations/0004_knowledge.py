from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_label_qr')]

    initial = False

    operations = [
        ops.CreateModel(
            name='KBEntry',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('device_type', fields.CharField(db_index=True, max_length=32)),
                ('question', fields.CharField(max_length=256)),
                ('variants', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('answer', fields.TextField(unique=False)),
                ('tier', fields.CharField(default='basic', max_length=16)),
                ('docs', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('videos', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('active', fields.BooleanField(default=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'kb_entry', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One question the robot can answer, in the import/export shape'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='KBState',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('version', fields.IntField(default=0)),
                ('changed_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'kb_state', 'app': 'models', 'pk_attr': 'id', 'table_description': "A single row: the knowledge base's version, bumped by every change (commands included), so that every"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='QuestionLog',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('text', fields.TextField(unique=False)),
                ('device_type', fields.CharField(null=True, max_length=32)),
                ('kind', fields.CharField(max_length=16)),
                ('entry_id', fields.CharField(null=True, db_index=True, max_length=64)),
                ('confidence', fields.FloatField(null=True)),
                ('feedback', fields.CharField(null=True, max_length=16)),
                ('ticket_number', fields.CharField(null=True, max_length=16)),
                ('reviewed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'kb_question_log', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Every question the robot answered: what it chose, how sure it was, and what the person said of it.'},
            bases=['Model'],
        ),
    ]
