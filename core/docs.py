"""README sections served in the app (``/docs/<topic>/``), so a page can link to the very text the
README holds: read from README.md at request time, never copied, rendered by a small subset of
Markdown (paragraphs, indented code blocks, inline code, lists)."""

from __future__ import annotations

import re
from functools import cache

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

TOPICS = {
    "built-in-model": "The built-in model",
    "adding-models": "Adding real models",
}
INLINE_CODE = re.compile(r"`([^`]+)`")


@cache
def readme() -> str:
    return (settings.BASE_DIR / "README.md").read_text(encoding="utf-8")


def section(text: str, title: str) -> list[str]:
    """The lines under a heading named ``title``, up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        level = len(line) - len(line.lstrip("#"))
        if level and line[level:].strip() == title:
            body = []
            for following in lines[index + 1 :]:
                other = len(following) - len(following.lstrip("#"))
                if other and other <= level and following[other : other + 1] == " ":
                    break
                body.append(following)
            return body
    raise KeyError(title)


def inline(text: str) -> str:
    return INLINE_CODE.sub(lambda match: f"<code>{match.group(1)}</code>", str(escape(text)))


def to_html(lines: list[str]) -> SafeString:
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    html = []
    for block in filter(None, blocks):
        if all(line.startswith("    ") for line in block):
            html.append("<pre><code>" + escape("\n".join(line[4:] for line in block)) + "</code></pre>")
        elif all(line.startswith(("- ", "  ")) for line in block):
            items = " ".join(block).split("- ")[1:]
            html.append("<ul>" + "".join(f"<li>{inline(item.strip())}</li>" for item in items) + "</ul>")
        else:
            html.append(f"<p>{inline(' '.join(line.strip() for line in block))}</p>")
    return mark_safe("\n".join(html))  # noqa: S308 - every piece of text went through escape()


def page(request: HttpRequest, topic: str) -> HttpResponse:
    title = TOPICS.get(topic)
    if title is None:
        raise Http404(topic)
    body = to_html(section(readme(), title))
    return render(request, "docs.html", {"title": title, "body": body})
