"""A reply's quota state moves from chat.Message (quota, quota_window_start) to quotas.Reservation.

Copied here from every message that was counted; chat 0004 drops the old columns.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

COPY = """
INSERT INTO quotas_reservation (reply_id, user_id, model_id, state, window_start, created_at)
SELECT m.id, c.user_id, m.model_id, m.quota, m.quota_window_start, m.created_at
  FROM chat_message m JOIN chat_conversation c ON c.id = m.conversation_id
 WHERE m.quota <> 'none'
"""

COPY_BACK = """
UPDATE chat_message m SET quota = r.state, quota_window_start = r.window_start
  FROM quotas_reservation r WHERE r.reply_id = m.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("quotas", "0002_userplan"),
        ("chat", "0003_provider_limits"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Reservation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reply_id", models.BigIntegerField(unique=True)),
                (
                    "state",
                    models.CharField(
                        choices=[("reserved", "Reserved"), ("settled", "Settled"), ("refunded", "Refunded")],
                        default="reserved",
                        max_length=16,
                    ),
                ),
                ("window_start", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField()),
                ("model", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="catalog.aimodel")),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "indexes": [
                    models.Index(
                        condition=models.Q(("state__in", ["reserved", "settled"])),
                        fields=["user", "model", "created_at"],
                        name="reservation_counted_idx",
                    )
                ],
            },
        ),
        migrations.RunSQL(COPY, COPY_BACK),
    ]
