"""Factual and counterfactual videos of a cascade, through the shared sampling driver.

EchoDiffusion evaluates a cascade on the VAL videos (``diffusion/evaluate/
generate_score_file_chunk.py`` of HReynaud/EchoDiffusion, ``/work/shared/PAPERS.md`` §3): each
video's clip (a random 2-s window at the cascade's frame rate) gives a conditioning frame (a
random frame of the clip), and the cascade generates a video for an EF: the video's own
(factual, a reconstruction) or one drawn from U(15, 85) % (counterfactual), with guidance 5.
It repeats this with ``--num_noise`` noise draws (3 in the paper) and reports the mean over
draws and the best of them: the draw whose regressed EF is closest to the requested one.

Here the plan lists every (VAL video, draw) pair: sample ``v * resamples + r`` is draw ``r``
of video ``v``. Each draw has its own clip window and conditioning frame, drawn from
``(run seed, r, v)`` (the reference's loader draws them anew on every pass); a
counterfactual EF is drawn once per video from ``(run seed, v)`` and kept for its draws (as
the reference, which draws the targets once before its passes). The noise of a sample comes
from its seed, :func:`~echogen.pipelines.synthetic.sample_seed` of ``(run seed, index)``,
when blocks hold one sample (``block=1``, the default); a block of several is seeded by its
first sample's seed, so its videos depend on ``block`` (never on the shard count).
The dataset's FileList names the source video (``Source``, ``SourceEF``, ``Resample``), so
the cascade's scoring can pair each sample with its real clip and group its draws.

The third mode, ``balanced``, makes EchoDiffusion's re-balancing set
(``diffusion/generate_samples/generate_dataset.py``): one video per EF of
:func:`~echogen.data.ef_balance.balanced_ef_targets` over the split's EFs (the bins of
``ef_range`` filled up to ``per_bin`` videos), each conditioned on a frame of a real video of
the split (TRAIN) taken in turn from seeded shuffles of them, as the reference's shuffled
loader; ``Resample`` counts the earlier uses of that anatomy (its clip window is drawn anew).
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echogen.data.cascade_clips import CascadeClipDataset, cascade_clip_spec
from echogen.data.ef_balance import balanced_ef_targets
from echogen.data.errors import DataError
from echogen.data.manifest import SPLITS, read_manifest
from echogen.models.cascade import load_cascade, output_size, read_cascade_index
from echogen.models.graphs import GraphedCall
from echogen.numerics import AUTOCAST
from echogen.pipelines.synthetic import (
    BASE_SCHEMA,
    Sample,
    sample_name,
    sample_seed,
    write_shard,
)

log = logging.getLogger(__name__)

MODES = ("factual", "counterfactual", "balanced")
# The cascade's FileList: the base columns, then the real video each sample comes from.
CASCADE_SCHEMA = {**BASE_SCHEMA, "Source": "str", "SourceEF": "float", "Resample": "int"}
# Stream of the per-video draws (clip window, conditioning frame, counterfactual EF); the
# noise of a sample uses its own seed.
VIDEO_STREAM = 7
# Stream of the balanced mode's target EFs and anatomy order.
BALANCE_STREAM = 8
# The balanced mode's settings where they differ from the evaluation's (EchoDiffusion's
# notebook and diffusion/generate_samples/slurms/generate_dataset.sh): TRAIN anatomies, bins
# 10-90 filled up to 100 videos, guidance 1, one video per target EF.
BALANCED_DEFAULTS = {"split": "TRAIN", "ef_range": [10.0, 90.0], "per_bin": 100,
                     "cond_scale": 1.0, "resamples": 1}  # fmt: skip


@dataclass(frozen=True)
class CascadeSampleConfig:
    """How a cascade's evaluation videos are made.

    Args:
        mode (str, "counterfactual"): ``factual`` (each video's own EF), ``counterfactual``
            (an EF from ``ef_range``, drawn per video) or ``balanced`` (one video per EF that
            fills the split's EF histogram, see the module's doc).
        split (str, "VAL"): the real videos conditioned on (EchoDiffusion evaluates on VAL).
        resamples (int, 3): noise draws per video (EchoDiffusion's ``--num_noise``); the
            balanced mode makes one video per target EF whatever it says.
        ef_range (list, [15, 85]): counterfactual EFs are uniform in this range, in %; the
            balanced mode fills the 1-% bins of this range (EchoDiffusion: [10, 90]).
        per_bin (int, 100): the balanced mode fills every bin up to this many videos, real
            ones included (EchoDiffusion: min(100, the fullest bin's count) = 100).
        cond_scale (float, 5.0): classifier-free guidance scale.
        max_videos (int | None, None): the first this many videos of the split (by FileName);
            None = all (EchoDiffusion: every VAL video, about 1,200).
        block (int, 1): consecutive samples generated in one cascade call.
        quality (int, 95): JPEG quality of the frame folders.
        precision (str, "fp32"): fp32 (as published), or the whole ``sample`` call under
            ``"bf16"`` / ``"fp16"`` autocast: matmuls and convolutions (the UNets') in that
            dtype, while the sampler's image state stays float32.
        graphs (bool, False): on a GPU, replay each UNet call from a CUDA graph recorded
            once per stage, guidance branch and block shape
            (:class:`~echogen.models.graphs.GraphedCall`); every stage then stays on the GPU
            between calls (imagen-pytorch otherwise moves the other stages to the CPU).
            Ignored on the CPU.
    """

    mode: str = "counterfactual"
    split: str = "VAL"
    resamples: int = 3
    ef_range: list = field(default_factory=lambda: [15.0, 85.0])
    cond_scale: float = 5.0
    max_videos: int | None = None
    block: int = 1
    quality: int = 95
    per_bin: int = 100
    precision: str = "fp32"
    graphs: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        low, high = (float(v) for v in self.ef_range)
        if not 0 <= low < high <= 100:
            raise ValueError(f"ef_range must be [low, high] with 0 <= low < high <= 100, got "
                             f"{self.ef_range}")  # fmt: skip
        for name in ("resamples", "block", "per_bin"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_videos is not None and self.max_videos < 1:
            raise ValueError(f"max_videos must be None or >= 1, got {self.max_videos}")
        if self.cond_scale <= 0 or not 1 <= self.quality <= 100:
            raise ValueError("cond_scale must be > 0 and quality in 1..100")
        if self.precision not in AUTOCAST:
            raise ValueError(f"precision must be one of {list(AUTOCAST)}, got {self.precision!r}")
        if not isinstance(self.graphs, bool):
            raise ValueError(f"graphs must be true or false, got {self.graphs!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> CascadeSampleConfig:
        """A config from a dict of its fields; the balanced mode's unset fields take
        :data:`BALANCED_DEFAULTS`."""
        if settings.get("mode") == "balanced":
            settings = {**BALANCED_DEFAULTS, **settings}
        return cls(**settings)


def source_rows(manifest: pd.DataFrame, config: CascadeSampleConfig) -> pd.DataFrame:
    """The real videos a run conditions on: the split's rows by FileName, the first
    ``max_videos``.

    Raises:
        DataError: the manifest has no video of the split.
    """
    rows = manifest[manifest["Split"] == config.split]
    rows = rows.sort_values("FileName", kind="stable").reset_index(drop=True)
    if rows.empty:
        raise DataError(
            manifest.attrs.get("source", "manifest"),
            f"no {config.split} videos to condition the cascade on",
            "ingest a dataset with that split, or set the sampling split",
        )
    if config.max_videos is not None:
        rows = rows.head(config.max_videos).reset_index(drop=True)
    rows.attrs = manifest.attrs
    return rows


def plan_cascade_samples(
    sources: pd.DataFrame, config: CascadeSampleConfig, run_seed: int
) -> pd.DataFrame:
    """One row per (video, draw): ``index``, ``FileName``, ``Split``, ``EF`` (requested),
    ``seed``, ``Source``, ``SourceEF``, ``Resample`` and ``video`` (the source's position).
    """
    if config.mode == "balanced":
        return _plan_balanced(sources, config, run_seed)
    low, high = (float(v) for v in config.ef_range)
    records = []
    for v, source in enumerate(sources.itertuples(index=False)):
        requested = float(source.EF)
        if config.mode == "counterfactual":
            rng = np.random.default_rng([int(run_seed), VIDEO_STREAM, v])
            requested = float(rng.uniform(low, high))
        for r in range(config.resamples):
            index = v * config.resamples + r
            records.append(_plan_row(index, source, requested, r, v, run_seed))
    return pd.DataFrame.from_records(records)


def _plan_row(index: int, source, requested: float, resample: int, video: int,
              run_seed: int) -> dict:  # fmt: skip
    """Plan row ``index``: draw ``resample`` of source ``video`` (a manifest row) at EF
    ``requested``."""
    return {
        "index": index,
        "FileName": sample_name(index),
        "Split": source.Split,
        "EF": float(requested),
        "seed": sample_seed(run_seed, index),
        "Source": str(source.FileName),
        "SourceEF": float(source.EF),
        "Resample": int(resample),
        "video": int(video),
    }


def _plan_balanced(
    sources: pd.DataFrame, config: CascadeSampleConfig, run_seed: int
) -> pd.DataFrame:
    """The balanced mode's rows: sample ``i`` asks for target EF ``i`` (bins in increasing
    order) with anatomy ``i`` of the seeded shuffles of the sources."""
    low, high = (float(v) for v in config.ef_range)
    rng = np.random.default_rng([int(run_seed), BALANCE_STREAM])
    targets = balanced_ef_targets(
        sources["EF"].to_numpy(dtype=float), config.per_bin, low, high,
        seed=int(rng.integers(2**31)),
    )  # fmt: skip
    rounds = -(-len(targets) // len(sources))
    order = np.concatenate([rng.permutation(len(sources)) for _ in range(rounds)] or [[]])
    rows = list(sources.itertuples(index=False))
    uses = np.zeros(len(sources), dtype=int)
    records = []
    for index, (target, v) in enumerate(zip(targets, order.astype(int), strict=False)):
        records.append(_plan_row(index, rows[v], target, uses[v], v, run_seed))
        uses[v] += 1
    if not records:
        raise DataError(
            sources.attrs.get("source", "manifest"),
            f"every 1-% EF bin of {config.ef_range} already holds {config.per_bin} "
            f"{config.split} videos: nothing to generate",
            "raise cascade.balancing.per_bin or widen its ef_range",
        )
    return pd.DataFrame.from_records(records)


def source_clips(
    sources: pd.DataFrame, video: dict, run_seed: int, root: str | Path = "."
) -> CascadeClipDataset:
    """The real clips of the sources as the cascade trains on them (its frame rate, frame
    count, size and conditioning frame, ``video["cond_frame"]``, ``"window"`` when absent as
    in released models and cascades trained before the switch): :func:`source_clip` gives
    draw ``r`` of source ``v``."""
    spec = cascade_clip_spec(video["fps"], video["frames"] / video["fps"], video["size"],
                             video["channels"])  # fmt: skip
    seed = int(np.random.SeedSequence([int(run_seed), VIDEO_STREAM]).generate_state(1)[0])
    cond_frame = video.get("cond_frame", "window")
    return CascadeClipDataset(sources, spec, seed=seed, root=root, cond_frame=cond_frame)


def source_clip(clips: CascadeClipDataset, video: int, draw: int) -> tuple:
    """Draw ``draw``'s ``(clip, EF/100, conditioning frame)`` of source ``video``: the
    window and frame of ``(seed, draw, video)``."""
    clips.set_epoch(int(draw))
    return clips[int(video)]


class CascadeGenerator:
    """Videos of a cascade for a block of plan rows: the source clips' conditioning frames and
    the requested EFs, noise seeded by the block's first sample."""

    def __init__(
        self,
        cascade: torch.nn.Module,
        clips: CascadeClipDataset,
        frames: int,
        config: CascadeSampleConfig,
        device: str = "cpu",
    ):
        self.cascade, self.clips, self.frames = cascade, clips, frames
        self.config, self.device = config, torch.device(device)
        self.block = config.block

    def generate(self, rows: pd.DataFrame) -> list[Sample]:
        pairs = zip(rows["video"], rows["Resample"], strict=True)
        conds = torch.stack([source_clip(self.clips, v, r)[2] for v, r in pairs])
        ef = torch.tensor(rows["EF"].to_numpy() / 100.0, dtype=torch.float32).reshape(-1, 1, 1)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(rows["seed"].iloc[0]))
            videos = sample_cascade(
                self.cascade,
                ef.to(self.device),
                conds.to(self.device),
                self.frames,
                self.config.cond_scale,
                self.config.precision,
                self.config.graphs,
            )
        return [Sample(video=to_grey_uint8(video)) for video in videos.float().cpu()]


def sample_cascade(
    cascade: torch.nn.Module,
    ef: torch.Tensor,
    conds: torch.Tensor,
    frames: int,
    cond_scale: float,
    precision: str = "fp32",
    graphs: bool = False,
) -> torch.Tensor:
    """One call of the cascade's sampler (imagen-pytorch's ``ElucidatedImagen.sample``) on a
    batch: ``ef (B, 1, 1)`` as a fraction and conditioning frames ``(B, 3, S, S)``, both on
    the cascade's device; noise from the global generators. Returns ``(B, 3, T, S', S')`` in
    [0, 1].

    ``precision`` other than fp32 runs the call under autocast (without its cast cache when
    ``graphs``: a recorded graph cannot keep casts that die with the context). ``graphs`` on
    a GPU replays each stage's UNet from CUDA graphs (:func:`graph_cascade`)."""
    device = ef.device
    dtype = AUTOCAST[precision]
    if graphs and device.type == "cuda":
        graph_cascade(cascade)
    autocast = torch.autocast(
        device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=not graphs
    )
    with torch.no_grad(), autocast:
        return cascade.sample(
            text_embeds=ef,
            cond_images=conds,
            cond_scale=cond_scale,
            video_frames=frames,
            batch_size=len(ef),
            use_tqdm=False,
            device=device,
        )


def graph_cascade(cascade: torch.nn.Module) -> None:
    """Make every stage's UNet replay from CUDA graphs, once per cascade (idempotent).

    Each UNet's ``forward`` becomes a :class:`~echogen.models.graphs.GraphedCall`: with
    guidance (``cond_scale`` other than 1) imagen calls it twice per evaluation
    (conditional, then ``cond_drop_prob=1``), so each stage records two graphs per block
    shape, otherwise one. A graph holds the addresses of the weights it was recorded with, so
    imagen's ``one_unet_in_gpu`` (which moves the other stages to the CPU around each stage's
    loop, and back) is turned off for this cascade: every stage stays where it is.

    The change is one-way: later calls replay the graphs whatever their ``graphs`` says, and
    moving the cascade to another device afterwards would leave the graphs reading freed
    memory (load the cascade again instead)."""
    if getattr(cascade, "_echogen_graphed", False):
        return
    for unet in cascade.unets:
        unet.forward = GraphedCall(unet.forward)
    cascade.one_unet_in_gpu = lambda unet_number=None, unet=None: nullcontext()
    cascade._echogen_graphed = True


def to_grey_uint8(video: torch.Tensor) -> np.ndarray:
    """A cascade output ``(C, T, H, W)`` in [0, 1] as grey ``uint8 (T, H, W)`` (the channel
    mean: the cascade learns grey videos repeated to RGB)."""
    grey = video.clamp(0, 1).mean(dim=0) * 255.0
    return grey.round().to(torch.uint8).numpy()


def sample_cascade_shard(
    cascade_dir: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    config: CascadeSampleConfig | dict,
    run_seed: int,
    shard: int,
    n_shards: int,
    device: str = "cpu",
    root: str | Path = ".",
) -> pd.DataFrame:
    """Plan the run, then generate and write the videos of one shard.

    Args:
        cascade_dir: the cascade folder (``cascade.json`` and its stages).
        manifest: the real dataset's manifest (the split's videos are conditioned on).
        out_dir: the shard's folder (written atomically).
        config: a :class:`CascadeSampleConfig` or a dict of its fields
            (:meth:`CascadeSampleConfig.from_settings`).
        run_seed: the run's seed.
        shard: 1-based shard number.
        n_shards: number of shards.
        device: torch device of the cascade.
        root: folder that the manifest's ``Path`` column is relative to.

    Returns:
        The shard's FileList (:data:`CASCADE_SCHEMA`).
    """
    from echogen.workflow import provenance

    if not isinstance(config, CascadeSampleConfig):
        config = CascadeSampleConfig.from_settings(config)
    cascade_dir = Path(cascade_dir)
    index = read_cascade_index(cascade_dir)
    cascade = load_cascade(cascade_dir).to(device)
    video = {**index["video"], "size": output_size(index["imagen"])}
    sources = source_rows(read_manifest(manifest), config)
    record = provenance(
        config.to_dict(),
        device=str(device),
        cascade_dir=str(cascade_dir),
        manifest=str(manifest),
        seed=int(run_seed),
        video=video,
        # What the shared tables say of the conditioning frames: real videos, not private.
        conditioning={"frames": "real", "private": False, "source": str(manifest)},
    )
    if not math.isclose(config.cond_scale, 5.0):
        log.info("guidance scale %s (EchoDiffusion samples with 5)", config.cond_scale)
    return write_shard(
        plan_cascade_samples(sources, config, run_seed),
        CascadeGenerator(
            cascade, source_clips(sources, video, run_seed, root), video["frames"], config, device
        ),  # fmt: skip
        out_dir,
        shard=shard,
        n_shards=n_shards,
        schema=CASCADE_SCHEMA,
        fps=video["fps"],
        quality=config.quality,
        record=record,
    )
