"""Plans, per-user overrides and grants, the read-only quota ledger, and the
quota panel and actions on each user's admin page.

Every change an admin makes to someone's quota lands in the ledger with the
admin as actor: overrides through `quota_override_record`, grants through
`quota_grant`, resets through `quota_reset`, plan changes through `plan_set`.
"""

import datetime as dt
import zoneinfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import admin as accounts_admin
from accounts.models import validate_time_zone
from catalog.models import EFFORTS, AIModel
from catalog.prices import dollars

from .models import BudgetOverride, LedgerEntry, Plan, PlanBudget, PlanLimit, QuotaGrant, QuotaOverride, UserPlan, WindowKind
from .selectors import quota_status, user_plan
from .services import (
    budget_override_record,
    plan_members,
    plan_set,
    quota_grant,
    quota_grant_revoke,
    quota_override_record,
    quota_push,
    quota_reset,
)
from .windows import format_reset

User = get_user_model()
UTC = zoneinfo.ZoneInfo("UTC")
MAX_LIMIT_MESSAGES = 1_000_000  # mirrors the *_messages_sane constraints
MAX_WINDOW_LENGTH = 366  # mirrors the *_window_sane constraints
MAX_GRANT_MESSAGES = 100_000  # mirrors grant_messages_sane


def limit_errors(data: dict) -> dict[str, str]:
    """Plain-words errors for a limit the database constraints would refuse."""
    errors = {}
    messages, length = data.get("messages"), data.get("window_length")
    kind, unit = data.get("window_kind"), data.get("window_unit")
    if messages is not None and not 0 <= messages <= MAX_LIMIT_MESSAGES:
        errors["messages"] = f"Messages must be between 0 and {MAX_LIMIT_MESSAGES:,}."
    elif messages is None and not data.get("unlimited") and not data.get("disabled"):
        errors["messages"] = "Enter a number of messages, or tick “unlimited” (or “disabled”): a blank number is not unlimited."
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
        data = super().clean() or {}
        for field, error in limit_errors(data).items():
            if field in self.fields:
                self.add_error(field, error)
        return data


def grant_messages_field() -> forms.IntegerField:
    return forms.IntegerField(min_value=1, max_value=MAX_GRANT_MESSAGES, help_text=f"Extra messages, 1 to {MAX_GRANT_MESSAGES:,}.")


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


class PlanLimitForm(LimitForm):
    class Meta:
        model = PlanLimit
        fields = ("model", "messages", "unlimited", "window_kind", "window_length", "window_unit", "disabled")


class PlanLimitInline(admin.TabularInline):
    model = PlanLimit
    form = PlanLimitForm
    extra = 0


class PlanForm(forms.ModelForm):
    class Meta:
        model = Plan
        fields = ("name", "description", "is_default", "calendar_time_zone", "api_access", "reasoning_efforts")

    def clean_reasoning_efforts(self) -> str:
        named = [e.strip() for e in self.cleaned_data["reasoning_efforts"].split(",") if e.strip()]
        unknown = [e for e in named if e not in EFFORTS]
        if unknown:
            raise forms.ValidationError(f"Effort levels are {', '.join(EFFORTS)}, separated by commas; not {', '.join(unknown)}.")
        return ",".join(e for e in EFFORTS if e in named)

    def clean_calendar_time_zone(self) -> str:
        value = self.cleaned_data["calendar_time_zone"]
        validate_time_zone(value)
        return value

    def clean_is_default(self) -> bool:
        value = self.cleaned_data["is_default"]
        if not value and self.instance.pk and Plan.objects.filter(pk=self.instance.pk, is_default=True).exists():
            raise forms.ValidationError("New users need a default plan: make another plan the default instead.")
        return value


class PlanBudgetInline(admin.StackedInline):
    """Optional: tokens or dollars per window across all models, beside the message limits."""

    model = PlanBudget
    extra = 0
    max_num = 1
    verbose_name = "budget (tokens or US dollars per window, all models together)"


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
    list_display = ("name", "is_default", "calendar_time_zone", "api_access", "reasoning_efforts", "limits_summary")
    search_fields = ("name",)
    inlines = [PlanLimitInline, PlanBudgetInline]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("limits__model")

    def save_model(self, request: HttpRequest, obj: Plan, form, change: bool) -> None:
        # Ticking "default" here moves the default from the plan that had it, in one transaction.
        with transaction.atomic():
            if obj.is_default:
                Plan.objects.filter(is_default=True).exclude(pk=obj.pk).update(is_default=False)
            obj.save()

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Its users' open tabs show the new limits at once.
        quota_push(user_ids=plan_members(form.instance))

    def has_delete_permission(self, request: HttpRequest, obj: Plan | None = None) -> bool:
        # The plan new users get cannot be deleted (its users would have no rule: every model refused).
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.is_default)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        if queryset.filter(is_default=True).exists():
            self.message_user(request, "The default plan cannot be deleted; make another plan the default first.", messages.ERROR)
        super().delete_queryset(request, queryset.exclude(is_default=True))

    @admin.display(description="Limits")
    def limits_summary(self, plan: Plan) -> str:
        return "; ".join(f"{limit.model.name}: {limit.describe()}" for limit in plan.limits.all()) or "none (every model refused)"


# --- Per-user overrides and grants -----------------------------------------------


class QuotaOverrideForm(LimitForm):
    class Meta:
        model = QuotaOverride
        fields = ("user", "model", "messages", "unlimited", "window_kind", "window_length", "window_unit", "disabled")


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
            obj.created_by = request.user  # type: ignore[assignment]  # staff only: never anonymous
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


@admin.register(BudgetOverride)
class BudgetOverrideAdmin(admin.ModelAdmin):
    fields = ("user", "unlimited", "kind", "amount", "window_kind", "window_length", "window_unit", "created_by", "created_at")
    list_display = ("user", "__str__", "created_by", "created_at")
    list_select_related = ("user", "created_by")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    readonly_fields = ("created_by", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return (*self.readonly_fields, "user") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: BudgetOverride, form, change: bool) -> None:
        with transaction.atomic():
            if not change:
                obj.created_by = request.user  # type: ignore[assignment]  # staff only: never anonymous
            obj.save()
            if not change or form.has_changed():
                budget_override_record(override=obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: BudgetOverride) -> None:
        with transaction.atomic():
            budget_override_record(override=obj, actor=request.user, removed=True)
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
        grant = quota_grant(
            user=obj.user, model=obj.model, messages=obj.messages, expires_at=obj.expires_at, actor=request.user, note=obj.note
        )
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
    list_display = ("created_at", "user", "kind", "model", "delta", "actor_name", "note", "tokens", "cost", "reply")
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
        if entry.actor is not None:
            return entry.actor.get_username()
        return "system" if entry.kind in ("reserve", "settle", "refund") else "— (command line)"

    @admin.display(description="Tokens")
    def tokens(self, entry: LedgerEntry) -> str:
        if entry.kind != LedgerEntry.Kind.SETTLE:
            return ""
        return f"{entry.prompt_tokens:,} in, {entry.completion_tokens:,} out ({entry.reasoning_tokens:,} reasoning)"

    @admin.display(description="Cost (US$)")
    def cost(self, entry: LedgerEntry) -> str:
        return f"{dollars(entry.cost_micros):.6f}" if entry.kind == LedgerEntry.Kind.SETTLE else ""

    @admin.display(description="Reply")
    def reply(self, entry: LedgerEntry) -> str:
        return f"#{entry.reply_id}" if entry.reply_id else ""


# --- Users: their plan, the quota panel, reset and grant ---------------------------


class QuotaResetActionForm(forms.Form):
    model = forms.ModelChoiceField(queryset=AIModel.objects.filter(enabled=True), empty_label=None)
    note = forms.CharField(max_length=200, required=False, help_text="Optional: why, for the ledger.")


class QuotaGrantActionForm(forms.Form):
    model = forms.ModelChoiceField(queryset=AIModel.objects.filter(enabled=True), empty_label=None)
    messages = grant_messages_field()
    expires_at = expires_at_field()
    note = forms.CharField(max_length=200, required=False, help_text="Optional: why, for the ledger.")

    def clean_expires_at(self):
        return expires_at_clean(self.cleaned_data["expires_at"])


class UserPlanForm(forms.ModelForm):
    class Meta:
        model = UserPlan
        fields = ("plan",)
        help_texts = {"plan": "Changes are recorded in the quota ledger. Remove this row to follow the default plan."}


class UserPlanInline(admin.StackedInline):
    model = UserPlan
    form = UserPlanForm
    max_num = 1
    verbose_name = verbose_name_plural = "Plan"


# The accounts app's user admin, with the quota panel, the plan and the quota actions added.
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(accounts_admin.UserAdmin):
    list_display = ("username", "email", "plan_name", "is_staff", "is_active", "last_login")
    list_select_related = ("quota_plan__plan",)
    list_filter = ("is_staff", "is_superuser", "is_active", "quota_plan__plan")
    readonly_fields = ("quota_panel",)
    actions = ["quota_reset_action", "quota_grant_action"]

    def get_inlines(self, request: HttpRequest, obj):
        return [*super().get_inlines(request, obj), UserPlanInline] if obj is not None else []

    def get_fieldsets(self, request: HttpRequest, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return ((None, fieldsets[0][1]), ("Quota", {"fields": ("quota_panel",)}), *fieldsets[1:])

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is not UserPlan:
            return super().save_formset(request, form, formset, change)
        # Through plan_set, so that the change lands in the ledger with the admin as actor
        # (commit=False only fills in what the admin's change message lists).
        formset.save(commit=False)
        for plan_form in formset.forms:
            if plan_form in formset.deleted_forms:
                plan_set(user=form.instance, plan=None, actor=request.user)
            elif plan_form.has_changed() and plan_form.cleaned_data.get("plan"):
                plan_set(user=form.instance, plan=plan_form.cleaned_data["plan"], actor=request.user)

    @admin.display(description="Plan", ordering="quota_plan__plan__name")
    def plan_name(self, user) -> str:
        membership = getattr(user, "quota_plan", None)
        return membership.plan.name if membership else "(default)"

    @admin.display(description="Quota now")
    def quota_panel(self, user) -> str:
        plan = user_plan(user)
        overrides = set(QuotaOverride.objects.filter(user=user).values_list("model_id", flat=True))
        rows = []
        statuses = quota_status(user=user)
        spend = statuses[0].budget if statuses else None
        budget = "none"
        if spend is not None:
            resets = f", resets {format_reset(spend.resets_at, UTC)} UTC" if spend.resets_at else ""
            budget = f"{spend.text()}{resets} ({spend.budget.describe()})"
        for status in statuses:
            if status.disabled:
                used = limit = left = "—"
            else:
                used = f"{status.used:,}"
                limit = "unlimited" if status.limit is None else f"{status.limit:,}"
                left = "—" if status.left is None else f"{status.left:,}"
            resets = format_reset(status.resets_at, UTC) + " UTC" if status.resets_at else "—"
            rule = status.describe + (" (override)" if status.model.id in overrides else "")
            rows.append((status.model.name, used, limit, left, resets, rule))
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        ledger = reverse("admin:quotas_ledgerentry_changelist") + f"?user__id__exact={user.pk}"
        override = reverse("admin:quotas_quotaoverride_add") + f"?user={user.pk}"
        return format_html(
            '<table class="quota-panel"><thead><tr><th>Model</th><th>Used</th><th>Limit (incl. grants)</th>'
            "<th>Left</th><th>Resets at</th><th>Rule</th></tr></thead><tbody>{}</tbody></table>"
            '<p>Budget: {} (<a href="{}">set a budget override</a>)</p>'
            '<p>Plan: {} (change it under Plan, below). <a href="{}">Reset a window</a> · <a href="{}">Grant extra messages</a> · '
            '<a href="{}">Add an override</a> · <a href="{}">Ledger</a></p>',
            body,
            budget,
            reverse("admin:quotas_budgetoverride_add") + f"?user={user.pk}",
            plan.name if plan else "none (every model refused)",
            reverse("admin:auth_user_quota_reset", args=[user.pk]),
            reverse("admin:auth_user_quota_grant", args=[user.pk]),
            override,
            ledger,
        )

    # --- Reset and grant: changelist actions and per-user pages, one form each ---

    def get_urls(self):
        urls = [
            path("<id>/quota/reset/", self.admin_site.admin_view(self.quota_reset_view), name="auth_user_quota_reset"),
            path("<id>/quota/grant/", self.admin_site.admin_view(self.quota_grant_view), name="auth_user_quota_grant"),
        ]
        return urls + super().get_urls()

    @admin.action(description="Reset quota window…", permissions=["change"])
    def quota_reset_action(self, request: HttpRequest, queryset) -> HttpResponse | None:
        return self._quota_form(request, list(queryset), "reset", action="quota_reset_action")

    @admin.action(description="Grant extra messages…", permissions=["change"])
    def quota_grant_action(self, request: HttpRequest, queryset) -> HttpResponse | None:
        return self._quota_form(request, list(queryset), "grant", action="quota_grant_action")

    def quota_reset_view(self, request: HttpRequest, id: str) -> HttpResponse:
        return self._quota_user_view(request, id, "reset")

    def quota_grant_view(self, request: HttpRequest, id: str) -> HttpResponse:
        return self._quota_user_view(request, id, "grant")

    def _quota_user_view(self, request: HttpRequest, id: str, what: str) -> HttpResponse:
        user = self.get_object(request, unquote(id))
        if user is None:
            raise Http404("No such user.")
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        response = self._quota_form(request, [user], what)
        return response or HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))

    def _quota_form(self, request: HttpRequest, users: list, what: str, action: str = "") -> HttpResponse | None:
        """Show the form; on a valid POST apply it to `users` and return None."""
        form_class = QuotaResetActionForm if what == "reset" else QuotaGrantActionForm
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._quota_apply(request, users, what, form.cleaned_data)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Reset quota window" if what == "reset" else "Grant extra messages",
            "opts": self.opts,
            "form": form,
            "users": users,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "what": what,
        }
        return TemplateResponse(request, "admin/auth/user/quota_form.html", context)

    def _quota_apply(self, request: HttpRequest, users: list, what: str, data: dict) -> None:
        model, note = data["model"], data["note"]
        with transaction.atomic():
            for user in users:
                if what == "reset":
                    quota_reset(user=user, model=model, actor=request.user, note=note)
                else:
                    quota_grant(
                        user=user, model=model, messages=data["messages"], expires_at=data["expires_at"], actor=request.user, note=note
                    )
        names = ", ".join(u.get_username() for u in users[:5]) + ("…" if len(users) > 5 else "")
        if what == "reset":
            done = f"Reset the {model.name} window for {names}."
        else:
            until = format_reset(data["expires_at"], UTC)
            done = f"Granted +{data['messages']:,} {model.name} messages until {until} UTC to {names}."
        self.message_user(request, done, messages.SUCCESS)
