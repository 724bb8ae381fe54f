"""Latent image diffusion model (LIDM): the frames EchoNet-Synthetic's LVDM animates.

EchoNet-Synthetic (https://github.com/HReynaud/EchoNet-Synthetic, ``echosyn/lidm``) trains one
LIDM per dataset on single VAE latent frames (4 x 14 x 14) drawn from random TRAIN videos:
diffusers' ``UNet2DModel`` (channels 128/256/256/512, self-attention in the first three
levels, resnet down/up-sampling), the LVDM's DDPM schedule with v-prediction, the noised
latent replicate-padded to 16 x 16 around every UNet call and the loss taken inside 14 x 14,
batch 256, lr 3e-4 (constant: its ``lr_warmup_steps`` is ignored by diffusers' ``constant``
schedule), EMA. Its samples, once the privacy filter has kept them, are the conditioning
frames of the synthetic videos. EchoDream (https://github.com/Marshall-mk/Echodream,
``echo/lidm``) makes it class-conditional: a ``UNet2DConditionModel`` with the same blocks whose
mid block cross-attends to the float class id (``cross_attention_dim`` 1), the token zeroed
with probability 0.3, sampled with classifier-free guidance 5.

A trained model is a folder (:func:`save_lidm` / :func:`load_lidm`)::

    unet/           UNet2DModel or UNet2DConditionModel .save_pretrained (EMA weights)
    scheduler/      DDPMScheduler config (echogen.models.lvdm.TRAIN_SCHEDULER)
    lidm.json       LIDMSpec
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel

from echogen.data.io import atomic_dir, write_json
from echogen.models.lvdm import (
    CLASS_NULL_TOKEN,
    CLASS_NULLS,
    NORM_GROUPS,
    crop_latents,
    make_scheduler,
    pad_latents,
    read_model_folder,
)
from echogen.settings import DictFields

CONDITIONINGS = ("none", "class")
SPEC_FILE = "lidm.json"
# The class each conditioning builds (EchoNet-Synthetic's unconditional, EchoDream's class).
UNET_CLASSES = {"none": UNet2DModel, "class": UNet2DConditionModel}
# Keys only UNet2DModel takes: EchoDream's class UNet leaves them out, so it down- and
# up-samples with convolutions where EchoNet-Synthetic's uses resnet blocks.
_UNCONDITIONAL_ONLY = ("downsample_type", "upsample_type", "attn_norm_num_groups")

LIDM_PRESETS: dict[str, dict] = {
    # EchoNet-Synthetic's LIDM (echosyn/lidm/configs/dynamic.yaml; ped_a4c and ped_psax are
    # the same network): sample_size 14 is metadata, the UNet sees 16 x 16.
    "paper": {
        "sample_size": 14,
        "in_channels": 4,
        "out_channels": 4,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "freq_shift": 0,
        "flip_sin_to_cos": True,
        "down_block_types": (
            "AttnDownBlock2D",
            "AttnDownBlock2D",
            "AttnDownBlock2D",
            "DownBlock2D",
        ),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D"),
        "block_out_channels": (128, 256, 256, 512),
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": "resnet",
        "upsample_type": "resnet",
        "dropout": 0.0,
        "act_fn": "silu",
        "attention_head_dim": 8,
        "norm_num_groups": NORM_GROUPS,
        "norm_eps": 1e-5,
    },
    # CPU-sized plumbing model for tests and the phantom demo (one downsampling, attention in
    # the first level, one layer per block).
    "tiny": {
        "sample_size": 14,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D"),
        "block_out_channels": (32, 32),
        "layers_per_block": 1,
        "downsample_type": "resnet",
        "upsample_type": "resnet",
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    },
}


@dataclass(frozen=True)
class LIDMSpec(DictFields):
    """What an LIDM generates and how it is conditioned.

    Args:
        conditioning (str, "none"): ``"none"`` (EchoNet-Synthetic) or ``"class"`` (EchoDream:
            the float class id as a 1-d cross-attention token).
        latent_channels (int, 4): VAE latent channels.
        latent_size (int, 14): latent height and width (unpadded).
        pad_to (int, 16): the noised latent is replicate-padded to this size around every
            UNet call and the prediction cropped back, as the reference's ``padf``/``unpadf``.
        scaling_factor (float, 1.0): the VAE's latent scaling factor (latents are stored
            already multiplied by it).
        class_map (dict | None, None): class name -> class id (class conditioning).
        class_null (str, "distinct"): the unconditional token (dropout, guidance):
            ``"distinct"`` is -1; ``"reference"`` is 0, EchoDream's zeroed token, which is
            also its first class's id.
    """

    dict_label: ClassVar[str] = "LIDMSpec keys"

    conditioning: str = "none"
    latent_channels: int = 4
    latent_size: int = 14
    pad_to: int = 16
    scaling_factor: float = 1.0
    class_map: dict | None = None
    class_null: str = "distinct"

    def __post_init__(self):
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}"
            )
        if self.class_null not in CLASS_NULLS:
            raise ValueError(f"class_null must be one of {CLASS_NULLS}, got {self.class_null!r}")
        for name in ("latent_channels", "latent_size", "pad_to"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.pad_to < self.latent_size:
            raise ValueError(f"pad_to ({self.pad_to}) must be >= latent_size ({self.latent_size})")
        if not (self.scaling_factor > 0 and math.isfinite(self.scaling_factor)):
            raise ValueError(f"scaling_factor must be > 0, got {self.scaling_factor!r}")
        if self.conditioning == "class":
            if not isinstance(self.class_map, dict) or not self.class_map:
                raise ValueError("a class-conditioned LIDM needs a non-empty class_map")
            ids = list(self.class_map.values())
            if any(not isinstance(i, int) or i < 0 for i in ids) or len(set(ids)) != len(ids):
                raise ValueError(f"class_map ids must be distinct ints >= 0, got {self.class_map}")
        object.__setattr__(self, "scaling_factor", float(self.scaling_factor))

    @property
    def frames(self) -> int:
        """Latent frames a training video needs: one (the latent datasets' minimum)."""
        return 1


@dataclass
class LIDM:
    """A loaded LIDM folder: the EMA UNet (eval mode), its spec and scheduler config."""

    unet: UNet2DModel | UNet2DConditionModel
    spec: LIDMSpec
    scheduler_config: dict


def unet_kwargs(preset: str, conditioning: str, overrides: dict | None = None) -> dict:
    """The UNet keyword arguments of a preset for one conditioning.

    Class conditioning drops the keys only ``UNet2DModel`` takes (as EchoDream's config) and
    sets ``cross_attention_dim`` 1.

    Raises:
        ValueError: unknown preset, conditioning or key; channels that GroupNorm cannot split.
    """
    if preset not in LIDM_PRESETS:
        raise ValueError(f"unknown LIDM preset {preset!r}; choose one of {list(LIDM_PRESETS)}")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    kwargs = dict(LIDM_PRESETS[preset])
    if conditioning == "class":
        kwargs = {k: v for k, v in kwargs.items() if k not in _UNCONDITIONAL_ONLY}
        kwargs["cross_attention_dim"] = 1
    kwargs.update(overrides or {})
    cls = UNET_CLASSES[conditioning]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}")
    groups = kwargs.get("norm_num_groups", NORM_GROUPS)
    channels = list(kwargs["block_out_channels"])
    if any(c % groups for c in channels):
        raise ValueError(f"block_out_channels {channels} must be multiples of {groups}")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def build_lidm_unet(
    preset: str, conditioning: str, overrides: dict | None = None
) -> UNet2DModel | UNet2DConditionModel:
    """A randomly initialised LIDM UNet (float32, train mode); see :func:`unet_kwargs`."""
    kwargs = unet_kwargs(preset, conditioning, overrides)
    return UNET_CLASSES[conditioning](**kwargs)


def class_tokens(spec: LIDMSpec, class_ids, device) -> torch.Tensor:
    """The float class ids as (B, 1, 1) cross-attention tokens (EchoDream)."""
    values = [float(int(i)) for i in class_ids]
    return torch.tensor(values, dtype=torch.float32, device=device).reshape(-1, 1, 1)


def null_tokens(spec: LIDMSpec, batch: int, device) -> torch.Tensor:
    """Unconditional tokens (B, 1, 1): -1 (``class_null`` distinct) or 0 (reference)."""
    value = CLASS_NULL_TOKEN if spec.class_null == "distinct" else 0.0
    return torch.full((batch, 1, 1), value, dtype=torch.float32, device=device)


def denoise(unet, spec: LIDMSpec, noisy: torch.Tensor, timesteps, tokens=None) -> torch.Tensor:
    """One UNet call on unpadded noisy latents (B, C, h, w): pad, predict, crop."""
    size = noisy.shape[-1]
    sample = pad_latents(noisy, spec.pad_to)
    if spec.conditioning == "class":
        out = unet(sample, timesteps, encoder_hidden_states=tokens).sample
    else:
        out = unet(sample, timesteps).sample
    return crop_latents(out, size)


@torch.no_grad()
def generate_latents(
    lidm: LIDM,
    seeds: list[int],
    class_ids: list[int] | None = None,
    *,
    steps: int = 64,
    scheduler: str = "ddpm",
    guidance_scale: float = 1.0,
) -> torch.Tensor:
    """Sample one scaled latent image per seed, as a batch.

    Sample ``i``'s starting noise and its scheduler noise come from its own CPU generator
    seeded with ``seeds[i]``, so a sample does not depend on which others share its batch
    (up to the floating-point effect of the batch size on the UNet's kernels).

    Args:
        lidm: the loaded model.
        seeds: one seed per sample.
        class_ids: one class id per sample (class models), else None.
        steps: denoising steps (EchoNet-Synthetic samples with 64).
        scheduler: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` from the saved training config.
        guidance_scale: classifier-free guidance for class models (1 = none; EchoDream 5).

    Returns:
        float32 (B, C, h, w) on the CPU.
    """
    spec, unet = lidm.spec, lidm.unet
    if (spec.conditioning == "class") != (class_ids is not None):
        raise ValueError("class_ids are needed for, and only for, a class-conditioned LIDM")
    if class_ids is not None and len(class_ids) != len(seeds):
        raise ValueError(f"{len(class_ids)} class ids for {len(seeds)} seeds")
    if guidance_scale < 1 or (guidance_scale > 1 and spec.conditioning != "class"):
        raise ValueError(
            f"guidance_scale must be 1, or > 1 for a class model; got {guidance_scale}"
        )
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = unet.device
    noise_scheduler = copy.deepcopy(make_scheduler(scheduler, lidm.scheduler_config))
    noise_scheduler.set_timesteps(steps, device=device)
    generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
    shape = (spec.latent_channels, spec.latent_size, spec.latent_size)
    latents = torch.stack([torch.randn(shape, generator=g) for g in generators])
    latents = (latents * noise_scheduler.init_noise_sigma).to(device)
    tokens = None
    if class_ids is not None:
        tokens = class_tokens(spec, class_ids, device)
        if guidance_scale > 1:
            tokens = torch.cat([null_tokens(spec, len(seeds), device), tokens])
    for t in noise_scheduler.timesteps:
        model_input = noise_scheduler.scale_model_input(latents, t)
        if guidance_scale > 1:
            doubled = torch.cat([model_input, model_input])
            uncond, cond = denoise(unet, spec, doubled, t, tokens).chunk(2)
            prediction = uncond + guidance_scale * (cond - uncond)
        else:
            prediction = denoise(unet, spec, model_input, t, tokens)
        latents = noise_scheduler.step(
            prediction.float(), t, latents, generator=generators
        ).prev_sample
    return latents.float().cpu()


def save_lidm(folder: str | Path, unet, spec: LIDMSpec, scheduler: DDPMScheduler) -> None:
    """Write a model folder (layout in the module docstring); each part atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder / "unet") as tmp:
        unet.save_pretrained(tmp)
    with atomic_dir(folder / "scheduler") as tmp:
        scheduler.save_pretrained(tmp)
    write_json(folder / SPEC_FILE, spec.to_dict())


def load_lidm(folder: str | Path, device: torch.device | str = "cpu") -> LIDM:
    """Load a folder written by :func:`save_lidm`.

    Raises:
        DataError: not an LIDM folder, or a part is missing.
    """
    folder = Path(folder)
    spec = LIDMSpec.from_dict(read_model_folder(folder, SPEC_FILE, "LIDM", "lidm"))
    unet = UNET_CLASSES[spec.conditioning].from_pretrained(folder / "unet").to(device).eval()
    scheduler_config = dict(DDPMScheduler.load_config(folder / "scheduler"))
    return LIDM(unet, spec, scheduler_config)
