"""Synthetic echocardiography datasets written in the raw layouts of the public downloads.

``write_phantom(dataset, root, params, seed)`` builds one dataset folder (EchoNet-Dynamic,
EchoNet-Pediatric A4C/PSAX, CardiacNet, CAMUS, RV failure) so the demo workflow exercises
the same ingestion code as the real data. ``params`` is the ``phantom.<dataset>`` config
section:

- ``dynamic``: ``videos`` ``{TRAIN, VAL, TEST: int}``, ``frames`` ``[min, max]``,
  ``fps`` (float), ``size`` (int, px).
- ``ped_a4c`` / ``ped_psax``: ``videos_per_fold`` (int, folds 0-9), ``frames``, ``fps``, ``size``.
- ``cardiacnet``: ``patients_per_class`` (int), ``frames``, ``height``, ``width`` (upright px).
- ``camus``: ``patients`` ``{train, valid, test: int}``, ``size`` (int, px).
- ``rvfailure``: ``patients`` (int), ``clips_per_patient`` ``[min, max]``, ``frames``
  ``[min, max]`` (min ≥ 32), ``height``, ``width``, ``photometric`` (``RGB``/``MONOCHROME2``).
"""

from __future__ import annotations

from pathlib import Path

from echogen.data.io import atomic_dir
from echogen.phantom import datasets

DATASETS = ("dynamic", "ped_a4c", "ped_psax", "cardiacnet", "camus", "rvfailure")
WRITERS = {
    "dynamic": datasets.write_dynamic,
    "ped_a4c": datasets.write_ped_a4c,
    "ped_psax": datasets.write_ped_psax,
    "cardiacnet": datasets.write_cardiacnet,
    "camus": datasets.write_camus,
    "rvfailure": datasets.write_rvfailure,
}
MIN_SIZE = 32
PHOTOMETRIC = ("RGB", "MONOCHROME2")
# Expected params per dataset: key -> kind (checked by _check_value).
PARAMS = {
    "dynamic": {"videos": datasets.DYNAMIC_SPLITS, "frames": 2, "fps": "fps", "size": "size"},
    "ped_a4c": {"videos_per_fold": "count", "frames": 2, "fps": "fps", "size": "size"},
    "ped_psax": {"videos_per_fold": "count", "frames": 2, "fps": "fps", "size": "size"},
    "cardiacnet": {"patients_per_class": "count", "frames": 2, "height": "size", "width": "size"},
    "camus": {"patients": datasets.CAMUS_SPLITS, "size": "size"},
    "rvfailure": {
        "patients": "count",
        "clips_per_patient": 1,
        "frames": 32,
        "height": "size",
        "width": "size",
        "photometric": PHOTOMETRIC,
    },
}


def write_phantom(dataset: str, root: str | Path, params: dict, seed: int) -> None:
    """Write one synthetic raw dataset into folder ``root``, atomically.

    Args:
        dataset: one of :data:`DATASETS`.
        root: output folder; replaced only once the new one is complete.
        params: the dataset's settings (see the module docstring); unknown or missing keys
            raise ``ValueError``.
        seed: random seed; equal seeds give equal csv files and pixel arrays.
    """
    check_params(dataset, params)
    with atomic_dir(root) as tmp:
        WRITERS[dataset](Path(tmp), params, seed)


def check_params(dataset: str, params: dict) -> None:
    """Raise ``ValueError`` naming the dataset and key when ``params`` do not fit ``dataset``."""
    if dataset not in PARAMS:
        raise ValueError(f"unknown phantom dataset {dataset!r}; choose one of {DATASETS}")
    expected = PARAMS[dataset]
    for key in params:
        if key not in expected:
            raise ValueError(f"phantom.{dataset}: unknown key {key!r}; expected {list(expected)}")
    for key, kind in expected.items():
        if key not in params:
            raise ValueError(f"phantom.{dataset}: missing key {key!r}")
        _check_value(f"phantom.{dataset}.{key}", params[key], kind)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(name: str, value, kind) -> None:
    """Check one value; ``kind`` is "count", "size", "fps", an int (the least ``[min, max]``
    allowed), a tuple of split names (a dict of counts) or, for photometric, the choices."""
    if kind == PHOTOMETRIC:
        if value not in PHOTOMETRIC:
            raise ValueError(f"{name} must be one of {PHOTOMETRIC}, got {value!r}")
    elif isinstance(kind, tuple):
        if not isinstance(value, dict) or set(value) != set(kind):
            raise ValueError(f"{name} must map exactly {list(kind)} to counts, got {value!r}")
        for split in kind:
            if not _is_int(value[split]) or value[split] < 0:
                raise ValueError(f"{name}.{split} must be an int >= 0, got {value[split]!r}")
    elif _is_int(kind):
        ok = (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(_is_int(v) for v in value)
            and kind <= value[0] <= value[1]
        )
        if not ok:
            raise ValueError(
                f"{name} must be [min, max] ints with {kind} <= min <= max, got {value!r}"
            )
    elif kind == "count":
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    elif kind == "size":
        if not _is_int(value) or value < MIN_SIZE:
            raise ValueError(f"{name} must be an int >= {MIN_SIZE} (px), got {value!r}")
    elif kind == "fps":
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive number (Hz), got {value!r}")
