from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .forms import ProfileForm, SignupForm
from .services import profile_update, user_create


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password1"],
            time_zone=form.cleaned_data["time_zone"],
            email=form.cleaned_data["email"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat-home")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user.profile, initial={"email": request.user.email})
    if request.method == "POST" and form.is_valid():
        profile_update(user=request.user, time_zone=form.cleaned_data["time_zone"], email=form.cleaned_data["email"])
        messages.success(request, "Saved.")
        return redirect("accounts-profile")
    return render(request, "accounts/profile.html", {"form": form})
