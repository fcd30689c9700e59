"""Users with their profile (time zone). The quotas app adds the plan, the quota panel and its actions."""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from .forms import TIME_ZONES
from .models import Profile

User = get_user_model()


class ProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=[(z, z) for z in TIME_ZONES], initial="UTC")

    class Meta:
        model = Profile
        fields = ("time_zone",)


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
