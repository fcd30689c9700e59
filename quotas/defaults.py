"""The default catalog and plan, for a database a test flushed. Fresh installs get the
same from the migration chat/0002_seed_catalog, which keeps its own frozen copy."""

from catalog.models import AIModel
from catalog.prices import prices_seed

from .models import Plan, PlanLimit

MODELS = [
    dict(
        slug="o1-preview",
        name="o1-preview",
        description="Deep reasoning for hard problems; slower.",
        provider_model="o1-preview",
        context_window=128_000,
        max_output_tokens=32_768,
        supports_streaming=True,
        supports_system_message=False,
        uses_max_completion_tokens=True,
        tokenizer="o200k_base",
        is_reasoning=True,
        reasoning_efforts="",
        display_order=10,
    ),
    dict(
        slug="o1-mini",
        name="o1-mini",
        description="Fast reasoning, strong at code and maths.",
        provider_model="o1-mini",
        context_window=128_000,
        max_output_tokens=65_536,
        supports_streaming=True,
        supports_system_message=False,
        uses_max_completion_tokens=True,
        tokenizer="o200k_base",
        is_reasoning=True,
        reasoning_efforts="",
        display_order=20,
    ),
    dict(
        slug="gpt-4o",
        name="GPT-4o",
        description="Quick everyday answers.",
        provider_model="gpt-4o",
        context_window=128_000,
        max_output_tokens=16_384,
        supports_streaming=True,
        supports_system_message=True,
        uses_max_completion_tokens=False,
        tokenizer="o200k_base",
        is_reasoning=False,
        reasoning_efforts="",
        supports_images=True,
        display_order=30,
    ),
]

LIMITS = {
    "o1-preview": dict(messages=50, window_kind="anchored", window_length=7, window_unit="day"),
    "o1-mini": dict(messages=50, window_kind="anchored", window_length=1, window_unit="day"),
    "gpt-4o": dict(messages=80, window_kind="rolling", window_length=3, window_unit="hour"),
}


def defaults_seed() -> None:
    plan, _ = Plan.objects.get_or_create(name="Default", defaults={"is_default": True, "description": "What every new user gets."})
    for fields in MODELS:
        model, _ = AIModel.objects.get_or_create(slug=fields["slug"], defaults=fields)
        PlanLimit.objects.get_or_create(plan=plan, model=model, defaults=LIMITS[model.slug])
    prices_seed()
