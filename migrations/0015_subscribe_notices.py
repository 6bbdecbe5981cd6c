from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0014_consultations')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ConsultationNotice',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('consultation', fields.ForeignKeyField('models.Consultation', source_field='consultation_id', db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='consultation_notices', on_delete=OnDelete.CASCADE)),
                ('openid', fields.CharField(max_length=64)),
                ('event', fields.CharField(max_length=16)),
                ('template_id', fields.CharField(default='', max_length=64)),
                ('status', fields.CharField(default='pending', max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('last_error', fields.TextField(default='', unique=False)),
                ('sending_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'consultation_notice', 'app': 'models', 'unique_together': (('consultation', 'user', 'event'),), 'pk_attr': 'id', 'table_description': "One subscribe message owed to one mini-program user for the HIS's answer to a consultation: sent, retried"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SubscribeCredit',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='subscribe_credits', on_delete=OnDelete.CASCADE)),
                ('template_id', fields.CharField(max_length=64)),
                ('count', fields.IntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'subscribe_credit', 'app': 'models', 'unique_together': (('user', 'template_id'),), 'pk_attr': 'id', 'table_description': 'How many subscribe messages of one template a mini-program user allows: each "accept" the mini program'},
            bases=['Model'],
        ),
    ]
