"""Fetching public network files (metric detectors, published weights) and pinning them.

Files are streamed to a temporary name, hashed on the way, and renamed only when the
SHA-256 matches the pin (or when no pin is given, in which case the hash is recorded so the
user can pin it). A partial download never sits under the final name.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import urllib.request
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.io import atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# EchoNet's checkpoint stores its validation R² as a NumPy float64 next to the weights; these
# are the only non-torch objects the safe (weights_only) unpickler must accept to read it,
# under the module names of NumPy 1.x (which wrote it) and 2.x.
SAFE_NUMPY_GLOBALS = [
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    (np._core.multiarray.scalar, "numpy._core.multiarray.scalar"),
    np.dtype,
    np.dtypes.Float64DType,
]


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


def load_state_file(path: str | Path) -> dict:
    """A ``torch.save``'d state dict read with the safe (weights_only) unpickler.

    Raises:
        DataError: the file is missing or is not such a file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path,
            "weights file does not exist",
            "run the download_weights rule or set the weights path in the config",
        )
    try:
        with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise DataError(
            path,
            f"cannot read the weights file ({type(err).__name__}: {str(err).splitlines()[0]})",
            "re-download it; it must be a torch.save'd state dict",
        ) from err


def check_state_keys(
    expected: dict[str, torch.Tensor],
    given: dict[str, torch.Tensor],
    path: Path,
    what: str,
) -> None:
    """DataError listing a few missing, unexpected and wrongly shaped keys, if any."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise DataError(
            path,
            f"state dict does not fit the model ({len(missing)} missing e.g. {missing[:3]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:3]}, {len(shapes)} with other "
            f"shapes e.g. {shapes[:3]})",
            f"use {what}, matching the model's arch/in_channels/widths/layers",
        )
