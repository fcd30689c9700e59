"""The WebSocket's Origin check: the page that opens the socket must be this site, to the port.

Channels' AllowedHostsOriginValidator compares host names only, so a page on
another port of the same host (http://127.0.0.1:9999) could open a socket with
the user's cookies. Here the Origin must be the site's own origin: the scheme
of the connection (ws → http, wss → https) and exactly the Host the browser
connected to, or one of CSRF_TRUSTED_ORIGINS (behind a TLS-terminating proxy the
connection is plain ws, so the public https origin is listed there).
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def same_origin(scope: dict) -> bool:
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin", b"").decode("latin-1").strip().lower()
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    if not origin or not host:
        return False
    if origin in {o.lower().rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    parts = urlsplit(origin)
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    domain, _ = split_domain_port(host)
    return parts.scheme == scheme and parts.netloc == host and validate_host(domain, settings.ALLOWED_HOSTS)


class SameOriginValidator:
    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not same_origin(scope):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
