"""StyleGAN-V's generation metrics (FID, IS, FVD) between a real and a generated frame set.

Both sets use the layout of :mod:`echogen.metrics.frame_folders`: sorted video folders of
numbered frames. Metric names follow StyleGAN-V (``calc_metrics_for_dataset.py``):

- ``fid<K>k_full``: Inception pool features; real = every frame of every video, fake = the
  first ``K*1000`` frames (videos sorted, frames in numeric order).
- ``is<K>k``: Inception class probabilities (no output bias) of the first ``K*1000`` fake
  frames in 10 contiguous splits; mean and std of ``exp(KL(p(y|x) || p(y)))`` over splits.
- ``kid<K>k_full``: StyleGAN2-ADA's kernel inception distance on the same items as
  ``fid<K>k_full`` (100 subsets of at most 1000 items, seeded by the metric seed).
- ``fvd<N>_<F>f``: I3D logits of ``F``-frame clips; real = the first ``N`` videos with at
  least ``F`` frames, one random window each (seeded by the metric seed and the video's index
  in the sorted folder); fake = the first ``N`` such videos, their first ``F`` frames. Shorter
  videos are dropped and counted.

Unlike StyleGAN-V there is no per-resolution batch table, frames are ordered numerically
rather than as strings, and cached real statistics are keyed by file contents, never by
folder name. Every record states the item counts, window policy and resolutions it used.
As StyleGAN-V, metrics are computed with TF32 off (:func:`echogen.numerics.tf32_off`).
Where StyleGAN-V returns NaN because a set has fewer items than the metric's name says
(``fid50k_full`` on 10k fake frames), the value is reported over the items there are, with
a warning in the record and the table: it is then not a number comparable to the name.

A detector file is *verified* when its SHA-256 equals the one pinned in the config or the
published file's (:data:`~echogen.metrics.detectors.PUBLISHED_SHA256`, where known); a table
any of whose networks is not verified starts with a PLUMBING CHECK line naming them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.special
import torch
from einops import rearrange
from PIL import Image
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.io import atomic_path, write_json
from echogen.metrics.detectors import PUBLISHED_SHA256, load_detector, sha256_file
from echogen.metrics.frame_folders import content_hash, list_frames, list_videos, load_frames
from echogen.metrics.frechet import FeatureStats, frechet_distance, kernel_inception_distance
from echogen.numerics import tf32_off

log = logging.getLogger(__name__)

METRICS = ("fid50k_full", "is50k", "fvd2048_16f", "fvd2048_128f")
METRIC_FORMS = "fid<K>k_full, kid<K>k_full, is<K>k, fvd<N>_<F>f (e.g. " + ", ".join(METRICS) + ")"
IS_SPLITS = 10
DETECTOR_OF = {"fid": "inception", "kid": "inception", "is": "inception", "fvd": "i3d"}
# Keyword arguments StyleGAN-V passes to the published detectors for each metric family.
DETECTOR_KWARGS = {
    "fid": {"return_features": True},
    "kid": {"return_features": True},
    "is": {"no_output_bias": True},
    "fvd": {"rescale": True, "resize": True, "return_features": True},
}
_PATTERNS = {
    "fid": re.compile(r"fid([1-9]\d*)k_full"),
    "kid": re.compile(r"kid([1-9]\d*)k_full"),
    "is": re.compile(r"is([1-9]\d*)k"),
    "fvd": re.compile(r"fvd([1-9]\d*)_([1-9]\d*)f"),
}


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name.

    Args:
        name: the name as given, e.g. ``fvd2048_16f``.
        family: ``"fid"``, ``"kid"``, ``"is"`` or ``"fvd"``.
        max_items: frames (fid, kid, is) or videos (fvd) taken at most from the generated set.
        frames: clip length in frames (fvd only).
    """

    name: str
    family: str
    max_items: int
    frames: int | None = None


def parse_metric(name: str) -> MetricSpec:
    """Parse ``fid<K>k_full``, ``is<K>k`` or ``fvd<N>_<F>f``; anything else is a ValueError."""
    for family, pattern in _PATTERNS.items():
        match = pattern.fullmatch(name)
        if match is None:
            continue
        if family == "fvd":
            return MetricSpec(name, family, int(match[1]), int(match[2]))
        return MetricSpec(name, family, int(match[1]) * 1000)
    raise ValueError(f"unknown metric {name!r}; valid forms: {METRIC_FORMS}")


@dataclass(frozen=True)
class _FrameSet:
    """A scanned frame set: its root and each sorted video's frames in numeric order."""

    root: Path
    frames: list[list[Path]]

    @classmethod
    def scan(cls, root: str | Path) -> _FrameSet:
        return cls(Path(root), [list_frames(video) for video in list_videos(root)])

    def first_frames(self, n: int) -> list[Path]:
        """The first ``n`` frames in sorted video order, frames in numeric order."""
        out: list[Path] = []
        for frames in self.frames:
            out.extend(frames[: n - len(out)])
            if len(out) == n:
                break
        return out

    def windows(self, n_videos: int, frames: int, seed: int | None) -> tuple[list[list[Path]], int]:
        """``frames``-frame windows of the first ``n_videos`` long-enough videos, and the number
        of videos in the whole set that are too short.

        ``seed=None`` takes each video's first frames; otherwise the start is drawn uniformly
        from ``default_rng([seed, video index])``, so a video's window does not depend on which
        other videos are in the set.
        """
        windows, dropped = [], 0
        for index, video_frames in enumerate(self.frames):
            if len(video_frames) < frames:
                dropped += 1
            elif len(windows) < n_videos:
                start = 0
                if seed is not None:
                    rng = np.random.default_rng([seed, index])
                    start = int(rng.integers(0, len(video_frames) - frames + 1))
                windows.append(video_frames[start : start + frames])
        if not windows:
            raise DataError(
                self.root,
                f"no video has at least {frames} frames",
                "use longer videos, or an fvd metric with fewer frames",
            )
        return windows, dropped


def _resolution(path: Path) -> list[int]:
    with Image.open(path) as image:
        width, height = image.size
    return [height, width]


def pad_frames(frames: np.ndarray, size: int, where: Path | str = "frames") -> np.ndarray:
    """Frames ``(N, H, W, C)`` centred on a black ``size x size`` canvas, as EchoDiffusion's
    ``convert -background black -gravity center -extent 128x128`` (8 pixels each side of a
    112-px frame). An odd margin puts the extra pixel after the frame; a test checks this
    against ImageMagick where it is installed (not on echogen's CI machine).

    Raises:
        DataError: a frame side larger than ``size``.
    """
    height, width = frames.shape[1:3]
    if height > size or width > size:
        raise DataError(
            where,
            f"frames of {height}x{width} do not fit a {size}x{size} canvas",
            "set pad_to to at least the frame size, or null for no padding",
        )
    top, left = (size - height) // 2, (size - width) // 2
    out = np.zeros((frames.shape[0], size, size, frames.shape[3]), dtype=frames.dtype)
    out[:, top : top + height, left : left + width] = frames
    return out


def _batches(
    items: list[list[Path]], per_batch: int, video: bool, pad_to: int | None = None
) -> Iterator[torch.Tensor]:
    """uint8 detector inputs, channels first as StyleGAN-V feeds them: ``[B, 3, H, W]`` of
    one-frame items, or ``[B, 3, F, H, W]`` clips when ``video``; centred on a black
    ``pad_to`` square when given (:func:`pad_frames`). Every batch must share the first
    batch's frame size."""
    size = None
    for i in range(0, len(items), per_batch):
        chunk = items[i : i + per_batch]
        frames = load_frames([path for item in chunk for path in item])  # (B*F, H, W, 3)
        size = size or frames.shape[1:3]
        if frames.shape[1:3] != size:
            raise DataError(
                chunk[0][0],
                f"frame size {frames.shape[1:3]} differs from {size} earlier in the set",
                "resize every frame of the set to one resolution",
            )
        if pad_to is not None:
            frames = pad_frames(frames, pad_to, chunk[0][0])
        frames = torch.from_numpy(frames)
        if video:
            frames = rearrange(frames, "(b t) h w c -> b c t h w", b=len(chunk))
        else:
            frames = rearrange(frames, "b h w c -> b c h w")
        yield frames.contiguous()


@torch.no_grad()
def _feature_stats(
    detector,
    items: list[list[Path]],
    per_batch: int,
    video: bool,
    kwargs: dict,
    device: str,
    desc: str,
    pad_to: int | None = None,
    keep_features: bool = False,
) -> FeatureStats:
    stats = FeatureStats(keep_features=keep_features)
    total = -(-len(items) // per_batch)
    batches = _batches(items, per_batch, video, pad_to)
    for batch in tqdm(batches, total=total, desc=desc, leave=False):
        stats.append(detector(batch.to(device), **kwargs))
    return stats


@torch.no_grad()
def frame_features(
    frame_dir: str | Path, detector, batch_size: int = 32, device: str = "cpu"
) -> tuple[np.ndarray, list[str]]:
    """Inception pool features ``[N, D]`` (float64) of every frame of a frame set, in the
    FID order (sorted videos, frames in numeric order), with each frame's video name."""
    frames = _FrameSet.scan(frame_dir)
    items = [[path] for video in frames.frames for path in video]
    names = [path.parent.name for [path] in items]
    features = [
        detector(batch.to(device), **DETECTOR_KWARGS["fid"]).double().cpu().numpy()
        for batch in _batches(items, batch_size, video=False)
    ]
    return np.concatenate(features), names


@torch.no_grad()
def _inception_score(
    detector, paths: list[Path], batch_size: int, device: str, desc: str, pad_to=None
) -> tuple[float, float]:
    """Mean and std over :data:`IS_SPLITS` contiguous splits, accumulated batch by batch.

    Per split, ``mean_i Σ_c p log(p / p̄) = mean_i Σ_c p log p − Σ_c p̄ log p̄``, so only the
    split sums are kept; ``0 log 0`` counts as 0 (StyleGAN-V would give NaN there).
    """
    n = len(paths)
    bounds = np.array([k * n // IS_SPLITS for k in range(IS_SPLITS + 1)])
    sum_plogp = np.zeros(IS_SPLITS)
    sum_p = None
    row = 0
    batches = _batches([[path] for path in paths], batch_size, video=False, pad_to=pad_to)
    for batch in tqdm(batches, total=-(-n // batch_size), desc=desc, leave=False):
        probs = detector(batch.to(device), **DETECTOR_KWARGS["is"]).double().cpu().numpy()
        split = np.searchsorted(bounds, np.arange(row, row + len(probs)), side="right") - 1
        if sum_p is None:
            sum_p = np.zeros((IS_SPLITS, probs.shape[1]))
        np.add.at(sum_plogp, split, scipy.special.xlogy(probs, probs).sum(axis=1))
        np.add.at(sum_p, split, probs)
        row += len(probs)
    counts = np.diff(bounds)
    mean_p = sum_p / counts[:, None]
    kl = sum_plogp / counts - scipy.special.xlogy(mean_p, mean_p).sum(axis=1)
    scores = np.exp(kl)
    return float(scores.mean()), float(scores.std())


def _select_items(
    spec: MetricSpec, real: _FrameSet, fake: _FrameSet, seed: int
) -> tuple[list[list[Path]], list[list[Path]], dict]:
    """The real and fake items (one-frame lists for FID, clips for FVD) and their details."""
    if spec.family in ("fid", "kid"):
        real_items = [[path] for frames in real.frames for path in frames]
        fake_items = [[path] for path in fake.first_frames(spec.max_items)]
        dropped_real = dropped_fake = 0
        policy = (
            f"real: every frame of every video; fake: first {spec.max_items} frames in sorted order"
        )
    else:
        real_items, dropped_real = real.windows(spec.max_items, spec.frames, seed)
        fake_items, dropped_fake = fake.windows(spec.max_items, spec.frames, None)
        policy = (
            f"real: one random {spec.frames}-frame window per video, start from numpy "
            f"default_rng([seed, video index]); fake: first {spec.frames} frames; videos with "
            f"fewer than {spec.frames} frames dropped"
        )
    detail = {
        "n_real": len(real_items),
        "n_fake": len(fake_items),
        "frames": spec.frames,
        "resolution": {
            "real": _resolution(real_items[0][0]),
            "fake": _resolution(fake_items[0][0]),
        },
        "window_policy": policy,
        "dropped_short_real": dropped_real,
        "dropped_short_fake": dropped_fake,
    }
    return real_items, fake_items, detail


def _cached_real_stats(
    compute, items: list[list[Path]], options: dict, cache_dir: str | None, desc: str
) -> FeatureStats:
    """Real-set statistics, from ``cache_dir/<content key>.npz`` when present.

    The key hashes the names and bytes of exactly the frames used, in order, plus the
    metric options and the detector's sha256, so no folder name or stale set can hit it.
    """
    if cache_dir is None:
        return compute()
    files = [path for item in items for path in item]
    path = Path(cache_dir) / f"{content_hash(files, options)}.npz"
    if path.is_file():
        log.info("%s: real statistics cache hit %s", desc, path)
        return FeatureStats.from_npz(path)
    stats = compute()
    stats.to_npz(path)
    log.info("%s: real statistics cached as %s", desc, path)
    return stats


def evaluate_generation(
    real_dir: str | Path,
    fake_dir: str | Path,
    metrics: list[str],
    detectors: dict[str, dict],
    cache_dir: str | None,
    seed: int,
    batch_size: int = 32,
    device: str = "cpu",
    pad_to: int | None = None,
) -> dict:
    """Compute generation metrics of ``fake_dir`` against ``real_dir``.

    Args:
        real_dir: real frame set, ``<root>/<video>/<frame>.<jpg|png>``.
        fake_dir: generated frame set, same layout.
        metrics: names such as ``fid50k_full``, ``is50k``, ``fvd2048_16f`` (see
            :func:`parse_metric`).
        detectors: ``{"inception": {"path": ..., "sha256": ... | None, "source": ...},
            "i3d": {...}}``: the file, the SHA-256 the config pins (None: not pinned) and where
            it comes from (``tiny``: a random stand-in, never verified); only the ones the
            metrics need are read. A file whose hash differs from its pin is used, and
            reported as not verified.
        cache_dir: folder for real-set statistics keyed by content, or None for no cache.
        seed: seeds the real FVD windows (non-negative).
        batch_size: frames per detector call; FVD calls take ``max(1, batch_size // F)`` clips.
        device: torch device for the detectors.
        pad_to: centre every real and fake frame on a black square of this side before the
            detectors (:func:`pad_frames`; EchoDiffusion pads its 112-px frames to 128);
            None = the frames as they are.

    Returns:
        A JSON-able record with ``metrics`` (floats; IS as ``<name>_mean`` and
        ``<name>_std``), per-metric ``details`` (item counts, clip length, resolutions,
        window policy, dropped short videos), ``detectors`` (path and actual sha256), ``seed``,
        ``real_dir`` and ``fake_dir``, ``verified`` ({detector: bool}, :func:`is_verified`),
        ``warnings`` (sets smaller than a metric's name says) and ``tf32`` (False).
    """
    specs = [parse_metric(name) for name in metrics]
    if not specs:
        raise ValueError(f"no metrics requested; valid forms: {METRIC_FORMS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")

    loaded, detector_record = {}, {}
    for name in sorted({DETECTOR_OF[spec.family] for spec in specs}):
        if "path" not in detectors.get(name, {}):
            raise ValueError(
                f"these metrics need detectors[{name!r}] = {{'path': ..., 'sha256': ...}}"
            )
        path, pinned = detectors[name]["path"], detectors[name].get("sha256")
        actual = sha256_file(path) if Path(path).is_file() else None
        if pinned is not None and actual is not None and actual != pinned:
            log.warning(
                "%s: SHA-256 is %s, the config pins %s; the tables will say the %s detector "
                "is not verified",
                path,
                actual,
                pinned,
                name,
            )
        loaded[name] = load_detector(path, None, device)
        detector_record[name] = {
            "path": str(path),
            "sha256": actual,
            "sha256_pinned": pinned,
            "source": detectors[name].get("source"),
        }

    with tf32_off():
        values, details = _evaluate(
            specs, real_dir, fake_dir, loaded, detector_record, cache_dir, seed, batch_size,
            device, pad_to,
        )  # fmt: skip
    record = metric_record(real_dir, fake_dir, seed, values, details, detector_record)
    record["warnings"] = [d["warning"] for d in details.values() if d.get("warning")]
    for warning in record["warnings"]:
        log.warning(warning)
    record["verified"] = {name: is_verified(name, d) for name, d in detector_record.items()}
    record["tf32"] = False
    return record


def _evaluate(
    specs, real_dir, fake_dir, loaded, detector_record, cache_dir, seed, batch_size, device,
    pad_to=None,
):  # fmt: skip
    """The values and details of every metric (the body of :func:`evaluate_generation`)."""
    fake = _FrameSet.scan(fake_dir)
    real = _FrameSet.scan(real_dir) if any(s.family != "is" for s in specs) else None
    values, details = {}, {}
    for spec in specs:
        detector = loaded[DETECTOR_OF[spec.family]]
        if spec.family == "is":
            fake_files = fake.first_frames(spec.max_items)
            if len(fake_files) < IS_SPLITS:
                raise DataError(
                    fake.root,
                    f"only {len(fake_files)} frames, fewer than the {IS_SPLITS} IS splits",
                    "generate more frames",
                )
            mean, std = _inception_score(
                detector, fake_files, batch_size, device, spec.name, pad_to
            )
            values[f"{spec.name}_mean"], values[f"{spec.name}_std"] = mean, std
            details[spec.name] = {
                "n_real": None,
                "n_fake": len(fake_files),
                "frames": None,
                "resolution": {"real": None, "fake": _resolution(fake_files[0])},
                "window_policy": f"fake: first {spec.max_items} frames in sorted order, "
                f"{IS_SPLITS} contiguous splits",
                "dropped_short_real": 0,
                "dropped_short_fake": 0,
            }
            details[spec.name]["warning"] = _short_warning(spec, len(fake_files), None)
            log.info("%s = %.6g ± %.6g (fake %d)", spec.name, mean, std, len(fake_files))
            continue

        real_items, fake_items, details[spec.name] = _select_items(spec, real, fake, seed)
        video = spec.family == "fvd"
        per_batch = max(1, batch_size // spec.frames) if video else batch_size
        kwargs = DETECTOR_KWARGS[spec.family]
        options = {
            "family": spec.family,
            "frames": spec.frames,
            "detector_kwargs": kwargs,
            "detector_sha256": detector_record[DETECTOR_OF[spec.family]]["sha256"],
        }
        if pad_to is not None:  # absent otherwise: earlier cache keys stay valid
            options["pad_to"] = int(pad_to)

        kid = spec.family == "kid"
        stats_of = partial(
            _feature_stats, detector, per_batch=per_batch, video=video, kwargs=kwargs,
            device=device, pad_to=pad_to, keep_features=kid,
        )  # fmt: skip
        compute_real = partial(stats_of, real_items, desc=f"{spec.name} real")
        real_stats = _cached_real_stats(compute_real, real_items, options, cache_dir, spec.name)
        fake_stats = stats_of(fake_items, desc=f"{spec.name} fake")
        if kid:
            values[spec.name] = kernel_inception_distance(
                real_stats.features, fake_stats.features, seed=seed
            )
        else:
            values[spec.name] = frechet_distance(*real_stats.mean_cov(), *fake_stats.mean_cov())
        n_real = len(real_items) if spec.family == "fvd" else None
        details[spec.name]["warning"] = _short_warning(spec, len(fake_items), n_real)
        log.info(
            "%s = %.6g (real %d, fake %d)",
            spec.name,
            values[spec.name],
            len(real_items),
            len(fake_items),
        )
    if pad_to is not None:
        for detail in details.values():
            detail["pad_to"] = int(pad_to)
    return values, details


def _short_warning(spec: MetricSpec, n_fake: int, n_real: int | None) -> str | None:
    """A warning when a set has fewer items than the metric's name says, else None.

    StyleGAN-V returns NaN then; echogen reports the value over the items there are.
    """
    unit = "videos" if spec.family == "fvd" else "frames"
    counts = {"fake": n_fake} if n_real is None else {"fake": n_fake, "real": n_real}
    short = {side: n for side, n in counts.items() if n < spec.max_items}
    if not short:
        return None
    have = " and ".join(f"{n} {side}" for side, n in short.items())
    return (
        f"{spec.name}: computed over {have} {unit}, fewer than the {spec.max_items} its name "
        "says (StyleGAN-V reports NaN); not comparable to a published "
        f"{spec.name} value"
    )


def metric_record(
    real_dir: str | Path,
    fake_dir: str | Path,
    seed: int,
    metrics: dict | None = None,
    details: dict | None = None,
    detectors: dict | None = None,
) -> dict:
    """The JSON-able record every metric file holds (see :func:`evaluate_generation`)."""
    return {
        "metrics": metrics or {},
        "details": details or {},
        "detectors": detectors or {},
        "seed": seed,
        "real_dir": str(real_dir),
        "fake_dir": str(fake_dir),
        "reference": reference_policy(real_dir),
        "conditioning": fake_conditioning(fake_dir),
    }


def fake_conditioning(fake_dir: str | Path) -> dict | None:
    """Where the fake set's conditioning frames came from: the ``conditioning`` entry of the
    ``sampling.json`` beside its frame folder (``{"frames", "private", "source"}``, written
    by LVDM sampling); None when there is none (a system without conditioning frames)."""
    record = Path(str(fake_dir).rstrip("/")).parent / "sampling.json"
    if not record.is_file():
        return None
    return json.loads(record.read_text()).get("conditioning")


def conditioning_label(conditioning: dict | None) -> str | None:
    """``"private"`` (synthetic frames that passed the privacy filter), ``"synthetic,
    unfiltered"`` or ``"non-private"`` (real TRAIN frames); None without conditioning frames."""
    if conditioning is None:
        return None
    if conditioning.get("frames") == "real":
        return "non-private"
    return "private" if conditioning.get("private") else "synthetic, unfiltered"


def reference_policy(real_dir: str | Path) -> dict | None:
    """How a real frame set was built, from the index csv beside it (``<real_dir>.csv``, as
    :func:`~echogen.data.frames.extract_reference_frames` writes): ``{"index", "policy",
    "videos", "frames"}``; None when the folder has no such index (not an echogen set).
    An index from before policies were recorded reads as ``seeded_windows``, then the only one.
    """
    index = Path(str(real_dir).rstrip("/") + ".csv")
    if not index.is_file():
        return None
    table = pd.read_csv(index)
    if not {"FileName", "frames"} <= set(table.columns):
        return None
    policies = sorted(set(table["policy"])) if "policy" in table else ["seeded_windows"]
    return {
        "index": str(index),
        "policy": ", ".join(policies),
        "videos": len(table),
        "frames": sorted(int(f) for f in set(table["frames"])),
    }


def is_published(name: str, sha256: str) -> bool:
    """Whether ``sha256`` is the known hash of the published ``name`` detector."""
    published = PUBLISHED_SHA256.get(name)
    return published is not None and published == sha256


def is_verified(name: str, detector: dict) -> bool:
    """Whether a detector entry of a record is verified: not a tiny stand-in (``source``
    ``tiny``), and its SHA-256 is the one pinned in the config or the published file's."""
    if detector.get("source") == "tiny" or detector.get("sha256") is None:
        return False
    pinned = detector.get("sha256_pinned")
    return pinned == detector["sha256"] or is_published(name, detector["sha256"])


def verified_networks(record: dict) -> dict[str, bool]:
    """``{network: verified}`` of a metric record: its ``verified`` entry (``published`` in
    records written before it), else worked out from its detectors."""
    verified = record.get("verified", record.get("published"))
    if verified is None:
        verified = {name: is_verified(name, d) for name, d in record["detectors"].items()}
    return dict(verified)


def unverified_networks(record: dict) -> list[str]:
    """Networks of a metric record whose weights are not verified: a plumbing check."""
    return sorted(name for name, ok in verified_networks(record).items() if not ok)


def write_metric_table(record: dict, txt_path: str | Path, json_path: str | Path) -> None:
    """Write ``record`` as JSON and as a human-readable text table (both atomically)."""
    lines = []
    plumbing = unverified_networks(record)
    if plumbing:
        lines.append(
            f"PLUMBING CHECK: the weights of {', '.join(plumbing)} are not verified (tiny or "
            "random networks, or a file whose SHA-256 is neither pinned in the config nor the "
            "published file's); these numbers are not comparable to papers"
        )
    lines += [f"WARNING: {warning}" for warning in record.get("warnings", [])]
    lines += [f"{name}: {value:.6g}" for name, value in record["metrics"].items()]
    lines.append("")
    lines.append("details:")
    for name, detail in record["details"].items():
        lines.append(f"  {name}:")
        lines += [f"    {key}: {value}" for key, value in detail.items()]
    lines.append("detectors:")
    for name, detector in record["detectors"].items():
        pinned = detector.get("sha256_pinned")
        pin = "" if pinned is None else f", pinned {pinned}"
        lines.append(f"  {name}: sha256 {detector['sha256']}{pin} ({detector['path']})")
    lines.append(f"seed: {record['seed']}")
    lines.append(f"real_dir: {record['real_dir']}")
    reference = record.get("reference")
    if reference is None:
        lines.append("real reference: no echogen index beside real_dir (policy not recorded)")
    else:
        lines.append(
            f"real reference: policy {reference['policy']}, {reference['videos']} videos of "
            f"{'/'.join(map(str, reference['frames']))} frames ({reference['index']})"
        )
    lines.append(f"fake_dir: {record['fake_dir']}")
    conditioning = record.get("conditioning")
    label = conditioning_label(conditioning)
    if label == "non-private":
        lines.insert(0, "NON-PRIVATE: the generated videos animate real TRAIN frames")
    if label is not None:
        lines.append(f"conditioning frames: {label} ({conditioning['source']})")
    write_json(json_path, record)
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def model_table_entries(models: list[str], plumbing: list[bool], scores: list[str | Path],
                        generation: list[str | Path]) -> dict[str, dict]:  # fmt: skip
    """What a system's table reads per model: its per-sample ``scores`` csv, its dataset's
    generation-metric record, and whether the row is a plumbing check (a tiny model, or a
    detector whose hash is not verified). The lists are parallel, one item per model."""
    entries = {}
    for name, tiny, score, record in zip(models, plumbing, scores, generation, strict=True):
        metrics = json.loads(Path(record).read_text())
        entries[name] = {
            "scores": pd.read_csv(score, dtype={"FileName": str, "Source": str}),
            "generation": metrics,
            "plumbing": tiny or not all(metrics.get("verified", {}).values()),
        }
    return entries
