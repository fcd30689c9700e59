from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# No inline script or style anywhere: every script is a static file.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def policy() -> str:
    """POLICY; with single sign-on's RP-initiated logout, the log-out form may also lead on to the provider."""
    logout = urlsplit(settings.OIDC_OP_LOGOUT_ENDPOINT) if settings.SSO_ENABLED else None
    if not (logout and logout.scheme and logout.netloc):
        return POLICY
    return POLICY.replace("form-action 'self'", f"form-action 'self' {logout.scheme}://{logout.netloc}")


def content_security_policy(get_response: Callable[[HttpRequest], HttpResponse]):
    header = policy()

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        # The admin ships inline scripts of its own; it is staff-only.
        if not request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", header)
        return response

    return middleware
