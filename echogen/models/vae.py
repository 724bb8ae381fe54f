"""The image VAE of EchoNet-Synthetic: a KL autoencoder with a patch discriminator.

EchoNet-Synthetic (Reynaud et al., MICCAI 2024, PAPERS.md §4) trains CompVis ldm's
``AutoencoderKL`` (ch 128, ch_mult 1,2,2,4, so a factor-8 downsampling, z 4, no attention)
on every frame of EchoNet-Dynamic and Pediatric with ldm's ``LPIPSWithDiscriminator`` loss
(KL weight 1e-6, discriminator from step 50,001, weight 0.5) and converts it to diffusers'
:class:`~diffusers.AutoencoderKL`. Frames are grey, scaled ``x / 128 - 1`` and replicated to
the model's channels; latents are the posterior mean times ``scaling_factor``, 4×14×14 for a
112² frame.

This module holds the model presets and the frame <-> latent helpers every later stage uses
(:func:`encode_frames`, :func:`decode_latents`), and the two loss pieces the trainer
(:mod:`echogen.training.vae`) needs: :class:`PatchDiscriminator` (taming-transformers'
``NLayerDiscriminator``) and :class:`VAELoss` (ldm's ``LPIPSWithDiscriminator``).
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from echogen.data.errors import DataError
from echogen.metrics.paired import LPIPS

log = logging.getLogger(__name__)

VAE_PRESETS: dict[str, dict] = {
    # EchoNet-Synthetic's ldm config `usencoder_kl_16x16x4.yaml` in diffusers terms: ch 128,
    # ch_mult [1,2,2,4] -> block_out_channels 128,256,256,512 (three downsamplings, factor 8),
    # num_res_blocks 2, z_channels 4, attn_resolutions [] and RGB in/out (grey frames are
    # replicated, so published RGB diffusers VAEs load and encode the same way).
    "paper": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 256, 512],
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 112,
        "mid_block_add_attention": False,
    },
    # CPU-sized: the same factor 8 and 4 latent channels (4x14x14 at 112 px), grey in/out.
    "tiny": {
        "in_channels": 1,
        "out_channels": 1,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [16, 32, 32, 32],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 112,
        "mid_block_add_attention": False,
    },
}
# ldm's Encoder/Decoder always build `mid.attn_1` (attn_resolutions only adds attention
# elsewhere), and EchoNet-Synthetic's scripts/convert_vae_pt_to_diffusers.py maps it to
# mid_block.attentions.0, so its released diffusers VAE has it: the paper preset with it.
VAE_PRESETS["paper_reference"] = {**VAE_PRESETS["paper"], "mid_block_add_attention": True}

# Hinge/adaptive-weight constants of ldm's LPIPSWithDiscriminator.
ADAPTIVE_WEIGHT_EPS = 1e-4
ADAPTIVE_WEIGHT_MAX = 1e4
DISC_NORMS = ("batch", "group")


def _vae_keys() -> set[str]:
    return {p for p in inspect.signature(AutoencoderKL.__init__).parameters if p != "self"}


def vae_config(preset: str, overrides: dict | None = None) -> dict:
    """The AutoencoderKL keyword arguments of a preset with overrides applied.

    Raises:
        ValueError: unknown preset or override key (named).
    """
    if preset not in VAE_PRESETS:
        raise ValueError(f"unknown VAE preset {preset!r}; choose one of {list(VAE_PRESETS)}")
    overrides = overrides or {}
    allowed = _vae_keys()
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown VAE config key(s) {unknown}; expected some of {sorted(allowed)}")
    return {**VAE_PRESETS[preset], **overrides}


def build_vae(preset: str, overrides: dict | None = None) -> AutoencoderKL:
    """A randomly initialised :class:`~diffusers.AutoencoderKL` from a preset.

    Seed torch before calling for a reproducible initialisation.

    Args:
        preset: a key of :data:`VAE_PRESETS` ("paper" or "tiny").
        overrides: AutoencoderKL keyword arguments replacing the preset's.

    Returns:
        The model, in train mode, on the CPU.

    Raises:
        ValueError: unknown preset or override key (named).
    """
    return AutoencoderKL(**vae_config(preset, overrides))


def load_vae(folder: str | Path, device: str | torch.device = "cpu") -> AutoencoderKL:
    """Load a diffusers VAE folder (ours, or a published one such as Stable Diffusion's).

    Args:
        folder: a ``save_pretrained`` folder of an AutoencoderKL, or a pipeline folder whose
            ``vae/`` subfolder is one.
        device: where to put the model.

    Returns:
        The model in eval mode, float32, on ``device``.

    Raises:
        DataError: the folder holds no AutoencoderKL config.
    """
    folder = Path(folder)
    fix = "point at the folder written by train_vae or at a diffusers AutoencoderKL folder"
    if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    config = folder / "config.json"
    if not config.is_file():
        raise DataError(folder, "not a VAE folder (config.json missing)", fix)
    try:
        class_name = json.loads(config.read_text()).get("_class_name")
    except json.JSONDecodeError as err:
        raise DataError(config, f"unreadable config ({err})", fix) from err
    if class_name != "AutoencoderKL":
        raise DataError(config, f"config is for {class_name!r}, not an AutoencoderKL", fix)
    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32)
    return vae.to(device).eval()


def frames_to_tensor(frames: np.ndarray, channels: int) -> torch.Tensor:
    """Grey ``uint8`` frames ``(T, H, W)`` as float32 ``(T, channels, H, W)`` in [-1, 1).

    EchoNet-Synthetic's scaling ``x / 128 - 1``; the grey plane is replicated to ``channels``.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise ValueError(f"frames must be uint8 (T, H, W), got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(frames).float() / 128.0 - 1.0
    return x.unsqueeze(1).expand(-1, channels, -1, -1).contiguous()  # (T, channels, H, W)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`frames_to_tensor`: ``(T, C, H, W)`` in [-1, 1] to ``uint8 (T, H, W)``.

    ``(x + 1) * 128``, averaged over channels, rounded and clipped to 0..255.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (T, C, H, W) tensor, got shape {tuple(x.shape)}")
    grey = ((x.detach().float() + 1.0) * 128.0).mean(dim=1)
    return grey.round().clamp(0, 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def encode_frames(vae: AutoencoderKL, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Scaled posterior means of grey frames.

    Args:
        vae: the autoencoder (its ``scaling_factor`` is applied).
        frames: ``uint8 (T, H, W)``, H and W multiples of the VAE's downsampling factor.
        batch_size: frames per forward pass.

    Returns:
        float32 ``(T, latent_channels, H / f, W / f)``: posterior mean × ``scaling_factor``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = frames_to_tensor(frames, vae.config.in_channels)
    parameter = next(vae.parameters())
    out = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].to(parameter.device, parameter.dtype)
        out.append(vae.encode(batch).latent_dist.mean.float().cpu())
    return (torch.cat(out) * vae.config.scaling_factor).numpy()


@torch.no_grad()
def decode_latents(
    vae: AutoencoderKL, latents: np.ndarray | torch.Tensor, batch_size: int = 32
) -> np.ndarray:
    """Decode scaled latents ``(T, C, h, w)`` (as :func:`encode_frames` returns) to grey frames.

    Returns:
        ``uint8 (T, h * f, w * f)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    z = torch.as_tensor(np.asarray(latents) if not torch.is_tensor(latents) else latents)
    if z.ndim != 4:
        raise ValueError(f"latents must be (T, C, h, w), got shape {tuple(z.shape)}")
    parameter = next(vae.parameters())
    z = z.float() / vae.config.scaling_factor
    frames = []
    for start in range(0, len(z), batch_size):
        batch = z[start : start + batch_size].to(parameter.device, parameter.dtype)
        frames.append(tensor_to_frames(vae.decode(batch).sample))
    return np.concatenate(frames)


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """PatchGAN discriminator (pix2pix; taming-transformers' ``NLayerDiscriminator``).

    A 4×4 stride-2 convolution with LeakyReLU(0.2), ``n_layers - 1`` more stride-2 blocks
    (conv, norm, LeakyReLU) doubling the width up to 8×, a stride-1 block, and a 4×4
    convolution to one logit per overlapping patch. Convolutions are initialised
    N(0, 0.02), norm scales N(1, 0.02), as in taming.

    Args:
        in_channels (int, 3): image channels (the VAE's).
        channels (int, 64): width of the first layer (``ndf``).
        n_layers (int, 3): stride-2 layers; the patch grows with it (70 px for 3).
        norm (str, "batch"): "batch" (taming/ldm) or "group".
        norm_num_groups (int, 32): groups when ``norm == "group"`` (capped by the width).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        norm_num_groups: int = 32,
    ):
        super().__init__()
        if norm not in DISC_NORMS:
            raise ValueError(f"norm must be one of {DISC_NORMS}, got {norm!r}")
        if n_layers < 1 or channels < 1 or in_channels < 1:
            raise ValueError(
                f"in_channels, channels and n_layers must be >= 1, got {in_channels}, "
                f"{channels}, {n_layers}"
            )
        self.conv_in = nn.Conv2d(in_channels, channels, kernel_size=4, stride=2, padding=1)
        self.blocks = nn.ModuleList()
        width = channels
        for n in range(1, n_layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            self.blocks.append(
                nn.ModuleDict(
                    {
                        # No bias: the norm that follows has its own shift.
                        "conv": nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                        "norm": self._norm(out),
                    }
                )
            )
            width = out
        self.conv_out = nn.Conv2d(width, 1, kernel_size=4, stride=1, padding=1)
        self.apply(self._init_weights)

    def _norm(self, width: int) -> nn.Module:
        if self.config.norm == "batch":
            return nn.BatchNorm2d(width)
        return nn.GroupNorm(min(self.config.norm_num_groups, width), width)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits.

        Args:
            x: images ``(N, in_channels, H, W)`` in [-1, 1].

        Returns:
            ``(N, 1, h, w)`` logits (real > 0), ``h ≈ H / 2**n_layers - 2``.
        """
        h = F.leaky_relu(self.conv_in(x), 0.2)
        for block in self.blocks:
            h = F.leaky_relu(block["norm"](block["conv"](h)), 0.2)
        return self.conv_out(h)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss ``(mean relu(1 - real) + mean relu(1 + fake)) / 2``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


class VAELoss(nn.Module):
    """ldm's ``LPIPSWithDiscriminator``: L1 + LPIPS as a Laplace NLL, KL, hinge GAN.

    Generator (autoencoder) loss for a batch of N images::

        rec  = |x - x̂| + perceptual_weight * LPIPS(x, x̂)     (per pixel, LPIPS broadcast)
        nll  = sum(rec / exp(logvar) + logvar) / N
        kl   = sum(KL(q(z|x) || N(0, I))) / N
        g    = -mean(D(x̂))
        λ    = disc_weight * clamp(‖∇_w nll‖ / (‖∇_w g‖ + 1e-4), 0, 1e4)   (w: decoder conv_out)
        loss = nll + kl_weight * kl + λ * disc_factor(step) * g

    and the discriminator's ``disc_factor(step) * hinge(D(x), D(x̂))``, where
    ``disc_factor(step)`` is 0 before ``disc_start`` (ldm's ``adopt_weight``). Before then the
    trainer skips the discriminator entirely, which gives the same updates without its cost.

    Args:
        perceptual: an :class:`~echogen.metrics.paired.LPIPS` (its network is used with
            gradients); None only when ``perceptual_weight`` is 0.
        kl_weight: weight of the KL term (1e-6 published).
        perceptual_weight: weight of LPIPS inside ``rec`` (1.0 in ldm).
        disc_weight: scale of the adaptive generator weight (0.5 published).
        disc_start: first step (0-based optimiser step) with the adversarial terms (50,001).
        disc_factor: their weight from ``disc_start`` on (1.0 in ldm).
        logvar_init: initial value of the scalar ``logvar`` (a parameter; ldm never passes it
            to an optimiser, so it stays at 0 there).
    """

    def __init__(
        self,
        perceptual: LPIPS | None,
        kl_weight: float = 1e-6,
        perceptual_weight: float = 1.0,
        disc_weight: float = 0.5,
        disc_start: int = 50001,
        disc_factor: float = 1.0,
        logvar_init: float = 0.0,
    ):
        super().__init__()
        if perceptual is None and perceptual_weight > 0:
            raise ValueError("perceptual_weight > 0 needs an LPIPS network")
        self.perceptual = perceptual  # not a submodule: frozen, outside the state dict
        self.kl_weight = kl_weight
        self.perceptual_weight = perceptual_weight
        self.disc_weight = disc_weight
        self.disc_start = disc_start
        self.disc_factor = disc_factor
        self.logvar = nn.Parameter(torch.tensor(float(logvar_init)))

    def disc_active(self, step: int) -> bool:
        """Whether the adversarial terms count at 0-based optimiser step ``step``."""
        return step >= self.disc_start and self.disc_factor > 0

    def perceptual_distance(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """LPIPS of each pair ``(N,)``, differentiable in ``recon``; grey replicated to RGB."""
        if x.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS needs 1 or 3 channels, got {x.shape[1]}")
        x3 = x.expand(-1, 3, -1, -1)
        recon3 = recon.expand(-1, 3, -1, -1)
        return self.perceptual.model(x3.contiguous(), recon3.contiguous()).flatten()

    @staticmethod
    def adaptive_weight(
        nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, disc_weight: float
    ) -> torch.Tensor:
        """ldm's adaptive GAN weight, detached.

        ``disc_weight * clamp(‖∇nll‖ / (‖∇g‖ + 1e-4), 0, 1e4)``, gradients w.r.t. ``last_layer``.
        """
        nll_grads = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
        g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        weight = torch.norm(nll_grads) / (torch.norm(g_grads) + ADAPTIVE_WEIGHT_EPS)
        return torch.clamp(weight, 0.0, ADAPTIVE_WEIGHT_MAX).detach() * disc_weight

    def generator_loss(
        self,
        x: torch.Tensor,
        recon: torch.Tensor,
        mean: torch.Tensor,
        logvar: torch.Tensor,
        step: int,
        discriminator: nn.Module | None = None,
        last_layer: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The autoencoder's loss.

        Args:
            x: inputs ``(N, C, H, W)`` in [-1, 1].
            recon: reconstructions of the same shape.
            mean, logvar: the posterior's ``(N, c, h, w)`` mean and (clamped) log-variance.
            step: 0-based optimiser step (decides the adversarial factor).
            discriminator: needed from ``disc_start`` on; its parameters should not require
                gradients here (the trainer freezes them for this call).
            last_layer: the decoder's last weight (``vae.decoder.conv_out.weight``), needed
                from ``disc_start`` on for the adaptive weight.

        Returns:
            The scalar loss, and floats for logging: loss, rec_l1 (mean |x - x̂|), perceptual
            (mean LPIPS), nll, kl, logvar, g_loss, d_weight, disc_factor.
        """
        n = x.shape[0]
        abs_error = (x - recon).abs()
        rec = abs_error
        perceptual = torch.zeros((), device=x.device)
        if self.perceptual_weight > 0:
            distances = self.perceptual_distance(x, recon)  # (N,)
            perceptual = distances.mean()
            rec = rec + self.perceptual_weight * distances.view(n, 1, 1, 1)
        nll = (rec / torch.exp(self.logvar) + self.logvar).sum() / n
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / n
        loss = nll + self.kl_weight * kl

        g_loss = torch.zeros((), device=x.device)
        d_weight = torch.zeros((), device=x.device)
        factor = self.disc_factor if self.disc_active(step) else 0.0
        if factor > 0:
            if discriminator is None or last_layer is None:
                raise ValueError(f"step {step} >= disc_start needs discriminator and last_layer")
            g_loss = -discriminator(recon).mean()
            d_weight = self.adaptive_weight(nll, g_loss, last_layer, self.disc_weight)
            loss = loss + d_weight * factor * g_loss
        logs = {
            "loss": loss.item(),
            "rec_l1": abs_error.mean().item(),
            "perceptual": perceptual.item(),
            "nll": nll.item(),
            "kl": kl.item(),
            "logvar": self.logvar.item(),
            "g_loss": g_loss.item(),
            "d_weight": d_weight.item(),
            "disc_factor": factor,
        }
        return loss, logs

    def discriminator_loss(
        self, discriminator: nn.Module, x: torch.Tensor, recon: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``disc_factor(step) * hinge(D(x), D(x̂))``; both inputs are detached.

        Returns:
            The scalar loss, and floats d_loss, logits_real, logits_fake (means).
        """
        logits_real = discriminator(x.detach())
        logits_fake = discriminator(recon.detach())
        factor = self.disc_factor if self.disc_active(step) else 0.0
        d_loss = factor * hinge_d_loss(logits_real, logits_fake)
        logs = {
            "d_loss": d_loss.item(),
            "logits_real": logits_real.mean().item(),
            "logits_fake": logits_fake.mean().item(),
        }
        return d_loss, logs
