"""Fail closed: "unlimited" becomes an explicit choice on a limit, never a blank number alone."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_aimodel_tokenizer"),
        ("quotas", "0004_counter_resets"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="planlimit",
            name="unlimited",
            field=models.BooleanField(default=False, help_text="No limit at all for this model: an explicit choice."),
        ),
        migrations.AddField(
            model_name="quotaoverride",
            name="unlimited",
            field=models.BooleanField(default=False, help_text="No limit at all for this model: an explicit choice."),
        ),
        migrations.AlterField(
            model_name="planlimit",
            name="messages",
            field=models.PositiveIntegerField(blank=True, help_text="Messages per window.", null=True),
        ),
        migrations.AlterField(
            model_name="quotaoverride",
            name="messages",
            field=models.PositiveIntegerField(blank=True, help_text="Messages per window.", null=True),
        ),
        # What a blank number meant until now stays what it means, but explicitly.
        migrations.RunSQL(
            "UPDATE chat_planlimit SET unlimited = true WHERE messages IS NULL AND NOT disabled;"
            "UPDATE chat_quotaoverride SET unlimited = true WHERE messages IS NULL AND NOT disabled;",
            migrations.RunSQL.noop,
        ),
        migrations.AddConstraint(
            model_name="planlimit",
            constraint=models.CheckConstraint(
                condition=models.Q(("messages__isnull", False), ("unlimited", True), ("disabled", True), _connector="OR"),
                name="planlimit_limit_explicit",
            ),
        ),
        migrations.AddConstraint(
            model_name="quotaoverride",
            constraint=models.CheckConstraint(
                condition=models.Q(("messages__isnull", False), ("unlimited", True), ("disabled", True), _connector="OR"),
                name="override_limit_explicit",
            ),
        ),
    ]
