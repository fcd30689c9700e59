from django import forms
from django.contrib import admin
from django.http import HttpRequest

from .models import EFFORTS, AIModel, ModelPrice


class AIModelForm(forms.ModelForm):
    class Meta:
        model = AIModel
        fields = "__all__"

    def clean(self) -> dict:
        data = super().clean() or {}
        window, output = data.get("context_window"), data.get("max_output_tokens")
        if window is not None and output is not None and output >= window:
            self.add_error("max_output_tokens", "The output reserve must be smaller than the context window.")
        if data.get("api") != AIModel.API.RESPONSES:
            for flag in ("reasoning_summaries", "store"):
                if data.get(flag):
                    self.add_error(flag, "Only the Responses API offers this; choose it above or untick this.")
        else:
            if not data.get("supports_streaming", True):
                self.add_error("supports_streaming", "Models on the Responses API are always streamed.")
            if data.get("reasoning_summaries") and not data.get("is_reasoning"):
                self.add_error("reasoning_summaries", "Only reasoning models write reasoning summaries.")
        named = {e.strip() for e in (data.get("reasoning_efforts") or "").split(",") if e.strip()}
        if named - set(EFFORTS):
            self.add_error("reasoning_efforts", f"Effort levels are {', '.join(EFFORTS)}, separated by commas.")
        if named and not data.get("is_reasoning"):
            self.add_error("reasoning_efforts", "Only reasoning models take a reasoning effort.")
        return data


class ModelPriceInline(admin.TabularInline):
    """Prices per million tokens from a date on; add a row for a price change, old answers keep theirs."""

    model = ModelPrice
    extra = 0
    fields = ("effective_from", "input_per_million", "cached_input_per_million", "output_per_million", "source")


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    form = AIModelForm
    inlines = [ModelPriceInline]
    list_display = (
        "name",
        "slug",
        "provider_model",
        "api",
        "context_window",
        "max_output_tokens",
        "is_reasoning",
        "supports_streaming",
        "enabled",
        "display_order",
    )
    list_editable = ("enabled", "display_order")
    list_filter = ("enabled", "api", "is_reasoning")
    search_fields = ("slug", "name", "provider_model")
    groups = (
        (
            None,
            {
                "fields": ("name", "slug", "description", "provider_model", "api", "enabled", "display_order"),
                "description": "Untick “enabled” to retire a model: its usage history stays in the ledger.",
            },
        ),
        ("Context", {"fields": ("context_window", "max_output_tokens")}),
        (
            "Capabilities",
            {
                "fields": (
                    "is_reasoning",
                    "supports_streaming",
                    "supports_system_message",
                    "uses_max_completion_tokens",
                    "supports_images",
                    "reasoning_efforts",
                    "reasoning_summaries",
                    "store",
                )
            },
        ),
    )

    def get_fieldsets(self, request: HttpRequest, obj=None):
        # Fields added to the model later (provider rate limits…) show up without a change here.
        listed = {name for _, group in self.groups for name in group["fields"]}
        rest = [name for name in self.get_fields(request, obj) if name not in listed]
        return [*self.groups, *([("Provider limits and more", {"fields": rest})] if rest else [])]
