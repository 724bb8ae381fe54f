"""The RV-failure network: 3-D ResNet streams over grey clips and optical flow, late fusion.

rohanshad/postop_rv_failure_echo (``/work/shared/PAPERS.md`` §7) predicts severe RV failure
after LVAD implantation with two 3-D ResNet-152 streams, one over 32-frame grey clips and
one over their Farneback flow, each first trained to regress EF on EchoNet-Dynamic; the
flattened pooled features of both are concatenated into one sigmoid unit
(``model_zoo.two_stream``). :class:`TwoStreamNet` is that network with MONAI's 3-D
``ResNet`` as the stream (``depth`` 152 in the paper config, 10 in the demo) and any subset
of the streams, so one class serves the EF pretraining of a single stream (its linear unit is
the EF), the fusion (its unit is the logit) and the grey-only and flow-only ablations.

Differences from the reference, deliberately: the stream is MONAI's post-activation ResNet
(the reference's keras-resnet3d is pre-activation); its stem keeps the reference's 7³
convolution with stride 2 in time and space and the 3³ max-pool; ReLUs are not in-place
(MONAI builds its blocks' in place), so guided backpropagation can hook them.

:func:`keras_export` writes the network in the layout of its Keras mirror, the network that
the reference's TF1 innvestigate step rebuilds (``workflow_scripts/innvestigate_rvfailure.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from echogen.data.errors import DataError
from echogen.data.stream_clips import StreamClipSpec
from echogen.weights import check_state_keys, load_state_file

log = logging.getLogger(__name__)

# depth -> (block, blocks per stage), as MONAI's resnet10 ... resnet200.
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
# Input channels of each stream: grey frames, and the x and y flow components.
STREAM_CHANNELS = {"grey": 1, "flow": 2}
DEFAULT_WIDTHS = (64, 128, 256, 512)


def stream_trunk(depth: int, in_channels: int, widths=DEFAULT_WIDTHS, stem_stride: int = 2):
    """MONAI's 3-D ResNet of ``depth`` without its classifier: clips ``(B, C, T, H, W)`` →
    pooled features ``(B, F)``."""
    from monai.networks.nets import ResNet  # monai's import costs seconds: only when used

    if depth not in RESNET_DEPTHS:
        raise ValueError(f"depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
    block, layers = RESNET_DEPTHS[depth]
    trunk = ResNet(
        block,
        list(layers),
        list(widths),
        spatial_dims=3,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=stem_stride,
        feed_forward=False,
        act=("relu", {"inplace": False}),
    )
    for module in trunk.modules():  # MONAI's blocks keep their default in-place ReLU
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return trunk


def trunk_features(depth: int, widths=DEFAULT_WIDTHS) -> int:
    """Width of a trunk's pooled features (4× the last stage for bottleneck blocks)."""
    return widths[-1] * (4 if RESNET_DEPTHS[depth][0] == "bottleneck" else 1)


class TwoStreamNet(ModelMixin, ConfigMixin):
    """Late fusion of 3-D ResNet streams: one trunk per stream, pooled features concatenated
    in ``streams`` order, one linear unit.

    ``forward(*clips)`` takes one tensor per stream in ``streams`` order (grey
    ``(B, 1, T, H, W)``, flow ``(B, 2, T, H, W)``) and returns ``(B,)``: the logit of the
    positive class for the fusion, the EF for a pretraining stream.

    Args:
        streams: a non-empty subset of :data:`STREAM_CHANNELS`, in input order.
        depth: ResNet depth (:data:`RESNET_DEPTHS`).
        widths: channels of the four stages (before the bottleneck expansion).
        stem_stride: stride of the first convolution in time and space.
    """

    @register_to_config
    def __init__(self, streams: tuple[str, ...] = ("grey", "flow"), depth: int = 152,
                 widths: tuple[int, ...] = DEFAULT_WIDTHS, stem_stride: int = 2):  # fmt: skip
        super().__init__()
        streams = tuple(streams)
        unknown = [s for s in streams if s not in STREAM_CHANNELS]
        if not streams or unknown or len(set(streams)) != len(streams):
            raise ValueError(
                f"streams must be distinct names from {sorted(STREAM_CHANNELS)}, got {streams}"
            )
        if len(widths) != 4:
            raise ValueError(f"widths must list the 4 stages' channels, got {widths}")
        self.streams = streams
        self.trunks = nn.ModuleDict(
            {s: stream_trunk(depth, STREAM_CHANNELS[s], widths, stem_stride) for s in streams}
        )
        self.fc = nn.Linear(trunk_features(depth, widths) * len(streams), 1)

    def features(self, *clips: torch.Tensor) -> torch.Tensor:
        """The concatenated pooled features ``(B, F × streams)``."""
        if len(clips) != len(self.streams):
            raise ValueError(f"expected one clip per stream {self.streams}, got {len(clips)}")
        pairs = zip(self.streams, clips, strict=True)
        return torch.cat([self.trunks[s](x) for s, x in pairs], dim=1)

    def forward(self, *clips: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(*clips)).squeeze(1)


def load_pretrained_stream(net: TwoStreamNet, stream: str, model_dir: str | Path) -> None:
    """Copy the trunk of ``stream`` from a single-stream network (its EF pretraining) into
    ``net``; the pretraining's linear unit is dropped, as the reference pops its EF layer."""
    source = TwoStreamNet.from_pretrained(model_dir)
    if tuple(source.config.streams) != (stream,):
        raise DataError(
            model_dir,
            f"holds streams {tuple(source.config.streams)}, not the {stream!r} pretraining",
            "point at the stream's exported pretraining model",
        )
    for key in ("depth", "widths", "stem_stride"):
        theirs, ours = _plain(source.config[key]), _plain(net.config[key])
        if theirs != ours:
            raise DataError(
                model_dir,
                f"its {key} {theirs} differs from the fusion's {ours}",
                "pretrain the streams with the fusion's network settings",
            )
    net.trunks[stream].load_state_dict(source.trunks[stream].state_dict())
    log.info("loaded the %s stream's pretrained trunk from %s", stream, model_dir)


def _plain(value):
    """A config value comparable across a JSON round trip (lists become tuples)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def load_kinetics_trunk(net: TwoStreamNet, stream: str, path: str | Path) -> None:
    """Start a stream's trunk from a Kinetics 3-D ResNet checkpoint (a local file).

    The file is a state dict (or ``{"state_dict": ...}``, keys optionally ``module.``-prefixed)
    of a 3-D ResNet named as MONAI's and Kensho Hara's 3D-ResNets-PyTorch (``conv1``, ``bn1``,
    ``layer1.0.conv1`` ...) at the net's depth and widths; its classifier is dropped and the
    keys are checked. The RGB stem is summed over colours for the grey stream and averaged
    into both channels of the flow stream.
    """
    path = Path(path)
    state = load_state_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(path, "file holds no state dict", "use a Kinetics 3-D ResNet state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    stem = state.get("conv1.weight")
    if stem is not None and stem.shape[1] == 3:
        grey = stem.sum(dim=1, keepdim=True)
        state["conv1.weight"] = grey if stream == "grey" else (grey / 3).repeat(1, 2, 1, 1, 1)
    trunk = net.trunks[stream]
    check_state_keys(trunk.state_dict(), state, path, f"a Kinetics 3-D ResNet-{net.config.depth}")
    trunk.load_state_dict(state, strict=True)
    log.info("loaded a Kinetics trunk for the %s stream from %s", stream, path)


def load_rvfailure_model(model_dir: str | Path) -> tuple[TwoStreamNet, StreamClipSpec]:
    """An exported network of :func:`echogen.training.rvfailure.train_rvfailure` (eval mode)
    and the clip settings, with statistics, it was trained with."""
    spec = load_clip_spec(model_dir)
    return TwoStreamNet.from_pretrained(model_dir).eval(), spec


def load_clip_spec(model_dir: str | Path) -> StreamClipSpec:
    """The clip settings, with statistics, an exported network was trained with."""
    clips_json = Path(model_dir) / "clips.json"
    if not clips_json.is_file():
        raise DataError(model_dir, "not an exported RV-failure network (clips.json missing)",
                        "point at the out_dir written by train_rvfailure")  # fmt: skip
    return StreamClipSpec.from_dict(json.loads(clips_json.read_text()))


KERAS_FORMAT = "echogen-rvfailure-keras/1"


def keras_export(net: TwoStreamNet) -> tuple[dict, dict[str, np.ndarray]]:
    """``net`` as its Keras mirror loads it: the architecture (format :data:`KERAS_FORMAT`)
    and every layer's weights in Keras layout (channels-last kernels ``(kT, kH, kW, in,
    out)``; batch norm gamma, beta, mean, variance; dense ``(in, out)``), keyed
    ``<layer>/<i>`` where the layer is the torch module's path without ``trunks.``, dots as
    underscores (``grey_layer1_0_conv1``)."""
    config = net.config
    block, layers = RESNET_DEPTHS[config.depth]
    trunk = net.trunks[net.streams[0]]
    arch = {
        "format": KERAS_FORMAT,
        "streams": list(net.streams),
        "channels": {s: STREAM_CHANNELS[s] for s in net.streams},
        "block": block,
        "layers": list(layers),
        "widths": [int(w) for w in config.widths],
        "stem": {
            "kernel": list(trunk.conv1.kernel_size),
            "stride": list(trunk.conv1.stride),
            "padding": list(trunk.conv1.padding),
        },
        "max_pool": not trunk.no_max_pool,
        "downsample_bias": bool(trunk.bias_downsample),
        "bn_eps": float(trunk.bn1.eps),
    }
    weights: dict[str, np.ndarray] = {}
    for path, module in net.named_modules():
        name = path.removeprefix("trunks.").replace(".", "_")
        if isinstance(module, nn.Conv3d):
            tensors = [module.weight.permute(2, 3, 4, 1, 0)]
            tensors += [module.bias] if module.bias is not None else []
        elif isinstance(module, nn.BatchNorm3d):
            tensors = [module.weight, module.bias, module.running_mean, module.running_var]
        elif isinstance(module, nn.Linear):
            tensors = [module.weight.t(), module.bias]
        else:
            continue
        for i, tensor in enumerate(tensors):
            weights[f"{name}/{i}"] = tensor.detach().cpu().float().numpy().copy()
    return arch, weights
