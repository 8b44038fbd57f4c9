import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what get_asgi_application does, before the handler is made

from core.asgi_http import PooledASGIHandler  # noqa: E402

django_asgi_app = PooledASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from accounts.ws_auth import ApiKeyMiddleware, OriginMiddleware  # noqa: E402
from api.comfy_auth import ComfyKeyMiddleware, redact_daphne_access_log  # noqa: E402
from api.comfy_ws import ComfyConsumer  # noqa: E402
from generations.consumers import EventsConsumer  # noqa: E402

websocket_urls = URLRouter(
    [
        path("ws/v1/events/", EventsConsumer.as_asgi()),
        # ComfyUI's socket, at its own path and under /api/ (api/comfy_ws.py)
        path("ws", ComfyConsumer.as_asgi()),
        path("api/ws", ComfyConsumer.as_asgi()),
    ]
)

redact_daphne_access_log()

# ComfyKeyMiddleware first: a key in a ComfyUI base URL or ?token= becomes the Bearer header
# before anything sees (or logs) the request.
application = ComfyKeyMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": OriginMiddleware(AuthMiddlewareStack(ApiKeyMiddleware(websocket_urls))),
        }
    )
)
