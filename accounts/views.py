from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy

from .forms import ProfileForm, SignupForm
from .models import SignupPolicy
from .selectors import signup_policy_get
from .services import SignupRefused, profile_update, signup_check, user_signup
from .throttle import client_ip, login_failures_forgive, password_reset_allowed


def signup(request: HttpRequest) -> HttpResponse:
    # The token stays in the page's URL, so the form posts it back.
    invite_token = request.GET.get("invite", "")
    try:
        invite = signup_check(invite_token=invite_token)
    except SignupRefused as refusal:
        return signup_refused(request, refusal)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_signup(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                time_zone=form.cleaned_data["time_zone"],
                email=form.cleaned_data["email"],
                invite_token=invite_token,
            )
        except SignupRefused as refusal:
            return signup_refused(request, refusal)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat-home")
    return render(request, "accounts/signup.html", {"form": form, "invite": invite})


def signup_refused(request: HttpRequest, refusal: SignupRefused) -> HttpResponse:
    return render(request, "accounts/signup_refused.html", {"reason": str(refusal)}, status=403)


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True  # someone already logged in goes on to the chat (or `next`)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs, signup_open=signup_policy_get() == SignupPolicy.Mode.OPEN)


class PasswordResetView(auth_views.PasswordResetView):
    """Django's, with limits per address and per mailbox (accounts/throttle.py)."""

    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = reverse_lazy("accounts-password-reset-sent")

    def form_valid(self, form):
        address_ok, mailbox_ok = password_reset_allowed(ip_address=client_ip(self.request), email=form.cleaned_data["email"])
        if not address_ok:
            paused = render(self.request, "accounts/password_reset_paused.html", status=429)
            paused["Retry-After"] = "3600"
            return paused
        if not mailbox_ok:  # the same page as a sent mail: whether the address has an account stays private
            return redirect(self.success_url)
        return super().form_valid(form)


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
        profile_update(
            user=request.user,
            time_zone=form.cleaned_data["time_zone"],
            email=form.cleaned_data["email"],
            instructions=form.cleaned_data["instructions"],
        )
        messages.success(request, "Saved.")
        return redirect("accounts-profile")
    return render(request, "accounts/profile.html", {"form": form})
