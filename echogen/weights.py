"""Fetching public network files (metric detectors, published weights) and pinning them.

Files are streamed to a temporary name, hashed on the way, and renamed only when the
SHA-256 matches the pin (or when no pin is given, in which case the hash is recorded so the
user can pin it). A partial download never sits under the final name.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.request
from pathlib import Path

from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.io import atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, path: str | Path, sha256: str | None = None, timeout: float = 60) -> str:
    """Download ``url`` to ``path`` atomically and return the file's SHA-256.

    Raises:
        DataError: the download failed (no internet on this node) or the hash differs from
            ``sha256``; ``path`` is then left as it was.
    """
    path = Path(path)
    digest = hashlib.sha256()
    with atomic_path(path) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=path.name) as bar:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except OSError as err:
            raise DataError(
                url,
                f"download failed ({err})",
                f"run this rule on a node with internet, or fetch the file by hand and set "
                f"source: local with its path (target {path})",
            ) from err
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise DataError(
                url,
                f"SHA-256 mismatch: expected {sha256}, downloaded file has {got}",
                "check the URL; if the publisher replaced the file on purpose, update the pin",
            )
    if sha256 is None:
        log.warning("%s: SHA-256 not pinned in config; the file has %s (pin it)", path, got)
    return got
