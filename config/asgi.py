import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()
# The event loop and the database threads hand the GIL to each other at every
# query; at the default 5 ms switch interval each hand-over can wait 5 ms while
# another thread computes (see config/celery.py).
sys.setswitchinterval(0.0005)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from api.server import application as api_application  # noqa: E402
from catalog import tokens  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from config.origin import SameOriginValidator  # noqa: E402

tokens.warm()  # sends count tokens; the first should not wait a second for the table
# A send enqueues its reply through the worker's task module (chat.actions._enqueue). Imported by the first
# send, it and the SDK under it held the GIL for seconds: every socket of the process stalled meanwhile.
import generation.tasks  # noqa: E402, F401


async def http_application(scope, receive, send) -> None:
    """/v1/ is the OpenAI-compatible API (api/server.py, bearer keys, no session); the rest is Django."""
    app = api_application if scope["path"] == "/v1" or scope["path"].startswith("/v1/") else django_asgi_app
    await app(scope, receive, send)


websocket_stack = SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


async def websocket_application(scope, receive, send) -> None:
    """The server's own `send` rides along in the scope: a chat's frames are written with it (chat/consumers.py),
    past the session middleware's wrapper, which acts only on HTTP responses yet cost a tenth of the web
    process's CPU per streamed frame."""
    await websocket_stack({**scope, "server_send": send}, receive, send)


application = ProtocolTypeRouter({"http": http_application, "websocket": websocket_application})
