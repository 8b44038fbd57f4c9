"""Atelier's settings with no app, no middleware and one URL (bench/floor_apps.py's ``bare_django``)."""

from config.settings import *  # noqa: F403

INSTALLED_APPS = []
MIDDLEWARE = []
ROOT_URLCONF = "bench.floor_urls"
