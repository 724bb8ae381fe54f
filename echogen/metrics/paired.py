"""Paired (real vs generated) frame metrics: SSIM and LPIPS, per video and aggregated.

EchoDiffusion (PAPERS.md §3) scores a generated video against the real video it was
conditioned on with SSIM (torchmetrics, ``data_range=1`` on frames scaled to [0, 1]) and
LPIPS (VGG trunk, frames scaled to [-1, 1]), each averaged over frames and then over videos.

SSIM is implemented here (no torchmetrics or scikit-image at run time) with the Wang et al.
constants: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, biased (1/N) local statistics.
Two border conventions exist and differ by ~1e-3 on real frames, so the choice is explicit:

- ``border="valid"`` (default): average the SSIM map only where the window fits inside the
  image. This is the reference MATLAB code, scikit-image, and torchmetrics before
  Lightning-AI/torchmetrics#2721 (Sept 2024) -- the version EchoDiffusion's numbers come from.
- ``border="reflect"``: reflect-pad the images and average the full-size map, which is what
  torchmetrics releases after #2721 (e.g. the pinned 1.9) return by default.

LPIPS wraps the ``lpips`` package, whose calibrated linear heads ship inside its wheel. Its
trunk (torchvision VGG16/AlexNet ImageNet weights) is never downloaded: pass a local copy as
``weights``, or leave it None for a seeded random trunk, which is a plumbing check only and
flagged by ``LPIPS.is_published``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from echogen.data.errors import DataError
from echogen.weights import sha256_file

log = logging.getLogger(__name__)

SSIM_BORDERS = ("valid", "reflect")
LPIPS_NETS = ("vgg", "alex")
# The smallest frame side each LPIPS trunk accepts (its pooling leaves no pixel below it).
LPIPS_MIN_SIZE = {"vgg": 16, "alex": 31}

# torchvision names its ImageNet files `<arch>-<first 8 hex of sha256>.pth`
# (vgg16-397923af.pth, alexnet-owt-7be5be79.pth); a trunk is "published" when its hash matches.
PUBLISHED_TRUNK_SHA256_PREFIX = {"vgg": "397923af", "alex": "7be5be79"}

# Seed of the random trunk used when no weights are given, so plumbing runs are repeatable.
RANDOM_TRUNK_SEED = 0

# Frames per forward pass in paired_video_metrics: bounds memory for long videos.
FRAME_CHUNK = 32


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    window = torch.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    border: str = "valid",
) -> torch.Tensor:
    """Structural similarity of each image pair.

    Args:
        x, y: float tensors [N, C, H, W] of the same shape, values in ``[0, data_range]``;
            H and W at least 11.
        data_range: the value span of the images (sets C1 = (0.01 R)², C2 = (0.03 R)²).
        border: "valid" (crop to where the window fits; EchoDiffusion, scikit-image) or
            "reflect" (reflect-pad, full map; torchmetrics >= #2721). See the module docstring.

    Returns:
        float64 tensor [N]: the SSIM map averaged over channels and pixels of each pair.
    """
    if border not in SSIM_BORDERS:
        raise ValueError(f"border must be one of {SSIM_BORDERS}, got {border!r}")
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(
            f"ssim needs two [N, C, H, W] tensors of the same shape, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    size, sigma = 11, 1.5
    if min(x.shape[-2:]) < size:
        raise ValueError(f"ssim needs H and W >= {size}, got {tuple(x.shape[-2:])}")
    # float64: the local variances are differences of nearly equal moments.
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    channels = x.shape[1]
    if border == "reflect":
        pad = (size - 1) // 2
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        y = F.pad(y, (pad, pad, pad, pad), mode="reflect")

    window = _gaussian_window(size, sigma, torch.float64).to(x.device)
    kernel_h = window.view(1, 1, size, 1).repeat(channels, 1, 1, 1)
    kernel_w = window.view(1, 1, 1, size).repeat(channels, 1, 1, 1)
    moments = torch.cat([x, y, x * x, y * y, x * y])  # [5N, C, H, W]
    # The Gaussian is separable: two 1-D depthwise passes, no padding (valid).
    moments = F.conv2d(moments, kernel_h, groups=channels)
    moments = F.conv2d(moments, kernel_w, groups=channels)
    mu_x, mu_y, mom_xx, mom_yy, mom_xy = moments.chunk(5)

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    var_x = (mom_xx - mu_x**2).clamp(min=0)
    var_y = (mom_yy - mu_y**2).clamp(min=0)
    cov_xy = mom_xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1)


class LPIPS:
    """LPIPS distance (Zhang et al. 2018, https://arxiv.org/abs/1801.03924), v0.1 linear heads.

    Args:
        net: "vgg" (EchoDiffusion's choice) or "alex" -- the trunk architecture.
        weights: local path to the trunk's torchvision ImageNet state dict, either the full
            model file (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``, keys
            ``features.*`` and ``classifier.*``) or the ``.features`` state dict alone. None
            uses a random trunk seeded with ``RANDOM_TRUNK_SEED``: a plumbing check whose
            values are not comparable with published LPIPS.
        device: torch device for the network.

    Attributes:
        is_published: True only when ``weights`` has the sha256 of torchvision's published file.
        trunk_sha256: sha256 of ``weights`` (None for the random trunk).
    """

    def __init__(self, net: str = "vgg", weights: str | Path | None = None, device: str = "cpu"):
        if net not in LPIPS_NETS:
            raise ValueError(f"net must be one of {LPIPS_NETS}, got {net!r}")
        import lpips  # deferred: importing it pulls in torchvision models

        self.net = net
        self.weights = None if weights is None else str(weights)
        self.device = torch.device(device)
        # fork_rng: the seeded random trunk must not disturb the caller's global RNG.
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(RANDOM_TRUNK_SEED)
            # lpips 0.1.4 still passes torchvision's deprecated `pretrained=` argument.
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        if weights is None:
            self.trunk_sha256 = None
            self.is_published = False
            log.warning("LPIPS %s uses a random trunk: values are a plumbing check only", net)
        else:
            path = Path(weights)
            self._load_trunk(path)
            self.trunk_sha256 = sha256_file(path)
            self.is_published = self.trunk_sha256.startswith(PUBLISHED_TRUNK_SHA256_PREFIX[net])
            if not self.is_published:
                log.warning(
                    "LPIPS trunk %s (sha256 %s) is not torchvision's published %s weights",
                    path,
                    self.trunk_sha256,
                    net,
                )
        self.model.to(self.device).eval()

    def _load_trunk(self, path: Path) -> None:
        arch = "vgg16" if self.net == "vgg" else "alexnet"
        fix = f"pass torchvision's ImageNet {arch} state dict (full model or its .features)"
        if not path.is_file():
            raise DataError(path, f"LPIPS {arch} trunk weights not found", fix)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise DataError(path, f"not a state dict but a {type(state).__name__}", fix)
        if any(key.startswith("features.") for key in state):
            # Full model file: keep the convolutional trunk, the classifier is unused by LPIPS.
            state = {
                key.removeprefix("features."): value
                for key, value in state.items()
                if key.startswith("features.")
            }
        # lpips splits torchvision's `features` Sequential into slices that keep the original
        # layer indices as child names (slice2 holds "5", "7", ...), so keys map one to one.
        mapped = {}
        for slice_name, block in self.model.net.named_children():
            for key in block.state_dict():
                mapped[f"{slice_name}.{key}"] = key
        missing = sorted(set(mapped.values()) - set(state))
        unexpected = sorted(set(state) - set(mapped.values()))
        expected = self.model.net.state_dict()
        wrong_shape = [
            key
            for key, src in mapped.items()
            if src in state and tuple(state[src].shape) != tuple(expected[key].shape)
        ]
        if missing or unexpected or wrong_shape:
            raise DataError(
                path,
                f"does not match the {arch} trunk: missing {missing[:4]}, unexpected "
                f"{unexpected[:4]}, wrong shape {[mapped[k] for k in wrong_shape[:4]]}",
                fix,
            )
        self.model.net.load_state_dict({key: state[src] for key, src in mapped.items()})
        log.info("LPIPS %s trunk loaded from %s", arch, path)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of each pair.

        Args:
            x, y: float tensors [N, C, H, W] of the same shape, values in [-1, 1]; C is 3, or
                1 (grey, repeated to 3 channels).

        Returns:
            float32 tensor [N] on the CPU (0 for identical images).
        """
        if x.ndim != 4 or x.shape != y.shape or x.shape[1] not in (1, 3):
            raise ValueError(
                "LPIPS needs two [N, C, H, W] tensors of the same shape with C 1 or 3, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        for name, t in (("x", x), ("y", y)):
            if t.min() < -1 or t.max() > 1:
                raise ValueError(f"LPIPS input {name} must lie in [-1, 1] (use frames/127.5 - 1)")
        x = x.to(self.device, torch.float32).expand(-1, 3, -1, -1)
        y = y.to(self.device, torch.float32).expand(-1, 3, -1, -1)
        return self.model(x, y).flatten().cpu()


def _video_tensor(video: np.ndarray, name: str) -> torch.Tensor:
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be a uint8 video (T, H, W) or (T, H, W, C), got {video.dtype} "
            f"with shape {video.shape}"
        )
    frames = torch.from_numpy(video)
    if frames.ndim == 3:
        return frames.unsqueeze(1)  # [T, 1, H, W]
    if frames.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got shape {video.shape}")
    return frames.permute(0, 3, 1, 2)  # [T, C, H, W]


def paired_video_metrics(
    real: np.ndarray, fake: np.ndarray, lpips: LPIPS | None = None
) -> dict[str, float | int | None]:
    """SSIM and LPIPS of a generated video against its real counterpart, averaged over frames.

    Args:
        real, fake: uint8 videos (T, H, W) or (T, H, W, C) of the same shape.
        lpips: an :class:`LPIPS` instance, or None to skip LPIPS.

    Returns:
        {"ssim": mean frame SSIM (data_range 1 on x/255, valid border),
         "lpips": mean frame LPIPS on x/127.5 - 1, or None, "frames": T}.
    """
    real_t = _video_tensor(real, "real")
    fake_t = _video_tensor(fake, "fake")
    if real_t.shape != fake_t.shape:
        raise ValueError(f"real and fake videos differ in shape: {real.shape} vs {fake.shape}")
    ssim_values, lpips_values = [], []
    for start in range(0, real_t.shape[0], FRAME_CHUNK):
        real_chunk = real_t[start : start + FRAME_CHUNK].double()
        fake_chunk = fake_t[start : start + FRAME_CHUNK].double()
        ssim_values.append(ssim(real_chunk / 255, fake_chunk / 255, data_range=1.0))
        if lpips is not None:
            lpips_values.append(lpips(real_chunk / 127.5 - 1, fake_chunk / 127.5 - 1))
    return {
        "ssim": torch.cat(ssim_values).mean().item(),
        "lpips": torch.cat(lpips_values).double().mean().item() if lpips is not None else None,
        "frames": int(real_t.shape[0]),
    }


def aggregate(records: list[dict]) -> dict[str, dict[str, float | int]]:
    """Mean, standard deviation (population, ddof 0) and count of each metric over videos.

    Args:
        records: outputs of :func:`paired_video_metrics`; a metric that is None in every
            record (LPIPS skipped) is left out.

    Returns:
        {metric: {"mean": float, "std": float, "n": int}} for "ssim" and, if present, "lpips".
    """
    if not records:
        raise ValueError("aggregate needs at least one record")
    summary = {}
    for metric in ("ssim", "lpips"):
        values = [record[metric] for record in records]
        if all(value is None for value in values):
            continue
        if any(value is None for value in values):
            raise ValueError(f"{metric} is missing in some records but not in others")
        array = np.asarray(values, dtype=np.float64)
        summary[metric] = {"mean": float(array.mean()), "std": float(array.std()), "n": len(array)}
    return summary
