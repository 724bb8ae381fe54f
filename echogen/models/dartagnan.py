"""D'ARTAGNAN's counterfactual video generator and its frame discriminator.

D'ARTAGNAN (Reynaud et al., MICCAI 2022; HReynaud/dartagnan, ``/work/shared/PAPERS.md`` §6)
answers "what would this echocardiogram look like with another ejection fraction?". Its
generator is a *twin network*: two branches of the same video ResNet read the same clip
``Z`` with an EF broadcast as one more constant channel. The factual branch gets the video's
own EF ``X`` and is trained to reconstruct ``Z``; the counterfactual branch gets another EF
``X*`` and is trained to make a video that a frozen EF expert scores at ``X*`` and that a
frame discriminator takes for real. Both branches see the same multiplicative noise
``U ~ fmod(N(0, 0.25), 1) + 1`` in their bottleneck, the shared exogenous noise of the twin
network's counterfactual reading.

The branch (the reference's ``VideoResnet`` in ``models/video_branch.py``), built here from
torchvision's ``BasicBlock`` and ``Conv2Plus1D``:

- a stem ``1x7x7`` then ``3x1x1`` convolution (``stem_width`` channels between, 128 in the
  reference whatever the width), reflect-padded, to ``width``;
- ``layers[0]`` blocks at ``width``, a ``2x2x2`` max-pool (time and space halve),
  ``layers[1]`` and ``layers[2]`` blocks at ``2 * width``, the noise (multiplied in, or
  concatenated as more channels with ``noise="concat"``), ``layers[3]`` blocks at
  ``2 * width``, a trilinear ``x2`` upsampling, ``layers[4]`` blocks at ``width``;
- a reflect-padded ``3x3x3`` convolution to the video's channels and a sigmoid.

The discriminator (``models/video_discriminator.py``) stacks multi-scale blocks (mean of
3/5/7-kernel convolution branches and a max-pool shortcut, each halving the size) over every
frame on its own (2-D, the default) or over the clip (3-D, ``three_d=True``) and ends with
the sigmoid of the mean activation: one probability per video.

Inputs are clips ``(B, C, T, H, W)`` in ``[0, 1]`` with ``T``, ``H`` and ``W`` even, and EFs
as fractions (EF / 100).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D

from echogen.data.ef_clips import ClipSpec
from echogen.data.errors import DataError
from echogen.models.regressor import load_regressor

NOISE_MODES = ("mult", "concat")
PADDING = "reflect"
GENERATOR_DIR, DISCRIMINATOR_DIR = "generator", "discriminator"

# Named sizes. "reference": the README's training command (--internal_dim 32; the
# argument's default is 128) with the code's fixed 128-wide stem; "tiny": CPU tests and demo.
GENERATOR_PRESETS: dict[str, dict] = {
    "reference": {"width": 32, "stem_width": 128, "layers": (2, 2, 2, 2, 2)},
    "tiny": {"width": 4, "stem_width": 8, "layers": (1, 1, 1, 1, 1)},
}
DISCRIMINATOR_PRESETS: dict[str, dict] = {
    "reference": {"width": 32, "blocks": 5},
    "tiny": {"width": 4, "blocks": 3},
}


def shared_noise(
    shape: tuple[int, ...], std: float, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:  # fmt: skip
    """The twin branches' multiplicative noise: ``fmod(N(0, std), 1) + 1``, in (0, 2)."""
    draw = torch.randn(shape, generator=generator, device=device if generator is None else
                       generator.device)  # fmt: skip
    return (torch.fmod(draw * std, 1.0) + 1.0).to(device)


def counterfactual_efs(efs: np.ndarray, margin: float, rng: np.random.Generator) -> np.ndarray:
    """A counterfactual EF per video: an integer of 0..100 at least ``margin`` points from
    the video's EF, uniformly (``get_random_different_lvef`` of the reference).

    As the reference, an EF within ``margin`` of 0 or 100 is first moved to ``margin + 0.5``
    (or ``100 - margin - 0.5``), so a choice always exists. The reference draws one index
    into the per-row candidate lists stacked as a matrix, which fails when a batch mixes
    integer and non-integer EFs (82 vs 81 candidates); here each video draws from its own.
    """
    efs = np.clip(np.asarray(efs, dtype=float), margin + 0.5, 100.0 - margin - 0.5)
    grid = np.arange(0, 101, dtype=float)
    out = np.empty(len(efs))
    for i, ef in enumerate(efs):
        candidates = grid[(grid >= ef + margin) | (grid <= ef - margin)]
        out[i] = candidates[rng.integers(len(candidates))]
    return out


def _blocks(inplanes: int, planes: int, n: int) -> nn.Sequential:
    """``n`` torchvision ``BasicBlock`` s with ``Conv2Plus1D``, a 1x1x1 projection first where
    the width changes."""
    downsample = None
    if inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, planes, kernel_size=1, bias=False), nn.BatchNorm3d(planes)
        )
    layers = [BasicBlock(inplanes, planes, Conv2Plus1D, 1, downsample)]
    layers += [BasicBlock(planes, planes, Conv2Plus1D) for _ in range(1, n)]
    return nn.Sequential(*layers)


def _init_weights(module: nn.Module) -> None:
    """Kaiming (fan-out) convolutions, unit batch norms (torchvision's video ResNet init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d | nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm3d | nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class Branch(nn.Module):
    """One branch of the twin network: ``(EF, clip, noise) -> clip`` in [0, 1]."""

    def __init__(self, channels: int, width: int, stem_width: int, layers: tuple, noise: str):
        super().__init__()
        self.noise = noise
        wide = 2 * width
        self.stem = nn.Sequential(
            nn.Conv3d(
                channels + 1,
                stem_width,
                (1, 7, 7),
                padding=(0, 3, 3),
                bias=False,
                padding_mode=PADDING,
            ),  # fmt: skip
            nn.BatchNorm3d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                stem_width, width, (3, 1, 1), padding=(1, 0, 0), bias=False, padding_mode=PADDING
            ),  # fmt: skip
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        self.layer1 = _blocks(width, width, layers[0])
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)
        self.layer2 = _blocks(width, wide, layers[1])
        self.layer3 = _blocks(wide, wide, layers[2])
        self.layer4 = _blocks(2 * wide if noise == "concat" else wide, wide, layers[3])
        self.upsample = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.layer5 = _blocks(wide, width, layers[4])
        self.out = nn.Conv3d(width, channels, 3, padding=1, padding_mode=PADDING)

    def bottleneck(self, ef: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """The features the noise enters: ``(B, 2 * width, T/2, H/2, W/2)``."""
        ef_channel = torch.ones_like(video[:, :1]) * ef.to(video.dtype)[:, None, None, None, None]
        x = self.stem(torch.cat([ef_channel, video], dim=1))
        x = self.pool(self.layer1(x))
        return self.layer3(self.layer2(x))

    def head(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = x * noise if self.noise == "mult" else torch.cat([x, noise], dim=1)
        x = self.layer5(self.upsample(self.layer4(x)))
        return torch.sigmoid(self.out(x))


class DartagnanGenerator(ModelMixin, ConfigMixin):
    """The twin-network counterfactual generator.

    Args:
        channels (int, 1): video channels (grey).
        width (int, 32): the branch's width ``nf`` (the bottleneck has ``2 * nf``).
        stem_width (int, 128): channels between the stem's spatial and temporal convolutions.
        layers (tuple, (2, 2, 2, 2, 2)): blocks in each of the five stages.
        noise (str, "mult"): how the shared noise enters the bottleneck: ``"mult"`` or
            ``"concat"`` (the reference's third option, ``"add"``, is not implemented there).
        noise_std (float, 0.25): standard deviation of the noise before ``fmod``.
        share_weights (bool, False): one branch for both (the reference's ``--share_weights``).
    """

    @register_to_config
    def __init__(
        self,
        channels: int = 1,
        width: int = 32,
        stem_width: int = 128,
        layers: tuple = (2, 2, 2, 2, 2),
        noise: str = "mult",
        noise_std: float = 0.25,
        share_weights: bool = False,
    ):
        super().__init__()
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        if len(layers) != 5 or min(layers) < 1:
            raise ValueError(f"layers needs five positive block counts, got {list(layers)}")
        args = (channels, width, stem_width, tuple(layers), noise)
        self.branch = Branch(*args)
        if not share_weights:  # shared: one registered branch, so the weights save once
            self.branch_star = Branch(*args)
        _init_weights(self)

    @property
    def star(self) -> Branch:
        """The counterfactual branch (the factual one itself when weights are shared)."""
        return self.branch if self.config.share_weights else self.branch_star

    def noise(self, features: torch.Tensor, generator: torch.Generator | None = None):
        """One draw of the shared noise for bottleneck ``features``."""
        return shared_noise(tuple(features.shape), self.config.noise_std, generator,
                            features.device).to(features.dtype)  # fmt: skip

    def forward(
        self,
        ef: torch.Tensor,
        ef_star: torch.Tensor,
        video: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The factual reconstruction (at ``ef``) and the counterfactual (at ``ef_star``) of
        ``video``, both with the same noise draw.

        Args:
            ef: ``(B,)`` the videos' EFs / 100.
            ef_star: ``(B,)`` the counterfactual EFs / 100.
            video: ``(B, C, T, H, W)`` in [0, 1], ``T``, ``H``, ``W`` even.
            generator: draws the noise (None: the global generator).
        """
        _check_clip(video, self.config.channels)
        x = self.branch.bottleneck(ef, video)
        x_star = self.star.bottleneck(ef_star, video)
        noise = self.noise(x, generator)
        return self.branch.head(x, noise), self.star.head(x_star, noise)

    def counterfactual(
        self, video: torch.Tensor, ef_star: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Only the counterfactual branch: ``video`` (``(B, C, T, H, W)``) at EF ``ef_star``
        (``(B,)``, EF / 100)."""
        _check_clip(video, self.config.channels)
        x = self.star.bottleneck(ef_star, video)
        return self.star.head(x, self.noise(x, generator))


def _check_clip(video: torch.Tensor, channels: int) -> None:
    if video.ndim != 5 or video.shape[1] != channels:
        raise ValueError(f"expected clips (B, {channels}, T, H, W), got {tuple(video.shape)}")
    odd = [n for n in video.shape[2:] if n % 2]
    if odd:
        raise ValueError(f"frames, height and width must be even, got {tuple(video.shape[2:])}")


class MultiScaleBlock(nn.Module):
    """Mean of 3/5/7-kernel conv-BN-ReLU(-max-pool) branches and a max-pool shortcut.

    The shortcut keeps the input's channels: a one-channel input (the first block) is
    broadcast over the width, as in the reference's sum."""

    def __init__(self, inplanes: int, planes: int, downsample: bool, three_d: bool):
        super().__init__()
        if inplanes not in (1, planes):
            raise ValueError(f"the shortcut needs 1 or {planes} channels in, got {inplanes}")
        conv, norm, pool = ((nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d) if three_d
                            else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d))  # fmt: skip

        def shrink() -> nn.Module:
            return pool(kernel_size=3, stride=2, padding=1) if downsample else nn.Identity()

        self.branches = nn.ModuleList(
            nn.Sequential(
                conv(inplanes, planes, k, padding=k // 2, bias=False),
                norm(planes),
                nn.ReLU(inplace=True),
                shrink(),
            )
            for k in (3, 5, 7)
        )
        self.shortcut = shrink()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (sum(branch(x) for branch in self.branches) + self.shortcut(x)) / 4.0


class FrameDiscriminator(ModelMixin, ConfigMixin):
    """D'ARTAGNAN's discriminator: the probability that a clip is real.

    Args:
        channels (int, 1): video channels.
        width (int, 32): channels of every block.
        blocks (int, 5): multi-scale blocks; all but the last halve the size (112 -> 7 with
            the reference's five).
        three_d (bool, False): 3-D blocks over the clip (the reference's ``--discriminator_3D``)
            instead of 2-D blocks over every frame.
    """

    @register_to_config
    def __init__(self, channels: int = 1, width: int = 32, blocks: int = 5, three_d: bool = False):
        super().__init__()
        if blocks < 2:
            raise ValueError(f"blocks must be at least 2, got {blocks}")
        layers: list[nn.Module] = [MultiScaleBlock(channels, width, True, three_d)]
        layers += [MultiScaleBlock(width, width, True, three_d) for _ in range(blocks - 2)]
        layers.append(MultiScaleBlock(width, width, False, three_d))
        self.net = nn.Sequential(*layers)
        _init_weights(self)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` in [0, 1] -> ``(B,)`` probabilities of being real."""
        if self.config.three_d:
            x = self.net(video)
        else:
            b = video.shape[0]
            x = self.net(rearrange(video, "b c t h w -> (b t) c h w"))
            x = rearrange(x, "(b t) c h w -> b c t h w", b=b)
        return torch.sigmoid(x.mean(dim=(1, 2, 3, 4)))


def build_generator(preset: str = "reference", **overrides) -> DartagnanGenerator:
    """A generator of a named size (:data:`GENERATOR_PRESETS`) with keyword overrides."""
    if preset not in GENERATOR_PRESETS:
        raise ValueError(f"unknown generator preset {preset!r}; known: {sorted(GENERATOR_PRESETS)}")
    return DartagnanGenerator(**{**GENERATOR_PRESETS[preset], **overrides})


def build_discriminator(preset: str = "reference", **overrides) -> FrameDiscriminator:
    """A discriminator of a named size (:data:`DISCRIMINATOR_PRESETS`) with overrides."""
    if preset not in DISCRIMINATOR_PRESETS:
        raise ValueError(
            f"unknown discriminator preset {preset!r}; known: {sorted(DISCRIMINATOR_PRESETS)}"
        )
    return FrameDiscriminator(**{**DISCRIMINATOR_PRESETS[preset], **overrides})


def load_generator(model_dir: str | Path, device: torch.device | str = "cpu"):
    """The trained generator of a D'ARTAGNAN model folder, in eval mode."""
    path = Path(model_dir) / GENERATOR_DIR
    if not (path / "config.json").is_file():
        raise DataError(path, "no D'ARTAGNAN generator here", "run rule train_dartagnan first")
    return DartagnanGenerator.from_pretrained(path).to(device).eval()


def expert_input(video: torch.Tensor, spec: ClipSpec) -> torch.Tensor:
    """A generated clip ``(B, C, T, H, W)`` in [0, 1] as the expert reads its clips: its
    size, channels (grey repeated) and normalisation."""
    if video.shape[-1] != spec.size or video.shape[-2] != spec.size:
        b = video.shape[0]
        flat = video.transpose(1, 2).flatten(0, 1)
        flat = F.interpolate(flat, size=(spec.size, spec.size), mode="bilinear",
                             align_corners=False)  # fmt: skip
        video = flat.unflatten(0, (b, -1)).transpose(1, 2)
    if spec.channels != video.shape[1]:
        video = video.mean(dim=1, keepdim=True).expand(-1, spec.channels, -1, -1, -1)
    if spec.normalisation == "zscore":
        mean = torch.as_tensor(spec.mean, dtype=video.dtype, device=video.device)
        std = torch.as_tensor(spec.std, dtype=video.dtype, device=video.device)
        shape = (1, -1, 1, 1, 1)
        video = (video * 255.0 - mean.reshape(shape)) / std.reshape(shape)
    return video


def load_expert(expert_dir: str | Path, device) -> tuple[torch.nn.Module, ClipSpec]:
    """The frozen EF expert (an exported regressor) in eval mode, and its clip settings.

    Raises:
        DataError: the folder is not an EF regressor (a classifier, or not exported).
    """
    model, spec = load_regressor(expert_dir)
    if model.config.out_features != 1:
        raise DataError(expert_dir, "the expert is a classifier, not an EF regressor",
                        "point dartagnan.expert at a regressors.runs entry")  # fmt: skip
    model.requires_grad_(False)
    return model.to(device).eval(), spec
