import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from accounts.ws_auth import ApiKeyMiddleware, OriginMiddleware  # noqa: E402
from generations.consumers import EventsConsumer  # noqa: E402

websocket_urls = URLRouter([path("ws/v1/events/", EventsConsumer.as_asgi())])

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginMiddleware(AuthMiddlewareStack(ApiKeyMiddleware(websocket_urls))),
    }
)
