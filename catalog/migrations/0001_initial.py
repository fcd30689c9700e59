"""The catalog moves out of the chat app. Its table keeps its name (chat_aimodel): state only."""

from django.db import migrations, models

from ._moves import content_types_to


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("chat", "0003_provider_limits"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AIModel",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("slug", models.SlugField(help_text="What users and the API of this app call it.", max_length=64, unique=True)),
                        ("name", models.CharField(max_length=100)),
                        ("description", models.CharField(blank=True, max_length=200)),
                        ("provider_model", models.CharField(help_text="The model id sent to the provider.", max_length=100)),
                        ("context_window", models.PositiveIntegerField()),
                        ("max_output_tokens", models.PositiveIntegerField()),
                        ("supports_streaming", models.BooleanField(default=True)),
                        ("supports_system_message", models.BooleanField(default=False)),
                        (
                            "uses_max_completion_tokens",
                            models.BooleanField(
                                default=True, help_text="Send max_completion_tokens (reasoning models) instead of max_tokens."
                            ),
                        ),
                        ("supports_temperature", models.BooleanField(default=False)),
                        ("is_reasoning", models.BooleanField(default=True)),
                        (
                            "reasoning_efforts",
                            models.CharField(
                                blank=True, help_text="Comma-separated reasoning_effort levels, empty if not supported.", max_length=100
                            ),
                        ),
                        ("enabled", models.BooleanField(default=True)),
                        ("display_order", models.IntegerField(default=0)),
                        (
                            "rpm_limit",
                            models.PositiveIntegerField(
                                blank=True,
                                help_text="Provider requests per minute for the whole organisation (your usage tier).",
                                null=True,
                            ),
                        ),
                        (
                            "tpm_limit",
                            models.PositiveIntegerField(
                                blank=True, help_text="Provider tokens per minute for the whole organisation (your usage tier).", null=True
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "AI model",
                        "db_table": "chat_aimodel",
                        "ordering": ["display_order", "name"],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("max_output_tokens__lt", models.F("context_window"))), name="aimodel_output_fits_window"
                            )
                        ],
                    },
                ),
            ]
        ),
        content_types_to("catalog", ["aimodel"]),
    ]
