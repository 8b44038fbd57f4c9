"""Likes, reports, style presets, the prompt blocklist and each member's gallery profile."""

from __future__ import annotations

import re

from django.conf import settings
from django.db import models
from django.utils import timezone


class Profile(models.Model):
    """Per-member gallery settings and moderation state (created on first use)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    show_mature = models.BooleanField(
        default=False, help_text="Show images rated mature in Explore without blurring them."
    )
    suspended = models.BooleanField(default=False, help_text="A suspended member cannot submit.")
    suspended_reason = models.CharField(max_length=300, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"profile of {self.user}"


class Like(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="likes")
    image = models.ForeignKey("generations.Image", on_delete=models.CASCADE, related_name="likes")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "image"], name="one_like_per_user")]

    def __str__(self) -> str:
        return f"{self.user} likes {self.image_id}"


class ReportReason(models.TextChoices):
    SEXUAL = "sexual", "Sexual content"
    VIOLENCE = "violence", "Violence or gore"
    HATE = "hate", "Hate or harassment"
    ILLEGAL = "illegal", "Illegal content"
    SPAM = "spam", "Spam"
    COPYRIGHT = "copyright", "Copyright"
    OTHER = "other", "Other"


class ReportStatus(models.TextChoices):
    OPEN = "open"
    ACTIONED = "actioned", "Actioned (image hidden or member suspended)"
    DISMISSED = "dismissed"


class Report(models.Model):
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports")
    image = models.ForeignKey("generations.Image", on_delete=models.CASCADE, related_name="reports")
    reason = models.CharField(max_length=16, choices=ReportReason.choices)
    details = models.TextField(blank=True, max_length=1000)
    status = models.CharField(max_length=16, choices=ReportStatus.choices, default=ReportStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self) -> str:
        return f"report {self.pk} on {self.image_id} ({self.status})"


class StylePreset(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    prompt_template = models.TextField(default="{prompt}", help_text="The member's prompt replaces {prompt}.")
    negative_prompt = models.TextField(blank=True, help_text="Added to the member's negative prompt.")
    position = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    def apply(self, prompt: str, negative_prompt: str) -> tuple[str, str]:
        # str.replace, not str.format: prompts may contain braces.
        styled = (
            self.prompt_template.replace("{prompt}", prompt)
            if "{prompt}" in self.prompt_template
            else (f"{prompt}, {self.prompt_template}")
        )
        negatives = ", ".join(part for part in (negative_prompt, self.negative_prompt) if part)
        return styled, negatives


class BlockedTerm(models.Model):
    """A word or phrase that prompts may not contain (matched case-insensitively, as whole words)."""

    term = models.CharField(max_length=200, unique=True)
    active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["term"]

    def __str__(self) -> str:
        return self.term

    def pattern(self) -> re.Pattern[str]:
        words = [re.escape(word) for word in self.term.split()]
        return re.compile(r"(?<!\w)" + r"\W+".join(words) + r"(?!\w)", re.IGNORECASE)
