from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .forms import ProfileForm, SignupForm
from .services import profile_update, user_create
from .throttle import login_failures_forgive


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


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"

    def form_valid(self, form):
        response = super().form_valid(form)
        # Whoever proved they own the mailbox may log in now, not after a lockout someone else caused.
        login_failures_forgive(username=form.user.get_username())
        return response


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user.profile, initial={"email": request.user.email})
    if request.method == "POST" and form.is_valid():
        profile_update(user=request.user, time_zone=form.cleaned_data["time_zone"], email=form.cleaned_data["email"])
        messages.success(request, "Saved.")
        return redirect("accounts-profile")
    return render(request, "accounts/profile.html", {"form": form})
