"""Plans, limits, overrides, grants, counters and the ledger move out of the chat app.

Their tables keep their names (chat_*): the state moves, the data stays. The
one database change: the ledger's reply id is no longer a foreign key to the
message, so the audit keeps the id when a conversation is deleted.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from catalog.migrations._moves import content_types_to

DROP_LEDGER_MESSAGE_FK = """
DO $$
DECLARE name text;
BEGIN
    SELECT conname INTO name FROM pg_constraint
     WHERE conrelid = 'chat_ledgerentry'::regclass AND contype = 'f'
       AND conkey = ARRAY[(SELECT attnum FROM pg_attribute
                            WHERE attrelid = 'chat_ledgerentry'::regclass AND attname = 'message_id')];
    IF name IS NOT NULL THEN
        EXECUTE format('ALTER TABLE chat_ledgerentry DROP CONSTRAINT %I', name);
    END IF;
END $$;
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("catalog", "0001_initial"),
        ("chat", "0003_provider_limits"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Plan",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("description", models.CharField(blank=True, max_length=200)),
                        ("is_default", models.BooleanField(default=False, help_text="New users get this plan.")),
                        (
                            "calendar_time_zone",
                            models.CharField(default="UTC", help_text="Where calendar windows turn over.", max_length=64),
                        ),
                    ],
                    options={
                        "db_table": "chat_plan",
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("is_default", True)), fields=("is_default",), name="one_default_plan"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="LedgerEntry",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("reserve", "Reserve"),
                                    ("settle", "Settle"),
                                    ("refund", "Refund"),
                                    ("grant", "Grant"),
                                    ("override", "Override"),
                                    ("reset", "Reset"),
                                    ("plan", "Plan"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("delta", models.IntegerField(default=0, help_text="+1 reserve, -1 refund, 0 otherwise.")),
                        ("reply_id", models.BigIntegerField(blank=True, db_column="message_id", db_index=True, null=True)),
                        ("note", models.CharField(blank=True, max_length=300)),
                        ("prompt_tokens", models.PositiveIntegerField(default=0)),
                        ("completion_tokens", models.PositiveIntegerField(default=0)),
                        ("reasoning_tokens", models.PositiveIntegerField(default=0)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "model",
                            models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, to="catalog.aimodel"),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="quota_ledger", to=settings.AUTH_USER_MODEL
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "ledger entries",
                        "db_table": "chat_ledgerentry",
                        "ordering": ["-id"],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("kind", "reserve")), fields=("reply_id",), name="ledger_one_reserve"
                            ),
                            models.UniqueConstraint(
                                condition=models.Q(("kind__in", ["settle", "refund"])), fields=("reply_id",), name="ledger_one_outcome"
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="PlanLimit",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("messages", models.PositiveIntegerField(blank=True, help_text="Blank for unlimited.", null=True)),
                        (
                            "window_kind",
                            models.CharField(
                                choices=[
                                    ("anchored", "anchored (opens at the first message)"),
                                    ("calendar", "calendar (day / week / month boundaries)"),
                                    ("rolling", "rolling (the last N hours or days)"),
                                ],
                                default="anchored",
                                max_length=16,
                            ),
                        ),
                        ("window_length", models.PositiveIntegerField(default=1)),
                        (
                            "window_unit",
                            models.CharField(
                                choices=[("hour", "Hour"), ("day", "Day"), ("week", "Week"), ("month", "Month")],
                                default="day",
                                max_length=8,
                            ),
                        ),
                        ("disabled", models.BooleanField(default=False, help_text="Refuse this model entirely.")),
                        ("model", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="catalog.aimodel")),
                        ("plan", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="limits", to="quotas.plan")),
                    ],
                    options={
                        "db_table": "chat_planlimit",
                        "constraints": [
                            models.UniqueConstraint(fields=("plan", "model"), name="one_limit_per_plan_model"),
                            models.CheckConstraint(
                                condition=models.Q(("window_length__gte", 1), ("window_length__lte", 366)), name="planlimit_window_sane"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("messages__isnull", True), ("messages__lte", 1000000), _connector="OR"),
                                name="planlimit_messages_sane",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    models.Q(("window_kind", "calendar"), _negated=True),
                                    models.Q(("window_length", 1), ("window_unit__in", ["day", "week", "month"])),
                                    _connector="OR",
                                ),
                                name="planlimit_calendar_shape",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("window_kind", "calendar"), ("window_unit__in", ["hour", "day", "week"]), _connector="OR"
                                ),
                                name="planlimit_fixed_length_unit",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="QuotaCounter",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("window_start", models.DateTimeField(blank=True, null=True)),
                        ("window_end", models.DateTimeField(blank=True, null=True)),
                        ("used", models.IntegerField(default=0)),
                        ("reset_at", models.DateTimeField(blank=True, help_text="When an admin last reset this window.", null=True)),
                        ("model", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="catalog.aimodel")),
                        (
                            "user",
                            models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL),
                        ),
                    ],
                    options={
                        "db_table": "chat_quotacounter",
                        "constraints": [
                            models.UniqueConstraint(fields=("user", "model"), name="one_counter_per_user_model"),
                            models.CheckConstraint(condition=models.Q(("used__gte", 0)), name="counter_used_not_negative"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="QuotaGrant",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("messages", models.PositiveIntegerField()),
                        ("expires_at", models.DateTimeField()),
                        ("note", models.CharField(blank=True, max_length=200)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        ("model", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="catalog.aimodel")),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="quota_grants", to=settings.AUTH_USER_MODEL
                            ),
                        ),
                    ],
                    options={
                        "db_table": "chat_quotagrant",
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("messages__gte", 1), ("messages__lte", 100000)), name="grant_messages_sane"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="QuotaOverride",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("messages", models.PositiveIntegerField(blank=True, help_text="Blank for unlimited.", null=True)),
                        (
                            "window_kind",
                            models.CharField(
                                choices=[
                                    ("anchored", "anchored (opens at the first message)"),
                                    ("calendar", "calendar (day / week / month boundaries)"),
                                    ("rolling", "rolling (the last N hours or days)"),
                                ],
                                default="anchored",
                                max_length=16,
                            ),
                        ),
                        ("window_length", models.PositiveIntegerField(default=1)),
                        (
                            "window_unit",
                            models.CharField(
                                choices=[("hour", "Hour"), ("day", "Day"), ("week", "Week"), ("month", "Month")],
                                default="day",
                                max_length=8,
                            ),
                        ),
                        ("disabled", models.BooleanField(default=False, help_text="Refuse this model entirely.")),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        ("model", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="catalog.aimodel")),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="quota_overrides", to=settings.AUTH_USER_MODEL
                            ),
                        ),
                    ],
                    options={
                        "db_table": "chat_quotaoverride",
                        "constraints": [
                            models.UniqueConstraint(fields=("user", "model"), name="one_override_per_user_model"),
                            models.CheckConstraint(
                                condition=models.Q(("window_length__gte", 1), ("window_length__lte", 366)), name="override_window_sane"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("messages__isnull", True), ("messages__lte", 1000000), _connector="OR"),
                                name="override_messages_sane",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    models.Q(("window_kind", "calendar"), _negated=True),
                                    models.Q(("window_length", 1), ("window_unit__in", ["day", "week", "month"])),
                                    _connector="OR",
                                ),
                                name="override_calendar_shape",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("window_kind", "calendar"), ("window_unit__in", ["hour", "day", "week"]), _connector="OR"
                                ),
                                name="override_fixed_length_unit",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[migrations.RunSQL(DROP_LEDGER_MESSAGE_FK, migrations.RunSQL.noop)],
        ),
        content_types_to("quotas", ["plan", "planlimit", "quotaoverride", "quotagrant", "quotacounter", "ledgerentry"]),
    ]
