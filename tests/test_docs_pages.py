"""README sections served in the app: Create's demo-model note links to "Adding real models"."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import User
from core.docs import readme, section

pytestmark = pytest.mark.django_db


def test_create_links_the_readme_section_on_adding_real_models(client: Client) -> None:
    client.force_login(User.objects.create_user("newcomer", password="correct horse battery staple"))
    create = client.get("/create/").content.decode()
    note = re.search(r'class="hint demo-model-note">(.*?)</p>', create, re.S)
    assert note is not None and 'href="/docs/adding-models/"' in note.group(1)

    page = client.get("/docs/adding-models/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Adding real models</h1>" in html
    # The README's own words: inline code and the indented example as a code block, escaped.
    assert "<code>ATELIER_MODELS</code>" in html
    assert "<pre><code>ATELIER_MODELS=&#x27;[{&quot;name&quot;: &quot;sdxl&quot;" in html
    assert "## Operating it" not in html and "Operating it" not in html


def test_the_docs_follow_the_readme_and_unknown_topics_are_404(client: Client) -> None:
    lines = section(readme(), "The built-in model")
    assert any("train_demo_model" in line for line in lines)
    assert not any(line.startswith("## ") for line in lines)
    assert client.get("/docs/built-in-model/").status_code == 200
    assert client.get("/docs/nothing-here/").status_code == 404
