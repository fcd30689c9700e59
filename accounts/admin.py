"""Users with their profile (time zone, plan), a quota panel, and the quota actions.

Plan changes go through `plan_set`, resets through `quota_reset` and grants
through `quota_grant`, so each lands in the ledger with the admin as actor.
"""

import zoneinfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from chat.admin import expires_at_clean, expires_at_field, grant_messages_field
from chat.models import AIModel, QuotaOverride
from chat.quotas import format_reset, plan_set, quota_grant, quota_reset, quota_status, user_plan

from .forms import TIME_ZONES
from .models import Profile

User = get_user_model()
UTC = zoneinfo.ZoneInfo("UTC")


class ProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=[(z, z) for z in TIME_ZONES], initial="UTC")

    class Meta:
        model = Profile
        fields = ("time_zone", "plan")
        help_texts = {"plan": "Blank: the default plan, whichever that is. Changes are recorded in the quota ledger."}


class ProfileInline(admin.StackedInline):
    model = Profile
    form = ProfileForm
    can_delete = False
    max_num = 1
    verbose_name_plural = "Profile"


class QuotaResetForm(forms.Form):
    model = forms.ModelChoiceField(queryset=AIModel.objects.filter(enabled=True), empty_label=None)
    note = forms.CharField(max_length=200, required=False, help_text="Optional: why, for the ledger.")


class QuotaGrantForm(forms.Form):
    model = forms.ModelChoiceField(queryset=AIModel.objects.filter(enabled=True), empty_label=None)
    messages = grant_messages_field()
    expires_at = expires_at_field()
    note = forms.CharField(max_length=200, required=False, help_text="Optional: why, for the ledger.")

    def clean_expires_at(self):
        return expires_at_clean(self.cleaned_data["expires_at"])


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "plan_name", "is_staff", "is_active", "last_login")
    list_select_related = ("profile__plan",)
    list_filter = ("is_staff", "is_superuser", "is_active", "profile__plan")
    readonly_fields = ("quota_panel",)
    actions = ["quota_reset_action", "quota_grant_action"]

    def get_inlines(self, request: HttpRequest, obj):
        # On add, a signal creates the profile; the inline would try to create a second one.
        return [ProfileInline] if obj is not None else []

    def get_fieldsets(self, request: HttpRequest, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return ((None, fieldsets[0][1]), ("Quota", {"fields": ("quota_panel",)}), *fieldsets[1:])

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is not Profile:
            return super().save_formset(request, form, formset, change)
        changed_plan = [f for f in formset.forms if f.has_changed() and "plan" in f.changed_data]
        formset.save()
        for profile_form in changed_plan:
            # Saved above already; plan_set records it in the ledger with the admin as actor.
            plan_set(user=form.instance, plan=profile_form.cleaned_data["plan"], actor=request.user)

    @admin.display(description="Plan", ordering="profile__plan__name")
    def plan_name(self, user) -> str:
        profile = getattr(user, "profile", None)
        return profile.plan.name if profile and profile.plan_id else "(default)"

    @admin.display(description="Quota now")
    def quota_panel(self, user) -> str:
        plan = user_plan(user)
        overrides = set(QuotaOverride.objects.filter(user=user).values_list("model_id", flat=True))
        rows = []
        for status in quota_status(user=user):
            if status.disabled:
                used = limit = left = "—"
            else:
                used = f"{status.used:,}"
                limit = "unlimited" if status.limit is None else f"{status.limit:,}"
                left = "—" if status.left is None else f"{status.left:,}"
            resets = format_reset(status.resets_at, UTC) + " UTC" if status.resets_at else "—"
            rule = status.describe + (" (override)" if status.model.id in overrides else "")
            rows.append((status.model.name, used, limit, left, resets, rule))
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
        )
        ledger = reverse("admin:chat_ledgerentry_changelist") + f"?user__id__exact={user.pk}"
        override = reverse("admin:chat_quotaoverride_add") + f"?user={user.pk}"
        return format_html(
            '<table class="quota-panel"><thead><tr><th>Model</th><th>Used</th><th>Limit (incl. grants)</th>'
            "<th>Left</th><th>Resets at</th><th>Rule</th></tr></thead><tbody>{}</tbody></table>"
            '<p>Plan: {} (change it under Profile, below). <a href="{}">Reset a window</a> · <a href="{}">Grant extra messages</a> · '
            '<a href="{}">Add an override</a> · <a href="{}">Ledger</a></p>',
            body, plan.name if plan else "none (everything unlimited)",
            reverse("admin:auth_user_quota_reset", args=[user.pk]),
            reverse("admin:auth_user_quota_grant", args=[user.pk]),
            override, ledger,
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
        form_class = QuotaResetForm if what == "reset" else QuotaGrantForm
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
                    quota_grant(user=user, model=model, messages=data["messages"], expires_at=data["expires_at"],
                                actor=request.user, note=note)
        names = ", ".join(u.get_username() for u in users[:5]) + ("…" if len(users) > 5 else "")
        if what == "reset":
            done = f"Reset the {model.name} window for {names}."
        else:
            until = format_reset(data["expires_at"], UTC)
            done = f"Granted +{data['messages']:,} {model.name} messages until {until} UTC to {names}."
        self.message_user(request, done, messages.SUCCESS)
