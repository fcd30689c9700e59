from django.db import migrations

from chat.catalog import catalog_seed


def seed(apps, schema_editor):
    catalog_seed(apps.get_model("chat", "AIModel"), apps.get_model("chat", "Plan"), apps.get_model("chat", "PlanLimit"))


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
