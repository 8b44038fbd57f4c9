"""Small modules (CONVENTIONS.md 9): no module over 400 lines, so a file that grows into two
things is split by what it does.

The apps, ``bench/`` and ``scripts/`` count; migrations (generated) and ``tests/`` do not: a
test file reads as one specification, and tests/stripe_stub.py is a fake of a whole service.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
SKIPPED_DIRS = {"tests", "migrations", ".venv", "var", "node_modules", "static", "staticfiles"}


def test_no_module_is_over_400_lines() -> None:
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if not SKIPPED_DIRS.isdisjoint(relative.parts):
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long.append(f"{relative}: {lines} lines")
    assert not long, f"split these by what they do (at most {MAX_LINES} lines each):\n" + "\n".join(long)
