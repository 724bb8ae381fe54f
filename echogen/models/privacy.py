"""Re-identification embedder of EchoNet-Synthetic's privacy filter.

EchoNet-Synthetic (Reynaud et al., MICCAI 2024, https://github.com/HReynaud/EchoNet-Synthetic)
drops every generated video whose first frame is too similar to a real training video. The
similarity is that of a Siamese re-identification network in the manner of Packhäuser et al.
("Deep learning-based patient re-identification is able to exploit the biometric nature of
medical chest X-ray data", Sci. Rep. 2022): a ResNet-50 maps a VAE latent frame (4x14x14) to
a 128-d feature vector squashed by a sigmoid; during training a linear layer on the absolute
difference of two such vectors predicts whether both frames come from the same video
(``/work/shared/PAPERS.md`` §4). The filter itself compares embeddings by Pearson
correlation (:mod:`echogen.pipelines.privacy`).

:class:`PrivacyEmbedder` holds both parts: ``forward`` returns the embedding, and
:meth:`PrivacyEmbedder.pair_logits` the Siamese head's logit, so one ``save_pretrained``
folder holds the whole trained network.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn
from torchvision.models.resnet import BasicBlock

from echogen.data.errors import DataError
from echogen.weights import check_state_keys, load_state_file

log = logging.getLogger(__name__)

ARCHS = ("resnet50", "tiny")
INPUT_NORMS = ("none", "minmax")
# torchvision's ResNet-50 ends in 2048 channels (512 x Bottleneck expansion 4).
RESNET50_FEATURES = 2048
# Guards the min-max normalisation of a constant frame (whose range is 0).
MINMAX_EPS = 1e-6

PRIVACY_PRESETS: dict[str, dict] = {
    # EchoNet-Synthetic's re-identification network (PAPERS.md §4; its privacy config for
    # Dynamic): torchvision ResNet-50 whose first convolution takes the 4 latent channels,
    # 128-d sigmoid features, inputs min-max scaled to [-1, 1] ("pmone"), 14x14 latents
    # unpadded. The published network keeps torchvision's max-pool, which leaves layer3 and
    # layer4 with 1x1 maps at 14 px; here it is dropped (stem_maxpool False) so the last two
    # stages still see 2x2 and 1x1 maps. The published trunk starts from ImageNet weights;
    # here it starts random (no downloads).
    "paper": {
        "arch": "resnet50",
        "in_channels": 4,
        "embedding_dim": 128,
        "widths": (64, 128, 256, 512),
        "layers": (3, 4, 6, 3),
        "stem_maxpool": False,
        "input_norm": "minmax",
        "pad_to": None,
    },
    # The released network as EchoNet-Synthetic builds it (echosyn/privacy/shared.py
    # SiameseNetwork): torchvision's ResNet-50 with its max-pool, a fresh 4-channel first
    # convolution; start it from ImageNet with load_imagenet_trunk, or load the released
    # weights with load_reference_weights.
    "paper_reference": {
        "arch": "resnet50",
        "in_channels": 4,
        "embedding_dim": 128,
        "widths": (64, 128, 256, 512),
        "layers": (3, 4, 6, 3),
        "stem_maxpool": True,
        "input_norm": "minmax",
        "pad_to": None,
    },
    # CPU-sized plumbing model for tests and the phantom runs: BasicBlock ResNet, 3x3 stem.
    "tiny": {
        "arch": "tiny",
        "in_channels": 4,
        "embedding_dim": 32,
        "widths": (16, 32, 64),
        "layers": (1, 1, 1),
        "stem_maxpool": False,
        "input_norm": "minmax",
        "pad_to": None,
    },
}


def _tiny_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """A stage of ``blocks`` BasicBlocks, as torchvision's ``ResNet._make_layer`` builds it."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes),
        )
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class _TinyResNet(nn.Module):
    """BasicBlock ResNet for small latent frames: 3x3 stride-1 stem, stages 1, 2, 2, ...

    Module names follow torchvision's ``ResNet`` (``conv1``, ``bn1``, ``layers``, ``avgpool``,
    ``fc``); the stages sit in one ``ModuleList`` because their number is configurable.
    """

    def __init__(
        self, in_channels: int, widths: tuple, layers: tuple, out_features: int, maxpool: bool
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if maxpool else nn.Identity()
        inplanes = widths[0]
        stages = []
        for i, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            stages.append(_tiny_stage(inplanes, planes, blocks, stride=1 if i == 0 else 2))
            inplanes = planes
        self.layers = nn.ModuleList(stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # [B, w0, h, w]
        x = self.maxpool(x)
        for stage in self.layers:
            x = stage(x)  # [B, w_i, h / 2^i, w / 2^i]
        x = rearrange(self.avgpool(x), "b c 1 1 -> b c")
        return self.fc(x)


def _resnet50(in_channels: int, out_features: int, maxpool: bool) -> nn.Module:
    """torchvision ResNet-50 (random init) with ``in_channels`` inputs and ``out_features``."""
    net = torchvision.models.resnet50(weights=None)
    # Same 7x7 stride-2 shape as torchvision's first convolution, as EchoNet-Synthetic does.
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    if not maxpool:
        net.maxpool = nn.Identity()
    net.fc = nn.Linear(RESNET50_FEATURES, out_features)
    return net


class PrivacyEmbedder(ModelMixin, ConfigMixin):
    """Siamese re-identification network on single VAE latent frames.

    ``forward`` embeds a batch of latent frames: optional replicate padding to ``pad_to``,
    optional per-frame min-max scaling to [-1, 1], the ResNet trunk, global average pooling,
    a linear layer to ``embedding_dim`` and a sigmoid (EchoNet-Synthetic's ``forward_once``).
    :meth:`pair_logits` is the Siamese head ``linear(|e1 - e2|)``; its sigmoid is the
    probability that two frames show the same video (trained with binary cross-entropy).

    Config parameters:
        arch (str, "resnet50"): ``"resnet50"`` (torchvision's ResNet-50, Bottleneck blocks,
            7x7 stride-2 first convolution taking ``in_channels``) or ``"tiny"`` (a
            BasicBlock ResNet with a 3x3 stride-1 stem and ``widths``/``layers``).
        in_channels (int, 4): latent channels of a frame.
        embedding_dim (int, 128): length of the embedding (Packhäuser et al.: 128).
        widths (tuple of ints, (64, 128, 256, 512)): stage widths of ``"tiny"`` (the first
            is also the stem's); ``"resnet50"`` has torchvision's fixed widths and checks
            that these equal them.
        layers (tuple of ints, (3, 4, 6, 3)): blocks per stage of ``"tiny"`` (same length as
            ``widths``); checked against torchvision's for ``"resnet50"``.
        stem_maxpool (bool, False): keep the 3x3 stride-2 max-pool after the stem. At 14-16
            px latents it shrinks the maps to 4x4 before the first stage; EchoNet-Synthetic
            kept it.
        input_norm (str, "minmax"): ``"minmax"`` scales each frame to [-1, 1] by its own
            minimum and maximum (EchoNet-Synthetic's "pmone" transform); ``"none"`` feeds the
            scaled latents as stored.
        pad_to (int | None, None): replicate-pad frames smaller than this to ``pad_to`` x
            ``pad_to`` (the LDMs' 14 -> 16); None feeds them as stored.

    Paper: Reynaud et al., "EchoNet-Synthetic: Privacy-preserving Video Generation for Safe
    Medical Data Sharing", MICCAI 2024; Packhäuser et al., Sci. Rep. 12, 14851 (2022).
    """

    @register_to_config
    def __init__(
        self,
        arch: str = "resnet50",
        in_channels: int = 4,
        embedding_dim: int = 128,
        widths: tuple = (64, 128, 256, 512),
        layers: tuple = (3, 4, 6, 3),
        stem_maxpool: bool = False,
        input_norm: str = "minmax",
        pad_to: int | None = None,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        widths, layers = tuple(widths), tuple(layers)
        if len(widths) != len(layers) or not widths:
            raise ValueError(f"widths and layers need the same (>0) length, got {widths}, {layers}")
        if min(widths) < 1 or min(layers) < 1 or in_channels < 1 or embedding_dim < 1:
            raise ValueError(
                "in_channels, embedding_dim, widths and layers must be positive, got "
                f"{in_channels}, {embedding_dim}, {widths}, {layers}"
            )
        if pad_to is not None and pad_to < 1:
            raise ValueError(f"pad_to must be None or >= 1, got {pad_to}")
        if arch == "resnet50":
            if widths != (64, 128, 256, 512) or layers != (3, 4, 6, 3):
                raise ValueError(
                    "arch resnet50 has torchvision's widths (64, 128, 256, 512) and layers "
                    f"(3, 4, 6, 3), got {widths} and {layers}; use arch 'tiny' for other sizes"
                )
            self.trunk = _resnet50(in_channels, embedding_dim, stem_maxpool)
        else:
            self.trunk = _TinyResNet(in_channels, widths, layers, embedding_dim, stem_maxpool)
        self.head = nn.Linear(embedding_dim, 1)

        if arch == "tiny":
            for module in self.trunk.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.constant_(module.weight, 1)
                    nn.init.constant_(module.bias, 0)

    def prepare(self, latents: torch.Tensor) -> torch.Tensor:
        """Pad and normalise latent frames as ``forward`` does before the trunk.

        Args:
            latents: float tensor ``[B, C, h, w]`` (scaled, unpadded VAE latents).

        Returns:
            float tensor ``[B, C, H, W]`` (``H = max(h, pad_to)``).
        """
        if latents.ndim != 4 or latents.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected latents [B, {self.config.in_channels}, h, w], got {tuple(latents.shape)}"
            )
        x = latents
        pad_to = self.config.pad_to
        if pad_to is not None and (x.shape[-2] < pad_to or x.shape[-1] < pad_to):
            dh, dw = max(0, pad_to - x.shape[-2]), max(0, pad_to - x.shape[-1])
            # Even split; an odd extra row/column goes after the frame.
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")
        if self.config.input_norm == "minmax":
            low = x.amin(dim=(1, 2, 3), keepdim=True)
            high = x.amax(dim=(1, 2, 3), keepdim=True)
            x = (x - low) / (high - low).clamp_min(MINMAX_EPS) * 2 - 1
        return x

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Embed latent frames.

        Args:
            latents: float tensor ``[B, in_channels, h, w]``: VAE latents as stored (scaled by
                the VAE's scaling factor, unpadded).

        Returns:
            float tensor ``[B, embedding_dim]`` in (0, 1).
        """
        x = self.prepare(latents)
        features = self.trunk(x)  # [B, embedding_dim]
        return torch.sigmoid(features)

    def pair_logits(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Siamese head: logit that two embedded frames come from the same video.

        Args:
            first: embeddings ``[B, embedding_dim]`` (from ``forward``).
            second: embeddings ``[B, embedding_dim]``.

        Returns:
            float tensor ``[B]`` of logits (sigmoid = probability of "same video").
        """
        logits = self.head(torch.abs(first - second))  # [B, 1]
        return rearrange(logits, "b 1 -> b")


# EchoNet-Synthetic's SiameseNetwork keeps the trunk as `model` and the head as `fc_end`.
REFERENCE_PREFIXES = {"model.": "trunk.", "fc_end.": "head."}


def load_imagenet_trunk(model: PrivacyEmbedder, path: str | Path) -> PrivacyEmbedder:
    """Initialise a ``resnet50`` embedder's trunk from torchvision's ImageNet ResNet-50.

    ``path`` is torchvision's state dict (``resnet50-0676ba61.pth``, the ``pretrained=True``
    weights EchoNet-Synthetic starts from). As in the reference, the first convolution
    (``in_channels`` inputs, not RGB) and the ``fc`` layer (``embedding_dim`` outputs) keep
    their fresh initialisation; every other layer is loaded, and a file that does not fit
    is refused naming the keys.

    Returns:
        ``model``, loaded in place.
    """
    if model.config.arch != "resnet50":
        raise ValueError(f"ImageNet weights need arch resnet50, got {model.config.arch!r}")
    state = load_state_file(path)
    state = {k: v for k, v in state.items() if not k.startswith(("conv1.", "fc."))}
    expected = {
        k: v for k, v in model.trunk.state_dict().items() if not k.startswith(("conv1.", "fc."))
    }
    check_state_keys(expected, state, Path(path), "torchvision's ImageNet resnet50 weights")
    model.trunk.load_state_dict(state, strict=False)
    log.info("loaded the ImageNet ResNet-50 trunk from %s", path)
    return model


def load_reference_weights(model: PrivacyEmbedder, path: str | Path) -> PrivacyEmbedder:
    """Load a released EchoNet-Synthetic re-identification network
    (``<experiment>_best_network.pth``, a ``SiameseNetwork`` state dict) into ``model``
    (preset ``paper_reference``: the released network keeps the max-pool).

    Returns:
        ``model``, loaded in place.

    Raises:
        DataError: the file does not fit the model (keys named).
    """
    state = load_state_file(path)
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in REFERENCE_PREFIXES if key.startswith(p)), None)
        renamed[REFERENCE_PREFIXES[prefix] + key[len(prefix) :] if prefix else key] = value
    what = "EchoNet-Synthetic's re-identification weights with preset paper_reference"
    check_state_keys(model.state_dict(), renamed, Path(path), what)
    model.load_state_dict(renamed, strict=True)
    log.info("loaded released re-identification weights from %s", path)
    return model


def load_privacy_model(model_dir: str | Path) -> PrivacyEmbedder:
    """The embedder exported by :func:`train_privacy` (or any ``save_pretrained`` folder of one)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise DataError(
            model_dir,
            "not a privacy embedder folder (config.json missing)",
            "point at the out_dir written by train_privacy",
        )
    return PrivacyEmbedder.from_pretrained(model_dir)
