"""The README's "Use ComfyUI clients" example, run as written against real processes: only the key
and the server's address are filled in."""

from __future__ import annotations

import os
import pathlib
import re

import pytest
from PIL import Image

from tests.conftest import ApiUser

pytestmark = pytest.mark.live

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    section = README.read_text().split("### Use ComfyUI clients", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the section has a Python example"
    return match.group(1)


def test_the_readmes_comfyui_example_runs(
    alice: ApiUser, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = readme_example()
    assert 'KEY = "..."' in source and "127.0.0.1:8000" in source
    source = source.replace('KEY = "..."', f"KEY = {alice.key!r}")
    source = source.replace("127.0.0.1:8000", alice.base_url.removeprefix("http://"))
    monkeypatch.chdir(tmp_path)
    exec(compile(source, "README.md", "exec"), {})  # noqa: S102 - our own README's example
    saved = os.listdir(tmp_path)
    assert len(saved) == 1 and saved[0].endswith(".png")
    assert Image.open(tmp_path / saved[0]).size == (256, 256)
