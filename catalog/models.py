"""The models users can pick. The lowest room: quotas, chat and generation all point here."""

from django.db import models
from django.db.models import F, Q


class AIModel(models.Model):
    """A model users can pick; its o1-era quirks are flags, not special cases."""

    class API(models.TextChoices):
        CHAT_COMPLETIONS = "chat_completions", "Chat Completions"
        RESPONSES = "responses", "Responses"

    slug = models.SlugField(max_length=64, unique=True, help_text="What users and the API of this app call it.")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True)
    provider_model = models.CharField(max_length=100, help_text="The model id sent to the provider.")
    api = models.CharField(
        max_length=32,
        choices=API.choices,
        default=API.CHAT_COMPLETIONS,
        help_text="Chat Completions: o1-preview, o1-mini and OpenAI-compatible servers. "
        "Responses: OpenAI's newer reasoning models (o3, o4-mini…).",
    )
    context_window = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    supports_streaming = models.BooleanField(default=True)
    supports_system_message = models.BooleanField(
        default=False,
        help_text="Takes instructions as a system message (Responses: `instructions`). Unticked (o1-preview, o1-mini): "
        "a user's custom instructions are added, labelled, to the first user message instead.",
    )
    uses_max_completion_tokens = models.BooleanField(
        default=True,
        help_text="Chat Completions only: send max_completion_tokens (reasoning models) instead of max_tokens. "
        "The Responses API always takes max_output_tokens.",
    )
    supports_images = models.BooleanField(
        default=False,
        help_text="Takes images as input (GPT-4o, o1, o3, o4-mini; not o1-preview or o1-mini). Off: the chat offers no images for it.",
    )
    tokenizer = models.CharField(
        max_length=32,
        blank=True,
        choices=[("o200k_base", "o200k_base (OpenAI o1, o3, o4, GPT-4o, GPT-4.1, GPT-5)")],
        help_text="How prompts are counted against the context window. Blank: unknown, counted conservatively.",
    )
    is_reasoning = models.BooleanField(default=True)
    reasoning_efforts = models.CharField(
        max_length=100,
        blank=True,
        help_text="Comma-separated reasoning effort levels the model accepts (low,medium,high); users pick one per message. "
        "Empty: the model takes none and the control is hidden.",
    )
    reasoning_summaries = models.BooleanField(
        default=False, help_text="Responses API only: ask for reasoning summaries and show them under “Thought for N seconds”."
    )
    store = models.BooleanField(
        default=False, help_text="Responses API only: let the provider keep each response (store=true). Off: nothing is kept there."
    )
    enabled = models.BooleanField(default=True)
    display_order = models.IntegerField(default=0)
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Provider requests per minute for the whole organisation (your usage tier)."
    )
    tpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Provider tokens per minute for the whole organisation (your usage tier)."
    )

    class Meta:
        db_table = "chat_aimodel"  # created by the chat app before the catalog had a room of its own
        ordering = ["display_order", "name"]
        verbose_name = "AI model"
        constraints = [
            models.CheckConstraint(condition=Q(max_output_tokens__lt=F("context_window")), name="aimodel_output_fits_window"),
            # Summaries and provider-side storage exist only on the Responses path.
            models.CheckConstraint(
                condition=Q(api="responses") | Q(reasoning_summaries=False, store=False), name="aimodel_responses_only_flags"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def efforts(self) -> list[str]:
        return efforts_parse(self.reasoning_efforts)


EFFORTS = ("low", "medium", "high")


def efforts_parse(text: str) -> list[str]:
    """A comma-separated list of effort levels, in the order low, medium, high; unknown words are dropped."""
    named = {e.strip() for e in text.split(",")}
    return [e for e in EFFORTS if e in named]


class ModelPrice(models.Model):
    """What the provider charges for a model from a moment on, in US dollars per million tokens.

    A dollar per million tokens is a micro-dollar per token, so costs are kept in whole
    micro-dollars (catalog/prices.py). Reasoning tokens are output tokens: providers bill them so.
    A price change is a new row with a later `effective_from`; old answers keep the price of their time.
    """

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="prices")
    effective_from = models.DateTimeField(help_text="The price applies to answers sent from this moment (UTC) on.")
    input_per_million = models.DecimalField(max_digits=10, decimal_places=4, help_text="US$ per 1M prompt tokens.")
    cached_input_per_million = models.DecimalField(
        max_digits=10, decimal_places=4, help_text="US$ per 1M prompt tokens the provider served from its cache."
    )
    output_per_million = models.DecimalField(
        max_digits=10, decimal_places=4, help_text="US$ per 1M completion tokens, reasoning tokens included."
    )
    source = models.CharField(max_length=200, blank=True, help_text="Where the figures came from.")

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_per_model_moment"),
            models.CheckConstraint(
                condition=Q(input_per_million__gte=0, cached_input_per_million__gte=0, output_per_million__gte=0),
                name="price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model}: ${self.input_per_million} in / ${self.output_per_million} out per 1M from {self.effective_from:%Y-%m-%d}"
