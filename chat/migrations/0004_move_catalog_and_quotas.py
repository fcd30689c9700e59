"""The catalog and the quota models now live in the catalog and quotas apps (state only:
their tables keep their names); a reply's quota state lives in quotas.Reservation."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0003_provider_limits"),
        ("catalog", "0001_initial"),
        ("quotas", "0003_reservation"),  # copied the reply quota state first
        ("accounts", "0002_remove_profile_plan"),  # nothing points at chat.Plan any more
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="model",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to="catalog.aimodel"),
                ),
                migrations.RemoveField(
                    model_name="ledgerentry",
                    name="model",
                ),
                migrations.RemoveField(
                    model_name="quotagrant",
                    name="model",
                ),
                migrations.RemoveField(
                    model_name="quotaoverride",
                    name="model",
                ),
                migrations.RemoveField(
                    model_name="planlimit",
                    name="model",
                ),
                migrations.RemoveField(
                    model_name="quotacounter",
                    name="model",
                ),
                migrations.AlterField(
                    model_name="conversation",
                    name="model",
                    field=models.ForeignKey(
                        help_text="The model picked last in this chat.", on_delete=django.db.models.deletion.PROTECT, to="catalog.aimodel"
                    ),
                ),
                migrations.RemoveField(
                    model_name="ledgerentry",
                    name="actor",
                ),
                migrations.RemoveField(
                    model_name="ledgerentry",
                    name="message",
                ),
                migrations.RemoveField(
                    model_name="ledgerentry",
                    name="user",
                ),
                migrations.RemoveField(
                    model_name="planlimit",
                    name="plan",
                ),
                migrations.RemoveField(
                    model_name="quotacounter",
                    name="user",
                ),
                migrations.RemoveField(
                    model_name="quotagrant",
                    name="created_by",
                ),
                migrations.RemoveField(
                    model_name="quotagrant",
                    name="user",
                ),
                migrations.RemoveField(
                    model_name="quotaoverride",
                    name="created_by",
                ),
                migrations.RemoveField(
                    model_name="quotaoverride",
                    name="user",
                ),
                migrations.DeleteModel(
                    name="AIModel",
                ),
                migrations.DeleteModel(
                    name="LedgerEntry",
                ),
                migrations.DeleteModel(
                    name="Plan",
                ),
                migrations.DeleteModel(
                    name="PlanLimit",
                ),
                migrations.DeleteModel(
                    name="QuotaCounter",
                ),
                migrations.DeleteModel(
                    name="QuotaGrant",
                ),
                migrations.DeleteModel(
                    name="QuotaOverride",
                ),
            ]
        ),
        migrations.RemoveField(
            model_name="message",
            name="quota",
        ),
        migrations.RemoveField(
            model_name="message",
            name="quota_window_start",
        ),
    ]
