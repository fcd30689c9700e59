"""The user's API keys page: make a key (shown once), see when each was last used, revoke one."""

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from quotas.selectors import api_access_allowed

from .models import ApiKey
from .services import KeyRefused, api_key_create, api_key_revoke


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. “laptop scripts”.")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name or "\x00" in name:
            raise forms.ValidationError("Give the key a name.")
        return name


def _owner(request: HttpRequest) -> Any:
    return request.user  # signed in: the views below are login_required


@login_required
def keys_page(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST or None)
    new_token, refusal = "", ""
    if request.method == "POST" and form.is_valid():
        try:
            _, new_token = api_key_create(user=request.user, name=form.cleaned_data["name"])
            form = KeyForm()
        except KeyRefused as exc:
            refusal = str(exc)
    context = {
        "form": form,
        "keys": ApiKey.objects.filter(user=_owner(request)),
        "new_token": new_token,
        "refusal": refusal,
        "allowed": api_access_allowed(request.user),
        "base_url": request.build_absolute_uri("/v1"),
    }
    return render(request, "api/keys.html", context)


@login_required
@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = ApiKey.objects.filter(id=key_id, user=_owner(request)).first()
    if key is None:
        raise Http404("No such key.")
    api_key_revoke(key=key)
    return redirect("api-keys")
