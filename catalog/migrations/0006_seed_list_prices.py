"""OpenAI's public list prices for the catalog's models (a frozen copy of catalog/prices.py PRICES)."""

import datetime as dt
from decimal import Decimal

from django.db import migrations

SOURCE = "OpenAI list price, openai.com/api/pricing"
PRICES = [
    ("o1-preview", "2024-09-12", "15", "7.50", "60"),
    ("o1-mini", "2024-09-12", "3", "1.50", "12"),
    ("gpt-4o", "2024-10-01", "2.50", "1.25", "10"),
    ("o3", "2025-04-16", "10", "2.50", "40"),
    ("o3", "2025-06-10", "2", "0.50", "8"),
    ("o4-mini", "2025-04-16", "1.10", "0.275", "4.40"),
]


def seed(apps, schema_editor):
    AIModel = apps.get_model("catalog", "AIModel")
    ModelPrice = apps.get_model("catalog", "ModelPrice")
    for slug, day, inp, cached, out in PRICES:
        model = AIModel.objects.filter(slug=slug).first()
        if model is not None:
            ModelPrice.objects.get_or_create(
                model=model,
                effective_from=dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC),
                defaults=dict(
                    input_per_million=Decimal(inp), cached_input_per_million=Decimal(cached), output_per_million=Decimal(out), source=SOURCE
                ),
            )


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_modelprice")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
