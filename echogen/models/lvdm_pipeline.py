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
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNetSpatioTemporalConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from echogen.models.graphs import GraphedCall
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
from echogen.numerics import AUTOCAST

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
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """The UNet's output for whole sequences, stitched from overlapping windows.

    All windows of all K sequences (and, with guidance, their unconditional twins) go
    through the UNet as one batch, ordered sample by sample.

    Args:
        unet: a ``UNetSpatioTemporalConditionModel`` (or anything with its call signature).
        latents: noisy sequences ``(K, F, C, H, W)``, or one ``(F, C, H, W)`` (padded,
            scheduler-scaled).
        timestep: the current scheduler timestep.
        cond_latent: padded conditioning frame latents ``(K, C, H, W)`` (``(C, H, W)`` for
            one sequence).
        tokens: conditioning tokens ``(K, L, D)``, or ``(1, L, D)`` shared by all.
        time_ids: ``added_time_ids`` ``(K, 3)``, or ``(1, 3)`` shared by all.
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
        autocast: run the UNet under ``torch.autocast`` in this dtype (bf16 / fp16); None =
            in the UNet's own dtype.

    Returns:
        float32 stitched (guided) outputs of the shape of ``latents``. Guidance and
        stitching run in float32 whatever the UNet's precision.
    """
    if stitching not in STITCHINGS:
        raise ValueError(f"stitching must be one of {STITCHINGS}, got {stitching!r}")
    if guidance_blank not in GUIDANCE_BLANKS:
        raise ValueError(f"guidance_blank must be one of {GUIDANCE_BLANKS}, got {guidance_blank!r}")
    single = latents.ndim == 4
    if single:
        latents, cond_latent = latents.unsqueeze(0), cond_latent.unsqueeze(0)
    k, n, dtype = len(latents), len(starts), unet.dtype
    windows = torch.stack([latents[:, s : s + window] for s in starts], dim=1)  # (K, n, F', ...)
    windows = windows.flatten(0, 1).to(dtype)  # sample-major: sample i's windows together
    cond = cond_latent.to(dtype).unsqueeze(1).expand(k, n, *cond_latent.shape[1:]).flatten(0, 1)
    hidden = _per_window(tokens.to(dtype), k, n)
    ids = _per_window(time_ids.to(dtype), k, n)
    guided = guidance_scale > 1
    if guided:
        if null_tokens is None:
            raise ValueError("guidance_scale > 1 needs null_tokens")
        windows = torch.cat([windows, windows])
        blank = torch.zeros_like(cond) if guidance_blank == "token_frame" else cond
        cond = torch.cat([cond, blank])
        hidden = torch.cat([hidden, null_tokens.to(dtype).expand(k * n, *null_tokens.shape[1:])])
        ids = torch.cat([ids, ids])
    context = (
        # No cast cache: a CUDA graph recorded under autocast must cast inside the graph.
        torch.autocast(latents.device.type, dtype=autocast, cache_enabled=False)
        if autocast is not None
        else nullcontext()
    )
    with context:
        output = unet(
            unet_input(windows, cond),
            timestep,
            encoder_hidden_states=hidden,
            added_time_ids=ids,
            return_dict=False,
        )[0]
    output = output.float()
    if guided:
        conditional, unconditional = output.chunk(2)
        output = unconditional + guidance_scale * (conditional - unconditional)
    output = output.unflatten(0, (k, n))  # (K, n, F', C, H, W)
    total = torch.zeros(latents.shape, dtype=torch.float32, device=latents.device)
    if stitching == "reference":
        for j in sorted(range(n), key=lambda j: -starts[j]):
            total[:, starts[j] : starts[j] + window] = output[:, j]  # earlier windows overwrite
    else:
        count = torch.zeros(latents.shape[1], dtype=torch.float32, device=latents.device)
        for j, s in enumerate(starts):
            total[:, s : s + window] += output[:, j]
            count[s : s + window] += 1
        total = total / count.view(-1, 1, 1, 1)
    return total[0] if single else total


def _per_window(x: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """Per-sample rows ``(K, ...)`` (or one shared ``(1, ...)``) repeated for each window."""
    if len(x) == 1:
        return x.expand(k * n, *x.shape[1:])
    if len(x) != k:
        raise ValueError(f"expected 1 or {k} rows (one per sample), got {len(x)}")
    return x.repeat_interleave(n, dim=0)


@dataclass
class LVDMPipelineOutput(BaseOutput):
    """What :class:`LVDMPipeline` returns.

    Args:
        latents: scaled latents ``(frames, C, h, w)`` (a block: ``(K, frames, C, h, w)``),
            float32 on the CPU, padding cropped.
        frames: the decoded grey video ``uint8 (frames, H, W)`` (a block: ``(K, frames, H,
            W)``); None for ``output_type="latent"``.
    """

    latents: torch.Tensor
    frames: np.ndarray | None = None


class LVDMPipeline(DiffusionPipeline):
    """Sample a conditioned video, or a block of K, from an LVDM (windows stitched at every
    step).

    Args:
        unet: the video UNet (``UNetSpatioTemporalConditionModel``).
        scheduler: the sampling scheduler (DDPM, DDIM or DPM-Solver++; a fresh copy is used
            for every call, so calls never share scheduler state).
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

    def _graphed_unet(self) -> GraphedCall:
        """The UNet behind CUDA-graph replay, kept (with its recorded graphs) across calls."""
        graphed = getattr(self, "_graphed", None)
        if graphed is None or graphed.module is not self.unet:
            graphed = GraphedCall(self.unet)
            self._graphed = graphed
        return graphed

    def _compiled_unet(self) -> torch.nn.Module:
        """The UNet through ``torch.compile`` (inductor, static shapes), kept across calls so
        each call shape compiles once per pipeline."""
        compiled = getattr(self, "_compiled", None)
        if compiled is None or compiled._orig_mod is not self.unet:
            compiled = torch.compile(self.unet, dynamic=False)
            self._compiled = compiled
        return compiled

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
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        stitching: str = "mean",
        guidance_blank: str = "token_frame",
        precision: str = "fp32",
        graphs: bool = False,
        compile: bool = False,
    ) -> LVDMPipelineOutput:
        """Denoise one ``frames``-long latent video, or a block of K, windows stitched at
        every step.

        A block is one batch: the windows of its K videos go through the UNet in one call
        per step (:func:`stitched_prediction`), then one scheduler step moves every sequence.
        Video i's noise, the initial sequence and the scheduler's, comes from its own
        generator alone, so a video's noise never depends on the other videos of its block.
        The loop makes no host-device synchronisation: the scheduler's timesteps stay on the
        CPU (its arithmetic reads them there), the UNet gets each timestep from a table
        moved to the device once, and noise is drawn on the generators' device.

        Args:
            cond_latent: scaled, unpadded conditioning frame latent ``(C, h, w)``, or one per
                video ``(K, C, h, w)``.
            cond_value: EF in % (EF models), class id (class models) or prompt (text
                models); a list of K values for a block.
            frames: frames of the video (>= window).
            window: frames the UNet sees at once; None = the model's training clip length.
            overlap: frames shared by consecutive windows.
            num_inference_steps: scheduler steps.
            guidance_scale: classifier-free guidance (1 = none).
            generator: a seeded ``torch.Generator``, or a list of K for a block. A generator
                on the UNet's device draws there without copies; a CPU generator draws on
                the CPU (the same noise on every device) and copies it over every step.
            output_type: ``"np"`` (decode the video) or ``"latent"``.
            stitching: ``"mean"`` or ``"reference"`` (:func:`stitched_prediction`).
            guidance_blank: ``"token_frame"`` or ``"token"`` (:func:`stitched_prediction`).
            precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` autocast for the UNet (the
                scheduler, guidance and stitching stay in float32).
            graphs: on a GPU, replay the UNet call from a CUDA graph recorded once per call
                shape and kept by the pipeline (:class:`~echogen.models.graphs.GraphedCall`);
                ignored on the CPU.
            compile: on a GPU, run the UNet through ``torch.compile`` (inductor, static
                shapes: the first call of each shape compiles, for a minute or more at the
                paper's size); ignored on the CPU; not with ``graphs``.

        Returns:
            :class:`LVDMPipelineOutput`: for a block, latents ``(K, frames, C, h, w)`` and
            frames ``(K, frames, H, W)``.
        """
        if output_type not in ("np", "latent"):
            raise ValueError(f"output_type must be 'np' or 'latent', got {output_type!r}")
        if precision not in AUTOCAST:
            raise ValueError(f"precision must be one of {list(AUTOCAST)}, got {precision!r}")
        if graphs and compile:
            raise ValueError("graphs and compile are exclusive: pick one")
        single = cond_latent.ndim == 3
        conds = cond_latent.unsqueeze(0) if single else cond_latent
        values = [cond_value] if single else list(cond_value)
        k = len(conds)
        generators = _generators(generator, k)
        if len(values) != k:
            raise ValueError(f"{k} conditioning frames but {len(values)} conditioning values")
        spec, unet = self.lvdm_spec, self.unet
        window = spec.frames if window is None else window
        if window != spec.frames:
            log.warning(
                "sampling window %d differs from the model's training clip length %d",
                window,
                spec.frames,
            )
        device = unet.device
        size = conds.shape[-1]
        unpadded = conds.to(device=device, dtype=torch.float32)
        cond = pad_latents(unpadded, spec.pad_to)
        # "noised" models denoise the unpadded latents, padding only the UNet's input.
        noised = spec.padding == "noised"
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(num_inference_steps, device="cpu")
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)  # no search of the timestep table on the first step
        shape = (1, frames, *(unpadded.shape if noised else cond.shape)[1:])
        latents = torch.cat([randn_tensor(shape, generator=g, device=device) for g in generators])
        latents = latents * scheduler.init_noise_sigma  # float32 whatever the UNet's

        tokens = self._conditioner.encode(values, device)
        null_tokens = self._conditioner.null(1, device) if guidance_scale > 1 else None
        time_ids = added_time_ids(spec.fps, 1, device, time_id_count(unet.config))
        starts = window_starts(frames, window, overlap)
        table = scheduler.timesteps.to(device)  # the UNet's timesteps, moved once
        denoiser = unet
        if graphs:
            denoiser = self._graphed_unet()
        elif compile and device.type == "cuda":
            denoiser = self._compiled_unet()
        for i, t in enumerate(self.progress_bar(scheduler.timesteps.tolist())):
            model_input = scheduler.scale_model_input(latents, t)
            if noised:
                model_input = pad_latents(model_input, spec.pad_to)
            prediction = stitched_prediction(
                denoiser,
                model_input,
                table[i],
                cond,
                tokens,
                time_ids,
                starts,
                window,
                null_tokens=null_tokens,
                guidance_scale=guidance_scale,
                stitching=stitching,
                guidance_blank=guidance_blank,
                autocast=AUTOCAST[precision],
            )
            if noised:
                prediction = crop_latents(prediction, size)
            step = scheduler.step(prediction, t, latents, generator=generators)
            latents = step.prev_sample
        latents = crop_latents(latents, size).cpu()
        video = None
        if output_type == "np":
            video = np.stack([decode_latents(self.vae, z) for z in latents])
        if single:
            first = None if video is None else video[0]
            return LVDMPipelineOutput(latents=latents[0], frames=first)
        return LVDMPipelineOutput(latents=latents, frames=video)


def _generators(generator, k: int) -> list[torch.Generator]:
    """K generators: a list of K as given, one for one video, a default CPU one for None."""
    if isinstance(generator, list | tuple):
        if len(generator) != k:
            raise ValueError(f"{k} videos need {k} generators, got {len(generator)}")
        return list(generator)
    if k != 1:
        raise ValueError(f"a block of {k} videos needs a list of {k} seeded generators")
    return [generator if generator is not None else torch.Generator(device="cpu")]
