from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, blank=True, help_text="Event types to send; empty: all.")
    # Kept to sign deliveries; shown to the user once, when the endpoint is created.
    secret = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    # Made by a generation's `webhook_url`: hears only the generations that name it.
    per_generation = models.BooleanField(default=False)
    # Back-off of the endpoint as a whole: after failures in a row, no delivery before retry_after.
    failures_in_a_row = models.PositiveIntegerField(default=0)
    retry_after = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.events or event_type in self.events)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One event for one endpoint; its id is the `webhook-id` of every attempt."""

    id = models.CharField(primary_key=True, max_length=40)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["status", "created_at"]),  # retention (services.delete_old_deliveries)
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.event_type} {self.status}"


class WebhookAttempt(models.Model):
    """Status and timing only: what a receiver answers is never kept (it could be anything the
    receiver can reach, and the log is shown to the user)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.status_code or self.error}"
