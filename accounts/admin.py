"""Users with their profile (time zone), the sign-up policy and invites. The quotas app adds the plan,
the quota panel and its actions to the user admin."""

import datetime as dt
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from .forms import time_zone_choices
from .models import Invite, Profile, SignupPolicy
from .selectors import signup_policy_get
from .services import invite_issue

User = get_user_model()


class ProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=time_zone_choices(), initial="UTC")

    class Meta:
        model = Profile
        fields = ("time_zone",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = time_zone_choices(self.instance.time_zone if self.instance.pk else "")


class ProfileInline(admin.StackedInline):
    model = Profile
    form = ProfileForm
    can_delete = False
    max_num = 1
    verbose_name_plural = "Profile"


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    def get_inlines(self, request: HttpRequest, obj):
        # On add, a signal creates the profile; the inline would try to create a second one.
        return [ProfileInline] if obj is not None else []


@admin.register(SignupPolicy)
class SignupPolicyAdmin(admin.ModelAdmin):
    """One page: the list of one row goes straight to it (or to adding it, until staff first save)."""

    fields = ("mode",)

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if SignupPolicy.objects.filter(id=SignupPolicy.SINGLE_ID).exists():
            return redirect("admin:accounts_signuppolicy_change", SignupPolicy.SINGLE_ID)
        return redirect("admin:accounts_signuppolicy_add")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not SignupPolicy.objects.exists()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"mode": signup_policy_get()}

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.base_fields["mode"].help_text = (
            f"Until this is saved, the SIGNUP_POLICY environment variable decides ({settings.SIGNUP_POLICY}). "
            "Deleting this row returns to it."
        )
        return form

    def response_post_save_change(self, request: HttpRequest, obj) -> HttpResponseRedirect:
        return redirect("admin:index")

    response_post_save_add = response_post_save_change


class InviteStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("unused", "unused"), ("used", "used"), ("expired", "expired")]

    def queryset(self, request: HttpRequest, queryset):
        now = timezone.now()
        return {
            "unused": queryset.filter(used_at=None, expires_at__gt=now),
            "used": queryset.exclude(used_at=None),
            "expired": queryset.filter(used_at=None, expires_at__lte=now),
        }.get(self.value() or "", queryset)


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    """Staff make single-use sign-up links here; the link is shown once, on the page after saving."""

    list_display = ("__str__", "status", "expires_at", "created_by", "created_at", "used_by", "used_at")
    list_filter = (InviteStatusFilter,)
    search_fields = ("note", "used_by__username")
    readonly_fields = ("created_by", "created_at", "used_by", "used_at")

    def get_fields(self, request: HttpRequest, obj=None):
        return ("note", "expires_at") if obj is None else ("note", "expires_at", *self.readonly_fields)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"expires_at": timezone.now() + dt.timedelta(days=settings.INVITE_DAYS)}

    @admin.display(description="status")
    def status(self, invite: Invite) -> str:
        if invite.used_at is not None:
            return "used"
        return "expired" if invite.expires_at <= timezone.now() else "unused"

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # A used invite is the record of who let that account in; an unused one may be revoked.
        return super().has_delete_permission(request, obj) and (obj is None or obj.used_at is None)

    def get_actions(self, request: HttpRequest):
        # Bulk delete would not ask which invites were used.
        return {name: action for name, action in super().get_actions(request).items() if name != "delete_selected"}

    def save_model(self, request: HttpRequest, obj: Invite, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
        else:
            # Kept on this instance only until response_add shows it: the database has its hash.
            obj.issued_token = invite_issue(invite=obj, created_by=request.user)  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: Invite, post_url_continue=None) -> HttpResponse:
        link = request.build_absolute_uri(f"{reverse('accounts-signup')}?{urlencode({'invite': obj.issued_token})}")  # type: ignore[attr-defined]
        context = {**self.admin_site.each_context(request), "opts": self.opts, "invite": obj, "link": link, "title": "Invite link"}
        return TemplateResponse(request, "accounts/invite_created.html", context)
