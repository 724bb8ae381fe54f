"""LVDM inference as a diffusers ``DiffusionPipeline``: windows stitched at every step.

EchoNet-Synthetic (PAPERS.md §4) samples 192-frame videos with a 64-frame video UNet: the
whole noisy latent sequence is denoised together, and at every scheduler step the UNet runs
on overlapping 64-frame windows (32-frame overlap) whose predictions are stitched before one
scheduler step moves the whole sequence ("stitched at every denoising step"). The reference
(``echosyn/lvdm/sample.py``; EchoDream's ``echo/lvdm/sample.py`` alike) takes window 0 whole
and from each later window only the frames after the overlap (``stitching="reference"``);
``stitching="mean"`` averages the windows' predictions where they overlap. Each video is
conditioned on one latent frame (repeated over the window and concatenated on channels) and
on a value: EF in %, a class id or a text prompt (EchoDream, §5, with classifier-free
guidance).

:class:`LVDMPipeline` follows diffusers' ``StableVideoDiffusionPipeline``: its components are
the UNet, the scheduler, the VAE and (text runs) the CLIP text encoder and tokenizer; the
:class:`~echogen.models.lvdm.LVDMSpec` is part of its config. It saves and loads with
``save_pretrained`` / ``from_pretrained``; :meth:`LVDMPipeline.from_parts` assembles one from
a ``train_lvdm`` folder and a ``train_vae`` folder, which is how the workflow samples (the
two are trained and stored apart).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNetSpatioTemporalConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from echogen.models.lvdm import (
    LVDM,
    Conditioner,
    LVDMSpec,
    added_time_ids,
    crop_latents,
    make_scheduler,
    pad_latents,
    time_id_count,
    unet_input,
)
from echogen.models.vae import decode_latents

log = logging.getLogger(__name__)
STITCHINGS = ("mean", "reference")
GUIDANCE_BLANKS = ("token_frame", "token")


def window_starts(frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of the denoising windows: ``0, window - overlap, ...``, last at the end.

    Args:
        frames: length of the sequence.
        window: frames per window (<= frames).
        overlap: frames shared by consecutive windows (< window).

    Returns:
        Sorted distinct starts; the last window is ``[frames - window, frames)``.
    """
    if not 1 <= window <= frames or not 0 <= overlap < window:
        raise ValueError(
            f"need 1 <= window <= frames and 0 <= overlap < window, got "
            f"frames={frames}, window={window}, overlap={overlap}"
        )
    starts = list(range(0, frames - window + 1, window - overlap))
    if starts[-1] != frames - window:
        starts.append(frames - window)
    return starts


def stitched_prediction(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    cond_latent: torch.Tensor,
    tokens: torch.Tensor,
    time_ids: torch.Tensor,
    starts: list[int],
    window: int,
    null_tokens: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    stitching: str = "mean",
    guidance_blank: str = "token_frame",
) -> torch.Tensor:
    """The UNet's output for a whole sequence, stitched from overlapping windows.

    All windows of the sequence (and, with guidance, their unconditional twins) go through
    the UNet as one batch.

    Args:
        unet: a ``UNetSpatioTemporalConditionModel`` (or anything with its call signature).
        latents: noisy sequence ``(F, C, H, W)`` (padded, scheduler-scaled).
        timestep: the current scheduler timestep.
        cond_latent: padded conditioning frame latent ``(C, H, W)``.
        tokens: conditioning tokens of one sample ``(1, L, D)``.
        time_ids: ``added_time_ids`` of one sample ``(1, 3)``.
        starts: window starts (:func:`window_starts`).
        window: frames per window.
        null_tokens: unconditional tokens ``(1, L', D)``; required when guidance > 1.
        guidance_scale: ``uncond + g * (cond - uncond)`` when > 1.
        guidance_blank: what the unconditional pass blanks: ``"token_frame"``, the tokens
            (null tokens) and the conditioning frame (zeros), or ``"token"``, the tokens only
            (EchoDream's ``encoder_hidden_states = zeros``).
        stitching: ``"mean"``: per frame, the mean of the outputs of the windows that contain
            it; ``"reference"``: per frame, the output of the earliest window that contains it,
            which is EchoNet-Synthetic's "window 0 whole, then each later window's frames
            after the overlap" when ``F = window + k * (window - overlap)`` (192 = 64 + 4·32).

    Returns:
        float32 ``(F, C, H, W)``, stitched (guided) outputs. The UNet runs in its own dtype;
        guidance and stitching in float32.
    """
    if stitching not in STITCHINGS:
        raise ValueError(f"stitching must be one of {STITCHINGS}, got {stitching!r}")
    if guidance_blank not in GUIDANCE_BLANKS:
        raise ValueError(f"guidance_blank must be one of {GUIDANCE_BLANKS}, got {guidance_blank!r}")
    n, dtype = len(starts), unet.dtype
    windows = torch.stack([latents[s : s + window] for s in starts]).to(dtype)  # (n, F', C, H, W)
    cond = cond_latent.to(dtype).unsqueeze(0).expand(n, *cond_latent.shape)  # (n, C, H, W)
    hidden = tokens.to(dtype).expand(n, *tokens.shape[1:])
    ids = time_ids.to(dtype).expand(n, *time_ids.shape[1:])
    guided = guidance_scale > 1
    if guided:
        if null_tokens is None:
            raise ValueError("guidance_scale > 1 needs null_tokens")
        windows = torch.cat([windows, windows])
        blank = torch.zeros_like(cond) if guidance_blank == "token_frame" else cond
        cond = torch.cat([cond, blank])
        hidden = torch.cat([hidden, null_tokens.to(dtype).expand(n, *null_tokens.shape[1:])])
        ids = torch.cat([ids, ids])
    output = unet(
        unet_input(windows, cond),
        timestep,
        encoder_hidden_states=hidden,
        added_time_ids=ids,
        return_dict=False,
    )[0].float()
    if guided:
        conditional, unconditional = output.chunk(2)
        output = unconditional + guidance_scale * (conditional - unconditional)
    total = torch.zeros(latents.shape, dtype=torch.float32, device=latents.device)
    if stitching == "reference":
        pairs = sorted(zip(starts, output, strict=True), key=lambda pair: -pair[0])
        for s, out in pairs:
            total[s : s + window] = out  # an earlier window overwrites the overlap
        return total
    count = torch.zeros(len(latents), dtype=torch.float32, device=latents.device)
    for s, out in zip(starts, output, strict=True):
        total[s : s + window] += out
        count[s : s + window] += 1
    return total / count.view(-1, 1, 1, 1)


@dataclass
class LVDMPipelineOutput(BaseOutput):
    """What :class:`LVDMPipeline` returns.

    Args:
        latents: scaled latents ``(frames, C, h, w)``, float32 on the CPU, padding cropped.
        frames: the decoded grey video ``uint8 (frames, H, W)``; None for ``output_type="latent"``.
    """

    latents: torch.Tensor
    frames: np.ndarray | None = None


class LVDMPipeline(DiffusionPipeline):
    """Sample one conditioned video from an LVDM (windows stitched at every step).

    Args:
        unet: the video UNet (``UNetSpatioTemporalConditionModel``).
        scheduler: the sampling scheduler (DDPM, DDIM or DPM-Solver++; a fresh copy is used
            for every video, so calls never share scheduler state).
        vae: the ``AutoencoderKL`` whose scaled latents the UNet was trained on.
        text_encoder: ``CLIPTextModel`` (text conditioning only).
        tokenizer: ``CLIPTokenizer`` (text conditioning only).
        spec: the ``LVDMSpec`` as a dict (stored in ``model_index.json``).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["text_encoder", "tokenizer"]

    def __init__(
        self,
        unet: UNetSpatioTemporalConditionModel,
        scheduler: SchedulerMixin,
        vae: AutoencoderKL,
        text_encoder=None,
        tokenizer=None,
        spec: dict | None = None,
    ):
        super().__init__()
        if spec is None:
            raise ValueError("LVDMPipeline needs the model's spec (an LVDMSpec as a dict)")
        spec = LVDMSpec.from_dict(dict(spec)).to_dict()  # validated, every key written
        self.register_modules(
            unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer
        )
        self.register_to_config(spec=spec)
        self._conditioner = Conditioner(LVDMSpec.from_dict(spec), text_encoder, tokenizer)

    @classmethod
    def from_parts(cls, lvdm: LVDM, vae: AutoencoderKL, scheduler: str = "ddpm") -> LVDMPipeline:
        """A pipeline from a loaded LVDM folder (``load_lvdm``) and its VAE (``load_vae``).

        Args:
            lvdm: the loaded LVDM.
            vae: the VAE its latents come from.
            scheduler: ``"ddpm"``, ``"ddim"`` or ``"dpm"``, built from the training config.
        """
        return cls(
            unet=lvdm.unet,
            scheduler=make_scheduler(scheduler, lvdm.scheduler_config),
            vae=vae,
            text_encoder=lvdm.conditioner.text_encoder,
            tokenizer=lvdm.conditioner.tokenizer,
            spec=lvdm.spec.to_dict(),
        )

    @property
    def lvdm_spec(self) -> LVDMSpec:
        """The model's :class:`~echogen.models.lvdm.LVDMSpec`."""
        return LVDMSpec.from_dict(dict(self.config.spec))

    @torch.no_grad()
    def __call__(
        self,
        cond_latent: torch.Tensor,
        cond_value,
        *,
        frames: int,
        window: int | None = None,
        overlap: int = 0,
        num_inference_steps: int = 64,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        output_type: str = "np",
        stitching: str = "mean",
        guidance_blank: str = "token_frame",
    ) -> LVDMPipelineOutput:
        """Denoise one ``frames``-long latent video, windows stitched at every step.

        The padded noise sequence is drawn from ``generator`` (a CPU generator, so every
        device starts from the same noise); the same generator feeds the scheduler's noise.
        At each step the UNet predicts every window (:func:`stitched_prediction`), then one
        scheduler step moves the whole sequence.

        Args:
            cond_latent: scaled, unpadded conditioning frame latent ``(C, h, w)``.
            cond_value: EF in % (EF models), class id (class models) or prompt (text models).
            frames: frames of the video (>= window).
            window: frames the UNet sees at once; None = the model's training clip length.
            overlap: frames shared by consecutive windows.
            num_inference_steps: scheduler steps.
            guidance_scale: classifier-free guidance (1 = none).
            generator: a seeded ``torch.Generator`` on the CPU.
            output_type: ``"np"`` (decode the video) or ``"latent"``.
            stitching: ``"mean"`` or ``"reference"`` (:func:`stitched_prediction`).
            guidance_blank: ``"token_frame"`` or ``"token"`` (:func:`stitched_prediction`).

        Returns:
            :class:`LVDMPipelineOutput`.
        """
        if output_type not in ("np", "latent"):
            raise ValueError(f"output_type must be 'np' or 'latent', got {output_type!r}")
        spec, unet = self.lvdm_spec, self.unet
        window = spec.frames if window is None else window
        if window != spec.frames:
            log.warning(
                "sampling window %d differs from the model's training clip length %d",
                window,
                spec.frames,
            )
        device = unet.device
        size = cond_latent.shape[-1]
        unpadded = cond_latent.to(device=device, dtype=torch.float32)
        cond = pad_latents(unpadded, spec.pad_to)
        # "noised" models denoise the unpadded latents, padding only the UNet's input.
        noised = spec.padding == "noised"
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(num_inference_steps, device=device)
        generator = generator if generator is not None else torch.Generator(device="cpu")
        shape = unpadded.shape if noised else cond.shape
        latents = torch.randn((frames, *shape), generator=generator, dtype=torch.float32)
        latents = (latents * scheduler.init_noise_sigma).to(device)  # float32 whatever the UNet's

        tokens = self._conditioner.encode([cond_value], device)
        null_tokens = self._conditioner.null(1, device) if guidance_scale > 1 else None
        time_ids = added_time_ids(spec.fps, 1, device, time_id_count(unet.config))
        starts = window_starts(frames, window, overlap)
        for t in self.progress_bar(scheduler.timesteps):
            model_input = scheduler.scale_model_input(latents, t)
            if noised:
                model_input = pad_latents(model_input, spec.pad_to)
            prediction = stitched_prediction(
                unet,
                model_input,
                t,
                cond,
                tokens,
                time_ids,
                starts,
                window,
                null_tokens=null_tokens,
                guidance_scale=guidance_scale,
                stitching=stitching,
                guidance_blank=guidance_blank,
            )
            if noised:
                prediction = crop_latents(prediction, size)
            latents = scheduler.step(prediction, t, latents, generator=generator).prev_sample
        latents = crop_latents(latents, size).cpu()
        video = decode_latents(self.vae, latents) if output_type == "np" else None
        return LVDMPipelineOutput(latents=latents, frames=video)
