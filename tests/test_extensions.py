"""What generations asks of the apps above it is registered in settings (generations/extensions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from core.errors import ApiError
from gallery.models import StylePreset
from gallery.moderation import suspend_user
from generations.extensions import check_submission, style_preset

pytestmark = pytest.mark.django_db


def refuse_cats(*, user: User, prompt: str, negative_prompt: str = "") -> None:
    if "cat" in prompt:
        raise ApiError("prompt_blocked", "No cats.")


def test_moderation_is_registered_by_default() -> None:
    user = User.objects.create_user("suspended", password="x")
    suspend_user(user=user)
    with pytest.raises(ApiError) as refused:
        check_submission(user=user, prompt="a boat")
    assert refused.value.code == "account_suspended"


def test_it_runs_the_checks_the_settings_name(settings: Any) -> None:
    settings.ATELIER_SUBMISSION_CHECKS = ["tests.test_extensions.refuse_cats"]
    user = User.objects.create_user("someone", password="x")
    suspend_user(user=user)
    check_submission(user=user, prompt="a boat")  # moderation is no longer registered
    with pytest.raises(ApiError, match="No cats"):
        check_submission(user=user, prompt="a cat")


def test_style_presets_come_from_the_registered_provider(settings: Any) -> None:
    StylePreset.objects.create(slug="ink", name="Ink", prompt_template="{prompt}, ink drawing")
    preset = style_preset("ink")
    assert preset is not None and preset.apply("a fox", "")[0] == "a fox, ink drawing"
    assert style_preset("nope") is None
    settings.ATELIER_STYLE_PRESETS = ""
    assert style_preset("ink") is None
