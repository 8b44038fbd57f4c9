from django.urls import path

from generations import openai_api

urlpatterns = [
    path("images/generations", openai_api.images_generations, name="openai_images_generations"),
    path("images/edits", openai_api.images_edits, name="openai_images_edits"),
    path("models", openai_api.models, name="openai_models"),
]
