from django.urls import path

from bench.floor_apps import empty

urlpatterns = [path("empty", empty)]
