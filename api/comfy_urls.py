"""ComfyUI's routes, at the root and again under ``/api/`` (config/urls.py includes this twice,
each with its own name prefix)."""

from __future__ import annotations

from django.urls import URLPattern, path

from api import comfy_views as v


def comfy_patterns(prefix: str) -> list[URLPattern]:
    routes = [
        ("prompt", v.prompt, "prompt"),
        ("history", v.history, "history"),
        ("history/<str:prompt_id>", v.history_detail, "history_detail"),
        ("view", v.view, "view"),
        ("upload/image", v.upload_image, "upload_image"),
        ("upload/mask", v.upload_mask_view, "upload_mask"),
        ("object_info", v.object_info, "object_info"),
        ("object_info/<str:node_class>", v.object_info, "object_info_class"),
        ("queue", v.queue, "queue"),
        ("interrupt", v.interrupt, "interrupt"),
        ("free", v.free, "free"),
        ("system_stats", v.system_stats, "system_stats"),
        ("models", v.models, "models"),
        ("models/<str:folder>", v.models, "models_folder"),
        ("embeddings", v.embeddings, "embeddings"),
        ("extensions", v.extensions, "extensions"),
        ("features", v.features, "features"),
    ]
    return [path(route, view, name=f"{prefix}_{name}") for route, view, name in routes]


root_patterns = comfy_patterns("comfy")
api_patterns = comfy_patterns("comfy_api")
