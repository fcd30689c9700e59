"""The catalog, plans, per-user overrides and grants, and the read-only quota ledger.

Every change an admin makes to someone's quota lands in the ledger with the
admin as actor: overrides through `quota_override_record`, grants through
`quota_grant`, resets through `quota_reset`, plan changes through `plan_set`
(see accounts/admin.py for the user-side actions).
"""

import datetime as dt

from django import forms
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import validate_time_zone

from .models import (
    AIModel,
    Conversation,
    LedgerEntry,
    Message,
    Plan,
    PlanLimit,
    QuotaGrant,
    QuotaOverride,
    WindowKind,
)
from .quotas import quota_grant, quota_grant_revoke, quota_override_record

MAX_LIMIT_MESSAGES = 1_000_000  # mirrors the *_messages_sane constraints
MAX_WINDOW_LENGTH = 366  # mirrors the *_window_sane constraints
MAX_GRANT_MESSAGES = 100_000  # mirrors grant_messages_sane


def limit_errors(data: dict) -> dict[str, str]:
    """Plain-words errors for a limit the database constraints would refuse."""
    errors = {}
    messages, length = data.get("messages"), data.get("window_length")
    kind, unit = data.get("window_kind"), data.get("window_unit")
    if messages is not None and not 0 <= messages <= MAX_LIMIT_MESSAGES:
        errors["messages"] = f"Messages must be between 0 and {MAX_LIMIT_MESSAGES:,}, or blank for unlimited."
    if length is not None and not 1 <= length <= MAX_WINDOW_LENGTH:
        errors["window_length"] = f"The window length must be between 1 and {MAX_WINDOW_LENGTH}."
    if kind == WindowKind.CALENDAR and (length != 1 or unit == "hour"):
        errors["window_kind"] = "A calendar window is one day, one week or one month: length 1, unit day/week/month."
    elif kind in (WindowKind.ANCHORED, WindowKind.ROLLING) and unit == "month":
        errors["window_unit"] = "Months have no fixed length: use a calendar window, or days."
    return errors


class LimitForm(forms.ModelForm):
    """Shared by plan limits and overrides; the CheckConstraints stay as the backstop."""

    def clean(self) -> dict:
        data = super().clean()
        for field, error in limit_errors(data).items():
            if field in self.fields:
                self.add_error(field, error)
        return data


def grant_messages_field() -> forms.IntegerField:
    return forms.IntegerField(
        min_value=1, max_value=MAX_GRANT_MESSAGES, help_text=f"Extra messages, 1 to {MAX_GRANT_MESSAGES:,}."
    )


def expires_at_field() -> forms.DateTimeField:
    return forms.DateTimeField(
        label="Expires at (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        initial=lambda: (timezone.now() + dt.timedelta(days=7)).replace(second=0, microsecond=0),
        help_text="The extra messages count in every window until then.",
    )


def expires_at_clean(value: dt.datetime) -> dt.datetime:
    now = timezone.now()
    if value <= now:
        raise forms.ValidationError("The expiry must be in the future.")
    if value > now + dt.timedelta(days=3660):
        raise forms.ValidationError("The expiry must be within ten years.")
    return value


# --- Catalog and plans ---------------------------------------------------------


class AIModelForm(forms.ModelForm):
    class Meta:
        model = AIModel
        fields = "__all__"

    def clean(self) -> dict:
        data = super().clean()
        window, output = data.get("context_window"), data.get("max_output_tokens")
        if window is not None and output is not None and output >= window:
            self.add_error("max_output_tokens", "The output reserve must be smaller than the context window.")
        return data


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    form = AIModelForm
    list_display = ("name", "slug", "provider_model", "context_window", "max_output_tokens", "is_reasoning",
                    "supports_streaming", "enabled", "display_order")
    list_editable = ("enabled", "display_order")
    list_filter = ("enabled", "is_reasoning")
    search_fields = ("slug", "name", "provider_model")
    groups = (
        (None, {
            "fields": ("name", "slug", "description", "provider_model", "enabled", "display_order"),
            "description": "Untick “enabled” to retire a model: its usage history stays in the ledger.",
        }),
        ("Context", {"fields": ("context_window", "max_output_tokens")}),
        ("Capabilities", {"fields": ("is_reasoning", "supports_streaming", "supports_system_message",
                                     "uses_max_completion_tokens", "supports_temperature", "reasoning_efforts")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj=None):
        # Fields added to the model later (provider rate limits…) show up without a change here.
        listed = {name for _, group in self.groups for name in group["fields"]}
        rest = [name for name in self.get_fields(request, obj) if name not in listed]
        return [*self.groups, *([("Provider limits and more", {"fields": rest})] if rest else [])]


class PlanLimitForm(LimitForm):
    class Meta:
        model = PlanLimit
        fields = ("model", "messages", "window_kind", "window_length", "window_unit", "disabled")


class PlanLimitInline(admin.TabularInline):
    model = PlanLimit
    form = PlanLimitForm
    extra = 0


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = ("name", "description", "is_default", "calendar_time_zone")

    def clean_calendar_time_zone(self) -> str:
        value = self.cleaned_data["calendar_time_zone"]
        validate_time_zone(value)
        return value

    def clean_is_default(self) -> bool:
        value = self.cleaned_data["is_default"]
        other = Plan.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
        if value and other:
            raise forms.ValidationError(f"“{other}” is the default plan: untick it there first.")
        return value


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
    list_display = ("name", "is_default", "calendar_time_zone", "limits_summary")
    search_fields = ("name",)
    inlines = [PlanLimitInline]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("limits__model")

    @admin.display(description="Limits")
    def limits_summary(self, plan: Plan) -> str:
        return "; ".join(f"{limit.model.name}: {limit.describe()}" for limit in plan.limits.all()) or "none (all unlimited)"


# --- Per-user overrides and grants -----------------------------------------------


class QuotaOverrideForm(LimitForm):
    class Meta:
        model = QuotaOverride
        fields = ("user", "model", "messages", "window_kind", "window_length", "window_unit", "disabled")


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    form = QuotaOverrideForm
    list_display = ("user", "model", "describe", "created_by", "created_at")
    list_filter = ("model", "window_kind", "disabled")
    list_select_related = ("user", "model", "created_by")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    readonly_fields = ("created_by", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        # An override belongs to one user and model: to move it, remove it and add another (both ledgered).
        return (*self.readonly_fields, "user", "model") if obj else self.readonly_fields

    @admin.display(description="Limit")
    def describe(self, override: QuotaOverride) -> str:
        return override.describe()

    def save_model(self, request: HttpRequest, obj: QuotaOverride, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        obj.save()
        if not change or form.has_changed():
            quota_override_record(override=obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: QuotaOverride) -> None:
        with transaction.atomic():
            quota_override_record(override=obj, actor=request.user, removed=True)
            obj.delete()

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        with transaction.atomic():
            for override in queryset:
                self.delete_model(request, override)


class QuotaGrantForm(forms.ModelForm):
    messages = grant_messages_field()
    expires_at = expires_at_field()

    class Meta:
        model = QuotaGrant
        fields = ("user", "model", "messages", "expires_at", "note")

    def clean_expires_at(self) -> dt.datetime:
        return expires_at_clean(self.cleaned_data["expires_at"])


@admin.register(QuotaGrant)
class QuotaGrantAdmin(admin.ModelAdmin):
    """Grants are created and, if need be, revoked; never edited (the ledger says what was given)."""

    form = QuotaGrantForm
    list_display = ("user", "model", "messages", "expires_at", "active", "created_by", "created_at", "note")
    list_filter = ("model",)
    list_select_related = ("user", "model", "created_by")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    date_hierarchy = "created_at"

    @admin.display(boolean=True, description="Active")
    def active(self, grant: QuotaGrant) -> bool:
        return grant.expires_at > timezone.now()

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: QuotaGrant, form, change: bool) -> None:
        grant = quota_grant(user=obj.user, model=obj.model, messages=obj.messages, expires_at=obj.expires_at,
                            actor=request.user, note=obj.note)
        # The admin logs and redirects to `obj`; make it the row quota_grant stored.
        obj.pk, obj.created_by, obj.created_at = grant.pk, grant.created_by, grant.created_at
        obj._state.adding, obj._state.db = False, grant._state.db

    def delete_model(self, request: HttpRequest, obj: QuotaGrant) -> None:
        quota_grant_revoke(grant=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        with transaction.atomic():
            for grant in queryset:
                quota_grant_revoke(grant=grant, actor=request.user)


# --- The ledger: read only ---------------------------------------------------------


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "kind", "model", "delta", "actor_name", "note", "tokens", "message_link")
    list_filter = ("kind", "model")
    list_select_related = ("user", "model", "actor")
    date_hierarchy = "created_at"
    search_fields = ("user__username", "actor__username")
    search_help_text = "Search by the user's or the acting admin's username."
    show_full_result_count = False  # the ledger grows without end; skip the COUNT(*)
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Actor", ordering="actor__username")
    def actor_name(self, entry: LedgerEntry) -> str:
        if entry.actor_id:
            return entry.actor.get_username()
        return "system" if entry.kind in ("reserve", "settle", "refund") else "— (command line)"

    @admin.display(description="Tokens")
    def tokens(self, entry: LedgerEntry) -> str:
        if entry.kind != LedgerEntry.Kind.SETTLE:
            return ""
        return f"{entry.prompt_tokens:,} in, {entry.completion_tokens:,} out ({entry.reasoning_tokens:,} reasoning)"

    @admin.display(description="Message")
    def message_link(self, entry: LedgerEntry) -> str:
        if not entry.message_id:
            return ""
        url = reverse("admin:chat_message_change", args=[entry.message_id])
        return format_html('<a href="{}">#{}</a>', url, entry.message_id)


# --- Conversations (for support) ----------------------------------------------------


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "title", "model", "updated_at")
    list_select_related = ("user", "model")
    search_fields = ("user__username", "title")
    raw_id_fields = ("user",)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "model", "status", "quota", "created_at")
    list_filter = ("status", "role", "model", "quota")
    list_select_related = ("conversation", "model")
    raw_id_fields = ("conversation",)
