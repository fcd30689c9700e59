"""Who is on which plan moves from accounts.Profile.plan to quotas.UserPlan (copied here, dropped by accounts 0002)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("quotas", "0001_initial"),
        ("accounts", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="UserPlan",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("plan", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="members", to="quotas.plan")),
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE, related_name="quota_plan", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
        ),
        migrations.RunSQL(
            "INSERT INTO quotas_userplan (user_id, plan_id) SELECT user_id, plan_id FROM accounts_profile WHERE plan_id IS NOT NULL",
            "UPDATE accounts_profile p SET plan_id = u.plan_id FROM quotas_userplan u WHERE u.user_id = p.user_id",
        ),
    ]
