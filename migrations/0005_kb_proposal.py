from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_knowledge')]

    initial = False

    operations = [
        ops.CreateModel(
            name='KBProposal',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=16)),
                ('entry_id', fields.CharField(max_length=64)),
                ('question', fields.CharField(max_length=256)),
                ('answer', fields.TextField(default='', unique=False)),
                ('device_type', fields.CharField(default='', max_length=32)),
                ('tier', fields.CharField(default='basic', max_length=16)),
                ('source_log', fields.ForeignKeyField('models.QuestionLog', source_field='source_log_id', null=True, db_constraint=True, to_field='id', related_name='proposals', on_delete=OnDelete.SET_NULL)),
                ('proposed_by', fields.ForeignKeyField('models.User', source_field='proposed_by_id', null=True, db_constraint=True, to_field='id', related_name='kb_proposals', on_delete=OnDelete.SET_NULL)),
                ('status', fields.CharField(max_length=16)),
                ('decided_by', fields.ForeignKeyField('models.User', source_field='decided_by_id', null=True, db_constraint=True, to_field='id', related_name='kb_decisions', on_delete=OnDelete.SET_NULL)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'kb_proposal', 'app': 'models', 'pk_attr': 'id', 'table_description': "What an agent's reply to a handed-off question teaches the robot: a new variant of an entry (used at once,"},
            bases=['Model'],
        ),
    ]
