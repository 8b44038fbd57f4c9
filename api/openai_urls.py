from django.urls import path

from api import openai_compat

urlpatterns = [
    path("images/generations", openai_compat.images_generations, name="openai_images_generations"),
    path("images/edits", openai_compat.images_edits, name="openai_images_edits"),
    path("models", openai_compat.models, name="openai_models"),
]
