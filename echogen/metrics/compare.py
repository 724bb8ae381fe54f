"""One comparison of two frame folders: generation metrics plus paired SSIM / LPIPS.

This is what the ``compute_generation_metrics`` rule runs. Generation metrics (FID, IS, FVD,
StyleGAN-V definitions) come from :func:`echogen.metrics.generation.evaluate_generation`;
paired metrics match videos by folder name (EchoDiffusion compares each generated video with
the real video it was conditioned on) and compare their first ``min(T_real, T_fake)`` frames.
The record says, per network, whether its weights are verified (the file the config pins, or
the published one), so the table can label plumbing checks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.metrics.frame_folders import list_frames, list_videos, load_frames
from echogen.metrics.generation import evaluate_generation, metric_record
from echogen.metrics.paired import LPIPS, aggregate, paired_video_metrics
from echogen.numerics import tf32_off

log = logging.getLogger(__name__)

PAIRED = ("ssim", "lpips")


def paired_folder_metrics(
    real_dir: str | Path,
    fake_dir: str | Path,
    with_lpips: bool,
    lpips_net: str = "vgg",
    lpips_weights: str | None = None,
    device: str = "cpu",
) -> dict:
    """SSIM (and LPIPS) per video pair matched by name, aggregated over pairs.

    Raises:
        DataError: no fake video has a real counterpart of the same name, or a pair differs
            in frame size.
    """
    real = {p.name: p for p in list_videos(real_dir)}
    fake = {p.name: p for p in list_videos(fake_dir)}
    names = sorted(set(real) & set(fake))
    if not names:
        raise DataError(
            fake_dir,
            f"no video folder has a namesake in {real_dir}",
            "paired metrics (ssim, lpips) compare videos of the same name; name each generated "
            "video after the real video it was conditioned on, or drop ssim/lpips",
        )
    lpips = LPIPS(lpips_net, lpips_weights, device) if with_lpips else None
    records, frames = [], []
    for name in tqdm(names, desc="paired metrics", leave=False):
        real_paths, fake_paths = list_frames(real[name]), list_frames(fake[name])
        n = min(len(real_paths), len(fake_paths))
        real_video = load_frames(real_paths[:n])
        fake_video = load_frames(fake_paths[:n])
        if real_video.shape != fake_video.shape:
            raise DataError(
                fake[name],
                f"frame size {fake_video.shape[1:3]} differs from the real video's "
                f"{real_video.shape[1:3]}",
                "generate at the real resolution (or resize one set) before paired metrics",
            )
        records.append(paired_video_metrics(real_video, fake_video, lpips))
        frames.append(n)
    summary = aggregate(records)
    detail = {
        "n_pairs": len(names),
        "unmatched_real": len(real) - len(names),
        "unmatched_fake": len(fake) - len(names),
        "frames_per_pair": [min(frames), max(frames)],
        "window_policy": "videos matched by name; first min(T_real, T_fake) frames of each",
    }
    network = None
    if lpips is not None:
        network = {
            "path": lpips_weights or "random trunk",
            "sha256": lpips.trunk_sha256,
            "published": lpips.is_published,
        }
    return {"summary": summary, "detail": detail, "lpips_network": network}


def compare_frame_folders(
    real_dir: str | Path,
    fake_dir: str | Path,
    metrics: list[str],
    detectors: dict[str, dict],
    cache_dir: str | None,
    seed: int,
    batch_size: int = 32,
    device: str = "cpu",
    lpips_net: str = "vgg",
    lpips_weights: str | None = None,
    pad_to: int | None = None,
) -> dict:
    """Every requested metric of ``fake_dir`` against ``real_dir`` as one JSON-able record.

    Args:
        metrics: StyleGAN-V names (``fid50k_full``, ``is50k``, ``fvd2048_16f``, ...) and
            ``ssim`` / ``lpips``.
        detectors: ``{"inception": {"path", "sha256", "source"}, "i3d": {...}}``; ``source``
            ``tiny`` marks a random tiny detector.
        lpips_net: LPIPS trunk, "vgg" (EchoDiffusion) or "alex".
        lpips_weights: local torchvision ImageNet state dict of that trunk; None = random.
        pad_to: FID, IS and FVD see every frame centred on a black square of this side
            (EchoDiffusion: 112 -> 128); SSIM and LPIPS compare the frames as they are.

    Returns:
        The record of :func:`evaluate_generation` (``metrics``, ``details``, ``detectors``,
        ``seed``, ``real_dir``, ``fake_dir``, ``warnings``) with paired means/stds added and
        ``verified``: {network: bool} (a detector pinned in the config and matching, or the
        published file; LPIPS: torchvision's published trunk). Computed with TF32 off.
    """
    with tf32_off():
        return _compare(
            real_dir, fake_dir, metrics, detectors, cache_dir, seed, batch_size, device,
            lpips_net, lpips_weights, pad_to,
        )  # fmt: skip


def _compare(
    real_dir, fake_dir, metrics, detectors, cache_dir, seed, batch_size, device, lpips_net,
    lpips_weights, pad_to=None,
) -> dict:  # fmt: skip
    generation = [m for m in metrics if m not in PAIRED]
    paired = [m for m in metrics if m in PAIRED]
    if generation:
        record = evaluate_generation(
            real_dir, fake_dir, generation, detectors, cache_dir, seed, batch_size, device,
            pad_to,
        )  # fmt: skip
    else:
        record = metric_record(real_dir, fake_dir, seed)
    record.setdefault("verified", {})
    record["tf32"] = False
    if paired:
        result = paired_folder_metrics(
            real_dir, fake_dir, "lpips" in paired, lpips_net, lpips_weights, device
        )
        for name in paired:
            record["metrics"][name] = result["summary"][name]["mean"]
            record["metrics"][f"{name}_std"] = result["summary"][name]["std"]
            record["details"][name] = result["detail"]
        if result["lpips_network"] is not None:
            network = result["lpips_network"]
            record["detectors"][f"lpips_{lpips_net}"] = {
                "path": network["path"],
                "sha256": network["sha256"],
            }
            record["verified"][f"lpips_{lpips_net}"] = network["published"]
    return record
