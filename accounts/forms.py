import zoneinfo

from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import Profile

# Places people live: Area/City names and UTC. Not "Factory", "localtime", "posixrules", "Etc/GMT+5",
# "EST5EDT" or aliases like "US/Eastern", which zoneinfo also lists.
_AREAS = {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific"}
TIME_ZONES = sorted(z for z in zoneinfo.available_timezones() if z == "UTC" or (z.split("/")[0] in _AREAS and "/" in z))
EMAIL_HELP = "Optional. Used only to send you a link when you forget your password."


def time_zone_choices(current: str = "") -> list[tuple[str, str]]:
    """The zones to pick from; a stored one from before the list was trimmed stays pickable."""
    zones = TIME_ZONES if not current or current in TIME_ZONES else sorted([*TIME_ZONES, current])
    return [(z, z) for z in zones]


class SignupForm(UserCreationForm):
    time_zone = forms.ChoiceField(choices=time_zone_choices(), initial="UTC")

    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]  # django-stubs does not declare it
        fields = ("username", "email")
        help_texts = {"email": EMAIL_HELP}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            # static/js/timezone.js puts the browser's zone here; a choice sent back is kept.
            self.fields["time_zone"].widget.attrs["data-browser-default"] = ""


class ProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=time_zone_choices())
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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = time_zone_choices(self.instance.time_zone if self.instance.pk else "")
