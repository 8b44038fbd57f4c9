"""Settings from environment variables, each with a working default, failing loudly on a malformed
value and naming the variable (a bare ``float(os.environ[...])`` fails without saying which).

Free of Django imports: ``config/settings.py`` reads it before Django is set up.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def _raw(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty (both mean: use the default)."""
    raw = os.environ.get(name)
    return None if raw is None or raw.strip() == "" else raw.strip()


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def _parsed(name: str, default: T, parse: Callable[[str], T], kind: str) -> T:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return _parsed(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _parsed(name, default, float, "a number")


def env_list(name: str, default: str) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_pairs(name: str, default: str) -> dict[str, float]:
    """``a=1,b=2``; a bare name maps to NaN (the caller's "no value")."""
    pairs: dict[str, float] = {}
    for part in os.environ.get(name, default).split(","):
        key, sep, value = part.strip().partition("=")
        if not part.strip():
            continue
        try:
            pairs[key] = float(value) if sep else float("nan")
        except ValueError as exc:
            raise ValueError(f"{name}: expected name=number, got {part!r}") from exc
    return pairs


def env_secret(name: str, default: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def random_secret() -> str:
    return secrets.token_urlsafe(48)


def installation_secret(path: Path, make: Callable[[], str] = random_secret) -> str:
    """A secret made by ``make`` on first use and kept in ``path`` (mode 0600), like the admin
    password: each installation has its own, and every process of it reads the same one."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may have made it a moment ago and be writing it
            kept = path.read_text().strip()
            if kept:
                return kept
            time.sleep(0.1)
        raise ValueError(f"{path} is empty: delete it to make a new secret") from None
    secret = make()
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    return secret
