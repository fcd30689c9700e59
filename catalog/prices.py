"""What an answer costs: the price in force when it was sent, times its tokens, in micro-dollars.

A price in dollars per million tokens is exactly micro-dollars per token, so a cost is
tokens × price with Decimal arithmetic, rounded up to a whole micro-dollar: no floats anywhere.
Completion tokens include the reasoning tokens (billed as output, as providers bill them);
cached prompt tokens are billed at the cached-input price.
"""

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from django.db import connection

from .models import AIModel, ModelPrice

MICROS = 1_000_000

# OpenAI's public list prices (https://openai.com/api/pricing/) on the day each model or price
# change was announced, US$ per 1M tokens: input, cached input, output. Check them against the
# provider's current page before billing anyone; a change is a new row with a later date.
SOURCE = "OpenAI list price, openai.com/api/pricing"
PRICES = [
    ("o1-preview", "2024-09-12", "15", "7.50", "60"),
    ("o1-mini", "2024-09-12", "3", "1.50", "12"),
    ("gpt-4o", "2024-10-01", "2.50", "1.25", "10"),
    ("o3", "2025-04-16", "10", "2.50", "40"),
    ("o3", "2025-06-10", "2", "0.50", "8"),
    ("o4-mini", "2025-04-16", "1.10", "0.275", "4.40"),
]


@dataclass(frozen=True)
class Price:
    """Micro-dollars per token (= dollars per million tokens)."""

    input: Decimal
    cached_input: Decimal
    output: Decimal


def price_sql(model_id: str, when: str) -> str:
    """The price in force, as a query over `model_id` and `when` (SQL expressions or placeholders):
    one row of input, cached input and output prices, or none. Lets a caller read it in its own
    statement (quotas.services.quota_settle), by the same rule as price_at."""
    return f"""SELECT input_per_million, cached_input_per_million, output_per_million FROM {ModelPrice._meta.db_table}
        WHERE model_id = {model_id} AND effective_from <= {when} ORDER BY effective_from DESC LIMIT 1"""


_PRICE_AT_SQL = price_sql("%s", "%s")


def price_at(model_id: int, when: dt.datetime) -> Price | None:
    """The model's price in force at `when`, or None when it has none (its answers cost 0, unknown)."""
    with connection.cursor() as cursor:
        cursor.execute(_PRICE_AT_SQL, [model_id, when])
        row = cursor.fetchone()
    return Price(*row) if row else None


def cost_micros(price: Price, *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> int:
    """Whole micro-dollars, rounded up. `completion_tokens` includes reasoning tokens."""
    cached = min(max(cached_tokens, 0), prompt_tokens)
    exact = (prompt_tokens - cached) * price.input + cached * price.cached_input + completion_tokens * price.output
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def dollars(micros: int) -> Decimal:
    return Decimal(micros) / MICROS


def prices_seed() -> None:
    """The list prices above, for the catalog's models that exist (a flushed test database, a migration)."""
    models = {m.slug: m for m in AIModel.objects.filter(slug__in={p[0] for p in PRICES})}
    for slug, day, inp, cached, out in PRICES:
        if slug in models:
            ModelPrice.objects.get_or_create(
                model=models[slug],
                effective_from=dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC),
                defaults={
                    "input_per_million": Decimal(inp),
                    "cached_input_per_million": Decimal(cached),
                    "output_per_million": Decimal(out),
                    "source": SOURCE,
                },
            )
