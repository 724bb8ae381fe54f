"""The synthetic-dataset contract and the sharded sampling driver every system uses.

A synthetic dataset is a folder ``results/samples/<id>/`` that every evaluation reads the
same way, whatever system made it (``docs/architecture.md``, "three contracts")::

    FileList.csv                 the EchoNet-Dynamic columns (:data:`BASE_COLUMNS`) followed by
                                 the system's conditioning columns, one row per sample, sorted
                                 by FileName (``sample_<index:05d>``)
    Videos/<name>.mp4            grey video at the FileList's FPS
    frames/<name>/<0000>.jpg     the same frames as JPEGs (StyleGAN-V layout)
    latents/<name>.npy           what the privacy filter compares (LVDM: the first frame's
                                 latent); the folder is empty for a system that keeps none
    sampling.json                provenance: config, seed, inputs, n_samples, shards, block,
                                 timing

A system supplies two things, and the driver does the rest (sharding, writing, timing,
gathering, provenance checks):

- a **plan**: one row per sample index with at least ``index``, ``FileName``, ``Split``, ``EF``
  and ``seed`` (:func:`sample_seed` of the run seed and the index, nothing else), plus
  whatever its generator needs (conditioning video, frame, class, prompt ...);
- a **generator** (:class:`Generator`): turns the plan rows of one *block* of ``block``
  consecutive indices into :class:`Sample` s. Shards take whole blocks
  (:func:`shard_range`), so a generator that batches a block together gives the same
  videos whatever the number of shards, as long as what it draws for a block depends on
  the block's rows only.

:func:`write_shard` runs a generator over one shard's blocks into a shard folder and
:func:`gather_samples` merges shard folders into the dataset folder after checking that they
come from one run; a dataset sampled in one job equals one sampled in any number of shards
and gathered, byte for byte, when every shard runs on the same kind of device with the same
library versions.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.frames import write_frames
from echogen.data.io import atomic_dir, atomic_path, link_or_copy, write_json
from echogen.data.manifest import SPLITS, harmonise
from echogen.data.video import write_video

log = logging.getLogger(__name__)

FILELIST = "FileList.csv"
PROVENANCE = "sampling.json"
# The EchoNet-Dynamic FileList columns every synthetic dataset starts with.
BASE_COLUMNS = ["FileName", "EF", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
# Column kinds of the base columns (a system's schema adds its own).
BASE_SCHEMA = {
    "FileName": "str",
    "EF": "float",
    "FrameHeight": "int",
    "FrameWidth": "int",
    "FPS": "float",
    "NumberOfFrames": "int",
    "Split": "str",
}
# Plan columns the driver itself needs.
PLAN_REQUIRED = ["index", "FileName", "Split", "EF", "seed"]
KINDS = ("str", "int", "float")
NAME_RE = re.compile(r"^sample_(\d{5,})$")
SCATTERITEM_RE = re.compile(r"^(\d+)-of-(\d+)$")
# Provenance keys that describe one shard's run, not the dataset: they may differ between
# the shards of a run (the version keys with a warning: bytes may then differ).
PER_SHARD_KEYS = ("shards", "timing")
VERSION_KEYS = (
    "device",
    "torch",
    "diffusers",
    "accelerate",
    "python",
    "echogen_version",
    "echogen_git_sha",
)


def sample_name(index: int) -> str:
    """File name (no extension) of sample ``index``: ``sample_<index:05d>``."""
    return f"sample_{index:05d}"


def sample_seed(run_seed: int, index: int) -> int:
    """The seed of sample ``index`` of a run: a function of ``(run_seed, index)`` only.

    Args:
        run_seed: the run's seed (config).
        index: the sample's index (0-based).

    Returns:
        A 32-bit seed from ``numpy.random.SeedSequence([run_seed, index])``.
    """
    return int(np.random.SeedSequence([int(run_seed), int(index)]).generate_state(1)[0])


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


# --- shards ----------------------------------------------------------------------------------


def parse_scatteritem(item: str) -> tuple[int, int]:
    """``"2-of-3"`` (Snakemake's ``scatteritem``) -> ``(2, 3)``; 1-based.

    Raises:
        DataError: the item is not ``<i>-of-<n>`` with ``1 <= i <= n``.
    """
    match = SCATTERITEM_RE.match(str(item).strip())
    if match is None:
        raise DataError(
            "shard", f"shard spec {item!r} is not of the form '<i>-of-<n>'", "pass e.g. '2-of-3'"
        )
    shard, n_shards = int(match.group(1)), int(match.group(2))
    _check_shard(shard, n_shards)
    return shard, n_shards


def _check_shard(shard: int, n_shards: int) -> None:
    if not (_is_int(shard) and _is_int(n_shards) and 1 <= shard <= n_shards):
        raise DataError(
            "shard",
            f"shard {shard!r} of {n_shards!r} is out of range",
            "shards are numbered 1..n_shards (Snakemake scatteritem '<i>-of-<n>')",
        )


def shard_range(n_samples: int, shard: int, n_shards: int, block: int = 1) -> range:
    """Contiguous sample indices of 1-based ``shard`` out of ``n_shards``, in whole blocks.

    The indices are cut into ``ceil(n_samples / block)`` blocks of ``block`` consecutive
    indices (the last may be shorter); the first ``n_blocks % n_shards`` shards get one
    block more than the others (as ``numpy.array_split``); shards beyond the blocks are
    empty. With ``block=1`` this is a plain split of the indices.
    """
    _check_shard(shard, n_shards)
    if not _is_int(block) or block < 1:
        raise ValueError(f"block must be an integer >= 1, got {block!r}")
    n_blocks = -(-n_samples // block)
    base, extra = divmod(n_blocks, n_shards)
    first = (shard - 1) * base + min(shard - 1, extra)
    last = first + base + (1 if shard <= extra else 0)
    return range(min(first * block, n_samples), min(last * block, n_samples))


def split_counts(n_samples: int, fractions: dict[str, float]) -> dict[str, int]:
    """Samples per split: ``n * fraction`` rounded by largest remainder, in TRAIN/VAL/TEST order."""
    names = [s for s in SPLITS if fractions.get(s, 0) > 0]
    exact = [n_samples * fractions[s] for s in names]
    counts = [math.floor(x + 1e-9) for x in exact]
    by_remainder = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n_samples - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts, strict=True))


def split_labels(n_samples: int, fractions: dict[str, float]) -> list[str]:
    """The Split of every index: contiguous TRAIN, VAL, TEST blocks (:func:`split_counts`)."""
    labels: list[str] = []
    for name, count in split_counts(n_samples, fractions).items():
        labels += [name] * count
    return labels


# --- the FileList ---------------------------------------------------------------------------


def check_schema(schema: dict[str, str]) -> None:
    """A FileList schema starts with :data:`BASE_SCHEMA` and names a kind for every column.

    Raises:
        ValueError: base columns missing or out of order, or an unknown kind.
    """
    if list(schema)[: len(BASE_COLUMNS)] != BASE_COLUMNS or any(
        schema[c] != BASE_SCHEMA[c] for c in BASE_COLUMNS
    ):
        raise ValueError(
            f"a synthetic FileList schema must start with {BASE_SCHEMA}, got {list(schema)}"
        )
    bad = {c: k for c, k in schema.items() if k not in KINDS}
    if bad:
        raise ValueError(f"unknown column kinds {bad}; use one of {KINDS}")


def typed_filelist(df: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """The FileList with the schema's column order and dtypes, sorted by FileName.

    Every writer goes through it, so one dataset written in one job or gathered from shards
    has the same bytes.
    """
    check_schema(schema)
    out = df.reindex(columns=list(schema))
    for col, kind in schema.items():
        if kind == "int":
            out[col] = pd.array(pd.to_numeric(out[col]), dtype="Int64")
        elif kind == "float":
            out[col] = pd.to_numeric(out[col]).astype(float)
        else:
            out[col] = out[col].astype("string")
    return out.sort_values("FileName", kind="stable").reset_index(drop=True)


def read_filelist(path: str | Path, schema: dict[str, str] | None = None) -> pd.DataFrame:
    """Read a synthetic dataset's ``FileList.csv``, typed by ``schema``.

    Args:
        path: the FileList.
        schema: column kinds (a system's schema); None = :data:`BASE_SCHEMA` typed, every
            other column kept as text.

    Raises:
        DataError: the file is missing or lacks a schema column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "FileList.csv is missing", "re-run the sampling job of this folder")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    wanted = list(schema or BASE_SCHEMA)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(path, f"not a synthetic FileList (missing {missing})", "re-run sampling")
    if schema is None:
        schema = {**BASE_SCHEMA, **{c: "str" for c in df.columns if c not in BASE_SCHEMA}}
    return typed_filelist(df, schema)


def synthetic_manifest(samples_dir: str | Path, dataset: str) -> pd.DataFrame:
    """A synthetic dataset as a harmonised manifest (``echogen.data.manifest``), so anything
    that trains or predicts on a manifest (the EF regressors) can use it: the FileList's
    EchoNet columns, ``Dataset`` = the id, ``Path`` = ``<samples_dir>/Videos/<FileName>.mp4``,
    and ``class_id`` / ``class_name`` where the system wrote them.

    Raises:
        DataError: the FileList is missing, or a row has no EF (naming it): such a set cannot
            train an EF regressor.
    """
    samples_dir = Path(samples_dir)
    filelist = read_filelist(samples_dir / FILELIST)
    missing = filelist["EF"].isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            samples_dir / FILELIST,
            f"{int(missing.sum())} sample(s) have no EF, e.g. {filelist['FileName'].iloc[row]}",
            "train EF regressors on an EF-conditioned synthetic dataset",
            row=row + 2,
        )
    keep = BASE_COLUMNS + [c for c in ("class_id", "class_name") if c in filelist.columns]
    rows = filelist[keep].copy()
    rows["Dataset"] = dataset
    rows["Path"] = [str(samples_dir / "Videos" / f"{name}.mp4") for name in rows["FileName"]]
    return harmonise(rows)


def _read_filelist_text(path: Path) -> pd.DataFrame:
    """A shard's FileList as written (every cell as text), to merge without re-typing."""
    if not path.is_file():
        raise DataError(path, "FileList.csv is missing", "re-run the sampling job of this folder")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in BASE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(path, f"not a synthetic FileList (missing {missing})", "re-run sampling")
    return df


# --- generating one shard -------------------------------------------------------------------


@dataclass
class Sample:
    """One generated sample.

    Args:
        video: grey frames ``uint8 (T, H, W)``.
        latent: what the privacy filter compares (any array; saved as float16), or None.
    """

    video: np.ndarray
    latent: np.ndarray | None = None


class Generator(Protocol):
    """What a system hands the driver.

    ``block`` consecutive plan rows are generated together (1 = one sample at a time);
    ``generate`` returns one :class:`Sample` per row, in order, and may only depend on
    those rows (their seeds, conditioning) so that sharding never changes a video.
    """

    block: int

    def generate(self, rows: pd.DataFrame) -> list[Sample]: ...


def check_plan(plan: pd.DataFrame) -> None:
    """A plan has the driver's columns and one row per index ``0 .. n - 1`` in order.

    Raises:
        ValueError: naming the missing columns or the first index out of place.
    """
    missing = [c for c in PLAN_REQUIRED if c not in plan.columns]
    if missing:
        raise ValueError(f"a sampling plan needs the columns {PLAN_REQUIRED}; missing {missing}")
    index = plan["index"].to_numpy()
    wrong = np.flatnonzero(index != np.arange(len(plan)))
    if len(wrong):
        raise ValueError(
            f"plan row {int(wrong[0])} has index {index[wrong[0]]!r}; a plan lists the "
            "indices 0 .. n - 1 in order"
        )
    names = [sample_name(int(i)) for i in index]
    if list(plan["FileName"]) != names:
        raise ValueError("plan FileNames must be sample_name(index)")


def write_shard(
    plan: pd.DataFrame,
    generator: Generator,
    out_dir: str | Path,
    *,
    shard: int,
    n_shards: int,
    schema: dict[str, str],
    fps: float,
    quality: int,
    record: dict,
    writers: int = 2,
) -> pd.DataFrame:
    """Generate the blocks of one shard and write them as a dataset folder, atomically.

    Videos, frame folders and latents are written by ``writers`` threads while the
    generator makes the next block (encoding releases the GIL, a GPU works on its own), at
    most two blocks behind it; the first failed write stops the shard with its error.

    Args:
        plan: the whole run's plan (:func:`check_plan`); its rows are the FileList's, with
            FrameHeight, FrameWidth, NumberOfFrames and FPS taken from the videos.
        generator: the system's generator; its ``block`` decides the shard boundaries.
        out_dir: the shard's folder (replaced if it exists; nothing is left half-written).
        shard: 1-based shard number.
        n_shards: number of shards.
        schema: FileList column kinds (:data:`BASE_SCHEMA` then the system's columns).
        fps: frame rate the videos are written at.
        quality: JPEG quality of the frame folders.
        record: provenance of the run (``echogen.workflow.provenance``: config, seed,
            inputs); the driver adds ``n_samples`` (the run's, all shards), ``block``,
            ``latents``, ``shards`` and ``timing``.
        writers: threads writing the samples; 0 writes each sample before the next block.

    Returns:
        The shard's FileList.

    Raises:
        ValueError: a bad plan, or a generator that returns the wrong number of samples or
            a video that is not ``uint8 (T, H, W)``.
    """
    check_plan(plan)
    check_schema(schema)
    out_dir = Path(out_dir)
    block = int(generator.block)
    indices = shard_range(len(plan), shard, n_shards, block)
    rows, has_latents = [], None
    started = time.perf_counter()
    if not _is_int(writers) or writers < 0:
        raise ValueError(f"writers must be an integer >= 0, got {writers!r}")
    with (
        atomic_dir(out_dir) as tmp,
        tqdm(total=len(indices), desc=f"sample shard {shard}-of-{n_shards}") as bar,
        _Writer(writers, 2 * block) as writer,
    ):
        (tmp / "latents").mkdir()
        for start in range(indices.start, indices.stop, block):
            chunk = plan.iloc[start : min(start + block, indices.stop)]
            samples = generator.generate(chunk)
            if len(samples) != len(chunk):
                raise ValueError(
                    f"the generator returned {len(samples)} samples for {len(chunk)} plan rows"
                )
            for (_, row), sample in zip(chunk.iterrows(), samples, strict=True):
                has_latents = _check_sample(row["FileName"], sample, has_latents)
                writer.submit(_write_sample, tmp, row["FileName"], sample, fps, quality)
                n_frames, height, width = sample.video.shape
                rows.append(
                    {
                        **row.to_dict(),
                        "FrameHeight": height,
                        "FrameWidth": width,
                        "NumberOfFrames": n_frames,
                        "FPS": float(fps),
                    }
                )
                bar.update()
        writer.wait()
        columns = list(dict.fromkeys([*plan.columns, *BASE_COLUMNS]))
        filelist = typed_filelist(pd.DataFrame(rows, columns=columns), schema)
        with atomic_path(tmp / FILELIST) as csv:
            filelist.to_csv(csv, index=False)
        # Generation, decoding and writing, model loading excluded: the cost per video.
        timing = {"seconds": time.perf_counter() - started, "videos": len(filelist)}
        write_json(
            tmp / PROVENANCE,
            {
                **record,
                "n_samples": len(plan),
                "block": block,
                "latents": bool(has_latents),
                "shards": [f"{shard}-of-{n_shards}"],
                "timing": timing,
            },
        )
    log.info("shard %d-of-%d: %d samples -> %s", shard, n_shards, len(filelist), out_dir)
    return filelist


def _check_sample(name: str, sample: Sample, has_latents: bool | None) -> bool:
    """A generator's sample is ``uint8 (T, H, W)``, with a latent iff the others have one."""
    video = np.asarray(sample.video)
    if video.dtype != np.uint8 or video.ndim != 3:
        raise ValueError(
            f"{name}: a generator returns uint8 (T, H, W) videos, got {video.dtype} "
            f"{tuple(video.shape)}"
        )
    if has_latents is not None and has_latents != (sample.latent is not None):
        raise ValueError(f"{name}: a generator returns latents for every sample or for none")
    return sample.latent is not None


def _write_sample(folder: Path, name: str, sample: Sample, fps: float, quality: int) -> None:
    video = np.asarray(sample.video)
    write_video(folder / "Videos" / f"{name}.mp4", video, fps)
    write_frames(video, folder / "frames" / name, quality)
    if sample.latent is not None:
        np.save(folder / "latents" / f"{name}.npy", np.asarray(sample.latent).astype(np.float16))


class _Writer:
    """Runs writes in a thread pool, at most ``backlog`` pending (0 threads: at once);
    :meth:`wait` finishes them all and raises the first error."""

    def __init__(self, threads: int, backlog: int):
        self.pool = ThreadPoolExecutor(threads, "write") if threads else None
        self.backlog, self.pending = max(1, backlog), deque()

    def submit(self, fn, *args) -> None:
        if self.pool is None:
            fn(*args)
            return
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.backlog:
            self.pending.popleft().result()

    def wait(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            for future in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True)


# --- gathering ------------------------------------------------------------------------------


def gather_samples(shard_dirs: Sequence[str | Path], out_dir: str | Path) -> pd.DataFrame:
    """Merge the shard folders of one run into one dataset folder, atomically.

    Files are hard-linked when the file system allows it, else copied. The FileList is the
    shards' rows as written, sorted by FileName.

    Args:
        shard_dirs: folders written by :func:`write_shard` for one run.
        out_dir: the dataset folder (replaced if it exists).

    Returns:
        The merged FileList (cells as text, as written).

    Raises:
        DataError: naming the shard folder: no FileList or provenance, a sample listed twice,
            a listed file missing, settings that differ between shards, or sample indices
            of the run that no shard holds.
    """
    if not shard_dirs:
        raise ValueError("gather_samples needs at least one shard folder")
    out_dir = Path(out_dir)
    shard_dirs = [Path(d) for d in shard_dirs]
    lists, first, shards, timing = [], None, [], {}
    owner: dict[str, Path] = {}
    for shard_dir in shard_dirs:
        filelist = _read_filelist_text(shard_dir / FILELIST)
        record = _read_provenance(shard_dir)
        if first is None:
            first = record
        _check_same_run(shard_dir, record, shard_dirs[0], first)
        shards += record.get("shards", [])
        for key, value in (record.get("timing") or {}).items():
            timing[key] = timing.get(key, 0) + value
        for name in filelist["FileName"]:
            if not NAME_RE.match(name):
                raise DataError(
                    shard_dir / FILELIST,
                    f"unexpected sample name {name!r}",
                    "re-run this shard's sampling job",
                    item=name,
                )
            if name in owner:
                raise DataError(
                    shard_dir,
                    f"sample {name} is also in {owner[name]}",
                    "gather each shard once, and only shards of one run",
                    item=name,
                )
            owner[name] = shard_dir
            for path in _sample_files(shard_dir, name, record):
                if not path.exists():
                    raise DataError(
                        shard_dir,
                        f"{path} is missing",
                        "re-run this shard's sampling job",
                        item=name,
                    )
        lists.append(filelist)
    _check_complete(first, owner, shards, shard_dirs[0].parent)
    merged = pd.concat(lists, ignore_index=True)
    merged = merged.sort_values("FileName", kind="stable").reset_index(drop=True)
    with atomic_dir(out_dir) as tmp:
        (tmp / "latents").mkdir()
        for name in merged["FileName"]:
            shard_dir = owner[name]
            for path in _sample_files(shard_dir, name, first):
                target = tmp / path.relative_to(shard_dir)
                if path.is_dir():
                    target.mkdir(parents=True)
                    for item in sorted(path.iterdir()):
                        link_or_copy(item, target / item.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    link_or_copy(path, target)
        with atomic_path(tmp / FILELIST) as csv:
            merged.to_csv(csv, index=False)
        write_json(tmp / PROVENANCE, {**first, "shards": sorted(shards), "timing": timing})
    log.info("gathered %d samples from %d shards -> %s", len(merged), len(shard_dirs), out_dir)
    return merged


def _check_same_run(shard_dir: Path, record: dict, first_dir: Path, first: dict) -> None:
    keys = (set(record) | set(first)) - set(PER_SHARD_KEYS) - set(VERSION_KEYS)
    differing = sorted(k for k in keys if record.get(k) != first.get(k))
    if differing:
        raise DataError(
            shard_dir,
            f"shard was sampled with other settings ({differing}) than {first_dir}",
            "gather only the shards of one sampling run",
        )
    for key in VERSION_KEYS:
        if record.get(key) != first.get(key):
            log.warning(
                "%s ran with %s %s, %s with %s: the shards are not bit-reproducible as one",
                shard_dir,
                key,
                record.get(key),
                first_dir,
                first.get(key),
            )


def _check_complete(first: dict, owner: dict[str, Path], shards: list[str], where: Path) -> None:
    n_samples = int(first["n_samples"])
    missing = sorted(set(range(n_samples)) - {int(NAME_RE.match(n).group(1)) for n in owner})
    if not missing:
        return
    n_shards, block = _n_shards(shards), int(first.get("block", 1))
    absent_text = ""
    if n_shards:
        absent = sorted(
            {
                s
                for s in range(1, n_shards + 1)
                for i in missing
                if i in shard_range(n_samples, s, n_shards, block)
            }
        )
        absent_text = f" (shard{'s' if len(absent) > 1 else ''} "
        absent_text += ", ".join(f"{s}-of-{n_shards}" for s in absent) + ")"
    raise DataError(
        where,
        f"{len(missing)} of {n_samples} samples are in no shard folder{absent_text}, e.g. "
        f"{sample_name(missing[0])}",
        "gather every shard of the run",
    )


def _sample_files(shard_dir: Path, name: str, record: dict) -> list[Path]:
    files = [shard_dir / "Videos" / f"{name}.mp4", shard_dir / "frames" / name]
    if record.get("latents", True):
        files.append(shard_dir / "latents" / f"{name}.npy")
    return files


def _read_provenance(shard_dir: Path) -> dict:
    path = shard_dir / PROVENANCE
    if not path.is_file():
        raise DataError(path, "sampling.json is missing", "re-run this shard's sampling job")
    return json.loads(path.read_text())


def _n_shards(shards: list[str]) -> int | None:
    counts = {int(m.group(2)) for s in shards if (m := SCATTERITEM_RE.match(s))}
    return counts.pop() if len(counts) == 1 else None
