"""LVDM sampling: the planner and generator of EchoNet-Synthetic / EchoDream datasets.

A synthetic dataset (``echogen.pipelines.synthetic``: layout, sharding, gathering) is made by
a *plan* and a *generator*. Here, :func:`plan_samples` decides per sample index the EF
(drawn uniformly from the integers 10..90 as published), the class or the prompt, and the
conditioning video and latent frame of a real TRAIN video; :class:`LVDMGenerator` turns a
block of ``sampling.block`` plan rows into videos with
:class:`~echogen.models.lvdm_pipeline.LVDMPipeline` (192 frames denoised in overlapping
64-frame windows stitched at every step, PAPERS.md §4; EchoDream's classifier-free guidance
5, §5), one UNet call per step for the whole block, and keeps each first frame's latent for
the privacy filter.

Everything a sample depends on comes from ``sample_seed(run seed, index)`` (its noise too,
whatever the block), and shards take whole blocks, the last one padded to the full size, so a
dataset sampled in one job equals one sampled in any number of shards (:func:`sample_shard`)
and gathered, byte for byte, on one kind of device at a given block size.

The FileList holds :data:`LVDM_SCHEMA`: the EchoNet-Dynamic columns, then ``class_id``,
``class_name``, ``prompt``, ``cond_video``, ``cond_frame`` and ``seed``.
"""

from __future__ import annotations

import json
import logging
import math
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from echogen.data.errors import DataError
from echogen.data.manifest import SPLITS
from echogen.models.lvdm import load_lvdm, prompt_for, prompt_templates
from echogen.models.lvdm_pipeline import GUIDANCE_BLANKS, STITCHINGS, LVDMPipeline
from echogen.models.vae import decode_latents, load_vae
from echogen.numerics import AUTOCAST
from echogen.pipelines.latents import read_latents
from echogen.pipelines.synthetic import (
    BASE_SCHEMA,
    Sample,
    sample_name,
    sample_seed,
    split_labels,
    write_shard,
)
from echogen.settings import DictFields

log = logging.getLogger(__name__)

SCHEDULERS = ("ddpm", "ddim", "dpm")
# The FileList of an LVDM dataset: the EchoNet-Dynamic columns, then what conditioned it.
LVDM_SCHEMA = {
    **BASE_SCHEMA,
    "class_id": "int",
    "class_name": "str",
    "prompt": "str",
    "cond_video": "str",
    "cond_frame": "int",
    "seed": "int",
}
FILELIST_COLUMNS = list(LVDM_SCHEMA)
# Plan columns beyond the FileList's: the sample index and where the conditioning latent is.
PLAN_COLUMNS = ["index", *FILELIST_COLUMNS, "cond_latent_path"]
INDEX_COLUMNS = ["FileName", "Split", "latent_path", "latent_frames"]


@dataclass(frozen=True)
class SampleConfig(DictFields):
    """How a synthetic dataset is sampled (published values as defaults).

    Args:
        n_samples (int, 2048): videos in the dataset (indices ``0 .. n_samples - 1``).
        frames (int, 192): frames per video (EchoNet-Synthetic's evaluation length).
        window (int, 64): frames the UNet sees at once (its training clip length).
        overlap (int, 32): frames shared by consecutive windows, stitched at every
            denoising step.
        stitching (str, "mean"): how overlapping windows' predictions are stitched:
            ``"mean"`` averages them; ``"reference"`` takes each frame from the earliest window
            holding it, as EchoNet-Synthetic and EchoDream do
            (:func:`~echogen.models.lvdm_pipeline.stitched_prediction`).
        guidance_blank (str, "token_frame"): what guidance's unconditional pass blanks: the
            tokens and the conditioning frame, or ``"token"`` only (EchoDream).
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
        dataset (str | None, None): the dataset the videos imitate; picks the prompt template
            of a text model with one per dataset (EchoDream's), and is the prompt rows'
            ``Dataset``.
        block (int, 1): K, videos denoised together in one UNet call per step. Shards take
            whole blocks and the last block is padded to K, so a dataset is the same for
            any shard count at a given K; videos of different K differ by float rounding
            only (the noise of each video comes from its own seed whatever K).
        precision (str, "fp32"): the UNet's precision while sampling: ``"fp32"``, or
            ``"bf16"`` / ``"fp16"`` autocast; the scheduler, guidance and stitching stay in
            float32.
        graphs (bool, False): on a GPU, replay the UNet call from a CUDA graph recorded once
            per run (:class:`~echogen.models.graphs.GraphedCall`); ignored on the CPU.
        compile (bool, False): on a GPU, run the UNet through ``torch.compile`` (inductor,
            static shapes; compiled once per run, a minute or more at the paper's size);
            ignored on the CPU; not with ``graphs``.
    """

    dict_label: ClassVar[str] = "sampling keys"

    n_samples: int = 2048
    frames: int = 192
    window: int = 64
    overlap: int = 32
    stitching: str = "mean"
    guidance_blank: str = "token_frame"
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
    dataset: str | None = None
    block: int = 1
    precision: str = "fp32"
    graphs: bool = False
    compile: bool = False

    def __post_init__(self):
        for name in ("n_samples", "frames", "window", "steps", "block"):
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
        if self.stitching not in STITCHINGS:
            raise ValueError(
                f"sampling.stitching must be one of {STITCHINGS}, got {self.stitching!r}"
            )
        if self.guidance_blank not in GUIDANCE_BLANKS:
            raise ValueError(
                f"sampling.guidance_blank must be one of {GUIDANCE_BLANKS}, "
                f"got {self.guidance_blank!r}"
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
        for name in ("graphs", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"sampling.{name} must be true or false, got {getattr(self, name)!r}"
                )
        if self.graphs and self.compile:
            raise ValueError("sampling.graphs and sampling.compile are exclusive: set one")
        if not isinstance(self.precision, str) or self.precision not in AUTOCAST:
            raise ValueError(
                f"sampling.precision must be one of {list(AUTOCAST)}, got {self.precision!r}"
            )
        if not _is_int(self.quality) or not 0 <= self.quality <= 100:
            raise ValueError(f"sampling.quality must be an integer in 0..100, got {self.quality!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


# --- the plan -----------------------------------------------------------------------------


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


def read_image_set(filelist_csv: str | Path, images_dir: str | Path) -> pd.DataFrame:
    """The images of a synthetic image set (an LIDM's, usually its privacy-kept FileList) as
    conditioning rows, sorted by FileName: ``FileName``, ``Split`` TRAIN, ``latent_path``
    (``<images_dir>/latents/<FileName>.npy``), ``latent_frames`` 1, and ``class_id`` /
    ``class_name`` where the set has them.

    Raises:
        DataError: the list is missing, lacks FileName, or is empty (naming the fix).
    """
    filelist_csv, images_dir = Path(filelist_csv), Path(images_dir)
    if not filelist_csv.is_file():
        raise DataError(filelist_csv, "image list does not exist", "run the LIDM privacy filter")
    rows = pd.read_csv(filelist_csv, dtype={"FileName": str})
    if "FileName" not in rows.columns:
        raise DataError(filelist_csv, "image list lacks the FileName column", "re-run its rule")
    if rows.empty:
        raise DataError(
            filelist_csv,
            "no image to condition on (the privacy filter kept none)",
            "sample more LIDM images (lvdm.lidms.<name>.sampling.n_samples) or check the filter",
        )
    rows = rows.sort_values("FileName", kind="stable").reset_index(drop=True)
    out = pd.DataFrame(
        {
            "FileName": rows["FileName"],
            "Split": "TRAIN",
            "latent_path": [str(images_dir / "latents" / f"{n}.npy") for n in rows["FileName"]],
            "latent_frames": 1,
        }
    )
    for column in ("class_id", "class_name"):
        if column in rows.columns and rows[column].notna().all():
            out[column] = rows[column]
    out.attrs["source"] = str(filelist_csv)
    return out


def _class_names(spec) -> dict[int, str]:
    """``{class id: class name}`` from the model's class map (stored as name -> id)."""
    return {int(i): str(name) for name, i in (spec.class_map or {}).items()}


def _template_fields(spec, dataset: str | None = None) -> set[str]:
    """Names of the fields a text model's prompt template fills (``{EF:.0f}`` -> ``EF``); for
    a model with one template per dataset, those of ``dataset``'s."""
    if spec.conditioning != "text":
        return set()
    templates = prompt_templates(spec)
    if isinstance(spec.prompt, dict):
        if dataset not in spec.prompt:
            raise ValueError(
                f"the model has a prompt template per dataset ({sorted(spec.prompt)}); the "
                f"samples' dataset {dataset!r} is not one of them. Fix: set the sampling "
                "config's dataset to one of those."
            )
        templates = [spec.prompt[dataset]]
    return {
        name
        for template in templates
        for _, name, _, _ in string.Formatter().parse(template)
        if name
    }


def _uses_ef(spec, dataset: str | None = None) -> bool:
    return spec.conditioning == "ef" or bool({"EF", "EF_int"} & _template_fields(spec, dataset))


def _uses_class(spec, dataset: str | None = None) -> bool:
    fields = _template_fields(spec, dataset)
    return spec.conditioning == "class" or bool({"class_name", "class_id"} & fields)


def plan_samples(
    config: SampleConfig,
    spec,
    cond_index_csv: str | Path,
    run_seed: int,
    images_dir: str | Path | None = None,
) -> pd.DataFrame:
    """One row per sample index: what to generate and from which conditioning frame.

    Sample ``i`` draws, from ``numpy.random.default_rng(sample_seed(run_seed, i))`` and in
    this order: its EF (integer, uniform over ``config.ef_range``; EF runs and text runs
    whose template holds ``{EF}``), then its conditioning frame. From real videos (no
    ``images_dir``: non-private) it draws the video (uniform over the index's TRAIN rows,
    sorted by FileName; over those of its class when there is one) and the frame (uniform
    over that video's latent frames). From a synthetic image set (``images_dir``: the
    LIDM → privacy filter → LVDM chain) it takes the images in FileName order, one per
    video as EchoNet-Synthetic does: the ``k``-th sample of a class (or of the run) gets
    the ``k``-th image of that class (or of the set), wrapping round with a warning when
    the set is smaller. Either way the plan depends on ``(config, run_seed, index)`` and
    the conditioning list only, never on sharding. The class of class runs and of text runs
    whose template names the class is ``class_ids[i % len(class_ids)]``: every class gets
    the same number of videos.

    Args:
        config: sampling settings.
        spec: the model's ``LVDMSpec``.
        cond_index_csv: latent index of the conditioning dataset, or the image list
            (``FileList.csv``) of the image set in ``images_dir``.
        run_seed: the run's seed.
        images_dir: the synthetic image set's folder (its ``latents/``), or None for real
            conditioning frames.

    Returns:
        :data:`PLAN_COLUMNS`; FrameHeight/FrameWidth/NumberOfFrames are left empty (they
        come from the decoded videos), EF/class/prompt are empty where the run has none.

    Raises:
        DataError: bad latent index, or no TRAIN video of a requested class.
        ValueError: class ids outside the model's class map, or class ids for a model
            without classes.
    """
    images = images_dir is not None
    train = (
        read_image_set(cond_index_csv, images_dir) if images else read_latent_index(cond_index_csv)
    )
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
    splits = split_labels(config.n_samples, config.split)
    records = []
    taken: dict[int | None, int] = {}  # images of each class used so far (image sets)
    for index in range(config.n_samples):
        seed = sample_seed(run_seed, index)
        rng = np.random.default_rng(seed)
        ef = (
            float(rng.integers(config.ef_range[0], config.ef_range[1] + 1))
            if _uses_ef(spec, config.dataset)
            else np.nan
        )
        # Classes cycle with the index (a balanced dataset whatever n_samples; EchoDream draws
        # them at random, which can leave a class out of a small set).
        class_id = int(class_ids[index % len(class_ids)]) if class_ids is not None else None
        candidates = train if class_id is None else by_class[class_id]
        if images:
            k = taken.get(class_id, 0)
            taken[class_id] = k + 1
            cond, frame = candidates.iloc[k % len(candidates)], 0
        else:
            cond = candidates.iloc[int(rng.integers(len(candidates)))]
            frame = int(rng.integers(int(cond["latent_frames"])))
        class_name = names[class_id] if class_id is not None else None
        prompt = None
        if spec.conditioning == "text":
            row = _prompt_row(cond, ef, class_id, class_name)
            if config.dataset is not None:
                row["Dataset"] = config.dataset
            prompt = prompt_for(spec, row)
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
    reused = {c: n for c, n in taken.items() if n > len(train if c is None else by_class[c])}
    if reused:
        log.warning(
            "the image set %s has fewer images than videos asked for (%s): images are reused",
            images_dir,
            ", ".join(
                f"class {c}: {n} videos" if c is not None else f"{n} videos"
                for c, n in reused.items()
            ),
        )
    return pd.DataFrame(records, columns=PLAN_COLUMNS)


def _class_ids(config: SampleConfig, spec, names: dict[int, str]) -> list[int] | None:
    if not _uses_class(spec, config.dataset):
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


# --- the generator ------------------------------------------------------------------------


def _cond_value(spec, row: pd.Series):
    if spec.conditioning == "ef":
        return float(row["EF"])
    if spec.conditioning == "class":
        return int(row["class_id"])
    return str(row["prompt"])


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


class LVDMGenerator:
    """The LVDM's generator for the sampling driver: blocks of ``config.block`` plan rows.

    A block's videos are denoised together; a short last block is padded to the full K
    with copies of its last row (their videos are dropped), so every UNet call of a run has
    one shape. Each video's noise comes from a generator on the UNet's device seeded by its
    row's ``seed``: on the CPU as before, on a GPU without host copies (GPU noise differs
    from the CPU's, as GPU arithmetic does).

    Args:
        pipeline: the :class:`~echogen.models.lvdm_pipeline.LVDMPipeline` to sample with.
        config: sampling settings (frames, window, overlap, steps, guidance, block,
            precision).
        cond_index_csv: the latent index the plan's conditioning frames come from.
        root: folder that the plan's ``cond_latent_path`` is relative to.
    """

    def __init__(
        self,
        pipeline: LVDMPipeline,
        config: SampleConfig,
        cond_index_csv: str | Path,
        root: str | Path = ".",
    ):
        self.pipeline, self.config = pipeline, config
        self.cond_index_csv, self.root = cond_index_csv, Path(root)
        self.spec = pipeline.lvdm_spec
        self.block = config.block

    def generate(self, rows: pd.DataFrame) -> list[Sample]:
        """Sample a block of plan rows: each video and its first frame's scaled latent."""
        rows = rows.reset_index(drop=True)
        padded = pd.concat([rows, rows.iloc[[-1] * (self.block - len(rows))]])
        conds = [
            _load_cond_latent(
                self.root / row["cond_latent_path"],
                int(row["cond_frame"]),
                self.cond_index_csv,
                row["cond_video"],
            )
            for _, row in padded.iterrows()
        ]
        device = self.pipeline.unet.device
        out = self.pipeline(
            torch.stack(conds),
            [_cond_value(self.spec, row) for _, row in padded.iterrows()],
            frames=self.config.frames,
            window=self.config.window,
            overlap=self.config.overlap,
            num_inference_steps=self.config.steps,
            guidance_scale=self.config.guidance_scale,
            generator=[
                torch.Generator(device=device).manual_seed(int(seed)) for seed in padded["seed"]
            ],
            output_type="latent",
            stitching=self.config.stitching,
            guidance_blank=self.config.guidance_blank,
            precision=self.config.precision,
            graphs=self.config.graphs,
            compile=self.config.compile,
        )
        return [
            Sample(video=decode_latents(self.pipeline.vae, latents), latent=latents[0].numpy())
            for latents in out.latents[: len(rows)]
        ]


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
    images_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Plan the run, then generate, decode and write the samples of one shard.

    Args:
        lvdm_dir: LVDM model folder (``save_lvdm``).
        vae_dir: VAE model folder the LVDM's latents come from.
        cond_index_csv: latent index of the conditioning dataset (TRAIN rows are used), or
            the image list of the synthetic image set in ``images_dir``.
        out_dir: the shard's folder (written atomically, replaced if it exists).
        config: sampling settings.
        run_seed: the run's seed.
        shard: 1-based shard number.
        n_shards: number of shards.
        device: torch device of the UNet and the VAE.
        root: folder that the index's ``latent_path`` column is relative to.
        images_dir: the synthetic image set whose latents condition the videos (private:
            EchoNet-Synthetic's LIDM images that passed the privacy filter); None draws real
            TRAIN frames, which ``sampling.json`` records as non-private.

    Returns:
        The shard's FileList (:data:`LVDM_SCHEMA`).
    """
    from echogen.workflow import provenance

    lvdm_dir, vae_dir = Path(lvdm_dir), Path(vae_dir)
    lvdm = load_lvdm(lvdm_dir, device=device)
    vae = load_vae(vae_dir, device=device)
    rows = (
        read_latent_index(cond_index_csv)
        if images_dir is None
        else read_image_set(cond_index_csv, images_dir)
    )
    _check_scaling(lvdm, vae, lvdm_dir, vae_dir, rows)
    if not math.isclose(config.fps, lvdm.spec.fps):
        log.warning(
            "videos are written at %s fps but the LVDM generates at %s fps",
            config.fps,
            lvdm.spec.fps,
        )
    pipeline = LVDMPipeline.from_parts(lvdm, vae, config.scheduler)
    pipeline.set_progress_bar_config(disable=True)  # the driver shows one bar per shard
    record = provenance(
        config.to_dict(),
        device=str(device),
        lvdm_dir=str(lvdm_dir),
        vae_dir=str(vae_dir),
        cond_index=str(cond_index_csv),
        conditioning=conditioning_record(images_dir, cond_index_csv),
        seed=int(run_seed),
    )
    return write_shard(
        plan_samples(config, lvdm.spec, cond_index_csv, run_seed, images_dir),
        LVDMGenerator(pipeline, config, cond_index_csv, root),
        out_dir,
        shard=shard,
        n_shards=n_shards,
        schema=LVDM_SCHEMA,
        fps=config.fps,
        quality=config.quality,
        record=record,
    )


def conditioning_record(images_dir: str | Path | None, cond_index_csv: str | Path) -> dict:
    """Where a dataset's conditioning frames come from, for ``sampling.json`` and every table
    that reads it: ``frames`` (``synthetic`` or ``real``), ``private`` and ``source``.

    Only synthetic images that passed the privacy filter (an image list with the filter's
    ``summary.json`` beside it) are private; real TRAIN frames never are.
    """
    if images_dir is None:
        return {"frames": "real", "private": False, "source": str(cond_index_csv)}
    filtered = (Path(cond_index_csv).parent / "summary.json").is_file()
    return {"frames": "synthetic", "private": filtered, "source": str(cond_index_csv)}


def _load_cond_latent(path: Path, frame: int, cond_index_csv, video: str) -> torch.Tensor:
    if not path.is_file():
        raise DataError(
            cond_index_csv,
            f"latent file {path} of video {video} does not exist",
            "re-run the latent encoding rule, or pass root= the workflow directory",
            item=video,
        )
    latents = np.load(path, mmap_mode="r")
    if latents.ndim == 3:  # one image of a synthetic image set: (C, h, w)
        latents = latents[None]
    if latents.ndim != 4 or not 0 <= frame < len(latents):
        raise DataError(
            path,
            f"latents of shape {latents.shape} have no frame {frame} (need (T, C, h, w))",
            "re-run the latent encoding rule",
            item=video,
        )
    return torch.from_numpy(np.array(latents[frame], dtype=np.float32))
