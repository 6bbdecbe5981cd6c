from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0008_vision')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CannedReply',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hospital', fields.ForeignKeyField('models.Hospital', source_field='hospital_id', null=True, db_constraint=True, to_field='id', related_name='canned_replies', on_delete=OnDelete.CASCADE)),
                ('title', fields.CharField(max_length=64)),
                ('text', fields.TextField(unique=False)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='canned_replies', on_delete=OnDelete.SET_NULL)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'canned_reply', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A prepared reply agents pick from; for one hospital, or for all (hospital null).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TicketMessage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('ticket', fields.ForeignKeyField('models.Ticket', source_field='ticket_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('author', fields.ForeignKeyField('models.User', source_field='author_id', null=True, db_constraint=True, to_field='id', related_name='ticket_messages', on_delete=OnDelete.SET_NULL)),
                ('author_label', fields.CharField(default='', max_length=64)),
                ('author_role', fields.CharField(max_length=16)),
                ('kind', fields.CharField(max_length=16)),
                ('text', fields.TextField(default='', unique=False)),
                ('via', fields.CharField(null=True, max_length=16)),
                ('delivery', fields.CharField(default='internal', max_length=16)),
                ('delivery_error', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ticket_message', 'app': 'models', 'pk_attr': 'id', 'table_description': "What people wrote on a ticket: an agent's reply to the reporter (sent over WeChat) or a working note"},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Ticket',
            name='engineer_accepted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='TicketAttachment',
            name='message',
            field=fields.ForeignKeyField('models.TicketMessage', source_field='message_id', null=True, db_constraint=True, to_field='id', related_name='attachments', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='TicketTransition',
            name='action',
            field=fields.CharField(default='', max_length=24),
        ),
    ]
