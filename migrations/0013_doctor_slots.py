from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0012_vitals')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PractitionerSlot',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('his_id', fields.CharField(null=True, unique=True, max_length=64)),
                ('practitioner', fields.ForeignKeyField('models.Practitioner', source_field='practitioner_id', db_constraint=True, to_field='id', related_name='slots', on_delete=OnDelete.CASCADE)),
                ('start', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('end', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharField(default='free', max_length=8)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'practitioner_slot', 'app': 'models', 'indexes': [Index(fields=['practitioner_id', 'status', 'start'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
