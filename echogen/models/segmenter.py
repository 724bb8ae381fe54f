"""A 2-D U-Net segmenter of echocardiogram images (MONAI's ``UNet``), for cardiGAN's
experiment: segment real CAMUS images, score the masks behind generated images, and
compare segmenters trained on real, synthetic and real + synthetic images.

cardiGAN's repository (``/work/shared/PAPERS.md`` §8) ships no segmentation code; its report
trains a U-Net on CAMUS. :data:`SEGMENTER_PRESETS` therefore uses MONAI's residual 2-D UNet
at the widths of MONAI's own 2-D segmentation tutorial (``reference``) and a CPU size
(``tiny``). The output has one channel per label (background, LV cavity, myocardium, left
atrium); :func:`dice_per_structure` scores label maps with MONAI's ``DiceMetric``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from echogen.data.camus import N_LABELS, STRUCTURES

SEGMENTER_PRESETS: dict[str, dict] = {
    "reference": {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2), "num_res_units": 2},
    "tiny": {"channels": (8, 16, 32), "strides": (2, 2), "num_res_units": 1},
}


class Segmenter(ModelMixin, ConfigMixin):
    """MONAI's ``UNet`` (2-D) as a ``save_pretrained`` model: images ``(B, C, H, W)`` in
    ``[-1, 1]`` → logits ``(B, n_labels, H, W)``; ``H`` and ``W`` multiples of the strides'
    product."""

    @register_to_config
    def __init__(self, in_channels: int = 1, n_labels: int = N_LABELS,
                 channels: tuple[int, ...] = (16, 32, 64, 128, 256),
                 strides: tuple[int, ...] = (2, 2, 2, 2), num_res_units: int = 2,
                 dropout: float = 0.0):  # fmt: skip
        from monai.networks.nets import UNet  # monai's import costs seconds: only when used

        super().__init__()
        if len(strides) != len(channels) - 1:
            raise ValueError(
                f"a UNet needs one stride fewer than channels, got {channels}, {strides}"
            )
        self.net = UNet(spatial_dims=2, in_channels=in_channels, out_channels=n_labels,
                        channels=tuple(channels), strides=tuple(strides),
                        num_res_units=num_res_units, dropout=dropout)  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Label maps ``(B, H, W)`` (argmax of the logits)."""
        return self(images).argmax(1)


def build_segmenter(preset: str = "reference", **overrides) -> Segmenter:
    """A segmenter of a named size (:data:`SEGMENTER_PRESETS`) with keyword overrides."""
    if preset not in SEGMENTER_PRESETS:
        raise ValueError(f"unknown segmenter preset {preset!r}; known: {sorted(SEGMENTER_PRESETS)}")
    return Segmenter(**{**SEGMENTER_PRESETS[preset], **overrides})


def load_segmenter(model_dir: str | Path, device: torch.device | str = "cpu") -> Segmenter:
    """A trained segmenter (``<model_dir>/segmenter``) in eval mode."""
    folder = Path(model_dir) / "segmenter"
    if not folder.is_dir():
        raise FileNotFoundError(f"no segmenter under {model_dir}; train it first")
    return Segmenter.from_pretrained(folder).to(device).eval()


def dice_per_structure(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor):
    """Dice of each structure (:data:`STRUCTURES`) per image: ``(N, 3)`` float64, MONAI's
    ``DiceMetric`` on one-hot maps without the background; NaN where a structure is absent
    from the truth (MONAI's ``ignore_empty``)."""
    from monai.metrics import DiceMetric

    pred, truth = (
        torch.as_tensor(np.asarray(pred)).long(),
        torch.as_tensor(np.asarray(truth)).long(),
    )
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"expected two (N, H, W) label maps, got {tuple(pred.shape)}, "
                         f"{tuple(truth.shape)}")  # fmt: skip
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    one_hot = [torch.nn.functional.one_hot(x, N_LABELS).permute(0, 3, 1, 2) for x in (pred, truth)]
    scores = metric(*one_hot).double().numpy()
    assert scores.shape[1] == len(STRUCTURES)
    return scores
