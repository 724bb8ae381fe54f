"""EchoDiffusion's table for a cascade: EF control and likeness to the real clip, as the mean
over noise draws and as the best of them.

EchoDiffusion (``diffusion/evaluate/generate_score_file_chunk.py`` and ``compute_metrics.py``
of HReynaud/EchoDiffusion, ``/work/shared/PAPERS.md`` §3) scores every generated video with
an EF regressor (R², MAE, RMSE of regressed vs requested EF), SSIM (data range 1) and LPIPS
(VGG, inputs in [-1, 1]) against the real clip it was conditioned on, and reports the mean
over all draws and the best of the draws of each video. Its best of N picks, per video, the
draw whose regressed EF is closest to the requested one for the EF metrics, and the best
SSIM and the best LPIPS each on its own.

echogen reports three rows per task, each labelled:

- ``mean over N``: every draw (EchoDiffusion's "GT/GEN" columns);
- ``best of N (EF)``: the draw whose regressed EF is closest to the requested one, every
  metric of that one draw (the EF feedback loop: the video a user would keep);
- ``best of N (per metric)``: EchoDiffusion's ``compute_metrics.py``: the EF metrics of the
  EF-closest draw, the highest SSIM and the lowest LPIPS of any draw, each on its own.

The real clip of a sample (its draw's window, whose frame conditioned it) is re-derived
exactly as the sampler drew it (the run seed and the settings in the dataset's
``sampling.json``), so nothing but the dataset folder, the manifest and the regressor's
predictions is read. ``EF_ref`` is the regressor's EF of the whole real video (its own clip
settings, from ``predict_ef``), where the reference regresses the compared 2-s clip. Unlike
the reference, the generated video is read back from its MP4 (what every other metric
reads), so SSIM/LPIPS include the codec's loss; both videos are compared at 112 px
(:data:`SCORE_SIZE`), the reference's native size.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.frames import write_frames
from echogen.data.io import atomic_dir, atomic_path, write_json
from echogen.data.manifest import read_manifest
from echogen.data.video import read_video, resize_frames
from echogen.metrics.paired import LPIPS, paired_video_metrics
from echogen.pipelines.cascade_sampling import (
    CASCADE_SCHEMA,
    CascadeSampleConfig,
    source_clip,
    source_clips,
    source_rows,
)
from echogen.pipelines.synthetic import PROVENANCE, read_filelist

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["FileName", "Source", "Resample", "EF", "SourceEF", "EF_gen", "EF_ref", "ssim",
                 "lpips"]  # fmt: skip
AGGREGATES = ("mean", "best_ef", "best_per_metric")
# EchoDiffusion compares at the real clip's size, 112 px, interpolating a smaller generated
# video up to it; LPIPS's trunks also need frames of this order (16 px pools to nothing).
SCORE_SIZE = 112
AGGREGATE_LABELS = {
    "mean": "mean over {n}",
    "best_ef": "best of {n} (EF)",
    "best_per_metric": "best of {n} (per metric)",
}


def read_predictions(path: str | Path, names=None, column: str = "EF_pred_all") -> pd.Series:
    """A ``predict_ef`` table's ``column`` by FileName, every name of ``names`` in it.

    Raises:
        DataError: the file is missing, is not a prediction table, or lacks a name (named).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "EF predictions are missing", "run the predict_ef rule for them")
    table = pd.read_csv(path, dtype={"FileName": str})
    if column not in table.columns or "FileName" not in table.columns:
        raise DataError(path, f"not an EF prediction table (no FileName or {column})",
                        "re-run predict_ef")  # fmt: skip
    predictions = table.set_index("FileName")[column].astype(float)
    missing = sorted(set(names if names is not None else []) - set(predictions.index))
    if missing:
        raise DataError(path, f"no prediction for {missing[:3]}", "re-run predict_ef")
    return predictions


def score_samples(
    samples_dir: str | Path,
    manifest: str | Path,
    generated_predictions: str | Path,
    real_predictions: str | Path,
    lpips: LPIPS | None = None,
    size: int = SCORE_SIZE,
    root: str | Path = ".",
) -> pd.DataFrame:
    """Every sample of a cascade dataset against its real clip: requested EF, regressed EF of
    the sample (``EF_gen``) and of its real video (``EF_ref``), SSIM and LPIPS.

    Args:
        samples_dir: ``results/samples/cascade_<model>_<mode>/``.
        manifest: the real dataset's manifest the samples were conditioned on.
        generated_predictions: the regressor's predictions on the samples (``predict_ef``).
        real_predictions: the same regressor's predictions on the real dataset.
        lpips: an LPIPS scorer, or None to leave LPIPS out.
        size: frame size both videos are compared at: the real clip is read at this size,
            the generated video resized to it (bilinear) when the cascade made another.
        root: folder that the manifest's ``Path`` column is relative to.

    Raises:
        DataError: a file is missing, or a sample or source video has no prediction (named).
    """
    samples_dir = Path(samples_dir)
    filelist = read_filelist(samples_dir / "FileList.csv", CASCADE_SCHEMA)
    generated = read_predictions(generated_predictions, filelist["FileName"])
    real = read_predictions(real_predictions, filelist["Source"])
    rows = []
    for sample, real_clip, fake in paired_clips(samples_dir, manifest, size, root, desc="score"):
        paired = paired_video_metrics(real_clip, fake, lpips)
        rows.append(
            {
                "FileName": sample.FileName,
                "Source": sample.Source,
                "Resample": int(sample.Resample),
                "EF": float(sample.EF),
                "SourceEF": float(sample.SourceEF),
                "EF_gen": float(generated[sample.FileName]),
                "EF_ref": float(real[sample.Source]),
                "ssim": paired["ssim"],
                "lpips": paired["lpips"],
            }
        )
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def paired_clips(
    samples_dir: str | Path,
    manifest: str | Path,
    size: int = SCORE_SIZE,
    root: str | Path = ".",
    first_draw: bool = False,
    desc: str = "pairs",
) -> Iterator[tuple]:
    """``(FileList row, real clip, generated video)`` of every sample (or only each video's
    first draw): the real clip the sample was conditioned on, re-derived as the sampler drew
    it, and the sample read back from its MP4, both grey ``uint8 (T, size, size)``.

    Raises:
        DataError: a sample's source is not a video of the sampled split of ``manifest``.
    """
    samples_dir = Path(samples_dir)
    filelist = read_filelist(samples_dir / "FileList.csv", CASCADE_SCHEMA)
    if first_draw:
        filelist = filelist[filelist["Resample"] == 0].reset_index(drop=True)
    record = json.loads((samples_dir / PROVENANCE).read_text())
    config = CascadeSampleConfig(**record["config"])
    sources = source_rows(read_manifest(manifest), config)
    position = {name: v for v, name in enumerate(sources["FileName"])}
    unknown = sorted(set(filelist["Source"]) - set(position))
    if unknown:
        raise DataError(samples_dir / "FileList.csv", f"sources {unknown[:3]} are not "
                        f"{config.split} videos of {manifest}", "score with the manifest the "
                        "samples were conditioned on")  # fmt: skip
    # The window and frame draws do not depend on the size: the sampler's clip, at `size`.
    clips = source_clips(sources, {**record["video"], "size": size}, record["seed"], root)
    for sample in tqdm(filelist.itertuples(index=False), total=len(filelist), desc=desc):
        clip = source_clip(clips, position[sample.Source], sample.Resample)[0]
        real_clip = (clip.mean(dim=0).clamp(0, 1) * 255.0).round().byte().numpy()  # grey
        fake = resize_frames(read_video(samples_dir / "Videos" / f"{sample.FileName}.mp4"), size)
        yield sample, real_clip, fake


def write_paired_frames(
    samples_dir: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    size: int = SCORE_SIZE,
    quality: int = 95,
    root: str | Path = ".",
) -> int:
    """EchoDiffusion's FID/FVD frame folders (``split_videos_into_real_fake.sh``): each
    video's first draw and the real clip it was conditioned on, at ``size`` px, as
    ``out_dir/{real,fake}/<sample>/<frame>.jpg`` (zero-padded frame names, so the frame
    order survives a string sort). Written atomically; returns the number of pairs."""
    with atomic_dir(out_dir) as tmp:
        n = 0
        for sample, real_clip, fake in paired_clips(
            samples_dir, manifest, size, root, first_draw=True, desc="paired frames"
        ):
            write_frames(real_clip, tmp / "real" / sample.FileName, quality)
            write_frames(fake, tmp / "fake" / sample.FileName, quality)
            n += 1
    return n


def ef_errors(requested: np.ndarray, regressed: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (``1 - SS_res / SS_tot`` about the requested EFs' mean, as
    scikit-learn's ``r2_score(requested, regressed)``) of regressed vs requested EF."""
    requested, regressed = np.asarray(requested, float), np.asarray(regressed, float)
    error = regressed - requested
    total = float(((requested - requested.mean()) ** 2).sum())
    r2 = 1.0 - float((error**2).sum()) / total if total > 0 else float("nan")
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error**2).mean())),
            "r2": r2}  # fmt: skip


def _row(scores: pd.DataFrame, ssim: np.ndarray, lpips: np.ndarray | None) -> dict:
    row = ef_errors(scores["EF"], scores["EF_gen"])
    row["ssim"] = float(np.mean(ssim))
    row["lpips"] = None if lpips is None else float(np.mean(lpips))
    row["n"] = len(scores)
    return row


def cascade_report(scores: pd.DataFrame) -> dict:
    """The three aggregates of :data:`AGGREGATES` (MAE, RMSE, R², SSIM, LPIPS, n), the
    regressor's errors on the real videos (``real``: regressed EF of the source vs the
    requested EF; for factual samples the regressor's own error), and the draw counts.

    Raises:
        ValueError: no scores, or videos with different numbers of draws.
    """
    if scores.empty:
        raise ValueError("no scores to report")
    draws = scores.groupby("Source")["Resample"].count()
    if draws.nunique() != 1:
        raise ValueError(f"every video needs the same number of draws, got {sorted(set(draws))}")
    has_lpips = scores["lpips"].notna().all()
    lpips = scores["lpips"].to_numpy(float) if has_lpips else None
    report = {"mean": _row(scores, scores["ssim"].to_numpy(float), lpips)}
    order = scores.assign(_gap=(scores["EF_gen"] - scores["EF"]).abs())
    order = order.sort_values(["Source", "_gap", "Resample"], kind="stable")
    best = order.groupby("Source", sort=True).head(1).sort_values("Source")
    report["best_ef"] = _row(best, best["ssim"].to_numpy(float),
                             best["lpips"].to_numpy(float) if has_lpips else None)  # fmt: skip
    by_video = scores.groupby("Source", sort=True)
    report["best_per_metric"] = _row(
        best,
        by_video["ssim"].max().to_numpy(float),
        by_video["lpips"].min().to_numpy(float) if has_lpips else None,
    )
    real = best  # one row per video: its requested EF and its real video's regressed EF
    report["real"] = ef_errors(real["EF"], real["EF_ref"])
    report["videos"], report["draws"] = int(len(draws)), int(draws.iloc[0])
    return report


def write_scores(scores: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.6g")


def write_cascade_table(
    model: str,
    tasks: dict[str, dict],
    txt_path: str | Path,
    json_path: str | Path,
    plumbing: bool,
    regressor: str,
) -> dict:
    """``results/metrics/cascade_<model>.txt`` and ``.json``: a row per task and aggregate in
    EchoDiffusion's columns (R², MAE, RMSE, SSIM, LPIPS, FID, FVD and seconds per video).

    Args:
        model: the cascade's name.
        tasks: mode -> {"report": :func:`cascade_report`, "generation": the generation-metric
            record (``metrics``, ``details``, ``warnings``, ``verified``) of the first draws
            against their paired real clips, padded as the paper; "native": the same unpadded
            (optional); "sampling": the dataset's ``sampling.json``}.
        plumbing: tiny models or unverified detectors: the table says so first.
        regressor: the EF regressor's run name.
    """
    lines = []
    if plumbing:
        lines.append(
            "PLUMBING CHECK: tiny models, phantom data or unverified detectors; these numbers "
            "only show that the pipeline runs and are not comparable to EchoDiffusion's"
        )
    lines.append(f"cascade {model}: EF regressed by regressor {regressor}; SSIM and LPIPS "
                 "against the real clip of the conditioning frame")  # fmt: skip
    deviations = list(dict.fromkeys(
        note for task in tasks.values() for note in sampling_deviations(task["sampling"])
    ))  # fmt: skip
    if deviations:
        lines.append("NOT AS PUBLISHED: " + "; ".join(deviations))
    header = f"{'task':<15}{'aggregate':<26}{'R2':>8}{'MAE':>8}{'RMSE':>8}{'SSIM':>8}"
    header += f"{'LPIPS':>8}{'FID':>9}{'FVD16':>9}{'FID_112':>9}{'FVD_112':>9}{'s/video':>9}"
    lines.append(header)
    record = {"model": model, "regressor": regressor, "plumbing": plumbing,
              "deviations": deviations, "tasks": {}}  # fmt: skip
    for mode, task in tasks.items():
        report, generation = task["report"], task["generation"]
        fid, fvd = fid_fvd16(generation)
        fid_native, fvd_native = fid_fvd16(task.get("native", {}))
        pad_to = next((d["pad_to"] for d in generation.get("details", {}).values()
                       if d.get("pad_to")), None)  # fmt: skip
        timing = task["sampling"].get("timing", {})
        seconds = timing["seconds"] / timing["videos"] if timing.get("videos") else None
        for aggregate in AGGREGATES:
            row = report[aggregate]
            label = AGGREGATE_LABELS[aggregate].format(n=report["draws"])
            cells = f"{mode:<15}{label:<26}{row['r2']:>8.3f}{row['mae']:>8.2f}{row['rmse']:>8.2f}"
            cells += f"{row['ssim']:>8.3f}" + _cell(row["lpips"], 8, 3)
            cells += _cell(fid, 9, 2) + _cell(fvd, 9, 1)
            cells += _cell(fid_native, 9, 2) + _cell(fvd_native, 9, 1) + _cell(seconds, 9, 2)
            lines.append(cells)
        real = report["real"]
        lines.append(f"{mode:<15}{'real videos (whole video)':<26}{real['r2']:>8.3f}"
                     f"{real['mae']:>8.2f}{real['rmse']:>8.2f}")  # fmt: skip
        record["tasks"][mode] = {
            **report,
            "fid": fid,
            "fvd16": fvd,
            "pad_to": pad_to,
            "fid_112": fid_native,
            "fvd16_112": fvd_native,
            "seconds_per_video": seconds,
            "generation_warnings": generation.get("warnings", []),
        }
    lines.append("FID and FVD16: each video's first draw against the real clip it was "
                 "conditioned on, both at 112 px centred on a black square (EchoDiffusion: "
                 "128; results/metrics/cascade_<model>_<mode>_paired_padded.txt); _112: the "
                 "same unpadded (..._paired.txt); every draw against the reference set: "
                 "results/metrics/cascade_<model>_<mode>.txt. s/video = sampling seconds per "
                 "video, model loading excluded")  # fmt: skip
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    write_json(json_path, record)
    return record


def sampling_deviations(sampling: dict) -> list[str]:
    """What a cascade dataset's sampling record (``sampling.json``) does otherwise than
    EchoDiffusion, one phrase each: a conditioning frame other than a random frame of the
    clip (``cond_frame``), a guidance scale other than 5."""
    notes = []
    cond_frame = sampling.get("video", {}).get("cond_frame", "window")
    if cond_frame != "window":
        notes.append(f"conditioned on the {cond_frame} frame (cond_frame: {cond_frame}; "
                     "EchoDiffusion: a random frame of the clip)")  # fmt: skip
    scale = float(sampling.get("config", {}).get("cond_scale", 5.0))
    if not math.isclose(scale, 5.0):
        notes.append(f"guidance scale {scale:g} (cond_scale; EchoDiffusion: 5)")
    return notes


def fid_fvd16(record: dict | None) -> tuple[float | None, float | None]:
    """A generation-metric record's FID and 16-frame FVD (None where absent)."""
    metrics = (record or {}).get("metrics", {})
    fid = next((v for k, v in metrics.items() if k.startswith("fid")), None)
    fvd = next((v for k, v in metrics.items() if k.startswith("fvd") and k.endswith("_16f")),
               None)  # fmt: skip
    return fid, fvd


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"
