import zoneinfo

from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import Profile

TIME_ZONES = sorted(zoneinfo.available_timezones())
EMAIL_HELP = "Optional. Used only to send you a link when you forget your password."


class SignupForm(UserCreationForm):
    time_zone = forms.ChoiceField(choices=[(z, z) for z in TIME_ZONES], initial="UTC")

    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]  # django-stubs does not declare it
        fields = ("username", "email")
        help_texts = {"email": EMAIL_HELP}


class ProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=[(z, z) for z in TIME_ZONES])
    email = forms.EmailField(required=False, help_text=EMAIL_HELP)

    class Meta:
        model = Profile
        fields = ("time_zone", "instructions")
        labels = {"instructions": "Custom instructions"}
        widgets = {"instructions": forms.Textarea(attrs={"rows": 5})}
        help_texts = {
            "instructions": "Sent with every chat: how you would like the model to answer. "
            "Models that take no system message (o1-preview, o1-mini) get them, labelled, at the start of the chat."
        }
