"""Today's OpenAI reasoning models, added disabled: an admin enables them and gives them a limit in a plan."""

from django.db import migrations

COMMON = dict(
    api="responses",
    context_window=200_000,
    max_output_tokens=100_000,
    supports_streaming=True,
    supports_system_message=True,
    uses_max_completion_tokens=True,
    supports_temperature=False,
    tokenizer="o200k_base",
    is_reasoning=True,
    reasoning_efforts="low,medium,high",
    reasoning_summaries=True,
    store=False,
    enabled=False,
)
MODELS = [
    dict(slug="o3", name="o3", provider_model="o3", description="OpenAI's strongest reasoning; takes images.", display_order=50),
    dict(
        slug="o4-mini", name="o4-mini", provider_model="o4-mini", description="Fast, affordable reasoning; takes images.", display_order=60
    ),
]


def add(apps, schema_editor):
    AIModel = apps.get_model("catalog", "AIModel")
    for fields in MODELS:
        AIModel.objects.get_or_create(slug=fields["slug"], defaults={**COMMON, **fields})


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_aimodel_api")]

    operations = [migrations.RunPython(add, migrations.RunPython.noop)]
