"""SPADE (GauGAN): images synthesised from semantic masks, as cardiGAN trains it on CAMUS.

SPADE (Park et al., CVPR 2019; NVlabs/SPADE) and cardiGAN (urancon/cardiGAN,
``/work/shared/PAPERS.md`` §8), which trains it on CAMUS 4-chamber masks. The parts, at any
size, with the reference's module names so its ``latest_net_G.pth`` / ``latest_net_D.pth``
state dicts load (:func:`load_reference_state`):

- :class:`SPADE`: a parameter-free normalisation (batch, synchronised across GPUs when the
  trainer has several, or instance) modulated per pixel by ``1 + gamma(mask)`` and
  ``beta(mask)``, two convolutions on a shared hidden map (128 channels in the reference) of
  the mask resized (nearest) to the activation;
- :class:`SPADEResnetBlock`: two SPADE-ReLU(0.2)-conv stages, spectral-normalised, and a
  learned SPADE-conv shortcut where the width changes;
- :class:`SPADEGenerator`: from the mask downsampled to ``crop_size / 2**n_up`` (or from a
  style code ``z`` through a linear layer in encoder mode), a head block, two middle
  blocks and four (five with ``"most"``) upsampling blocks from ``16 * ngf`` down to
  ``ngf``, a ReLU(0.2)-conv to the image channels and ``tanh``;
- :class:`ConvEncoder` (the optional style mode, ``use_vae``): stride-2 spectral-instance
  convolutions of the image resized to ``encoder_size`` down to 4x4, then ``mu`` and
  ``logvar`` of a ``z_dim`` code;
- :class:`MultiscaleDiscriminator`: ``num_d`` PatchGAN discriminators (``n_layers`` 4x4
  spectral-instance convolutions, widths doubling to 512) on the mask and image concatenated,
  each on the input average-pooled once more; every intermediate feature is returned for
  the feature-matching loss.

Losses (:func:`hinge_loss`, :func:`feature_matching_loss`, :class:`VGGLoss`,
:func:`kld_loss`) follow ``models/networks/loss.py`` and ``models/pix2pix_model.py``. Images
are ``(B, C, H, W)`` in ``[-1, 1]``; masks are integer label maps one-hot encoded by
:func:`one_hot` (``label_nc`` channels: cardiGAN's 3 labels plus the don't-care label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn.utils import spectral_norm

PARAM_FREE_NORMS = ("batch", "instance")
UPSAMPLING = {"normal": 5, "more": 6, "most": 7}
GENERATOR_DIR, DISCRIMINATOR_DIR, ENCODER_DIR = "generator", "discriminator", "encoder"
# VGG19 feature slices of SPADE's perceptual loss (after relu1_1 … relu5_1) and their weights.
VGG_SLICES = (2, 7, 12, 21, 30)
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

# Named sizes. "reference": cardiGAN's command (--ngf 48 --ndf 48 at 256 px, label_nc 3 plus
# the don't-care label, RGB images as its prepare_dataset.py writes them); "tiny": CPU tests
# and the demo.
GENERATOR_PRESETS: dict[str, dict] = {
    "reference": {"label_nc": 4, "out_channels": 3, "ngf": 48, "crop_size": 256},
    "tiny": {"label_nc": 4, "out_channels": 1, "ngf": 4, "crop_size": 64, "spade_hidden": 16},
}
DISCRIMINATOR_PRESETS: dict[str, dict] = {
    "reference": {"in_channels": 4 + 3, "ndf": 48, "n_layers": 4, "num_d": 2},
    "tiny": {"in_channels": 4 + 1, "ndf": 8, "n_layers": 3, "num_d": 2},
}


def one_hot(label: torch.Tensor, label_nc: int) -> torch.Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` integer labels → ``(B, label_nc, H, W)`` floats.

    Raises:
        ValueError: a label outside ``0 .. label_nc - 1``.
    """
    if label.ndim == 4:
        label = label[:, 0]
    label = label.long()
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= label_nc):
        low, high = int(label.min()), int(label.max())
        raise ValueError(f"label values must lie in 0..{label_nc - 1}, got {low}..{high}")
    return F.one_hot(label, label_nc).permute(0, 3, 1, 2).float()


def _param_free(kind: str, channels: int) -> nn.Module:
    if kind == "batch":  # the reference's SynchronizedBatchNorm2d; SyncBatchNorm under DDP
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"param-free norm must be one of {PARAM_FREE_NORMS}, got {kind!r}")


def _spectral_instance(layer: nn.Conv2d) -> nn.Sequential:
    """The reference's ``spectralinstance`` norm: spectral norm, bias dropped, InstanceNorm."""
    layer = spectral_norm(layer)
    del layer.bias
    layer.register_parameter("bias", None)
    return nn.Sequential(layer, nn.InstanceNorm2d(layer.out_channels, affine=False))


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """SPADE's ``xavier`` initialisation (``init_variance`` 0.02) of plain Conv/Linear weights.

    As in the reference, it writes ``module.weight``, which for a spectral-normalised layer is
    a derived tensor recomputed from ``weight_orig`` at the next forward: those layers keep
    PyTorch's default initialisation there too.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear) and isinstance(m.weight, nn.Parameter):
            nn.init.xavier_normal_(m.weight.data, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias.data)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation of ``norm_nc`` channels by a ``label_nc`` mask."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128, kernel: int = 3,
                 param_free_norm: str = "batch"):  # fmt: skip
        super().__init__()
        self.param_free_norm = _param_free(param_free_norm, norm_nc)
        pad = kernel // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel, padding=pad)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Two SPADE-LeakyReLU(0.2)-conv stages plus a (learned where ``fin != fout``) shortcut."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int = 128,
                 param_free_norm: str = "batch", spectral: bool = True):  # fmt: skip
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        wrap = spectral_norm if spectral else (lambda layer: layer)
        self.conv_0 = wrap(nn.Conv2d(fin, fmiddle, 3, padding=1))
        self.conv_1 = wrap(nn.Conv2d(fmiddle, fout, 3, padding=1))
        norm = {"label_nc": label_nc, "hidden": hidden, "param_free_norm": param_free_norm}
        self.norm_0 = SPADE(fin, **norm)
        self.norm_1 = SPADE(fmiddle, **norm)
        if self.learned_shortcut:
            self.conv_s = wrap(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, **norm)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(ModelMixin, ConfigMixin):
    """SPADE's residual generator (``models/networks/generator.py``), at any width and size.

    Args:
        label_nc: channels of the one-hot mask (labels plus the don't-care label).
        out_channels: image channels (3 in the reference, which trains on grey images saved
            as RGB; 1 keeps them grey).
        ngf: width of the last block; the head is ``16 * ngf`` wide.
        crop_size: image side (square, ``aspect_ratio`` 1); a multiple of ``2**n_up``.
        num_upsampling_layers: ``"normal"`` (5 doublings), ``"more"`` (6) or ``"most"`` (7).
        use_vae: start from a style code ``z`` (the encoder mode) instead of the mask.
        z_dim: the style code's size.
        spade_hidden: hidden channels of every SPADE (128 in the reference).
        param_free_norm: ``"batch"`` (the reference's ``spectralspadesyncbatch3x3``) or
            ``"instance"``.
        spectral: spectral normalisation of the residual blocks' convolutions.
    """

    @register_to_config
    def __init__(self, label_nc: int = 4, out_channels: int = 3, ngf: int = 64,
                 crop_size: int = 256, num_upsampling_layers: str = "normal",
                 use_vae: bool = False, z_dim: int = 256, spade_hidden: int = 128,
                 param_free_norm: str = "batch", spectral: bool = True):  # fmt: skip
        super().__init__()
        if num_upsampling_layers not in UPSAMPLING:
            raise ValueError(f"num_upsampling_layers must be one of {sorted(UPSAMPLING)}")
        self.n_up = UPSAMPLING[num_upsampling_layers]
        if crop_size % 2**self.n_up:
            raise ValueError(
                f"crop_size {crop_size} must be a multiple of 2**{self.n_up} "
                f"({num_upsampling_layers!r} upsampling)"
            )
        if min(label_nc, out_channels, ngf, z_dim, spade_hidden) < 1:
            raise ValueError("label_nc, out_channels, ngf, z_dim and spade_hidden must be >= 1")
        self.sw = self.sh = crop_size // 2**self.n_up
        nf = ngf
        if use_vae:
            self.fc = nn.Linear(z_dim, 16 * nf * self.sw * self.sh)
        else:
            self.fc = nn.Conv2d(label_nc, 16 * nf, 3, padding=1)
        block = {"label_nc": label_nc, "hidden": spade_hidden,
                 "param_free_norm": param_free_norm, "spectral": spectral}  # fmt: skip
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, **block)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, **block)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, **block)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, **block)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, **block)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, **block)
        self.up_3 = SPADEResnetBlock(2 * nf, nf, **block)
        final_nc = nf
        if num_upsampling_layers == "most":
            self.up_4 = SPADEResnetBlock(nf, max(nf // 2, 1), **block)
            final_nc = max(nf // 2, 1)
        self.conv_img = nn.Conv2d(final_nc, out_channels, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        init_weights(self)

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """Images ``(B, out_channels, crop, crop)`` in ``[-1, 1]`` from one-hot masks ``seg``.

        In encoder mode ``z`` is the style code; None draws it from ``N(0, I)`` with
        ``generator``.
        """
        cfg = self.config
        if seg.shape[1] != cfg.label_nc or seg.shape[-1] != cfg.crop_size \
                or seg.shape[-2] != cfg.crop_size:  # fmt: skip
            raise ValueError(
                f"expected masks (B, {cfg.label_nc}, {cfg.crop_size}, {cfg.crop_size}), "
                f"got {tuple(seg.shape)}"
            )
        if cfg.use_vae:
            if z is None:
                z = torch.randn(seg.shape[0], cfg.z_dim, device=seg.device, dtype=seg.dtype,
                                generator=generator)  # fmt: skip
            x = self.fc(z).view(-1, 16 * cfg.ngf, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw)))
        x = self.head_0(x, seg)
        x = self.G_middle_0(self.up(x), seg)
        if cfg.num_upsampling_layers in ("more", "most"):
            x = self.up(x)
        x = self.G_middle_1(x, seg)
        for name in ("up_0", "up_1", "up_2", "up_3") + (("up_4",) if hasattr(self, "up_4") else ()):
            x = getattr(self, name)(self.up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class ConvEncoder(ModelMixin, ConfigMixin):
    """SPADE's style encoder (``models/networks/encoder.py``): image → ``(mu, logvar)``.

    The image is resized (bilinear) to ``encoder_size`` (256 in the reference whatever the
    crop) and halved by stride-2 3x3 spectral-instance convolutions (widths ``ndf``, 2, 4,
    8, 8, 8 … ``ndf``) down to 4x4; the reference's ``ndf`` is its ``ngf``.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, ndf: int = 64, encoder_size: int = 256,
                 z_dim: int = 256):  # fmt: skip
        super().__init__()
        n = int(round(math.log2(encoder_size / 4)))
        if encoder_size < 8 or 4 * 2**n != encoder_size:
            raise ValueError(f"encoder_size must be a power of 2 >= 8, got {encoder_size}")
        widths = [in_channels] + [ndf * min(2**i, 8) for i in range(n)]
        for i in range(n):
            layer = nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1)
            self.add_module(f"layer{i + 1}", _spectral_instance(layer))
        self.n_layers = n
        self.fc_mu = nn.Linear(widths[-1] * 16, z_dim)
        self.fc_var = nn.Linear(widths[-1] * 16, z_dim)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.encoder_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear")
        x = self.layer1(x)
        for i in range(2, self.n_layers + 1):
            x = getattr(self, f"layer{i}")(F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


class NLayerDiscriminator(nn.Module):
    """A PatchGAN: ``n_layers`` 4x4 convolutions (stride 2, the last stride 1), widths doubling
    up to 512, spectral-instance normalised after the first, and a 1-channel 4x4 output."""

    def __init__(self, in_channels: int, ndf: int, n_layers: int):
        super().__init__()
        kw, pad = 4, 2
        nf = ndf
        sequence = [[nn.Conv2d(in_channels, nf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2)]]
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = nn.Conv2d(prev, nf, kw, stride=stride, padding=pad)
            sequence.append([_spectral_instance(conv), nn.LeakyReLU(0.2)])
        sequence.append([nn.Conv2d(nf, 1, kw, stride=1, padding=pad)])
        for n, layers in enumerate(sequence):
            self.add_module(f"model{n}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.children():
            x = layer(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(ModelMixin, ConfigMixin):
    """``num_d`` PatchGANs on ``cat(mask, image)``, the i-th on the input average-pooled
    (3x3, stride 2, padding not counted) ``i`` times. Returns, per discriminator, the list of
    its intermediate features ending with its patch logits."""

    @register_to_config
    def __init__(self, in_channels: int = 7, ndf: int = 64, n_layers: int = 4, num_d: int = 2):
        super().__init__()
        if min(in_channels, ndf, n_layers, num_d) < 1:
            raise ValueError("in_channels, ndf, n_layers and num_d must be >= 1")
        for i in range(num_d):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(in_channels, ndf, n_layers))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        result = []
        for net in self.children():
            result.append(net(x))
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return result


def hinge_loss(preds: Sequence[Sequence[torch.Tensor]], real: bool, for_discriminator: bool):
    """SPADE's hinge GAN loss over the multi-scale outputs (the last feature of each), the
    mean over discriminators. The generator's term (``for_discriminator=False``) must aim
    at real."""
    if not for_discriminator and not real:
        raise ValueError("the generator's hinge loss must aim at real")
    total = 0.0
    for features in preds:
        logits = features[-1].float()
        if for_discriminator:
            total = total - torch.clamp((logits - 1) if real else (-logits - 1), max=0).mean()
        else:
            total = total - logits.mean()
    return total / len(preds)


def feature_matching_loss(
    fake: Sequence[Sequence[torch.Tensor]],
    real: Sequence[Sequence[torch.Tensor]],
    weight: float = 10.0,
):
    """``weight / num_d`` times the L1 between the discriminators' intermediate features of
    fake and (detached) real inputs, all but the logits."""
    total = 0.0
    for fake_i, real_i in zip(fake, real, strict=True):
        for f, r in zip(fake_i[:-1], real_i[:-1], strict=True):
            total = total + F.l1_loss(f.float(), r.detach().float()) * weight / len(fake)
    return total


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The style code's KL divergence to ``N(0, I)``, summed (SPADE's ``KLDLoss``)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
    return eps * torch.exp(0.5 * logvar) + mu


class VGGLoss(nn.Module):
    """SPADE's perceptual loss: weighted L1 between VGG19 features (relu1_1 … relu5_1) of the
    generated and (detached) real images, fed in ``[-1, 1]`` without ImageNet
    normalisation as the reference does; grey images are repeated to 3 channels.

    Args:
        weights: a local torchvision ``vgg19`` state dict (``features.*`` keys are used; the
            ImageNet weights the reference downloads). None: randomly initialised VGG19,
            seeded: a plumbing configuration, not the reference's loss.
    """

    def __init__(self, weights: str | Path | None = None, seed: int = 0):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(
                seed
            )  # VGG19's feature layers alone ("E"), as torchvision builds them
            features = make_layers(cfgs["E"])[: VGG_SLICES[-1]]
        if weights is not None:
            features.load_state_dict(_vgg_features(weights))
        bounds = (0, *VGG_SLICES)
        self.slices = nn.ModuleList(
            nn.Sequential(*features[bounds[i] : bounds[i + 1]]) for i in range(len(VGG_SLICES))
        )
        self.requires_grad_(False)
        self.eval()
        self.pretrained = weights is not None

    def train(self, mode: bool = True):  # always frozen, always in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
        loss = 0.0
        for weight, block in zip(VGG_WEIGHTS, self.slices, strict=True):
            x, y = block(x), block(y)
            loss = loss + weight * F.l1_loss(x.float(), y.detach().float())
        return loss


def _vgg_features(path: str | Path) -> dict:
    """The ``features.*`` entries of a torchvision VGG19 state dict, renamed, key-checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weights {path} not found; set cardigan.vgg_weights to "
                                "a local torchvision vgg19 state dict, or null")  # fmt: skip
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    wanted = {f"{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)
              for p in ("weight", "bias")}  # fmt: skip
    missing = sorted(wanted - set(features))
    if missing:
        raise ValueError(
            f"{path} is not a torchvision vgg19 state dict: missing features.{missing[0]}"
        )
    return {k: v for k, v in features.items() if k in wanted}


def build_generator(preset: str = "reference", **overrides) -> SPADEGenerator:
    """A generator of a named size (:data:`GENERATOR_PRESETS`) with keyword overrides."""
    if preset not in GENERATOR_PRESETS:
        raise ValueError(
            f"unknown SPADE generator preset {preset!r}; known: {sorted(GENERATOR_PRESETS)}"
        )
    return SPADEGenerator(**{**GENERATOR_PRESETS[preset], **overrides})


def build_discriminator(preset: str = "reference", **overrides) -> MultiscaleDiscriminator:
    """A discriminator of a named size (:data:`DISCRIMINATOR_PRESETS`) with overrides."""
    if preset not in DISCRIMINATOR_PRESETS:
        raise ValueError(
            f"unknown SPADE discriminator preset {preset!r}; known: {sorted(DISCRIMINATOR_PRESETS)}"
        )
    return MultiscaleDiscriminator(**{**DISCRIMINATOR_PRESETS[preset], **overrides})


def load_reference_state(module: nn.Module, path: str | Path) -> None:
    """Load an NVlabs/SPADE checkpoint (``latest_net_G.pth``, ``_D``, ``_E``) into ``module``.

    The module names are the reference's; its synchronised batch norm has no
    ``num_batches_tracked`` counter, the only key allowed to be absent.

    Raises:
        ValueError: another missing or unexpected key, or a shape mismatch (naming it).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path} does not fit this {type(module).__name__}: missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}; check ngf/ndf/label_nc/crop_size"
        )


def load_generator(model_dir: str | Path, device: torch.device | str = "cpu") -> SPADEGenerator:
    """A trained generator (``<model_dir>/generator``) in eval mode."""
    folder = Path(model_dir) / GENERATOR_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"no SPADE generator under {model_dir}; train it first")
    return SPADEGenerator.from_pretrained(folder).to(device).eval()
