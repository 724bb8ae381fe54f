"""D'ARTAGNAN's counterfactuals: the synthetic dataset of the shared evaluation, its scores
and table, and inference on a list of (video, target EF) pairs.

The reference stops at training (its ``tools/inference.py`` is three comment lines, its
README's inference command "WIP"). echogen makes counterfactuals two ways:

- **a synthetic dataset** (``results/samples/dartagnan_<m>_counterfactual/``) through the
  shared sampling driver: sample ``v`` is the counterfactual of the ``v``-th clip (by
  FileName) of the VAL and TEST splits, at a target EF drawn from ``(run seed, v)`` at least
  ``margin`` points from its own, as in training; its noise comes from the sample's seed.
  :func:`score_counterfactuals` pairs each sample with its factual clip (SSIM, LPIPS; at the
  generator's own size unless ``samples.score_size`` names one) and the
  EF predictions of two regressors: an independent one and the expert the generator was
  trained against; :func:`write_dartagnan_table` is ``results/metrics/dartagnan.txt``.
- **inference** (:func:`infer_counterfactuals`) on configured pairs: a video of an ingested
  dataset (its processed clip) or any ``.avi``/``.mp4`` file (resampled to the model's frame
  rate, ``frames`` frames from ``start`` seconds, resized), written as MP4s, JPEG frames and a
  FileList with the requested EF and the expert's EF of the input and of the output.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.clips import load_clip, read_metainfo
from echogen.data.errors import DataError
from echogen.data.frames import write_frames
from echogen.data.io import atomic_dir, atomic_path, write_json
from echogen.data.manifest import SPLITS
from echogen.data.video import probe_video, read_video, resample_frames, resize_frames, write_video
from echogen.metrics.paired import LPIPS, LPIPS_MIN_SIZE, paired_video_metrics
from echogen.models.dartagnan import counterfactual_efs, expert_input, load_expert, load_generator
from echogen.pipelines.cascade_scoring import ef_errors, fid_fvd16, read_predictions
from echogen.pipelines.synthetic import (
    BASE_SCHEMA,
    PROVENANCE,
    Sample,
    read_filelist,
    sample_name,
    sample_seed,
    write_shard,
)

log = logging.getLogger(__name__)

DARTAGNAN_SCHEMA = {**BASE_SCHEMA, "Source": "str", "SourceEF": "float", "seed": "int"}
TARGET_STREAM = 13
SCORE_COLUMNS = ["FileName", "Source", "Split", "EF", "SourceEF", "EF_regressor", "EF_expert",
                 "ssim", "lpips", "size"]  # fmt: skip
INFERENCE_COLUMNS = ["FileName", "Input", "EF", "EF_expert", "EF_expert_input", "FPS",
                     "NumberOfFrames", "seed"]  # fmt: skip
# D'ARTAGNAN's published counterfactual numbers (MICCAI 2022, PAPERS.md §6).
PUBLISHED = {"ssim": 0.79, "r2": 0.51}
SSIM_MIN_SIZE = 11  # the SSIM window


@dataclass(frozen=True)
class CounterfactualConfig:
    """How the counterfactual dataset is drawn.

    Args:
        splits (list[str], ["VAL", "TEST"]): the splits whose clips get a counterfactual.
        max_videos (int | None, None): the first this many clips (by FileName) of those.
        margin (float, 10.0): a target EF is at least this far from the clip's own.
        quality (int, 95): JPEG quality of the frame folders.
    """

    splits: list[str] = field(default_factory=lambda: ["VAL", "TEST"])
    max_videos: int | None = None
    margin: float = 10.0
    quality: int = 95

    def __post_init__(self):
        unknown = [s for s in self.splits if s not in SPLITS]
        if not self.splits or unknown:
            raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {self.splits}")
        if self.max_videos is not None and self.max_videos < 1:
            raise ValueError(f"max_videos must be None or >= 1, got {self.max_videos}")
        if not 0 < self.margin < 50:
            raise ValueError(f"margin must be in (0, 50), got {self.margin}")

    @classmethod
    def from_settings(cls, settings: dict | None) -> CounterfactualConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (settings or {}).items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


def source_clips(metainfo: str | Path, config: CounterfactualConfig) -> pd.DataFrame:
    """The clips that get a counterfactual: the splits' metainfo rows by FileName."""
    rows = pd.concat([read_metainfo(metainfo, split) for split in config.splits])
    rows = rows.sort_values("FileName", kind="stable").reset_index(drop=True)
    return rows if config.max_videos is None else rows.head(config.max_videos)


def plan_counterfactuals(
    sources: pd.DataFrame, config: CounterfactualConfig, run_seed: int
) -> pd.DataFrame:
    """One row per source clip: its target EF (seeded per clip), ``Source``, ``SourceEF``."""
    records = []
    for v, source in enumerate(sources.itertuples(index=False)):
        rng = np.random.default_rng([int(run_seed), TARGET_STREAM, v])
        target = counterfactual_efs(np.array([float(source.EF)]), config.margin, rng)[0]
        records.append({"index": v, "FileName": sample_name(v), "Split": source.Split,
                        "EF": float(target), "seed": sample_seed(run_seed, v),
                        "Source": str(source.FileName), "SourceEF": float(source.EF),
                        "Path": source.Path})  # fmt: skip
    return pd.DataFrame.from_records(records)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """A generated clip ``(1, T, H, W)`` in [0, 1] as grey ``uint8 (T, H, W)``."""
    return (video[0].clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


class CounterfactualGenerator:
    """The counterfactual of each plan row's clip, its noise seeded by the row's seed."""

    block = 1

    def __init__(self, generator, frames: int, size: int, device, root: str | Path = "."):
        self.generator, self.frames, self.size = generator, frames, size
        self.device, self.root = torch.device(device), Path(root)

    def clip(self, path: str | Path, item: str) -> torch.Tensor:
        return torch.from_numpy(load_clip(self.root / path, self.frames, self.size, item))

    @torch.no_grad()
    def counterfactual(self, clip: torch.Tensor, ef: float, seed: int) -> torch.Tensor:
        noise = torch.Generator(device=self.device).manual_seed(int(seed))
        ef_star = torch.tensor([ef / 100.0], dtype=torch.float32, device=self.device)
        return self.generator.counterfactual(clip[None].to(self.device), ef_star, noise)[0]

    def generate(self, rows: pd.DataFrame) -> list[Sample]:
        samples = []
        for row in rows.itertuples(index=False):
            video = self.counterfactual(self.clip(row.Path, row.Source), row.EF, row.seed)
            samples.append(Sample(video=to_uint8(video)))
        return samples


def _model_clip(model_dir: Path) -> dict:
    """The clip settings the generator was trained on (``train.json``: frames, size, and the
    clips' frame rate, 32 fps where an older export does not record it)."""
    record = json.loads((Path(model_dir) / "train.json").read_text())
    train = record["train"]
    return {"frames": int(train["frames"]), "size": int(train["size"]),
            "fps": float(record.get("fps", 32.0))}  # fmt: skip


def sample_dartagnan_shard(
    model_dir: str | Path,
    metainfo: str | Path,
    out_dir: str | Path,
    config: CounterfactualConfig | dict,
    run_seed: int,
    shard: int,
    n_shards: int,
    device: str = "cpu",
    root: str | Path = ".",
) -> pd.DataFrame:
    """Plan the counterfactual dataset and write one shard of it (:data:`DARTAGNAN_SCHEMA`)."""
    from echogen.workflow import provenance

    if not isinstance(config, CounterfactualConfig):
        config = CounterfactualConfig.from_settings(config)
    model_dir = Path(model_dir)
    clip = _model_clip(model_dir)
    fps = float(read_metainfo(metainfo, config.splits[0])["FPS"].iloc[0])
    generator = CounterfactualGenerator(load_generator(model_dir, device), clip["frames"],
                                        clip["size"], device, root)  # fmt: skip
    plan = plan_counterfactuals(source_clips(metainfo, config), config, run_seed)
    record = provenance(config.to_dict(), device=str(device), model_dir=str(model_dir),
                        metainfo=str(metainfo), seed=int(run_seed), video=clip,
                        conditioning={"frames": "real", "private": False,
                                      "source": str(metainfo)})  # fmt: skip
    return write_shard(plan, generator, out_dir, shard=shard, n_shards=n_shards,
                       schema=DARTAGNAN_SCHEMA, fps=fps, quality=config.quality,
                       record=record)  # fmt: skip


def score_counterfactuals(
    samples_dir: str | Path,
    metainfo: str | Path,
    regressor_predictions: str | Path,
    expert_predictions: str | Path,
    lpips: LPIPS | None = None,
    size: int | None = None,
    root: str | Path = ".",
) -> pd.DataFrame:
    """Every counterfactual against its factual clip: requested EF, the independent
    regressor's and the expert's EF of the sample, SSIM and LPIPS at ``size`` px (the
    sample read back from its MP4, the factual clip from its ``.npy``; column ``size``).

    ``size=None`` compares at the generator's own size (the samples' frame size), as the
    reference scores its 112-px outputs at 112. A larger ``size`` upsamples the sample and
    compares it with the clip's full detail, which a smaller generator cannot make: on the
    phantom, a 32-px copy of the clip itself scores SSIM 0.71 at 112 px (docs/benchmarks.md).
    """
    samples_dir = Path(samples_dir)
    filelist = read_filelist(samples_dir / "FileList.csv", DARTAGNAN_SCHEMA)
    regressed = read_predictions(regressor_predictions, filelist["FileName"])
    expert = read_predictions(expert_predictions, filelist["FileName"])
    clips = pd.concat([read_metainfo(metainfo, s) for s in filelist["Split"].unique()])
    paths = dict(zip(clips["FileName"], clips["Path"], strict=True))
    unknown = sorted(set(filelist["Source"]) - set(paths))
    if unknown:
        raise DataError(samples_dir / "FileList.csv", f"sources {unknown[:3]} are not in "
                        f"{metainfo}", "score with the metainfo the samples came from")  # fmt: skip
    record = json.loads((samples_dir / PROVENANCE).read_text())
    frames = int(record["video"]["frames"])
    size = int(record["video"]["size"]) if size is None else int(size)
    least = max(SSIM_MIN_SIZE, LPIPS_MIN_SIZE[lpips.net] if lpips is not None else 0)
    if size < least:
        metrics = "SSIM and LPIPS" if lpips is not None else "SSIM"
        raise ValueError(f"{metrics} need frames of at least {least} px, the samples of "
                         f"{samples_dir} would be scored at {size} px: set "
                         f"dartagnan.samples.score_size to {least} or more")  # fmt: skip
    rows = []
    for sample in tqdm(filelist.itertuples(index=False), total=len(filelist), desc="score"):
        real = load_clip(Path(root) / paths[sample.Source], frames, size, sample.Source)[0]
        real = (real * 255.0).round().astype(np.uint8)
        fake = resize_frames(read_video(samples_dir / "Videos" / f"{sample.FileName}.mp4"), size)
        paired = paired_video_metrics(real, fake, lpips)
        rows.append({"FileName": sample.FileName, "Source": sample.Source, "Split": sample.Split,
                     "EF": float(sample.EF), "SourceEF": float(sample.SourceEF),
                     "EF_regressor": float(regressed[sample.FileName]),
                     "EF_expert": float(expert[sample.FileName]), "ssim": paired["ssim"],
                     "lpips": paired["lpips"], "size": size})  # fmt: skip
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def dartagnan_report(scores: pd.DataFrame) -> dict:
    """Per split and over all: the EF errors of the independent regressor and of the expert
    (regressed vs requested EF), the mean SSIM and LPIPS, the sizes they compared at, and the
    count."""
    if scores.empty:
        raise ValueError("no scores to report")
    if "size" not in scores:
        raise ValueError("the scores have no size column (written before score_size "
                         "existed): re-run rule score_dartagnan")  # fmt: skip
    report = {}
    for split, part in [("all", scores), *scores.groupby("Split", sort=True)]:
        lpips = part["lpips"].astype(float)
        report[split] = {
            "regressor": ef_errors(part["EF"], part["EF_regressor"]),
            "expert": ef_errors(part["EF"], part["EF_expert"]),
            "ssim": float(part["ssim"].mean()),
            "lpips": None if lpips.isna().any() else float(lpips.mean()),
            "size": sorted(int(v) for v in part["size"].unique()),
            "n": int(len(part)),
        }
    return report


def write_scores(scores: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.6g")


def write_dartagnan_table(
    models: dict[str, dict],
    txt_path: str | Path,
    json_path: str | Path,
    regressor: str,
    expert: str,
) -> dict:
    """``results/metrics/dartagnan.txt`` and ``.json``: a row per model and split (and all):
    EF MAE/RMSE/R² of the independent regressor ``regressor`` and of the expert ``expert``,
    SSIM and LPIPS to the factual clip, FID and FVD16 of the dataset (all splits).

    Args:
        models: ``{model: {"scores": DataFrame, "generation": record or None, "plumbing":
            bool}}``; plumbing marks tiny models or regressors (not paper numbers).
    """
    record = {"regressor": regressor, "expert": expert, "published": PUBLISHED, "models": {}}
    reports = {name: dartagnan_report(entry["scores"]) for name, entry in models.items()}
    sizes = "; ".join(f"{name} {'/'.join(map(str, report['all']['size']))} px"
                      for name, report in reports.items())  # fmt: skip
    head = (
        f"{'model':<12} {'split':<5} {'n':>4}  {'MAE':>6} {'RMSE':>6} {'R2':>6}  "
        f"{'MAE_x':>6} {'R2_x':>6}  {'SSIM':>6} {'LPIPS':>6}  {'FID':>7} {'FVD16':>7}"
    )
    lines = [
        "D'ARTAGNAN counterfactuals of real VAL/TEST clips (one seeded target EF per clip, "
        ">= margin from its own).",
        f"EF columns: regressed EF of the counterfactual vs the requested EF; MAE/RMSE/R2 by "
        f"the independent regressor {regressor!r}, MAE_x/R2_x by the expert {expert!r} the "
        f"generator was trained against. SSIM/LPIPS: to the factual clip, at {sizes}. "
        "FID/FVD16: the dataset against the real reference frames.",
        f"Published (MICCAI 2022): SSIM {PUBLISHED['ssim']}, R2 {PUBLISHED['r2']}.",
        "",
        head,
    ]

    def cell(value, width: int = 6, digits: int = 3) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for name, entry in models.items():
        report = reports[name]
        fid, fvd = fid_fvd16(entry.get("generation"))
        record["models"][name] = {**report, "fid": fid, "fvd16": fvd,
                                  "plumbing": bool(entry.get("plumbing"))}  # fmt: skip
        label = name + (" *" if entry.get("plumbing") else "")
        for split, row in report.items():
            reg, exp = row["regressor"], row["expert"]
            last = (f"  {cell(fid, 7, 2)} {cell(fvd, 7, 2)}" if split == "all"
                    else f"  {'':>7} {'':>7}")  # fmt: skip
            lines.append(
                f"{label:<12} {split:<5} {row['n']:>4}  {cell(reg['mae'], 6, 2)} "
                f"{cell(reg['rmse'], 6, 2)} {cell(reg['r2'])}  {cell(exp['mae'], 6, 2)} "
                f"{cell(exp['r2'])}  {cell(row['ssim'])} {cell(row['lpips'])}{last}"
            )
    if any(entry.get("plumbing") for entry in models.values()):
        lines += ["", "* tiny model or regressor: a plumbing check, not a paper number."]
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    write_json(json_path, record)
    return record


# ------------------------------------------------------------------------------ inference


def _item_clip(item: dict, position: int, clip: dict, metainfo: dict[str, str],
               root: Path) -> tuple[np.ndarray, str]:  # fmt: skip
    """The clip ``(1, T, S, S)`` of one inference item and how to name its input."""
    label = f"dartagnan.inference.items[{position}]"
    if "path" in item:
        path = Path(item["path"])
        if path.suffix.lower() not in (".avi", ".mp4"):
            raise DataError(path, f"{label} is not an .avi or .mp4 video",
                            "convert it to .avi/.mp4 or name a dataset video")  # fmt: skip
        if not path.is_file():
            raise DataError(path, f"{label}: no such file", "fix the path")
        try:
            fps = probe_video(path).fps
            frames = read_video(path)
        except DataError as error:
            raise DataError(path, f"{label} is unreadable ({error.problem})",
                            "re-encode the video or drop the item") from error  # fmt: skip
        if fps <= 0:
            raise DataError(path, f"{label} has no frame rate in its header",
                            "re-encode it with a frame rate")  # fmt: skip
        frames = resample_frames(frames, fps, clip["fps"])
        start = int(round(float(item.get("start", 0.0)) * clip["fps"]))
        if len(frames) - start < clip["frames"]:
            raise DataError(
                path,
                f"{label} has {len(frames) - start} frames at {clip['fps']:g} fps from "
                f"{item.get('start', 0)} s, the model needs {clip['frames']}",
                "use a longer video or an earlier start",
            )
        video = resize_frames(frames[start : start + clip["frames"]], clip["size"])
        return (video[None] / 255.0).astype(np.float32), str(path)
    dataset, name = item.get("dataset"), item.get("video")
    if dataset not in metainfo or not name:
        raise DataError(label, f"names neither a path nor a video of a D'ARTAGNAN dataset "
                        f"({sorted(metainfo)})", "give {path: ...} or {dataset: ..., video: "
                        "FileName}")  # fmt: skip
    rows = pd.read_csv(metainfo[dataset], dtype={"FileName": str}).set_index("FileName")
    if name not in rows.index:
        raise DataError(metainfo[dataset], f"{label}: no clip of video {name!r}",
                        "check the FileName (without extension) or its quarantine.csv")  # fmt: skip
    path = root / rows.loc[name, "Path"]
    return load_clip(path, clip["frames"], clip["size"], name), f"{dataset}:{name}"


def infer_counterfactuals(
    model_dir: str | Path,
    expert_dir: str | Path,
    items: list[dict],
    out_dir: str | Path,
    metainfo: dict[str, str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    quality: int = 95,
    root: str | Path = ".",
) -> pd.DataFrame:
    """The counterfactual of each ``{"path": file, "ef": EF}`` or ``{"dataset": d, "video":
    FileName, "ef": EF}`` item (``start``: seconds into a file), written atomically to
    ``out_dir``: ``Videos/<name>.mp4``, ``frames/<name>/``, ``FileList.csv``
    (:data:`INFERENCE_COLUMNS`) and ``inference.json``.

    Every item is checked before anything is generated; a bad one stops the run with an error
    naming it and the fix.
    """
    from echogen.workflow import provenance

    if not items:
        raise DataError("dartagnan.inference.items", "no (video, EF) pair to generate",
                        "list items or deactivate dartagnan.inference")  # fmt: skip
    model_dir, root = Path(model_dir), Path(root)
    clip = _model_clip(model_dir)
    clips = []
    for position, item in enumerate(items):
        ef = item.get("ef")
        if not isinstance(ef, int | float) or not 0 <= float(ef) <= 100 or ef != ef:
            raise DataError(f"dartagnan.inference.items[{position}]", f"target EF {ef!r} is "
                            "not a number in 0..100", "give an EF in percent")  # fmt: skip
        clips.append(_item_clip(item, position, clip, metainfo or {}, root))
    generator = CounterfactualGenerator(load_generator(model_dir, device), clip["frames"],
                                        clip["size"], device, root)  # fmt: skip
    expert, spec = load_expert(expert_dir, device)
    rows = []
    with atomic_dir(out_dir) as tmp:
        for i, (item, (video, source)) in enumerate(zip(items, clips, strict=True)):
            name, sample = sample_name(i), sample_seed(seed, i)
            x = torch.from_numpy(video)
            out = generator.counterfactual(x, float(item["ef"]), sample)
            with torch.no_grad():
                ef_out = expert(expert_input(out[None], spec)).item()
                ef_in = expert(expert_input(x[None].to(device), spec)).item()
            frames = to_uint8(out)
            write_video(tmp / "Videos" / f"{name}.mp4", frames, clip["fps"])
            write_frames(frames, tmp / "frames" / name, quality)
            rows.append({"FileName": name, "Input": source, "EF": float(item["ef"]),
                         "EF_expert": ef_out, "EF_expert_input": ef_in, "FPS": clip["fps"],
                         "NumberOfFrames": len(frames), "seed": sample})  # fmt: skip
            log.info("%s: %s at EF %.1f (expert: input %.1f, output %.1f)", name, source,
                     float(item["ef"]), ef_in, ef_out)  # fmt: skip
        table = pd.DataFrame(rows, columns=INFERENCE_COLUMNS)
        table.to_csv(tmp / "FileList.csv", index=False, float_format="%.6g")
        record = provenance({"items": items}, device=str(device), model_dir=str(model_dir),
                            expert_dir=str(expert_dir), seed=int(seed))  # fmt: skip
        write_json(tmp / "inference.json", record)
    return table
