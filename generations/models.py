from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class GenerationStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


ACTIVE_STATUSES = (GenerationStatus.PENDING, GenerationStatus.QUEUED, GenerationStatus.RUNNING)
TERMINAL_STATUSES = (GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELED)


class GenerationKind(models.TextChoices):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"


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
    relax = models.BooleanField(default=False)
    credits_held = models.PositiveIntegerField(default=0, help_text="Hundredths of credits held.")
    credits_per_image = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
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
    memory_mode = models.CharField(
        max_length=32,
        blank=True,
        help_text="Out-of-memory savings it needed: normal, split, sliced, offload.",
    )
    timings = models.JSONField(
        default=dict, blank=True, help_text="Seconds per phase: queue_wait, load, denoise, save; it_per_s."
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["status", "pool", "created_at"]),
            models.Index(fields=["user", "status"]),
            models.Index(fields=["status", "pool", "lane", "lane_entered_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def queue_name(self) -> str:
        return f"gen.{self.pool}.{self.lane}"


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

    class Meta:
        ordering = ["generation", "index"]
        constraints = [
            models.UniqueConstraint(fields=["generation", "index"], name="one_image_per_index"),
        ]

    def __str__(self) -> str:
        return f"image {self.id}"
