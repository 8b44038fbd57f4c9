"""Model weights over HTTPS, the one outbound call of `manage.py models add`: resumed from where an
earlier attempt stopped (an HTTP Range request), checked against the sha256 the operator gave.

A download that breaks off keeps what it got (`partial`), so running the same command again
continues it; one whose checksum does not match is deleted, and nothing is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

CHUNK_BYTES = 1 << 20
READ_TIMEOUT_SECONDS = 30  # one read; the whole download has its own deadline
DEADLINE_SECONDS = 6 * 3600


class DownloadError(Exception):
    """A download that did not produce the file, with what to do about it."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def expected_size(response: http.client.HTTPResponse, start: int) -> int | None:
    """The size of the whole file, from Content-Range (a resumed download) or Content-Length."""
    content_range = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", content_range.strip())
    if response.status == 206:
        if match is None or int(match.group(1)) != start:
            raise DownloadError(f"the server resumed at the wrong place ({content_range!r})")
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def download(
    url: str, *, sha256: str, partial: Path, target: Path, deadline_seconds: float = DEADLINE_SECONDS
) -> None:
    """Fetch `url` into `partial` (continuing what is there), check it, then move it to `target`."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + deadline_seconds
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the caller allows https only
    total: int | None = None
    try:
        with urllib.request.urlopen(  # noqa: S310 - as above
            request, timeout=READ_TIMEOUT_SECONDS, context=ssl.create_default_context()
        ) as response:
            if response.status == 200:
                have = 0  # the server sends the whole file: start over
            total = expected_size(response, have)
            with partial.open("ab" if have else "wb") as out:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    if time.monotonic() > deadline:
                        raise DownloadError(
                            f"the download of {url} passed its deadline; run the command again to resume"
                        )
    except urllib.error.HTTPError as error:
        if not (error.code == 416 and have):  # 416 on a resume: nothing left to fetch
            raise DownloadError(f"{url}: the server answered {error.code} {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:
        got = partial.stat().st_size if partial.exists() else 0
        raise DownloadError(
            f"the download of {url} broke off after {got} bytes ({error}); run the command again to resume"
        ) from error
    got = partial.stat().st_size
    if total is not None and got < total:
        raise DownloadError(
            f"the download of {url} broke off after {got} of {total} bytes; run the command again to resume"
        )
    actual = file_sha256(partial)
    if actual != sha256.lower():
        partial.unlink()
        with contextlib.suppress(OSError):
            partial.parent.rmdir()  # only when empty
        raise DownloadError(f"{url}: sha256 {actual} is not the expected {sha256.lower()}; nothing was kept")
    os.replace(partial, target)
    with contextlib.suppress(OSError):
        partial.parent.rmdir()
