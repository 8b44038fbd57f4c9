"""A newcomer's first images in a real Chromium: Create offers the built-in model's example prompts,
one click fills the prompt, and what comes back passes the judge.

The screenshot of Create goes to docs/screenshots/ when ATELIER_SCREENSHOTS=1 (the README's)."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from demo_model.judge import judge
from generations.models import Generation
from generations.storage import open_content
from tests.browser_support import open_page, sign_up, wait_until
from tests.conftest import ROOT, Servers

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture
def page(browser: Any, servers: Servers, transactional_db: None) -> Iterator[Any]:
    with open_page(browser, servers.url) as opened:
        yield opened


def render_example(page: Any, prompt: str) -> Image.Image:
    page.locator(".example-prompt", has_text=prompt).click()
    assert page.input_value("#prompt") == prompt
    page.fill("#seed", "1")  # the judge reads one known picture (other seeds: tests/test_demo_model.py)
    submitted = "/api/v1/generations"
    with page.expect_response(lambda r: r.url.endswith(submitted) and r.request.method == "POST") as posted:
        page.click("#submit")
    assert posted.value.status == 202, posted.value.text()
    # The card appears as soon as the page sends the request; wait for the row and its finish.
    deadline = time.monotonic() + 120
    while not Generation.objects.filter(prompt=prompt, status="succeeded").exists():
        assert time.monotonic() < deadline, f"{prompt!r} did not finish"
        time.sleep(0.2)
    generation = Generation.objects.get(prompt=prompt)
    card_of = f"document.querySelector(\".gen-card[data-id='{generation.id}']\")"
    wait_until(page, f"{card_of} && {card_of}.dataset.status === 'succeeded'")
    assert (generation.width, generation.height, generation.model_name) == (256, 256, "atelier-demo")
    return Image.open(io.BytesIO(open_content(generation.images.get().original))).convert("RGB")


def test_the_example_prompts_render_what_they_say(page: Any) -> None:
    sign_up(page, "newcomer")
    wait_until(page, "document.body.dataset.live === '1'")
    examples = page.locator(".example-prompt").all_inner_texts()
    assert "a red circle on a blue background" in examples and len(examples) >= 4
    assert "small demo model" in page.locator(".demo-model-note").inner_text()
    for prompt in ("a lighthouse at dusk", "a red circle on a blue background"):
        verdict = judge(render_example(page, prompt), prompt)
        assert all(verdict.values()), (prompt, verdict)
    folder = ROOT / "docs" / "screenshots" if os.environ.get("ATELIER_SCREENSHOTS") == "1" else None
    if folder is not None:
        page.screenshot(path=str(folder / "create.png"), full_page=True)
    # The note's link opens the README's section on adding real models.
    page.locator(".demo-model-note a").click()
    page.wait_for_url("**/docs/adding-models/")
    assert "ATELIER_MODELS" in page.locator("article.docs").inner_text()
