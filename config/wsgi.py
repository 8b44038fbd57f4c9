"""The HTTP application for a WSGI server (gunicorn): pages and the API. WebSockets go to daphne
(config/asgi.py). A ComfyUI client's key in its base URL or ``?token=`` becomes the Bearer header
first (api/comfy_auth.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from api.comfy_auth import ComfyKeyWSGIMiddleware

application = ComfyKeyWSGIMiddleware(get_wsgi_application())
