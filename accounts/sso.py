"""Single sign-on with OpenID Connect, through mozilla-django-oidc: the backend that turns a
verified ID token into our user, and the thin views around the library's.

Settings come from the environment (config/settings.py); with OIDC_RP_CLIENT_ID unset the
views answer 404 and the backend is not installed.
"""

import logging
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from .services import sso_user_login

log = logging.getLogger(__name__)

FAILED_MESSAGE = "Single sign-on did not complete. Try again, or ask an administrator if it keeps failing."


class SSOBackend(OIDCAuthenticationBackend):
    """Finds the user by (issuer, subject), never by email, and syncs their groups at each login."""

    def authenticate(self, request, **kwargs):
        try:
            return super().authenticate(request, **kwargs)
        except requests.RequestException as exc:
            # The provider is down or refused the code: a failed login, not a server error.
            log.warning("single sign-on failed talking to the provider: %s", exc)
        except SuspiciousOperation as exc:
            log.warning("single sign-on refused the provider's answer: %s", exc)
        return None

    def get_user(self, user_id):
        # The library's returns inactive users too: a deactivated user's open session must end at once.
        user = super().get_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None

    def get_or_create_user(self, access_token, id_token, payload):
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        # The library checks the signature and the nonce; the token must also be meant for us, from our provider.
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the ID token is not for this client")
        if settings.OIDC_ISSUER and payload.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation("the ID token comes from another issuer")
        subject = payload.get("sub")
        if not subject:
            raise SuspiciousOperation("the ID token names no subject")
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != subject:
            # OpenID Connect Core 5.3.2: a userinfo response about someone else must not be used.
            raise SuspiciousOperation("the userinfo is about another subject")
        user = sso_user_login(issuer=str(payload.get("iss") or ""), subject=str(subject), claims={**payload, **userinfo})
        log.info("single sign-on: %s signed in", user.get_username())
        return user


def sso_required(view):
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.SSO_ENABLED:
            raise Http404("Single sign-on is not configured on this server.")
        return view(request, *args, **kwargs)

    return wrapped


class SSOStartView(OIDCAuthenticationRequestView):
    pass


class SSOCallbackView(OIDCAuthenticationCallbackView):
    @property
    def failure_url(self) -> str:
        return reverse("accounts-login")

    def login_failure(self):
        messages.error(self.request, FAILED_MESSAGE)
        return super().login_failure()


sso_start = sso_required(SSOStartView.as_view())
sso_callback = sso_required(SSOCallbackView.as_view())


def sso_logout_url(request: HttpRequest, id_token: str | None) -> str | None:
    """Where to send the browser so the provider ends its session too (RP-initiated logout), if it offers that."""
    if not (settings.SSO_ENABLED and settings.OIDC_OP_LOGOUT_ENDPOINT and id_token):
        return None
    query = {
        "id_token_hint": id_token,
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": request.build_absolute_uri(reverse(settings.LOGOUT_REDIRECT_URL)),
    }
    return f"{settings.OIDC_OP_LOGOUT_ENDPOINT}?{urlencode(query)}"
