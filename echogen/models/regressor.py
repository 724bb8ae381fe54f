"""Ejection-fraction video regressors: torchvision's R(2+1)D-18 / R3D-18 with one output.

EchoNet-Dynamic (Ouyang et al., Nature 2020, https://github.com/echonet/dynamic) regresses EF
with torchvision's ``r2plus1d_18`` whose ``fc`` is replaced by a 1-output layer with bias
55.6 (the training-set mean EF); EchoDiffusion scores generated videos with the same network,
and D'ARTAGNAN's expert is a narrower one-channel R(2+1)D-18. :class:`EFRegressor` builds
all of them from torchvision's own blocks, with module names identical to torchvision's
``VideoResNet``, so that at the default size its state dict is key-for-key and
shape-for-shape that of ``torchvision.models.video.r2plus1d_18(num_classes=1)`` (or
``r3d_18``): EchoNet's released weights and torchvision's Kinetics-400 weights load directly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple

from echogen.data.ef_clips import ClipSpec
from echogen.data.errors import DataError
from echogen.weights import check_state_keys, load_state_file

log = logging.getLogger(__name__)

ARCHS = ("r2plus1d_18", "r3d_18")
DEFAULT_WIDTHS = (64, 128, 256, 512)
DEFAULT_LAYERS = (2, 2, 2, 2)
# torchvision's R(2+1)D stem factorises its 3x7x7 convolution through 45 channels (Tran et
# al. 2018) for a 64-wide network; narrower networks scale it in proportion.
R2PLUS1D_STEM_MID = 45
# DataParallel (as in EchoNet's released checkpoint) prefixes every key with this.
DATAPARALLEL_PREFIX = "module."

MODEL_PRESETS: dict[str, dict] = {
    # EchoNet-Dynamic's EF model: torchvision r2plus1d_18, RGB, fc bias 55.6 (PAPERS.md §1).
    "echonet": {
        "arch": "r2plus1d_18",
        "in_channels": 3,
        "widths": DEFAULT_WIDTHS,
        "layers": DEFAULT_LAYERS,
        "fc_bias_init": 55.6,
    },
    # EchoDiffusion's reference regressor is the same network (Kinetics init, 64 frames at
    # 32 fps, /255): only the clip settings differ (PAPERS.md §3).
    "echodiffusion": {
        "arch": "r2plus1d_18",
        "in_channels": 3,
        "widths": DEFAULT_WIDTHS,
        "layers": DEFAULT_LAYERS,
        "fc_bias_init": 55.6,
    },
    # D'ARTAGNAN's expert (models/video_expert.py of HReynaud/dartagnan): R(2+1)D-18 on 1 grey
    # channel, widths nf * 2^i with the README's --internal_dim 32 and a stem through nf // 2
    # channels: 7,827,621 parameters, as the reference's EFExpert (checked in
    # tests/unit/test_dartagnan_model.py). Its fc keeps PyTorch's init in the reference; the
    # 55.6 bias (EchoNet's) only starts it near the mean EF.
    "dartagnan_expert": {
        "arch": "r2plus1d_18",
        "in_channels": 1,
        "widths": (32, 64, 128, 256),
        "layers": DEFAULT_LAYERS,
        "fc_bias_init": 55.6,
        "stem_mid": 16,
    },
    # CPU-sized plumbing model for tests and the phantom runs.
    "tiny": {
        "arch": "r3d_18",
        "in_channels": 1,
        "widths": (8, 16, 32, 32),
        "layers": (1, 1, 1, 1),
        "fc_bias_init": 55.6,
    },
}


def _stem(arch: str, in_channels: int, width: int, mid: int | None = None) -> nn.Sequential:
    """torchvision's ``R2Plus1dStem`` / ``BasicStem`` with ``in_channels`` in, ``width`` out
    (the R(2+1)D stem through ``mid`` channels; None: 45/64 of ``width``)."""
    if arch == "r2plus1d_18":
        mid = max(1, R2PLUS1D_STEM_MID * width // 64) if mid is None else mid
        return nn.Sequential(
            nn.Conv3d(in_channels, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, width, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(
        nn.Conv3d(in_channels, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def _stage(
    conv_builder: type[Conv2Plus1D] | type[Conv3DSimple],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
) -> nn.Sequential:
    """One residual stage, as torchvision's ``VideoResNet._make_layer`` builds it."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(
                inplanes,
                planes,
                kernel_size=1,
                stride=conv_builder.get_downsample_stride(stride),
                bias=False,
            ),
            nn.BatchNorm3d(planes),
        )
    layers = [BasicBlock(inplanes, planes, conv_builder, stride, downsample)]
    layers += [BasicBlock(planes, planes, conv_builder) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class EFRegressor(ModelMixin, ConfigMixin):
    """Video ResNet-18 that regresses ejection fraction (%) from a clip.

    Module names follow torchvision's ``VideoResNet`` (``stem``, ``layer1``..``layer4``,
    ``avgpool``, ``fc``), so at the default widths/layers and 3 input channels the state dict
    equals ``torchvision.models.video.r2plus1d_18(num_classes=1)``'s (``r3d_18`` likewise).
    Convolutions and batch norms are initialised as torchvision does; ``fc`` keeps PyTorch's
    default ``nn.Linear`` init with its bias set to ``fc_bias_init``, as EchoNet does after
    replacing torchvision's classifier.

    Config parameters:
        arch (str, "r2plus1d_18"): ``"r2plus1d_18"`` (R(2+1)D blocks, ``Conv2Plus1D``,
            factorised stem) or ``"r3d_18"`` (full 3-D ``Conv3DSimple`` blocks, 3x7x7 stem).
        in_channels (int, 3): input channels; 3 for EchoNet's RGB-repeated grey, 1 for grey.
        widths (tuple of 4 ints, (64, 128, 256, 512)): channels of ``layer1``..``layer4``;
            the stem outputs ``widths[0]`` (the R(2+1)D stem's middle width is 45/64 of it).
        layers (tuple of 4 ints, (2, 2, 2, 2)): residual blocks per stage.
        fc_bias_init (float, 55.6): initial output bias, the mean EF of the training set
            (EchoNet-Dynamic's TRAIN mean).
        out_features (int, 1): outputs of ``fc``; 1 regresses EF (output ``[B]``), K > 1 gives
            the logits ``[B, K]`` of a K-class video classifier (EchoDream's CardiacNet
            classifiers, :mod:`echogen.training.classifier`).
        stem_mid (int | None, None): the R(2+1)D stem's middle width; None: 45/64 of
            ``widths[0]`` (torchvision); D'ARTAGNAN's expert uses ``widths[0] // 2``.

    Paper: Ouyang et al., "Video-based AI for beat-to-beat assessment of cardiac function",
    Nature 2020; Tran et al., "A Closer Look at Spatiotemporal Convolutions", CVPR 2018.
    """

    @register_to_config
    def __init__(
        self,
        arch: str = "r2plus1d_18",
        in_channels: int = 3,
        widths: tuple = DEFAULT_WIDTHS,
        layers: tuple = DEFAULT_LAYERS,
        fc_bias_init: float = 55.6,
        out_features: int = 1,
        stem_mid: int | None = None,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        widths, layers = tuple(widths), tuple(layers)
        if len(widths) != 4 or len(layers) != 4:
            raise ValueError(f"widths and layers need 4 entries, got {widths} and {layers}")
        if min(widths) < 1 or min(layers) < 1 or in_channels < 1 or out_features < 1:
            raise ValueError(
                f"in_channels, widths, layers and out_features must be positive, got "
                f"{in_channels}, {widths}, {layers}, {out_features}"
            )
        conv_builder = Conv2Plus1D if arch == "r2plus1d_18" else Conv3DSimple

        self.stem = _stem(arch, in_channels, widths[0], stem_mid)
        self.layer1 = _stage(conv_builder, widths[0], widths[0], layers[0], stride=1)
        self.layer2 = _stage(conv_builder, widths[0], widths[1], layers[1], stride=2)
        self.layer3 = _stage(conv_builder, widths[1], widths[2], layers[2], stride=2)
        self.layer4 = _stage(conv_builder, widths[2], widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(widths[3], out_features)

        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.fc.bias, fc_bias_init)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Predict EF.

        Args:
            video: float tensor ``[B, C, T, H, W]`` with ``C == in_channels``, normalised as the
                model was trained (see :class:`echogen.data.ef_clips.ClipSpec`).

        Returns:
            float tensor ``[B]``: EF in % (``out_features == 1``); else ``[B, out_features]``
            class logits.
        """
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected video [B, {self.config.in_channels}, T, H, W], got {tuple(video.shape)}"
            )
        x = self.stem(video)  # [B, w0, T, H/2, W/2]
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)  # [B, w3, T/8, H/16, W/16]
        x = self.avgpool(x)
        x = rearrange(x, "b c 1 1 1 -> b c")
        x = self.fc(x)  # [B, out_features]
        if self.config.out_features == 1:
            return rearrange(x, "b 1 -> b")
        return x


def load_published_weights(model: EFRegressor, path: str | Path) -> EFRegressor:
    """Load EchoNet-Dynamic's released EF weights (``r2plus1d_18_32_2_pretrained.pt``).

    The file is a dict whose ``"state_dict"`` was saved from a ``DataParallel`` model, so every
    key starts with ``module.``; a bare state dict (with or without the prefix) also works.
    Loading is strict: every key and shape must match, else a :class:`DataError` naming the
    file lists a few of the differences.

    Returns:
        ``model``, with the weights loaded in place.
    """
    path = Path(path)
    state = load_state_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(
            path, "file holds no state dict", "use EchoNet's r2plus1d_18_32_2_pretrained.pt"
        )
    state = {k.removeprefix(DATAPARALLEL_PREFIX): v for k, v in state.items()}
    check_state_keys(model.state_dict(), state, path, "EchoNet's r2plus1d_18_32_2_pretrained.pt")
    model.load_state_dict(state, strict=True)
    log.info("loaded published EF weights from %s", path)
    return model


def load_kinetics_trunk(model: EFRegressor, path: str | Path) -> EFRegressor:
    """Initialise every layer but ``fc`` from torchvision Kinetics-400 weights.

    ``path`` is a torchvision state dict (``r2plus1d_18-91a641e6.pth`` or
    ``r3d_18-b3b3357e.pth``, keys without prefix). Its 400-class ``fc`` is dropped and the
    model's own ``fc`` (bias ``fc_bias_init``) kept. For a one-channel model the first stem
    convolution's weight is summed over its RGB inputs, so a grey clip gives the same response
    as the Kinetics network gets from that clip repeated to three channels.

    Returns:
        ``model``, with the trunk loaded in place.
    """
    cfg = model.config
    if tuple(cfg.widths) != DEFAULT_WIDTHS or tuple(cfg.layers) != DEFAULT_LAYERS:
        raise ValueError(
            f"Kinetics weights need widths {DEFAULT_WIDTHS} and layers {DEFAULT_LAYERS}, "
            f"got {tuple(cfg.widths)} and {tuple(cfg.layers)}"
        )
    path = Path(path)
    state = load_state_file(path)
    if not isinstance(state, dict):
        raise DataError(path, "file holds no state dict", f"use torchvision's {cfg.arch} weights")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if cfg.in_channels == 1 and "stem.0.weight" in state:
        state["stem.0.weight"] = state["stem.0.weight"].sum(dim=1, keepdim=True)
    trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    check_state_keys(trunk, state, path, f"torchvision's Kinetics-400 {cfg.arch} weights")
    model.load_state_dict(state, strict=False)
    log.info("loaded Kinetics-400 trunk from %s", path)
    return model


def load_regressor(model_dir: str | Path) -> tuple[EFRegressor, ClipSpec]:
    """The exported model of :func:`train_regressor` and the clip settings it was trained with."""
    model_dir = Path(model_dir)
    clips_json = model_dir / "clips.json"
    if not clips_json.is_file():
        raise DataError(
            model_dir,
            "not an exported EF regressor (clips.json missing)",
            "point at the out_dir written by train_regressor",
        )
    spec = ClipSpec.from_dict(json.loads(clips_json.read_text()))
    return EFRegressor.from_pretrained(model_dir), spec


def load_classifier(model_dir: str | Path) -> tuple[EFRegressor, ClipSpec, list[dict]]:
    """The exported model of :func:`train_classifier`, its clip settings and its classes.

    Returns:
        (model, spec, classes) with ``classes[label] = {"label", "class_id", "class_name"}``.
    """
    model_dir = Path(model_dir)
    for name in ("clips.json", "train.json"):
        if not (model_dir / name).is_file():
            raise DataError(
                model_dir,
                f"not an exported classifier ({name} missing)",
                "point at the out_dir written by train_classifier",
            )
    spec = ClipSpec.from_dict(json.loads((model_dir / "clips.json").read_text()))
    classes = json.loads((model_dir / "train.json").read_text())["classes"]
    return EFRegressor.from_pretrained(model_dir), spec, classes
