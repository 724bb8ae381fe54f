"""Sharded, windowed sampling of a trained LVDM into a synthetic EchoNet-style dataset.

EchoNet-Synthetic (PAPERS.md §4) samples 192-frame videos with a 64-frame video UNet: the
whole noisy latent sequence is denoised together, and at every scheduler step the UNet runs
on overlapping 64-frame windows (32-frame overlap) whose predictions are averaged where
they overlap before one scheduler step moves the whole sequence ("stitched at every
denoising step"). Each video is conditioned on one latent frame of a real TRAIN video
(repeated over the window, concatenated on channels) and on a value: EF/100 (drawn
uniformly from the integers 10..90 as published), a class id, or a text prompt (EchoDream,
§5, with classifier-free guidance 5).

Everything a sample depends on (EF, class, prompt, conditioning video and frame, noise)
comes from :func:`sample_seed` of the run seed and the sample's index, and each video is
generated on its own, so a dataset sampled in one job equals one sampled in any number of
shards (:func:`sample_shard`) and merged with :func:`gather_samples`, byte for byte, as
long as every shard runs on the same kind of device with the same library versions (CPU
and CUDA results differ in the last bits, hence in the JPEG bytes).

Output layout (a shard folder and the gathered dataset alike)::

    FileList.csv                 FILELIST_COLUMNS, one row per sample, sorted by FileName
    Videos/<name>.mp4            grey video at ``fps``
    frames/<name>/<0000>.jpg     the same frames as JPEGs (StyleGAN-V layout)
    latents/<name>.npy           float16 (C, h, w) scaled latent of the first frame
    sampling.json                provenance (models, config, run seed, shard(s), timing)
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import string
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.frames import write_frames
from echogen.data.io import atomic_dir, atomic_path, write_json
from echogen.data.manifest import SPLITS
from echogen.data.video import write_video
from echogen.models.lvdm import (
    added_time_ids,
    crop_latents,
    load_lvdm,
    make_scheduler,
    pad_latents,
    prompt_for,
    unet_input,
)
from echogen.models.vae import decode_latents, load_vae
from echogen.pipelines.latents import read_latents

log = logging.getLogger(__name__)

SCHEDULERS = ("ddpm", "ddim", "dpm")
FILELIST = "FileList.csv"
PROVENANCE = "sampling.json"
FILELIST_COLUMNS = [
    "FileName",
    "EF",
    "FrameHeight",
    "FrameWidth",
    "FPS",
    "NumberOfFrames",
    "Split",
    "class_id",
    "class_name",
    "prompt",
    "cond_video",
    "cond_frame",
    "seed",
]
# Plan columns beyond the FileList's: the sample index and where the conditioning latent is.
PLAN_COLUMNS = ["index", *FILELIST_COLUMNS, "cond_latent_path"]
INDEX_COLUMNS = ["FileName", "Split", "latent_path", "latent_frames"]
NAME_RE = re.compile(r"^sample_(\d{5,})$")
SCATTERITEM_RE = re.compile(r"^(\d+)-of-(\d+)$")


def sample_name(index: int) -> str:
    """File name (no extension) of sample ``index``: ``sample_<index:05d>``."""
    return f"sample_{index:05d}"


@dataclass(frozen=True)
class SampleConfig:
    """How a synthetic dataset is sampled (published values as defaults).

    Args:
        n_samples (int, 2048): videos in the dataset (indices ``0 .. n_samples - 1``).
        frames (int, 192): frames per video (EchoNet-Synthetic's evaluation length).
        window (int, 64): frames the UNet sees at once (its training clip length).
        overlap (int, 32): frames shared by consecutive windows; their predictions are
            averaged at every denoising step.
        scheduler (str, "ddpm"): ``"ddpm"``, ``"ddim"`` or ``"dpm"`` (DPM-Solver++), built
            from the model's saved scheduler config.
        steps (int, 64): denoising steps (EchoNet-Synthetic 64, EchoDream 256).
        guidance_scale (float, 1.0): classifier-free guidance; 1 = none (EchoNet-Synthetic),
            EchoDream uses 5. Must be >= 1.
        ef_range (list[int], [10, 90]): requested EF in %, drawn uniformly from these
            integers inclusive (as published).
        class_ids (list[int] | None, None): class ids cycled over the samples of class runs
            and class-aware text runs; None = every id of the model's class map.
        split (dict[str, float], TRAIN .75 / VAL .125 / TEST .125): fractions of the
            FileList's Split column, assigned to contiguous index blocks in TRAIN, VAL,
            TEST order (exact counts by largest remainder).
        fps (float, 32): frame rate the videos are written at (and the FileList's FPS).
        quality (int, 95): JPEG quality of the frame folders.
    """

    n_samples: int = 2048
    frames: int = 192
    window: int = 64
    overlap: int = 32
    scheduler: str = "ddpm"
    steps: int = 64
    guidance_scale: float = 1.0
    ef_range: list[int] = field(default_factory=lambda: [10, 90])
    class_ids: list[int] | None = None
    split: dict[str, float] = field(
        default_factory=lambda: {"TRAIN": 0.75, "VAL": 0.125, "TEST": 0.125}
    )
    fps: float = 32.0
    quality: int = 95

    def __post_init__(self):
        for name in ("n_samples", "frames", "window", "steps"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"sampling.{name} must be an integer >= 1, got {value!r}")
        if not _is_int(self.overlap) or not 0 <= self.overlap < self.window:
            raise ValueError(
                f"sampling.overlap must be an integer in [0, window={self.window}), "
                f"got {self.overlap!r}"
            )
        if self.frames < self.window:
            raise ValueError(
                f"sampling.frames ({self.frames}) must be >= sampling.window ({self.window})"
            )
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"sampling.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}"
            )
        if not isinstance(self.guidance_scale, int | float) or not self.guidance_scale >= 1:
            raise ValueError(
                f"sampling.guidance_scale must be a number >= 1 (1 = no guidance), "
                f"got {self.guidance_scale!r}"
            )
        ef = list(self.ef_range) if isinstance(self.ef_range, list | tuple) else None
        if (
            ef is None
            or len(ef) != 2
            or not all(_is_int(v) for v in ef)
            or not 0 <= ef[0] <= ef[1] <= 100
        ):
            raise ValueError(
                f"sampling.ef_range must be two integers [low, high] with 0 <= low <= high "
                f"<= 100 (EF in %), got {self.ef_range!r}"
            )
        if self.class_ids is not None:
            ids = self.class_ids
            if (
                not isinstance(ids, list | tuple)
                or not ids
                or not all(_is_int(i) and i >= 0 for i in ids)
                or len(set(ids)) != len(ids)
            ):
                raise ValueError(
                    f"sampling.class_ids must be None or a non-empty list of distinct integers "
                    f">= 0, got {ids!r}"
                )
        if not isinstance(self.split, dict) or not self.split:
            raise ValueError(
                f"sampling.split must be a mapping split -> fraction, got {self.split!r}"
            )
        unknown = sorted(set(self.split) - set(SPLITS))
        if unknown:
            raise ValueError(f"sampling.split has unknown splits {unknown}; use {list(SPLITS)}")
        values = list(self.split.values())
        if not all(isinstance(v, int | float) and v >= 0 for v in values) or not math.isclose(
            sum(values), 1.0, abs_tol=1e-9
        ):
            raise ValueError(
                f"sampling.split fractions must be >= 0 and sum to 1, got {self.split!r}"
            )
        if not isinstance(self.fps, int | float) or not self.fps > 0:
            raise ValueError(f"sampling.fps must be > 0, got {self.fps!r}")
        if not _is_int(self.quality) or not 0 <= self.quality <= 100:
            raise ValueError(f"sampling.quality must be an integer in 0..100, got {self.quality!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> SampleConfig:
        """Build from a config mapping; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown sampling keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


# --- seeds, shards, plan --------------------------------------------------------------------


def sample_seed(run_seed: int, index: int) -> int:
    """The seed of sample ``index`` of a run: a function of ``(run_seed, index)`` only.

    Args:
        run_seed: the run's seed (config).
        index: the sample's index (0-based).

    Returns:
        A 32-bit seed from ``numpy.random.SeedSequence([run_seed, index])``.
    """
    return int(np.random.SeedSequence([int(run_seed), int(index)]).generate_state(1)[0])


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


def shard_range(n_samples: int, shard: int, n_shards: int) -> range:
    """Contiguous sample indices of 1-based ``shard`` out of ``n_shards``.

    The first ``n_samples % n_shards`` shards get one index more than the others (as
    ``numpy.array_split``); shards beyond ``n_samples`` are empty.
    """
    _check_shard(shard, n_shards)
    base, extra = divmod(n_samples, n_shards)
    start = (shard - 1) * base + min(shard - 1, extra)
    return range(start, start + base + (1 if shard <= extra else 0))


def split_counts(n_samples: int, fractions: dict[str, float]) -> dict[str, int]:
    """Samples per split: ``n * fraction`` rounded by largest remainder, in TRAIN/VAL/TEST order."""
    names = [s for s in SPLITS if fractions.get(s, 0) > 0]
    exact = [n_samples * fractions[s] for s in names]
    counts = [math.floor(x + 1e-9) for x in exact]
    by_remainder = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n_samples - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts, strict=True))


def _split_labels(n_samples: int, fractions: dict[str, float]) -> list[str]:
    labels: list[str] = []
    for name, count in split_counts(n_samples, fractions).items():
        labels += [name] * count
    return labels


def read_latent_index(cond_index_csv: str | Path) -> pd.DataFrame:
    """The TRAIN rows of a latent index (VAE helper's ``index.csv``), sorted by FileName.

    Raises:
        DataError: a column is missing, a latent frame count is not positive, or there is
            no TRAIN row.
    """
    cond_index_csv = Path(cond_index_csv)
    index = read_latents(cond_index_csv, required=INDEX_COLUMNS)
    bad = ~(pd.to_numeric(index["latent_frames"], errors="coerce") >= 1)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DataError(
            cond_index_csv,
            f"latent_frames must be >= 1, got {index['latent_frames'].iloc[line - 2]!r}",
            "re-run the latent encoding rule",
            row=line,
        )
    train = index[index["Split"] == "TRAIN"]
    if train.empty:
        raise DataError(
            cond_index_csv,
            "no TRAIN row to draw conditioning frames from",
            "encode the TRAIN split of the dataset",
        )
    train = train.sort_values("FileName", kind="stable").reset_index(drop=True)
    train.attrs["source"] = str(cond_index_csv)
    return train


def _class_names(spec) -> dict[int, str]:
    """``{class id: class name}`` from the model's class map (stored as name -> id)."""
    return {int(i): str(name) for name, i in (spec.class_map or {}).items()}


def _template_fields(spec) -> set[str]:
    """Names of the fields a text model's prompt template fills (``{EF:.0f}`` -> ``EF``)."""
    if spec.conditioning != "text" or spec.prompt is None:
        return set()
    return {name for _, name, _, _ in string.Formatter().parse(spec.prompt) if name}


def _uses_ef(spec) -> bool:
    return spec.conditioning == "ef" or "EF" in _template_fields(spec)


def _uses_class(spec) -> bool:
    return spec.conditioning == "class" or bool({"class_name", "class_id"} & _template_fields(spec))


def plan_samples(
    config: SampleConfig, spec, cond_index_csv: str | Path, run_seed: int
) -> pd.DataFrame:
    """One row per sample index: what to generate and from which conditioning frame.

    Sample ``i`` draws, from ``numpy.random.default_rng(sample_seed(run_seed, i))`` and in
    this order: its EF (integer, uniform over ``config.ef_range``; EF runs and text runs
    whose template holds ``{EF}``), the conditioning video (uniform over the
    index's TRAIN rows, sorted by FileName; over those of the drawn class when there is
    one) and the conditioning frame (uniform over that video's latent frames). The plan
    thus depends on ``(config, run_seed, index)`` and the index only, never on sharding.
    The class of class runs and of text runs whose template names the class is
    ``class_ids[i % len(class_ids)]``: every class gets the same number of videos.

    Args:
        config: sampling settings.
        spec: the model's ``LVDMSpec``.
        cond_index_csv: latent index of the conditioning dataset.
        run_seed: the run's seed.

    Returns:
        :data:`PLAN_COLUMNS`; FrameHeight/FrameWidth/NumberOfFrames are left empty (they
        come from the decoded videos), EF/class/prompt are empty where the run has none.

    Raises:
        DataError: bad latent index, or no TRAIN video of a requested class.
        ValueError: class ids outside the model's class map, or class ids for a model
            without classes.
    """
    train = read_latent_index(cond_index_csv)
    names = _class_names(spec)
    class_ids = _class_ids(config, spec, names)
    by_class: dict[int, pd.DataFrame] = {}
    if class_ids is not None:
        if "class_id" not in train.columns:
            raise DataError(
                cond_index_csv,
                "the model is class-conditioned but the latent index has no class_id column",
                "encode a dataset with classes (e.g. CardiacNet) for the conditioning frames",
            )
        for class_id in class_ids:
            rows = train[pd.to_numeric(train["class_id"], errors="coerce") == class_id]
            if rows.empty:
                raise DataError(
                    cond_index_csv,
                    f"no TRAIN video of class {class_id} ({names[class_id]}) to condition on",
                    "drop the class from sampling.class_ids or encode videos of it",
                )
            by_class[class_id] = rows.reset_index(drop=True)
    splits = _split_labels(config.n_samples, config.split)
    records = []
    for index in range(config.n_samples):
        seed = sample_seed(run_seed, index)
        rng = np.random.default_rng(seed)
        ef = (
            float(rng.integers(config.ef_range[0], config.ef_range[1] + 1))
            if _uses_ef(spec)
            else np.nan
        )
        # Classes cycle with the index (a balanced dataset whatever n_samples; EchoDream draws
        # them at random, which can leave a class out of a small set).
        class_id = int(class_ids[index % len(class_ids)]) if class_ids is not None else None
        candidates = train if class_id is None else by_class[class_id]
        cond = candidates.iloc[int(rng.integers(len(candidates)))]
        frame = int(rng.integers(int(cond["latent_frames"])))
        class_name = names[class_id] if class_id is not None else None
        prompt = None
        if spec.conditioning == "text":
            prompt = prompt_for(spec, _prompt_row(cond, ef, class_id, class_name))
        records.append(
            {
                "index": index,
                "FileName": sample_name(index),
                "EF": ef,
                "FrameHeight": pd.NA,
                "FrameWidth": pd.NA,
                "FPS": float(config.fps),
                "NumberOfFrames": pd.NA,
                "Split": splits[index],
                "class_id": class_id,
                "class_name": class_name,
                "prompt": prompt,
                "cond_video": str(cond["FileName"]),
                "cond_frame": frame,
                "seed": seed,
                "cond_latent_path": str(cond["latent_path"]),
            }
        )
    return pd.DataFrame(records, columns=PLAN_COLUMNS)


def _class_ids(config: SampleConfig, spec, names: dict[int, str]) -> list[int] | None:
    if not _uses_class(spec):
        if config.class_ids is not None:
            raise ValueError(
                f"sampling.class_ids is set but the model is {spec.conditioning}-conditioned "
                "without classes; leave it null"
            )
        return None
    if not names:
        raise ValueError("the model is class-conditioned but its LVDMSpec has no class_map")
    ids = sorted(names) if config.class_ids is None else [int(i) for i in config.class_ids]
    unknown = [i for i in ids if i not in names]
    if unknown:
        raise ValueError(f"sampling.class_ids {unknown} are not in the model's class map {names}")
    return ids


def _prompt_row(cond: pd.Series, ef: float, class_id: int | None, class_name: str | None) -> dict:
    """The row a prompt template is filled from: the conditioning video's, with the request."""
    row = {k: v for k, v in cond.items() if not (isinstance(v, float) and math.isnan(v))}
    row["EF"] = ef
    if class_id is not None:
        row["class_id"], row["class_name"] = class_id, class_name
    return row


# --- windowed denoising ---------------------------------------------------------------------


def window_starts(frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of the denoising windows: ``0, window - overlap, ...``, last at the end.

    Args:
        frames: length of the sequence.
        window: frames per window (<= frames).
        overlap: frames shared by consecutive windows (< window).

    Returns:
        Sorted distinct starts; the last window is ``[frames - window, frames)``.
    """
    if not 1 <= window <= frames or not 0 <= overlap < window:
        raise ValueError(
            f"need 1 <= window <= frames and 0 <= overlap < window, got "
            f"frames={frames}, window={window}, overlap={overlap}"
        )
    starts = list(range(0, frames - window + 1, window - overlap))
    if starts[-1] != frames - window:
        starts.append(frames - window)
    return starts


def stitched_prediction(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    cond_latent: torch.Tensor,
    tokens: torch.Tensor,
    time_ids: torch.Tensor,
    starts: list[int],
    window: int,
    null_tokens: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """The UNet's output for a whole sequence, averaged over overlapping windows.

    All windows of the sequence (and, with guidance, their unconditional twins) go through
    the UNet as one batch.

    Args:
        unet: a ``UNetSpatioTemporalConditionModel`` (or anything with its call signature).
        latents: noisy sequence ``(F, C, H, W)`` (padded, scheduler-scaled).
        timestep: the current scheduler timestep.
        cond_latent: padded conditioning frame latent ``(C, H, W)``.
        tokens: conditioning tokens of one sample ``(1, L, D)``.
        time_ids: ``added_time_ids`` of one sample ``(1, 3)``.
        starts: window starts (:func:`window_starts`).
        window: frames per window.
        null_tokens: unconditional tokens ``(1, L', D)``; required when guidance > 1.
        guidance_scale: ``uncond + g * (cond - uncond)`` when > 1; the unconditional pass
            also zeroes the conditioning frame.

    Returns:
        float32 ``(F, C, H, W)``: per frame, the mean of the (guided) outputs of the windows
        that contain it. The UNet runs in its own dtype; guidance and averaging in float32.
    """
    n, dtype = len(starts), unet.dtype
    windows = torch.stack([latents[s : s + window] for s in starts]).to(dtype)  # (n, F', C, H, W)
    cond = cond_latent.to(dtype).unsqueeze(0).expand(n, *cond_latent.shape)  # (n, C, H, W)
    hidden = tokens.to(dtype).expand(n, *tokens.shape[1:])
    ids = time_ids.to(dtype).expand(n, *time_ids.shape[1:])
    guided = guidance_scale > 1
    if guided:
        if null_tokens is None:
            raise ValueError("guidance_scale > 1 needs null_tokens")
        windows = torch.cat([windows, windows])
        cond = torch.cat([cond, torch.zeros_like(cond)])
        hidden = torch.cat([hidden, null_tokens.to(dtype).expand(n, *null_tokens.shape[1:])])
        ids = torch.cat([ids, ids])
    output = unet(
        unet_input(windows, cond),
        timestep,
        encoder_hidden_states=hidden,
        added_time_ids=ids,
        return_dict=False,
    )[0].float()
    if guided:
        conditional, unconditional = output.chunk(2)
        output = unconditional + guidance_scale * (conditional - unconditional)
    total = torch.zeros(latents.shape, dtype=torch.float32, device=latents.device)
    count = torch.zeros(len(latents), dtype=torch.float32, device=latents.device)
    for s, out in zip(starts, output, strict=True):
        total[s : s + window] += out
        count[s : s + window] += 1
    return total / count.view(-1, 1, 1, 1)


@torch.no_grad()
def generate_video(
    lvdm,
    cond_latent: torch.Tensor,
    cond_value,
    config: SampleConfig,
    seed: int,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Denoise one ``config.frames``-long latent video with windows stitched at every step.

    The padded noise sequence is drawn from ``torch.Generator().manual_seed(seed)`` (on the
    CPU, so every device starts from the same noise); the same generator feeds the
    scheduler's noise. At each of ``config.steps`` steps the UNet predicts every window
    (:func:`stitched_prediction`), then one scheduler step moves the whole sequence.

    Args:
        lvdm: loaded model (``load_lvdm``): ``.unet``, ``.spec``, ``.scheduler_config``,
            ``.conditioner``.
        cond_latent: scaled, unpadded conditioning frame latent ``(C, h, w)``.
        cond_value: EF in % (EF runs), class id (class runs) or prompt (text runs).
        config: sampling settings.
        seed: the sample's seed (:func:`sample_seed`).
        device: where the UNet runs.

    Returns:
        Scaled latents ``(config.frames, C, h, w)`` (float32, CPU), padding cropped.
    """
    spec, unet = lvdm.spec, lvdm.unet
    if config.window != spec.frames:
        log.warning(
            "sampling window %d differs from the model's training clip length %d",
            config.window,
            spec.frames,
        )
    size = cond_latent.shape[-1]
    cond = pad_latents(cond_latent.to(device=device, dtype=torch.float32), spec.pad_to)
    scheduler = make_scheduler(config.scheduler, lvdm.scheduler_config)
    scheduler.set_timesteps(config.steps, device=device)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    shape = (config.frames, *cond.shape)
    latents = torch.randn(shape, generator=generator, dtype=torch.float32)
    latents = (latents * scheduler.init_noise_sigma).to(device)  # float32 whatever the UNet's

    tokens = lvdm.conditioner.encode([cond_value], device)
    null_tokens = lvdm.conditioner.null(1, device) if config.guidance_scale > 1 else None
    time_ids = added_time_ids(spec.fps, 1, device)
    starts = window_starts(config.frames, config.window, config.overlap)
    for t in scheduler.timesteps:
        prediction = stitched_prediction(
            unet,
            scheduler.scale_model_input(latents, t),
            t,
            cond,
            tokens,
            time_ids,
            starts,
            config.window,
            null_tokens=null_tokens,
            guidance_scale=config.guidance_scale,
        )
        latents = scheduler.step(prediction, t, latents, generator=generator).prev_sample
    return crop_latents(latents, size).cpu()


# --- shards and gathering -------------------------------------------------------------------


def _cond_value(spec, row: pd.Series):
    if spec.conditioning == "ef":
        return float(row["EF"])
    if spec.conditioning == "class":
        return int(row["class_id"])
    return str(row["prompt"])


def _typed_filelist(df: pd.DataFrame) -> pd.DataFrame:
    """The FileList with fixed column order and dtypes, so every writer writes the same bytes."""
    out = df.reindex(columns=FILELIST_COLUMNS)
    for col in ("FrameHeight", "FrameWidth", "NumberOfFrames", "class_id", "cond_frame", "seed"):
        out[col] = pd.array(pd.to_numeric(out[col]), dtype="Int64")
    for col in ("EF", "FPS"):
        out[col] = pd.to_numeric(out[col]).astype(float)
    for col in ("FileName", "Split", "class_name", "prompt", "cond_video"):
        out[col] = out[col].astype("string")
    return out.sort_values("FileName", kind="stable").reset_index(drop=True)


def read_filelist(path: str | Path) -> pd.DataFrame:
    """Read a sample folder's ``FileList.csv`` with :data:`FILELIST_COLUMNS` typed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "FileList.csv is missing", "re-run the sampling job of this folder")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    missing = [c for c in FILELIST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(path, f"not a sample FileList (missing {missing})", "re-run sampling")
    return _typed_filelist(df)


def _write_filelist(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        _typed_filelist(df).to_csv(tmp, index=False)


def _check_scaling(lvdm, vae, lvdm_dir: Path, vae_dir: Path, train: pd.DataFrame) -> None:
    """The LVDM, the VAE and the conditioning latents must share one latent scaling."""
    factor = float(lvdm.spec.scaling_factor)
    vae_factor = float(vae.config.scaling_factor)
    if not math.isclose(factor, vae_factor, rel_tol=1e-6):
        raise DataError(
            lvdm_dir,
            f"the LVDM was trained on latents scaled by {factor}, the VAE in {vae_dir} "
            f"scales by {vae_factor}",
            "sample with the VAE the LVDM was trained with",
        )
    if "scaling_factor" in train.columns:
        found = pd.to_numeric(train["scaling_factor"], errors="coerce").dropna().unique()
        if len(found) and not np.allclose(found, factor, rtol=1e-6):
            raise DataError(
                train.attrs.get("source", "latent index"),
                f"conditioning latents are scaled by {sorted(found)}, the LVDM by {factor}",
                "encode the conditioning dataset with the LVDM's VAE",
            )


def sample_shard(
    lvdm_dir: str | Path,
    vae_dir: str | Path,
    cond_index_csv: str | Path,
    out_dir: str | Path,
    config: SampleConfig,
    run_seed: int,
    shard: int,
    n_shards: int,
    device: str = "cpu",
    root: str | Path = ".",
) -> pd.DataFrame:
    """Generate, decode and write the samples of one shard, one video at a time.

    Args:
        lvdm_dir: LVDM model folder (``save_lvdm``).
        vae_dir: VAE model folder the LVDM's latents come from.
        cond_index_csv: latent index of the conditioning dataset (TRAIN rows are used).
        out_dir: the shard's folder (written atomically, replaced if it exists).
        config: sampling settings.
        run_seed: the run's seed.
        shard: 1-based shard number.
        n_shards: number of shards.
        device: torch device of the UNet and the VAE.
        root: folder that the index's ``latent_path`` column is relative to.

    Returns:
        The shard's FileList (:data:`FILELIST_COLUMNS`).
    """
    lvdm_dir, vae_dir, out_dir, root = Path(lvdm_dir), Path(vae_dir), Path(out_dir), Path(root)
    indices = shard_range(config.n_samples, shard, n_shards)
    lvdm = load_lvdm(lvdm_dir, device=device)
    vae = load_vae(vae_dir, device=device)
    _check_scaling(lvdm, vae, lvdm_dir, vae_dir, read_latent_index(cond_index_csv))
    if not math.isclose(config.fps, lvdm.spec.fps):
        log.warning(
            "videos are written at %s fps but the LVDM generates at %s fps",
            config.fps,
            lvdm.spec.fps,
        )
    plan = plan_samples(config, lvdm.spec, cond_index_csv, run_seed).iloc[
        indices.start : indices.stop
    ]
    rows = []
    started = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        for _, row in tqdm(
            plan.iterrows(), total=len(plan), desc=f"sample shard {shard}-of-{n_shards}"
        ):
            name = row["FileName"]
            cond = _load_cond_latent(
                root / row["cond_latent_path"],
                int(row["cond_frame"]),
                cond_index_csv,
                row["cond_video"],
            )
            latents = generate_video(
                lvdm, cond, _cond_value(lvdm.spec, row), config, int(row["seed"]), device
            )
            video = decode_latents(vae, latents)  # (T, H, W) uint8
            write_video(tmp / "Videos" / f"{name}.mp4", video, config.fps)
            write_frames(video, tmp / "frames" / name, config.quality)
            (tmp / "latents").mkdir(exist_ok=True)
            np.save(tmp / "latents" / f"{name}.npy", latents[0].numpy().astype(np.float16))
            n_frames, height, width = video.shape
            rows.append(
                {
                    **row.to_dict(),
                    "FrameHeight": height,
                    "FrameWidth": width,
                    "NumberOfFrames": n_frames,
                    "FPS": float(config.fps),
                }
            )
        filelist = _typed_filelist(pd.DataFrame(rows, columns=PLAN_COLUMNS))
        _write_filelist(filelist, tmp / FILELIST)
        record = _provenance(
            lvdm_dir, vae_dir, cond_index_csv, config, run_seed, device, [f"{shard}-of-{n_shards}"]
        )
        # Generation, decoding and writing, model loading excluded: the summary's cost per video.
        record["timing"] = {"seconds": time.perf_counter() - started, "videos": len(filelist)}
        write_json(tmp / PROVENANCE, record)
    log.info("shard %d-of-%d: %d samples -> %s", shard, n_shards, len(filelist), out_dir)
    return filelist


def _load_cond_latent(path: Path, frame: int, cond_index_csv, video: str) -> torch.Tensor:
    if not path.is_file():
        raise DataError(
            cond_index_csv,
            f"latent file {path} of video {video} does not exist",
            "re-run the latent encoding rule, or pass root= the workflow directory",
            item=video,
        )
    latents = np.load(path, mmap_mode="r")
    if latents.ndim != 4 or not 0 <= frame < len(latents):
        raise DataError(
            path,
            f"latents of shape {latents.shape} have no frame {frame} (need (T, C, h, w))",
            "re-run the latent encoding rule",
            item=video,
        )
    return torch.from_numpy(np.array(latents[frame], dtype=np.float32))


def _provenance(lvdm_dir, vae_dir, cond_index_csv, config, run_seed, device, shards) -> dict:
    from echogen.workflow import provenance

    return provenance(
        config.to_dict(),
        device=str(device),
        lvdm_dir=str(lvdm_dir),
        vae_dir=str(vae_dir),
        cond_index=str(cond_index_csv),
        seed=int(run_seed),
        shards=shards,
    )


# Provenance keys that must agree between the shards of one dataset.
SAME_ACROSS_SHARDS = ("config", "lvdm_dir", "vae_dir", "cond_index", "seed")


def gather_samples(shard_dirs: list[str | Path], out_dir: str | Path) -> pd.DataFrame:
    """Merge shard folders into one dataset folder with the same layout, atomically.

    Files are hard-linked when the file system allows it, else copied. The FileList is
    sorted by FileName.

    Args:
        shard_dirs: folders written by :func:`sample_shard` for one run.
        out_dir: the dataset folder (replaced if it exists).

    Returns:
        The merged FileList.

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
        filelist = read_filelist(shard_dir / FILELIST)
        record = _read_provenance(shard_dir)
        if first is None:
            first = record
        differing = [k for k in SAME_ACROSS_SHARDS if record.get(k) != first.get(k)]
        if differing:
            raise DataError(
                shard_dir,
                f"shard was sampled with other settings ({differing}) than {shard_dirs[0]}",
                "gather only the shards of one sampling run",
            )
        shards += record.get("shards", [])
        for key, value in (record.get("timing") or {}).items():
            timing[key] = timing.get(key, 0) + value
        for key in ("device", "torch", "diffusers"):
            if record.get(key) != first.get(key):
                log.warning(
                    "%s ran with %s %s, %s with %s: the shards are not bit-reproducible as one",
                    shard_dir,
                    key,
                    record.get(key),
                    shard_dirs[0],
                    first.get(key),
                )
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
            for path in _sample_files(shard_dir, name):
                if not path.exists():
                    raise DataError(
                        shard_dir,
                        f"{path} is missing",
                        "re-run this shard's sampling job",
                        item=name,
                    )
        lists.append(filelist)
    n_samples = int(first["config"]["n_samples"])
    missing = sorted(set(range(n_samples)) - {int(NAME_RE.match(n).group(1)) for n in owner})
    if missing:
        n_shards = _n_shards(shards)
        where = ""
        if n_shards:
            absent = sorted(
                {
                    s
                    for s in range(1, n_shards + 1)
                    for i in missing
                    if i in shard_range(n_samples, s, n_shards)
                }
            )
            where = f" (shard{'s' if len(absent) > 1 else ''} "
            where += ", ".join(f"{s}-of-{n_shards}" for s in absent) + ")"
        raise DataError(
            shard_dirs[0].parent,
            f"{len(missing)} of {n_samples} samples are in no shard folder{where}, e.g. "
            f"{sample_name(missing[0])}",
            "gather every shard of the run",
        )
    merged = _typed_filelist(pd.concat(lists, ignore_index=True))
    with atomic_dir(out_dir) as tmp:
        for name in merged["FileName"]:
            shard_dir = owner[name]
            for path in _sample_files(shard_dir, name):
                target = tmp / path.relative_to(shard_dir)
                if path.is_dir():
                    target.mkdir(parents=True)
                    for item in sorted(path.iterdir()):
                        _link_or_copy(item, target / item.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(path, target)
        _write_filelist(merged, tmp / FILELIST)
        write_json(tmp / PROVENANCE, {**first, "shards": sorted(shards), "timing": timing})
    log.info("gathered %d samples from %d shards -> %s", len(merged), len(shard_dirs), out_dir)
    return merged


def _sample_files(shard_dir: Path, name: str) -> list[Path]:
    return [
        shard_dir / "Videos" / f"{name}.mp4",
        shard_dir / "frames" / name,
        shard_dir / "latents" / f"{name}.npy",
    ]


def _read_provenance(shard_dir: Path) -> dict:
    path = shard_dir / PROVENANCE
    if not path.is_file():
        raise DataError(path, "sampling.json is missing", "re-run this shard's sampling job")
    return json.loads(path.read_text())


def _n_shards(shards: list[str]) -> int | None:
    counts = {int(m.group(2)) for s in shards if (m := SCATTERITEM_RE.match(s))}
    return counts.pop() if len(counts) == 1 else None


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
