"""Latent video diffusion model (LVDM): EchoNet-Synthetic's and EchoDream's video UNet.

EchoNet-Synthetic (Reynaud et al., MICCAI 2024, https://github.com/HReynaud/EchoNet-Synthetic)
denoises 64-frame windows of VAE latents (4x14x14, replicate-padded to 16x16) with diffusers'
``UNetSpatioTemporalConditionModel``. The UNet input concatenates, per frame, the noisy latent
with the latent of one conditioning frame of the same video (``in_channels`` 8 = 4 + 4); the
ejection fraction enters as ``encoder_hidden_states`` of shape (B, 1, 1) holding EF/100
(``cross_attention_dim`` 1), and the frame rate as the first of the three ``added_time_ids``.
EchoDream (https://github.com/Marshall-mk/Echodream) keeps the network and conditions either
on a CLIP ViT-L/14 text encoding (``last_hidden_state``, ``cross_attention_dim`` 768) or on the
raw float class id (cross_attention_dim 1). Published settings: ``/work/shared/PAPERS.md``
sections 4 and 5.

A trained model is a folder (:func:`save_lvdm` / :func:`load_lvdm`)::

    unet/           UNetSpatioTemporalConditionModel.save_pretrained (EMA weights)
    scheduler/      DDPMScheduler config (1000 steps, linear 1e-4..0.02, v_prediction)
    lvdm.json       LVDMSpec
    text_encoder/   CLIPTextModel (text conditioning only)
    tokenizer/      CLIPTokenizer (text conditioning only)
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNetSpatioTemporalConditionModel,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from echogen.data.errors import DataError
from echogen.data.io import atomic_dir, write_json
from echogen.settings import DictFields

log = logging.getLogger(__name__)

CONDITIONINGS = ("ef", "text", "class")
CLASS_NULLS = ("distinct", "reference")
PADDINGS = ("clean", "noised")
# The unconditional token of class models with class_null "distinct": not a class id.
CLASS_NULL_TOKEN = -1.0
SCHEDULERS = ("ddpm", "ddim", "dpm")
SPEC_FILE = "lvdm.json"
# GroupNorm inside the spatio-temporal blocks always uses 32 groups.
NORM_GROUPS = 32
# One scalar token (EF/100 or the class id) for ef and class conditioning; CLIP ViT-L/14's
# hidden size for EchoDream's text conditioning.
CROSS_ATTENTION_DIMS = {"ef": 1, "class": 1, "text": 768}
# added_time_ids holds (fps, motion bucket, noise augmentation) as in Stable Video Diffusion;
# EchoNet-Synthetic only uses the first.
N_ADDED_TIME_IDS = 3
TIME_ID_COUNTS = (N_ADDED_TIME_IDS, 1)

PROMPT_EF = "An echocardiography video with Left Ventricular Ejection Fraction {EF:.0f}%"
PROMPT_EF_VIEW = PROMPT_EF + ", View: {View}"
# The prompt templates of EchoDream's multi-dataset text model (echo/common/datasets.py):
# EF truncated to an integer (``int(row["EF"])``), Pediatric adding its view, CardiacNet
# spelling its classes out (PROMPT_NAMES_CARDIACNET).
PROMPT_EF_INT = "An echocardiography video with Left Ventricular Ejection Fraction {EF_int}%"
PROMPT_EF_INT_VIEW = PROMPT_EF_INT + ", View: {View}"
PROMPT_NAMES_CARDIACNET = {
    "ASD": "Atrial Septal Defect",
    "Non-ASD": "Non-Atrial Septal Defect",
    "Non-PAH": "Non-Pulmonary Arterial Hypertension",
    "PAH": "Pulmonary Arterial Hypertension",
}
TEXT_NULLS = ("empty", "zeros")
# LVDMSpec fields added after training states were saved, with their defaults (the behaviour
# before them): left out of LVDMSpec.fingerprint while at the default.
LATER_FIELDS = {"prompt_names": None, "text_mask": False, "text_null": "empty"}
PROMPT_CLASS = "An echocardiography video with {class_name} condition"

# The training noise schedule of EchoNet-Synthetic's LIDM and LVDM (PAPERS.md §4).
TRAIN_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "v_prediction",
    "clip_sample": True,
    "clip_sample_range": 4.0,
}

_PAPER_ADDITION_TIME_EMBED_DIM = 256
_TINY_ADDITION_TIME_EMBED_DIM = 32

LVDM_PRESETS: dict[str, dict] = {
    # EchoNet-Synthetic's LVDM (PAPERS.md §4): channels 128/256/256/512, heads 8/16/16/32,
    # 64-frame windows of 16x16 padded latents, noisy + conditioning latent in (8 channels).
    # The added-time embedding width is not in the paper: diffusers' SVD value (256, so the
    # projection takes 3 x 256) is used. cross_attention_dim comes from the conditioning.
    "paper": {
        "sample_size": 16,
        "in_channels": 8,
        "out_channels": 4,
        "down_block_types": (
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        "up_block_types": (
            "UpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
        ),
        "block_out_channels": (128, 256, 256, 512),
        "addition_time_embed_dim": _PAPER_ADDITION_TIME_EMBED_DIM,
        "projection_class_embeddings_input_dim": N_ADDED_TIME_IDS * _PAPER_ADDITION_TIME_EMBED_DIM,
        "layers_per_block": 2,
        "transformer_layers_per_block": 1,
        "num_attention_heads": (8, 16, 16, 32),
        "num_frames": 64,
    },
    # CPU-sized plumbing model for tests and the phantom demo (one downsampling, one layer
    # per block; a training step on 2 x 8 frames of 4x16x16 takes ~0.2-0.45 s on one core).
    "tiny": {
        "sample_size": 16,
        "in_channels": 8,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        "block_out_channels": (32, 32),
        "addition_time_embed_dim": _TINY_ADDITION_TIME_EMBED_DIM,
        "projection_class_embeddings_input_dim": N_ADDED_TIME_IDS * _TINY_ADDITION_TIME_EMBED_DIM,
        "layers_per_block": 1,
        "transformer_layers_per_block": 1,
        "num_attention_heads": (2, 2),
        "num_frames": 16,
    },
}
# The UNet of EchoNet-Synthetic's released LVDM (echosyn/lvdm/configs/default.yaml): the
# paper's blocks with one added time id of width 1, fed zeros (its sample.py's
# dummy_added_time_ids), sample_size 14 (the unpadded latent; metadata only).
LVDM_PRESETS["paper_reference"] = {
    **LVDM_PRESETS["paper"],
    "sample_size": 14,
    "addition_time_embed_dim": 1,
    "projection_class_embeddings_input_dim": 1,
}


@dataclass(frozen=True)
class LVDMSpec(DictFields):
    """What an LVDM generates and how it is conditioned.

    Args:
        conditioning (str, "ef"): ``"ef"`` (EF/100 token, EchoNet-Synthetic), ``"text"``
            (CLIP prompt encoding, EchoDream) or ``"class"`` (float class id, EchoDream).
        frames (int, 64): latent frames of one training/denoising window (64 in the paper,
            16 in the demo).
        fps (float, 32.0): frame rate of the latent videos (the first added time id).
        latent_channels (int, 4): VAE latent channels.
        latent_size (int, 14): VAE latent height and width (unpadded).
        pad_to (int, 16): the latents are replicate-padded to this size for the UNet.
        class_map (dict | None, None): class name -> class id (``class`` and class prompts).
        prompt (str | dict | None, None): ``str.format`` template filled from a manifest row for
            text conditioning (e.g. :data:`PROMPT_EF_VIEW`), or ``{Dataset: template}`` when
            one model learns several datasets (EchoDream: CardiacNet, Dynamic, Pediatric);
            None = :data:`PROMPT_EF` for text. Besides the row's columns a template may use
            ``EF_int`` (the EF truncated to an integer, as EchoDream's ``int(EF)``).
        prompt_names (dict | None, None): class name -> the words ``{class_name}`` becomes in
            a prompt (EchoDream: :data:`PROMPT_NAMES_CARDIACNET`); None = the class name.
        text_mask (bool, False): pass the tokenizer's attention mask to the text encoder, so
            padding tokens do not attend to each other (EchoDream); False = Stable
            Diffusion's unmasked call. The UNet attends to every token either way.
        text_null (str, "empty"): the unconditional text tokens (dropout, guidance):
            ``"empty"`` = the empty prompt's encoding; ``"zeros"`` = all-zero tokens, as
            EchoDream's ``zeros_like``.
        scaling_factor (float, 1.0): the VAE's latent scaling factor (latents are stored
            already multiplied by it).
        class_null (str, "distinct"): the unconditional token of class models (dropout,
            guidance): ``"distinct"`` is -1, never a class id; ``"reference"`` is 0, as
            EchoDream's zeros, which is also the id of its first class (ASD), so "no class"
            and "ASD" share a token. Specs saved before this key existed read as
            ``"reference"`` (what they were trained with).
        padding (str, "clean"): where the replicate padding to ``pad_to`` happens:
            ``"clean"`` pads the clean latents, so noise, the scheduler and the loss see the
            padded size; ``"noised"`` noises the unpadded latents and pads the UNet's input at
            every call, cropping its output, so the loss and the scheduler see the unpadded
            size (EchoNet-Synthetic's ``padf``/``unpadf`` around the UNet, which its released
            weights were trained with).
    """

    dict_label: ClassVar[str] = "LVDMSpec keys"

    conditioning: str = "ef"
    frames: int = 64
    fps: float = 32.0
    latent_channels: int = 4
    latent_size: int = 14
    pad_to: int = 16
    class_map: dict | None = None
    prompt: str | dict | None = None
    scaling_factor: float = 1.0
    class_null: str = "distinct"
    padding: str = "clean"
    prompt_names: dict | None = None
    text_mask: bool = False
    text_null: str = "empty"

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.class_null not in CLASS_NULLS:
            raise ValueError(f"class_null must be one of {CLASS_NULLS}, got {self.class_null!r}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}"
            )
        for name in ("frames", "latent_channels", "latent_size", "pad_to"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.pad_to < self.latent_size:
            raise ValueError(f"pad_to ({self.pad_to}) must be >= latent_size ({self.latent_size})")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be > 0, got {self.fps!r}")
        if not (self.scaling_factor > 0 and math.isfinite(self.scaling_factor)):
            raise ValueError(f"scaling_factor must be > 0, got {self.scaling_factor!r}")
        if self.class_map is not None:
            if not isinstance(self.class_map, dict) or not self.class_map:
                raise ValueError(f"class_map must be a non-empty dict, got {self.class_map!r}")
            ids = list(self.class_map.values())
            if any(not isinstance(i, int) or i < 0 for i in ids) or len(set(ids)) != len(ids):
                raise ValueError(f"class_map ids must be distinct ints >= 0, got {self.class_map}")
        templates = self.prompt.values() if isinstance(self.prompt, dict) else [self.prompt]
        if (isinstance(self.prompt, dict) and not self.prompt) or not all(
            t is None or isinstance(t, str) for t in templates
        ):
            raise ValueError(
                f"prompt must be a str template, a non-empty {{dataset: template}} dict or "
                f"None, got {self.prompt!r}"
            )
        if self.text_null not in TEXT_NULLS:
            raise ValueError(f"text_null must be one of {TEXT_NULLS}, got {self.text_null!r}")
        if not isinstance(self.text_mask, bool):
            raise ValueError(f"text_mask must be a bool, got {self.text_mask!r}")
        if self.prompt_names is not None and not (
            isinstance(self.prompt_names, dict)
            and all(isinstance(v, str) for v in self.prompt_names.values())
        ):
            raise ValueError(
                f"prompt_names must be a {{class name: words}} dict, got {self.prompt_names!r}"
            )
        if self.conditioning == "text" and self.prompt is None:
            object.__setattr__(self, "prompt", PROMPT_EF)
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "scaling_factor", float(self.scaling_factor))

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> dict:
        """What a training checkpoint must match to be resumed: :meth:`to_dict` without the
        fields added after checkpoints existed (:data:`LATER_FIELDS`) while they hold their
        default, so a state saved before they existed resumes when they keep it."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if not (k in LATER_FIELDS and v == LATER_FIELDS[k])
        }

    @classmethod
    def from_dict(cls, data: dict) -> LVDMSpec:
        # Saved before class_null existed: those models learnt the reference's null, 0.
        return super().from_dict({"class_null": "reference", **data})


@dataclass
class LVDM:
    """A loaded LVDM folder.

    Args:
        unet: the denoiser (EMA weights), in eval mode.
        spec: what it generates.
        scheduler_config: the training DDPMScheduler's config (for :func:`make_scheduler`).
        conditioner: turns EF / class ids / prompts into ``encoder_hidden_states``.
    """

    unet: UNetSpatioTemporalConditionModel
    spec: LVDMSpec
    scheduler_config: dict
    conditioner: Conditioner


def build_unet(
    preset: str,
    conditioning: str,
    overrides: dict | None = None,
    cross_attention_dim: int | None = None,
) -> UNetSpatioTemporalConditionModel:
    """A randomly initialised UNet of a preset for one kind of conditioning.

    Args:
        preset: a key of :data:`LVDM_PRESETS`.
        conditioning: ``"ef"``, ``"text"`` or ``"class"``.
        overrides: UNet keyword arguments replacing the preset's.
        cross_attention_dim: the conditioning token width; None = 1 for ef/class and 768
            (CLIP ViT-L/14) for text. Pass the text encoder's hidden size for other encoders.

    Returns:
        The UNet (float32, train mode).

    Raises:
        ValueError: unknown preset/conditioning/key, channels not multiples of 32, or a time
            projection that is not 3 x ``addition_time_embed_dim``.
    """
    if preset not in LVDM_PRESETS:
        raise ValueError(f"unknown LVDM preset {preset!r}; choose one of {list(LVDM_PRESETS)}")
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    kwargs = {**LVDM_PRESETS[preset], **(overrides or {})}
    allowed = set(inspect.signature(UNetSpatioTemporalConditionModel.__init__).parameters) - {
        "self"
    }
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown UNet keys {unknown}")
    if "cross_attention_dim" not in kwargs or cross_attention_dim is not None:
        kwargs["cross_attention_dim"] = cross_attention_dim or CROSS_ATTENTION_DIMS[conditioning]
    channels = list(kwargs["block_out_channels"])
    if any(c % NORM_GROUPS for c in channels):
        raise ValueError(f"block_out_channels must be multiples of {NORM_GROUPS}, got {channels}")
    if kwargs["projection_class_embeddings_input_dim"] not in [
        n * kwargs["addition_time_embed_dim"] for n in TIME_ID_COUNTS
    ]:
        raise ValueError(
            "projection_class_embeddings_input_dim must be 3 x addition_time_embed_dim (fps, "
            "0, 0) or 1 x (EchoNet-Synthetic's one zero id), got "
            f"{kwargs['projection_class_embeddings_input_dim']} and "
            f"{kwargs['addition_time_embed_dim']}"
        )
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    return UNetSpatioTemporalConditionModel(**kwargs)


def build_scheduler() -> DDPMScheduler:
    """EchoNet-Synthetic's training scheduler (:data:`TRAIN_SCHEDULER`)."""
    return DDPMScheduler(**TRAIN_SCHEDULER)


def make_scheduler(name: str, scheduler_config: dict) -> SchedulerMixin:
    """A sampling scheduler built from the saved training DDPM config.

    The noise schedule, ``prediction_type`` (v_prediction) and, where the class has them,
    clipping settings carry over unchanged.

    Args:
        name: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` (DPM-Solver++ multistep).
        scheduler_config: ``LVDM.scheduler_config`` (a DDPMScheduler config dict).

    Returns:
        A fresh diffusers scheduler.
    """
    classes = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}
    if name not in classes:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")
    return classes[name].from_config(scheduler_config)


def prompt_templates(spec: LVDMSpec) -> list[str]:
    """Every template a text model fills (one, or one per dataset)."""
    if isinstance(spec.prompt, dict):
        return list(spec.prompt.values())
    return [spec.prompt] if spec.prompt is not None else []


def prompt_for(spec: LVDMSpec, row: dict) -> str:
    """The text prompt of one manifest/latent-index row.

    The template (``spec.prompt``; the one of the row's ``Dataset`` when it is a dict; or
    :data:`PROMPT_CLASS` / :data:`PROMPT_EF` when None) is filled with ``str.format`` from the
    row; a missing ``class_name`` is looked up from ``class_id`` through ``spec.class_map``,
    then spelt as ``spec.prompt_names`` says; ``EF_int`` is ``int(EF)``.

    Args:
        spec: the model spec.
        row: column -> value (e.g. ``{"EF": 55.2, "View": "A4C"}``).

    Returns:
        The prompt, e.g. "An echocardiography video with Left Ventricular Ejection Fraction 55%".

    Raises:
        ValueError: the row lacks a field the template needs, or its dataset has no template.
    """
    template = spec.prompt
    if isinstance(template, dict):
        dataset = row.get("Dataset")
        if _missing(dataset) or str(dataset) not in template:
            raise ValueError(
                f"the prompt templates are per dataset ({sorted(template)}) but the row's "
                f"Dataset is {dataset!r}"
            )
        template = template[str(dataset)]
    if template is None:
        template = PROMPT_CLASS if spec.conditioning == "class" else PROMPT_EF
    values = {k: v for k, v in row.items() if not _missing(v)}
    if "class_name" not in values and "class_id" in values and spec.class_map:
        names = {v: k for k, v in spec.class_map.items()}
        values["class_name"] = names.get(int(values["class_id"]), str(values["class_id"]))
    if "class_name" in values and spec.prompt_names:
        values["class_name"] = spec.prompt_names.get(
            str(values["class_name"]), values["class_name"]
        )
    if "EF" in values:
        values["EF"] = float(values["EF"])
        values["EF_int"] = int(values["EF"])
    needed = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    absent = [name for name in needed if name not in values]
    if absent:
        raise ValueError(
            f"prompt template {template!r} needs column(s) {absent}, missing or empty in the row"
        )
    return template.format_map(values)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class Conditioner:
    """Turns per-sample conditioning values into ``encoder_hidden_states`` (B, L, D).

    Args:
        spec: the model spec (its ``conditioning`` picks the encoding).
        text_encoder: a ``CLIPTextModel`` (text conditioning only; kept frozen, eval mode).
        tokenizer: its ``CLIPTokenizer``.
    """

    def __init__(self, spec: LVDMSpec, text_encoder=None, tokenizer=None):
        if spec.conditioning == "text" and (text_encoder is None or tokenizer is None):
            raise ValueError("text conditioning needs a text_encoder and a tokenizer")
        self.spec = spec
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        if text_encoder is not None:
            text_encoder.requires_grad_(False)
            text_encoder.eval()
        self._null_text: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        """Width D of one conditioning token (the UNet's ``cross_attention_dim``)."""
        if self.spec.conditioning == "text":
            return int(self.text_encoder.config.hidden_size)
        return 1

    @torch.no_grad()
    def encode(self, values: list, device: torch.device | str) -> torch.Tensor:
        """Encode a batch.

        Args:
            values: ef: EF in % (floats); class: class ids (ints); text: prompts (str).
            device: where the result goes.

        Returns:
            float32 (B, 1, 1) for ef (EF/100) and class (the id as a float); the text
            encoder's ``last_hidden_state`` (B, max_length, hidden) for text.
        """
        if self.spec.conditioning == "text":
            return self._encode_text([str(v) for v in values], device)
        scalars = [float(v) for v in values]
        if self.spec.conditioning == "ef":
            scalars = [v / 100.0 for v in scalars]
        return torch.tensor(scalars, dtype=torch.float32, device=device).reshape(-1, 1, 1)

    @torch.no_grad()
    def null(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """Unconditional tokens (conditioning dropout, classifier-free guidance).

        Zeros (B, 1, 1) for ef and for class with ``class_null="reference"``; -1 for class
        with ``"distinct"``; for text the empty prompt's encoding (``text_null="empty"``) or
        zeros of its shape (``"zeros"``).
        """
        if self.spec.conditioning != "text":
            distinct = self.spec.conditioning == "class" and self.spec.class_null == "distinct"
            value = CLASS_NULL_TOKEN if distinct else 0.0
            return torch.full((batch, 1, 1), value, dtype=torch.float32, device=device)
        if self._null_text is None:
            self._null_text = self._encode_text([""], "cpu")
            if self.spec.text_null == "zeros":
                self._null_text = torch.zeros_like(self._null_text)
        return self._null_text.to(device).expand(batch, -1, -1).clone()

    def _encode_text(self, prompts: list[str], device) -> torch.Tensor:
        encoder_device = next(self.text_encoder.parameters()).device
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        mask = tokens.attention_mask.to(encoder_device) if self.spec.text_mask else None
        hidden = self.text_encoder(
            tokens.input_ids.to(encoder_device), attention_mask=mask
        ).last_hidden_state
        return hidden.float().to(device)  # (B, max_length, hidden)


def pad_latents(x: torch.Tensor, pad_to: int) -> torch.Tensor:
    """Replicate-pad the last two (spatial) dims of ``x`` to ``pad_to`` x ``pad_to``.

    The extra rows/columns are split as evenly as possible, the odd one going after
    (14 -> 16 adds one on each side); :func:`crop_latents` undoes it.

    Args:
        x: (..., h, w) latents.
        pad_to: target size, >= h and w.

    Returns:
        (..., pad_to, pad_to).
    """
    h, w = x.shape[-2:]
    if h > pad_to or w > pad_to:
        raise ValueError(f"cannot pad latents of {h}x{w} to {pad_to}")
    if h == pad_to and w == pad_to:
        return x
    top, left = (pad_to - h) // 2, (pad_to - w) // 2
    flat = x.reshape(-1, h, w)  # replicate padding of 2 dims takes (C, H, W)
    padded = F.pad(flat, (left, pad_to - w - left, top, pad_to - h - top), mode="replicate")
    return padded.reshape(*x.shape[:-2], pad_to, pad_to)


def crop_latents(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` of the last two dims (inverse of :func:`pad_latents`)."""
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"cannot crop latents of {h}x{w} to {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def unet_input(noisy: torch.Tensor, cond_latent: torch.Tensor) -> torch.Tensor:
    """Concatenate the conditioning frame's latent to every noisy frame along channels.

    Args:
        noisy: (B, F, C, H, W) noisy latents.
        cond_latent: (B, C, H, W) latent of the conditioning frame.

    Returns:
        (B, F, 2C, H, W).
    """
    if noisy.ndim != 5 or cond_latent.ndim != 4:
        raise ValueError(
            f"expected noisy (B,F,C,H,W) and cond_latent (B,C,H,W), got "
            f"{tuple(noisy.shape)} and {tuple(cond_latent.shape)}"
        )
    frames = noisy.shape[1]
    repeated = cond_latent.unsqueeze(1).expand(-1, frames, -1, -1, -1)  # (B, F, C, H, W)
    return torch.cat([noisy, repeated.to(noisy.dtype)], dim=2)


def added_time_ids(
    fps: float, batch: int, device: torch.device | str, count: int = N_ADDED_TIME_IDS
) -> torch.Tensor:
    """The UNet's added time ids, float32 (B, count): (fps, 0, 0) for 3 ids; one zero for 1
    id, as EchoNet-Synthetic feeds its released UNet (:func:`time_id_count`)."""
    if count not in TIME_ID_COUNTS:
        raise ValueError(f"count must be one of {TIME_ID_COUNTS}, got {count}")
    row = [float(fps), 0.0, 0.0] if count == N_ADDED_TIME_IDS else [0.0]
    ids = torch.tensor([row], dtype=torch.float32, device=device)
    return ids.expand(batch, -1).clone()


def time_id_count(unet_config) -> int:
    """How many added time ids a UNet config takes (3, or 1 for the reference's)."""
    return int(
        unet_config["projection_class_embeddings_input_dim"]
        // unet_config["addition_time_embed_dim"]
    )


def save_lvdm(
    folder: str | Path,
    unet: UNetSpatioTemporalConditionModel,
    spec: LVDMSpec,
    scheduler: DDPMScheduler,
    text_encoder=None,
    tokenizer=None,
) -> None:
    """Write a model folder (layout in the module docstring); each part is written atomically.

    Args:
        folder: created if missing.
        unet: the weights to export (EMA weights after training).
        spec: written as ``lvdm.json``.
        scheduler: the training scheduler (its config is saved).
        text_encoder: CLIPTextModel, required for text conditioning.
        tokenizer: CLIPTokenizer, required for text conditioning.
    """
    if spec.conditioning == "text" and (text_encoder is None or tokenizer is None):
        raise ValueError(
            "a text-conditioned LVDM must be saved with its text_encoder and tokenizer"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder / "unet") as tmp:
        unet.save_pretrained(tmp)
    with atomic_dir(folder / "scheduler") as tmp:
        scheduler.save_pretrained(tmp)
    if spec.conditioning == "text":
        with atomic_dir(folder / "text_encoder") as tmp:
            text_encoder.save_pretrained(tmp)
        with atomic_dir(folder / "tokenizer") as tmp:
            tokenizer.save_pretrained(tmp)
    write_json(folder / SPEC_FILE, spec.to_dict())


def read_model_folder(folder: Path, spec_file: str, kind: str, name: str) -> dict:
    """The spec dict of a diffusion model folder (``unet/``, ``scheduler/``, ``spec_file``),
    after checking its parts are there (``kind`` "LVDM", ``name`` "lvdm" in the messages).

    Raises:
        DataError: the spec file or a part is missing, naming the fix.
    """
    if not (folder / spec_file).is_file():
        raise DataError(
            folder,
            f"not an {kind} model folder ({spec_file} missing)",
            f"point at a train_{name} export",
        )
    for part in ("unet", "scheduler"):
        if not (folder / part).is_dir():
            raise DataError(folder, f"{part}/ missing", f"re-export the model with save_{name}")
    return json.loads((folder / spec_file).read_text())


def load_lvdm(folder: str | Path, device: torch.device | str = "cpu") -> LVDM:
    """Load a folder written by :func:`save_lvdm`.

    Args:
        folder: the model folder.
        device: where the UNet (and text encoder) go.

    Returns:
        :class:`LVDM` with the UNet in eval mode.

    Raises:
        DataError: not an LVDM folder, or a part is missing.
    """
    folder = Path(folder)
    spec = LVDMSpec.from_dict(read_model_folder(folder, SPEC_FILE, "LVDM", "lvdm"))
    unet = UNetSpatioTemporalConditionModel.from_pretrained(folder / "unet").to(device).eval()
    scheduler_config = dict(DDPMScheduler.load_config(folder / "scheduler"))
    text_encoder = tokenizer = None
    if spec.conditioning == "text":
        from echogen.models.text import load_text_encoder

        tokenizer, text_encoder = load_text_encoder(folder, device)
    return LVDM(unet, spec, scheduler_config, Conditioner(spec, text_encoder, tokenizer))
