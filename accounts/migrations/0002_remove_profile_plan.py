from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("quotas", "0002_userplan"),  # copied the plans first
    ]

    operations = [
        migrations.RemoveField(model_name="profile", name="plan"),
    ]
