from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from generations.queue_names import queue_name
from generations.samplers import DEFAULT_SAMPLER, SAMPLERS


class GenerationStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


EXPLORE_VISIBLE = Q(is_public=True, hidden=False, deleted_at=None)

ACTIVE_STATUSES = (GenerationStatus.PENDING, GenerationStatus.QUEUED, GenerationStatus.RUNNING)
TERMINAL_STATUSES = (GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELED)


class GenerationKind(models.TextChoices):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    WORKFLOW = "workflow"  # a node graph in ComfyUI's API format (workflows/)


class GenerationAction(models.TextChoices):
    """What a generation made from an earlier image did with it (blank: a fresh prompt)."""

    NONE = "", "new"
    UPSCALE = "upscale"
    VARY_SUBTLE = "vary_subtle"
    VARY_STRONG = "vary_strong"
    REMIX = "remix"
    INPAINT = "inpaint"


class ContentRating(models.TextChoices):
    GENERAL = "general"
    MATURE = "mature"


class Upload(models.Model):
    """An input image (img2img), re-encoded to PNG without metadata on the way in."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    file = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"upload {self.id}"


class Generation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations")
    status = models.CharField(
        max_length=16, choices=GenerationStatus.choices, default=GenerationStatus.QUEUED
    )
    kind = models.CharField(max_length=16, choices=GenerationKind.choices, default=GenerationKind.TXT2IMG)
    model_name = models.CharField(max_length=100)
    pool = models.CharField(max_length=50)
    lane = models.CharField(max_length=16)
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    steps = models.PositiveIntegerField()
    guidance = models.FloatField()
    sampler = models.CharField(
        max_length=32,
        choices=list(SAMPLERS.items()),
        default=DEFAULT_SAMPLER,
        help_text="The denoising sampler; default is the model's own scheduler.",
    )
    loras = models.JSONField(
        default=list,
        blank=True,
        help_text="LoRAs applied while rendering: [{name, weight}] (files of ATELIER_LORA_DIR).",
    )
    seed = models.BigIntegerField()
    n = models.PositiveSmallIntegerField(default=1)
    input_upload = models.ForeignKey(Upload, null=True, blank=True, on_delete=models.PROTECT)
    mask_upload = models.ForeignKey(
        Upload,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="White repaints, black keeps (inpainting).",
    )
    strength = models.FloatField(null=True, blank=True)
    parent = models.ForeignKey(
        "Image",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The image this generation was made from (upscale, vary, remix, inpaint).",
    )
    action = models.CharField(max_length=16, choices=GenerationAction.choices, default="", blank=True)
    is_public = models.BooleanField(
        default=False, help_text="Whether its images start published (from the plan and the request)."
    )
    relax = models.BooleanField(default=False)
    credits_held = models.PositiveIntegerField(default=0, help_text="Hundredths of credits held.")
    credits_per_image = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    preemptions = models.PositiveSmallIntegerField(
        default=0, help_text="Times a waiting priority job stopped it mid-run (it resumed or restarted)."
    )
    webhook = models.ForeignKey(
        "webhooks.WebhookEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    webhook_events = models.JSONField(default=list, blank=True)
    lane_entered_at = models.DateTimeField(default=timezone.now)
    retry_at = models.DateTimeField(null=True, blank=True)
    run_seconds = models.FloatField(null=True, blank=True)
    batch_size = models.PositiveSmallIntegerField(
        default=0, help_text="Jobs in the batch this one ran in (0 = not run yet)."
    )
    request_id = models.CharField(
        max_length=64, blank=True, help_text="X-Request-ID of the request that submitted it (log tracing)."
    )
    memory_mode = models.CharField(
        max_length=32,
        blank=True,
        help_text="Out-of-memory savings it needed: normal, split, sliced, offload.",
    )
    timings = models.JSONField(
        default=dict, blank=True, help_text="Seconds per phase: queue_wait, load, denoise, save; it_per_s."
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    workflow = models.JSONField(
        default=dict,
        blank=True,
        help_text="A workflow's graph and ComfyUI fields (prompt, outputs_to_execute, client_id, "
        "number, extra_data), then its outputs and files once it ran.",
    )
    cache_key = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="What makes its images (model content, parameters, seed, inputs), hashed; blank "
        "when it may not be answered from or serve as a cached result (random seed, opted out).",
    )
    cached = models.BooleanField(
        default=False, help_text="Answered from the images of an identical finished generation."
    )
    fallback_from = models.CharField(
        max_length=100,
        blank=True,
        help_text="The model asked for, when its circuit was open and this ran on its fallback.",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Its live images when a selector read them with it (selectors.generation_of); None: not read.
    loaded_images: list[Image] | None = None

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["status", "pool", "created_at"]),
            models.Index(fields=["user", "status"]),
            models.Index(fields=["status", "pool", "lane", "lane_entered_at"]),
            # Prompt search on PostgreSQL: a GIN index on to_tsvector('english', prompt), made by
            # migration 0002 outside the model state (SQLite has no such index).
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def queue_name(self) -> str:
        return queue_name(self.pool, self.lane)


def hot_score(likes: int, created_at: datetime) -> float:
    """Trending rank: each tenfold of likes is worth 12.5 hours of freshness. It only changes
    when the likes do, so it can be stored and indexed."""
    return math.log10(max(likes, 1)) + (created_at.timestamp() - HOT_EPOCH) / 45000


HOT_EPOCH = 1_767_225_600  # 2026-01-01 UTC


class ImageQuerySet(models.QuerySet["Image"]):
    def bulk_create(self, objs: Iterable[Image], *args: Any, **kwargs: Any) -> list[Image]:
        objs = list(objs)
        for image in objs:
            image.inherit_from_generation()
        return super().bulk_create(objs, *args, **kwargs)


class LiveImageManager(models.Manager["Image"]):
    """Images not deleted: a deleted image vanishes from every list and URL at once, while its row
    (and files) wait for the dispatcher's purge (generations/retention.py)."""

    def get_queryset(self) -> ImageQuerySet:
        return ImageQuerySet(self.model, using=self._db).filter(deleted_at=None)

    def bulk_create(self, objs: Iterable[Image], *args: Any, **kwargs: Any) -> list[Image]:
        return self.get_queryset().bulk_create(objs, *args, **kwargs)


class Image(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveSmallIntegerField()
    seed = models.BigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original = models.CharField(max_length=255)
    thumbnail = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    is_public = models.BooleanField(default=False, help_text="Published in Explore and on the profile.")
    hidden = models.BooleanField(default=False, help_text="Hidden from Explore by staff.")
    content_rating = models.CharField(
        max_length=16, choices=ContentRating.choices, default=ContentRating.GENERAL
    )
    like_count = models.PositiveIntegerField(default=0)
    hot_score = models.FloatField(default=0.0)
    thumbnail_sizes = models.JSONField(
        default=list,
        blank=True,
        help_text="Longest sides of the larger WebP thumbnails beside `thumbnail` (256): e.g. [512].",
    )
    last_viewed_at = models.DateTimeField(
        null=True, blank=True, help_text="When its original was last fetched (written in batches)."
    )
    cold = models.BooleanField(default=False, help_text="Its original is in the cold storage tier.")
    deleted_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Deleted: gone at once, purged after retention."
    )

    objects = LiveImageManager()
    all_objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["generation", "index"]
        constraints = [
            models.UniqueConstraint(fields=["generation", "index"], name="one_image_per_index"),
        ]
        # Explore's three sorts, over the visible images only.
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="explore_new", condition=EXPLORE_VISIBLE),
            models.Index(
                fields=["-like_count", "-created_at"], name="explore_top", condition=EXPLORE_VISIBLE
            ),
            models.Index(fields=["-hot_score"], name="explore_trending", condition=EXPLORE_VISIBLE),
        ]

    def __str__(self) -> str:
        return f"image {self.id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            self.inherit_from_generation()
        super().save(*args, **kwargs)

    COPIED_BY_THE_CACHE = ("index", "seed", "width", "height", "original", "thumbnail", "thumbnail_sizes")

    def copy_for(self, generation: Generation) -> Image:
        """A new row of ``generation`` pointing at this image's files (the result cache: files are
        content-addressed and stay while any row uses them), in the same storage tier."""
        fields = {name: getattr(self, name) for name in self.COPIED_BY_THE_CACHE}
        return Image(
            generation=generation,
            cold=self.cold,
            sha256=self.sha256,
            content_rating=self.content_rating,
            **fields,
        )

    def inherit_from_generation(self) -> None:
        """A new image starts with its generation's visibility: the worker only knows pixels."""
        self.is_public = self.generation.is_public
        self.hot_score = hot_score(self.like_count, self.created_at)


class InstalledModel(models.Model):
    """A model an operator added with `manage.py models add`: its weights are in the models folder
    (ATELIER_MODELS_DIR), its row makes it known to every web process and worker at once, beside
    the ones ATELIER_MODELS names (generations/registry.py)."""

    name = models.SlugField(max_length=100, unique=True)
    # Inside the models folder: relative to it, so that each machine finds the weights in its own
    # ATELIER_MODELS_DIR (a shared volume may be mounted at different places).
    path = models.CharField(max_length=1000, help_text="A diffusers directory or a single checkpoint file.")
    family = models.CharField(max_length=32)
    pool = models.SlugField(max_length=64)
    config = models.CharField(max_length=1000, blank=True, help_text="A single file's family directory.")
    size_bytes = models.BigIntegerField(default=0)
    source = models.CharField(max_length=2000, help_text="Where it came from: a path or a URL.")
    sha256 = models.CharField(max_length=64, blank=True)
    # Other ModelSpec fields (limits, defaults, cost), as `models add` was given them.
    options = models.JSONField(default=dict, blank=True)
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
