from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse_lazy

from .forms import ProfileForm, SignupForm
from .models import SignupPolicy
from .selectors import signup_policy_get
from .services import SignupRefused, profile_update, signup_check, user_signup
from .sso import sso_logout_url
from .throttle import client_ip, login_failures_forgive, password_reset_allowed

LOCAL_LOGIN_OFF = "Accounts on this server come from single sign-on: use the button on the log-in page."


def signup(request: HttpRequest) -> HttpResponse:
    if not settings.LOCAL_LOGIN:
        return signup_refused(request, SignupRefused(LOCAL_LOGIN_OFF))
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
    """Username and password, and the single sign-on button when SSO is configured; only the button
    when local log-in is off (LOCAL_LOGIN=false)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True  # someone already logged in goes on to the chat (or `next`)

    def get_context_data(self, **kwargs):
        local = settings.LOCAL_LOGIN
        context = super().get_context_data(**kwargs, signup_open=local and signup_policy_get() == SignupPolicy.Mode.OPEN)
        if not local:
            context["form"] = None
        return {**context, "local_login": local, "sso_enabled": settings.SSO_ENABLED, "sso_label": settings.SSO_BUTTON_LABEL}

    def post(self, request, *args, **kwargs):
        if not settings.LOCAL_LOGIN:
            messages.error(request, LOCAL_LOGIN_OFF)
            return redirect("accounts-login")
        return super().post(request, *args, **kwargs)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's own log-in form, unless only single sign-on logs in: then our log-in page, back here after."""
    if settings.LOCAL_LOGIN:
        return admin.site.login(request)
    return redirect_to_login(request.GET.get("next") or "/admin/", login_url="accounts-login")


class LogoutView(auth_views.LogoutView):
    """Ends the local session; after SSO, also the provider's when it offers RP-initiated logout."""

    def post(self, request, *args, **kwargs):
        id_token = request.session.get("oidc_id_token")
        response = super().post(request, *args, **kwargs)
        provider_logout = sso_logout_url(request, id_token)
        return HttpResponseRedirect(provider_logout) if provider_logout else response


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
