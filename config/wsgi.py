"""The HTTP application for a WSGI server (gunicorn): pages and the API. WebSockets go to daphne
(config/asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
