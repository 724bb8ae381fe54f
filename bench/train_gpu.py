"""Benchmark: one real training step of every non-GAN training task (random weights).

Each row times the task's own ``train_step`` (``VAETask``, ``LIDMTask``, ``LVDMTask``,
``CascadeStageTask``, ``RegressorTask``, ``RVTask`` of ``echogen.training``), built by the
task's own ``build`` (then ``start``, as the engine calls it) on an accelerator from
``accelerator_for``, inside the engine's ``deterministic()`` context and after the engine's
``set_seed``, exactly as ``echogen.training.engine.train`` runs it. Only the dataset is
replaced: every step gets a random batch of the shape the task's loader yields (CPU tensors
or arrays; their copy to the device is inside the timed step, as in a real run; data loading
is not). Sizes, batch size per process and loss settings come from ``config/paper.yaml``
(the paper entries named below) or, with ``--tiny``, from ``config/config.yaml`` (the
demo's tiny entries). One process: no gradient all-reduce (the paper runs use 1 to 8 GPUs).

Rows (``--systems`` takes a system or ``system:variant``):
  vae:autoencoder, vae:with_discriminator (``lvdm.vae``, EchoNet-Synthetic's KL autoencoder):
    one optimiser step = ``gradient_accumulation_steps`` micro-batches of frames, each
    reconstructed from a posterior sample and stepped on L1 + LPIPS + KL (+ the adaptive
    adversarial term); ``with_discriminator`` runs at steps from ``disc_start`` on, so each
    micro-batch also takes the PatchGAN discriminator's hinge step (two backward passes).
    Substitution: the LPIPS trunk is the task's seeded RANDOM VGG16/AlexNet
    (``perceptual_weights`` None: same compute). Samples = frames per optimiser step.
  lidm:<name> (``lvdm.lidms``, unconditional entries): v-prediction MSE of the LIDM UNet on
    noised single latent frames (padded around the UNet), AdamW, gradient clipping, EMA.
  lvdm:<name> (``lvdm.models``, EF-conditioned entries): v-prediction MSE of the
    spatio-temporal UNet on latent windows with the conditioning frame, AdamW, clipping, EMA.
    The latent shape is the configured VAE's at ``lvdm.latents.size`` (4x14x14, padded to 16).
  cascade:<model>/<stage> (``cascade.models``, every stage of each): imagen-pytorch's EDM
    loss of one stage of the whole ``ElucidatedImagen`` on full-size clips (the cascade
    resizes and degrades them for the stage), Adam, EMA. Every timed step is a video step
    (``ignore_time`` off): the task's every-4th image step skips the temporal layers and is
    cheaper; it is not timed. Samples = clips.
  regressor:<run> (``regressors.runs``: EchoDiffusion's ``reference`` and EchoNet's
    ``echonet_dynamic``; demo ``tiny_dynamic``): MSE on EF, the preset's optimiser.
    Substitution: random weights instead of the Kinetics-400 start (same compute).
  rvfailure:fusion/<model>, rvfailure:pretrain/<stream> (``rvfailure``): the two-stream 3-D
    ResNet fusion on weighted BCE (AdamW, cosine lr) and each stream's EF pretraining (MSE),
    z-scored clips (grey 1 channel, flow 2); random weights instead of the pretrained streams.
Not covered: the text-conditioned LVDM (needs the CLIP ViT-L/14 files, absent here) and the
class-conditioned LIDM/LVDM (the same UNets as the rows above with a 1-d token).

Precision rows: ``fp32``, and ``bf16`` autocast. Each task's own setting is set where it has
one (``train.precision`` of the regressor and RV-failure settings, ``train.mixed_precision``
of the LIDM/LVDM ones); a task whose settings refused bf16 would record that error in its
row. The VAE and cascade settings have no precision field (their trainers always build an
fp32 accelerator): their bf16 rows are accelerate's ``mixed_precision="bf16"`` on the
accelerator (autocast around every prepared module's forward, what such a switch would do),
recorded as ``precision_via``. The accelerator's mode comes from
``echogen.training.settings.mixed_precision``, as the trainers take it. On CPU only fp32
runs (bf16 rows are recorded as skipped). TF32 stays at PyTorch's defaults (recorded).

Every row: system, variant, config entry and presets, precision, batch per process, samples
per step, input shapes, parameter counts, build seconds, seconds per step (mean over
``--steps`` timed steps after one warm-up step, synchronised), samples/s, peak GPU memory (GiB,
``max_memory_allocated`` reset after build), the last step's losses, device name and
versions. One JSON line per row on stdout; ``--out`` is rewritten after every row. A failing
row records its error and the next one still runs; once ``--budget-s`` seconds have passed,
the remaining rows are recorded as skipped. ``--build-only`` builds every task and records
its parameter counts without stepping (a quick check of the paper presets on a CPU).
Weights and batches are random: these are speed and memory numbers only.

Rows run round robin over the systems (every system's first variant, each in every precision,
then every system's second, ...), so a run cut by ``--budget-s`` still has every system.

Needs what the tasks import: diffusers, opencv, lpips (VAE), imagen-pytorch and ema-pytorch
(cascade), einops (regressor), pydicom (imported by the RV-failure trainer).

Usage: python bench/train_gpu.py --device cuda [--systems vae lidm lvdm cascade regressor
           rvfailure] [--precisions fp32 bf16] [--steps 3] [--batch N] [--budget-s S]
           [--out F.json]
       python bench/train_gpu.py --device cpu --tiny --steps 1   (a CPU smoke run)
       python bench/train_gpu.py --device cpu --build-only        (paper presets build)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import accelerate
import numpy as np
import torch
import yaml
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed

from echogen.numerics import deterministic
from echogen.training.engine import Task, accelerator_for
from echogen.training.settings import mixed_precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_timing import emit, n_params, sync, time_train_steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"paper": ROOT / "config" / "paper.yaml", "demo": ROOT / "config" / "config.yaml"}
PRECISIONS = ("fp32", "bf16")
# LVDMTrainConfig's mixed_precision value of each row precision.
LVDM_MIXED = {"fp32": "no", "bf16": "bf16"}
# The regressor rows of each config (EchoDiffusion's reference, EchoNet-Dynamic's model).
REGRESSOR_RUNS = {"paper": ["reference", "echonet_dynamic"], "demo": ["tiny_dynamic"]}
AUTOCAST_VIA = "accelerate mixed_precision on the accelerator (the task's settings have none)"


@dataclass
class Case:
    """One row's task, its batch maker, its record and how the engine would drive it.

    Attributes:
        task: the engine task, not built yet.
        make_batch: the random batch of a step (the task's loader's shapes, on the CPU).
        record: row fields known before the build.
        sizes: parameter counts, called after the build.
        samples: samples (frames, images or clips) per optimiser step.
        first_step: the step index of the warm-up step (the timed ones follow).
        find_unused_parameters: as the task's trainer asks its accelerator.
    """

    task: Task
    make_batch: Callable[[int], object]
    record: dict
    sizes: Callable[[], dict]
    samples: int
    first_step: int = 0
    find_unused_parameters: bool = False


def load_config(which: str) -> dict:
    return yaml.safe_load(CONFIGS[which].read_text())


def row_settings(settings_cls, train: dict, precision: str, batch: int | None) -> tuple[dict, str]:
    """``train`` with the row's precision in the task's own settings field (and which field)
    and, when ``batch`` is given (``--batch``), that batch size."""
    train = dict(train) if batch is None else {**train, "batch_size": batch}
    names = {f.name for f in fields(settings_cls)}
    if "precision" in names:
        return {**train, "precision": precision}, "train.precision"
    if "mixed_precision" in names:
        return {**train, "mixed_precision": LVDM_MIXED[precision]}, "train.mixed_precision"
    return train, AUTOCAST_VIA


def configured_precision(entry: dict, presets: dict | None = None) -> str:
    """The precision an LIDM/LVDM config entry trains with (its ``train.mixed_precision``)."""
    from echogen.training.lvdm import resolve_train_config

    train_preset = entry.get("train_preset", "paper")
    mode = resolve_train_config(train_preset, entry.get("train"), presets=presets).mixed_precision
    return {"no": "fp32"}.get(mode, mode)


def rng_of(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def latent_geometry(config: dict) -> dict:
    """Latent channels, size (unpadded), padded size, fps and scaling factor of the LVDM line."""
    from echogen.models.vae import vae_config

    lvdm = config["lvdm"]
    vae = vae_config(lvdm["vae"].get("preset", "paper"), lvdm["vae"].get("model") or None)
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    size = int(lvdm["latents"].get("size", 112))
    return {
        "channels": int(vae["latent_channels"]),
        "size": size // factor,
        "pad_to": 16,  # make_spec's and make_lidm_spec's default
        "fps": float(lvdm["latents"].get("fps", 32)),
        "scaling_factor": float((lvdm["vae"].get("train") or {}).get("scaling_factor") or 1.0),
    }


# --------------------------------------------------------------------------------- cases


def vae_variants(config: dict, which: str) -> list[str]:
    return ["autoencoder", "with_discriminator"]


def vae_case(config: dict, which: str, variant: str, precision: str, args) -> Case:
    """The image VAE task (random LPIPS trunk), at step 0 or from ``disc_start`` on."""
    from echogen.training.vae import VAETask, VAETrainConfig, resolve_train_config

    section = config["lvdm"]["vae"]
    latents = config["lvdm"]["latents"]
    # as the train_vae rule: size and fps from lvdm.latents, then the entry's train keys
    train = {"size": latents.get("size", 112), "fps": latents.get("fps"),
             **(section.get("train") or {}), "perceptual_weights": None}  # fmt: skip
    train, via = row_settings(VAETrainConfig, train, precision, args.batch)
    cfg = resolve_train_config(section.get("train_preset", "paper"), train)
    preset, overrides = section.get("preset", "paper"), section.get("model") or None
    accumulation = cfg.gradient_accumulation_steps
    lr = cfg.lr * (cfg.batch_size * accumulation if cfg.scale_lr else 1)  # one process
    task = VAETask(preset, overrides, cfg, None, lr, args.seed, records={})
    b, s = cfg.batch_size, cfg.size
    first = cfg.disc_start if variant == "with_discriminator" else 0

    def make_batch(step: int):
        out = []
        for micro in range(accumulation):  # the loader's uint8 (B, S, S) grey frames
            rng = np.random.default_rng([args.seed, step, micro])
            out.append(rng.integers(0, 256, (b, s, s), dtype=np.uint8))
        return out

    record = {
        "model": "lvdm.vae",
        "preset": {"vae": preset, "train": section.get("train_preset", "paper")},
        "batch": b,
        "gradient_accumulation_steps": accumulation,
        "input": {"frames": [accumulation, b, s, s]},
        "step": "per micro-batch: encode, posterior sample, decode; L1 + perceptual*LPIPS + "
        "kl_weight*KL (+ adaptive-weight hinge G term) backward; from disc_start also the "
        "discriminator's hinge loss backward; then Adam on the autoencoder (and the "
        "discriminator)",
        "steps_from": first,
        "discriminator_active": first >= cfg.disc_start,
        "lpips": f"{cfg.perceptual_net}, random-init trunk (perceptual_weights None; same compute)",
        "lr": lr,
        "paper_precision": "fp32",
        "precision_via": via,
    }

    def sizes() -> dict:
        out = {"vae": n_params(task.model), "discriminator": n_params(task.discriminator)}
        if task.perceptual is not None:
            out["lpips_frozen"] = n_params(task.perceptual.model)
        return out

    return Case(task, make_batch, record, sizes, b * accumulation, first_step=first)


def lidm_variants(config: dict, which: str) -> list[str]:
    lidms = config["lvdm"]["lidms"]
    return [n for n, e in lidms.items() if e.get("conditioning", "none") == "none"][:1]


def lidm_case(config: dict, which: str, variant: str, precision: str, args) -> Case:
    """The LIDM task of one ``lvdm.lidms`` entry (unconditional)."""
    from echogen.models.lidm import LIDMSpec
    from echogen.models.lvdm import build_scheduler
    from echogen.training.lidm import LIDM_TRAIN_PRESETS, LIDMTask, _check_train
    from echogen.training.lvdm import LVDMTrainConfig, resolve_train_config

    entry = config["lvdm"]["lidms"][variant]
    train, via = row_settings(LVDMTrainConfig, entry.get("train") or {}, precision, args.batch)
    train_preset = entry.get("train_preset", "paper")
    cfg = resolve_train_config(train_preset, train, presets=LIDM_TRAIN_PRESETS)
    _check_train(cfg)
    geo = latent_geometry(config)
    spec = LIDMSpec(conditioning=entry.get("conditioning", "none"),
                    latent_channels=geo["channels"], latent_size=geo["size"],
                    pad_to=geo["pad_to"], scaling_factor=geo["scaling_factor"])  # fmt: skip
    preset = entry.get("preset", "paper")
    task = LIDMTask(spec, preset, entry.get("model") or None, cfg, None, build_scheduler(),
                    args.seed, records={})  # fmt: skip
    b, c, h = cfg.global_batch(1), geo["channels"], geo["size"]

    def make_batch(step: int):
        gen = rng_of(args.seed, step)
        return {"latent": torch.randn(b, c, h, h, generator=gen), "value": [0] * b}

    record = {
        "model": variant,
        "preset": {"unet": preset, "train": train_preset},
        "batch": b,
        "input": {"latent": [b, c, h, h], "unet_sample": [b, c, geo["pad_to"], geo["pad_to"]]},
        "step": "DDPM noise, v-prediction MSE (padded around the UNet, cropped), AdamW, "
        f"clip {cfg.max_grad_norm}, EMA",
        "paper_precision": configured_precision(entry, LIDM_TRAIN_PRESETS),
        "precision_via": via,
    }

    def sizes() -> dict:
        return {"unet": n_params(task.unet)}

    return Case(task, make_batch, record, sizes, b)


def lvdm_variants(config: dict, which: str) -> list[str]:
    return [n for n, e in config["lvdm"]["models"].items() if e.get("conditioning") == "ef"]


def lvdm_case(config: dict, which: str, variant: str, precision: str, args) -> Case:
    """The LVDM task of one EF-conditioned ``lvdm.models`` entry."""
    from echogen.models.lvdm import Conditioner, LVDMSpec, build_scheduler, pad_latents
    from echogen.training.lvdm import LVDMTask, LVDMTrainConfig, resolve_train_config

    entry = config["lvdm"]["models"][variant]
    train, via = row_settings(LVDMTrainConfig, entry.get("train") or {}, precision, args.batch)
    train_preset = entry.get("train_preset", "paper")
    cfg = resolve_train_config(train_preset, train)
    geo = latent_geometry(config)
    spec = LVDMSpec(conditioning="ef", frames=int(entry.get("frames", 64)), fps=geo["fps"],
                    latent_channels=geo["channels"], latent_size=geo["size"],
                    pad_to=geo["pad_to"], scaling_factor=geo["scaling_factor"],
                    padding=entry.get("padding", "clean"))  # fmt: skip
    conditioner = Conditioner(spec)
    preset = entry.get("preset", "paper")
    task = LVDMTask(spec, preset, entry.get("model") or None, cfg, None, conditioner,
                    build_scheduler(), args.seed, None, None, records={})  # fmt: skip
    b, f, c, h, p = cfg.global_batch(1), spec.frames, geo["channels"], geo["size"], spec.pad_to

    def make_batch(step: int):
        gen = rng_of(args.seed, step)
        # the loader's items: clean latents padded to pad_to (cropped again when noised)
        latents = pad_latents(torch.randn(b, f, c, h, h, generator=gen), p)
        cond = pad_latents(torch.randn(b, c, h, h, generator=gen), p)
        ef = (15.0 + 70.0 * torch.rand(b, generator=gen)).tolist()
        return {"latents": latents, "cond_latent": cond, "value": ef}

    record = {
        "model": variant,
        "preset": {"unet": preset, "train": train_preset},
        "batch": b,
        "input": {
            "latents": [b, f, c, p, p],
            "cond_latent": [b, c, p, p],
            "ef": [b],
            "unet_sample": [b, f, 2 * c, p, p],
        },
        "padding": spec.padding,
        "step": "DDPM noise (offset), v-prediction MSE with the conditioning frame "
        f"concatenated, EF token (dropout {cfg.cond_dropout}), AdamW, clip "
        f"{cfg.max_grad_norm}, EMA",
        "paper_precision": configured_precision(entry),
        "precision_via": via,
    }

    def sizes() -> dict:
        return {"unet": n_params(task.unet)}

    return Case(task, make_batch, record, sizes, b)


def cascade_variants(config: dict, which: str) -> list[str]:
    from echogen.models.cascade import resolve_cascade

    out = []
    for name, entry in config["cascade"]["models"].items():
        stages = len(resolve_cascade(entry)["unets"])
        out += [f"{name}/{stage}" for stage in range(1, stages + 1)]
    return out


def cascade_case(config: dict, which: str, variant: str, precision: str, args) -> Case:
    """One stage of one ``cascade.models`` entry (the whole cascade built, as the task)."""
    from echogen.data.cascade_clips import cascade_clip_spec
    from echogen.models.cascade import output_size, resolve_cascade
    from echogen.training.cascade import CascadeStageTask, CascadeTrainSpec

    name, stage = variant.rsplit("/", 1)
    stage = int(stage)
    entry = config["cascade"]["models"][name]
    cascade = resolve_cascade(entry)
    # as train_cascade_stage_from_config: the stage's batch size from batch_sizes
    train = {**(entry.get("train") or {}), "batch_size": cascade["batch_sizes"][stage - 1]}
    train, via = row_settings(CascadeTrainSpec, train, precision, args.batch)
    spec = CascadeTrainSpec(**train)
    imagen = cascade["imagen"]
    clips = cascade_clip_spec(cascade["fps"], cascade["duration"], output_size(imagen),
                              imagen.get("channels", 3))  # fmt: skip
    task = CascadeStageTask(cascade["unets"], imagen, stage, spec, None, args.seed, records={})
    b, c, t, s = spec.batch_size, clips.channels, clips.frames, clips.size

    def make_batch(step: int):
        gen = rng_of(args.seed, step)
        videos = torch.rand(b, c, t, s, s, generator=gen)  # the loader's [0, 1] clips
        ef = ((15.0 + 70.0 * torch.rand(b, generator=gen)) / 100.0).reshape(b, 1, 1)
        frame = torch.randint(0, t, (b,), generator=gen)
        cond = videos[torch.arange(b), :, frame].clone()  # a random frame of each clip
        return videos, ef, cond, False  # a video step (ignore_time off)

    sizes_ = imagen["image_sizes"]
    down = imagen.get("temporal_downsample_factor", [1] * len(cascade["unets"]))
    record = {
        "model": name,
        "stage": stage,
        "stages": len(cascade["unets"]),
        "preset": {"structure": entry["structure"], "preset": entry.get("preset", "paper")},
        "batch": b,
        "input": {"videos": [b, c, t, s, s], "ef": [b, 1, 1], "cond_images": [b, c, s, s]},
        "stage_output": {
            "size": sizes_[stage - 1] if isinstance(sizes_, list) else sizes_,
            "frames": t // down[stage - 1],
        },
        "step": "ElucidatedImagen EDM loss of this stage (cascade resizes/degrades the clips), "
        "Adam, EMA; a video step (ignore_time off; the image steps are not timed)",
        "paper_precision": "fp32",
        "precision_via": via,
    }

    def sizes() -> dict:
        return {"stage_unet": n_params(task.unet), "cascade_total": n_params(task.cascade)}

    return Case(task, make_batch, record, sizes, b, find_unused_parameters=True)


def regressor_variants(config: dict, which: str) -> list[str]:
    runs = config["regressors"]["runs"]
    return [name for name in REGRESSOR_RUNS[which] if name in runs]


def regressor_case(config: dict, which: str, variant: str, precision: str, args) -> Case:
    """The EF regressor task of one ``regressors.runs`` entry (random weights)."""
    from echogen.training.regressor import (
        REGRESSOR_PRESETS,
        RegressorTask,
        TrainSpec,
        resolve_config,
    )

    run = config["regressors"]["runs"][variant]
    overrides = dict(run.get("overrides") or {})
    paper_train = {**REGRESSOR_PRESETS[run["preset"]]["train"], **overrides.get("train", {})}
    train, via = row_settings(TrainSpec, overrides.get("train") or {}, precision, args.batch)
    cfg = resolve_config(run["preset"], {**overrides, "train": train})
    task = RegressorTask(cfg, None, None, steps_per_epoch=1000, seed=args.seed,
                         pretrained=None, counts={}, train_mean_ef=math.nan)  # fmt: skip
    clips = cfg.clips
    b, c, t, s = cfg.train.batch_size, clips.channels, clips.frames, clips.size

    def make_batch(step: int):
        gen = rng_of(args.seed, step)
        video = torch.rand(b, c, t, s, s, generator=gen)  # float32 (B, C, T, S, S)
        ef = (15.0 + 70.0 * torch.rand(b, generator=gen)).float()  # EF in %
        return video, ef

    record = {
        "model": variant,
        "preset": {"regressor": run["preset"], "arch": cfg.model.get("arch")},
        "batch": b,
        "input": {"clips": [b, c, t, s, s], "ef": [b]},
        "step": f"MSE on EF (%), {cfg.train.optimizer} (lr {cfg.train.lr})",
        "pretrained": f"random init (the run starts from {run.get('pretrained')})",
        "paper_precision": paper_train.get("precision", "fp32"),
        "precision_via": via,
    }

    def sizes() -> dict:
        return {"model": n_params(task.model)}

    return Case(task, make_batch, record, sizes, b)


def rvfailure_variants(config: dict, which: str) -> list[str]:
    models = config["rvfailure"]["models"]
    streams = [s for s in ("grey", "flow") if any(s in v for v in models.values())]
    return [f"fusion/{name}" for name in models] + [f"pretrain/{s}" for s in streams]


def rvfailure_case(config: dict, which: str, variant: str, precision: str, args) -> Case:
    """The RV-failure fusion of one ``rvfailure.models`` entry, or one stream's EF
    pretraining, as the train_rvfailure / pretrain_rvfailure_stream rules configure them."""
    from echogen.models.rvfailure import STREAM_CHANNELS
    from echogen.training.rvfailure import RVConfig, RVTask, RVTrainSettings

    rv = config["rvfailure"]
    kind, name = variant.split("/", 1)
    if kind == "fusion":
        objective, streams = "rvfailure", list(rv["models"][name])
        clips, train = rv["clips"], rv["train"]
    else:
        objective, streams = "ef", [name]
        clips, train = {**rv["clips"], **rv["pretrain"]["clips"]}, rv["pretrain"]["train"]
    paper_precision = train.get("precision", "fp32")
    train, via = row_settings(RVTrainSettings, train, precision, args.batch)
    cfg = RVConfig.from_dict({"model": {**rv["network"], "streams": streams}, "clips": clips,
                              "train": train})  # fmt: skip
    task = RVTask(cfg, objective, None, None, steps_per_epoch=1000, seed=args.seed,
                  total_steps=cfg.train.epochs * 1000)  # fmt: skip
    b, t, s = cfg.train.batch_size, cfg.clips.frames, cfg.clips.size
    shapes = {stream: [b, STREAM_CHANNELS[stream], t, s, s] for stream in streams}

    def make_batch(step: int):
        gen = rng_of(args.seed, step)
        clips_ = [torch.randn(*shapes[stream], generator=gen) for stream in streams]  # z-scored
        if objective == "ef":
            target = (15.0 + 70.0 * torch.rand(b, generator=gen)).float()
        else:
            target = (torch.arange(b) % 2).float()  # both classes in every batch
        return clips_, target

    record = {
        "model": variant,
        "objective": objective,
        "preset": {"network": {k: v for k, v in rv["network"].items()}, "streams": streams},
        "batch": b,
        "input": {**shapes, "target": [b]},
        "step": ("weighted BCE on severe RV failure" if objective == "rvfailure" else "MSE on EF")
        + f", {cfg.train.optimizer} (lr {cfg.train.lr}, {cfg.train.lr_schedule} schedule)",
        "init": "random (the paper's streams start from their EF pretraining / Kinetics)",
        "paper_precision": paper_precision,
        "precision_via": via,
    }

    def sizes() -> dict:
        return {"model": n_params(task.model)}

    return Case(task, make_batch, record, sizes, b)


CASES = {
    "vae": (vae_variants, vae_case),
    "lidm": (lidm_variants, lidm_case),
    "lvdm": (lvdm_variants, lvdm_case),
    "cascade": (cascade_variants, cascade_case),
    "regressor": (regressor_variants, regressor_case),
    "rvfailure": (rvfailure_variants, rvfailure_case),
}


# ---------------------------------------------------------------------------------- rows


def plan_rows(selected: list[str], config: dict, which: str) -> list[tuple[str, str]]:
    """``(system, variant)`` pairs of ``--systems`` items (``system`` or ``system:variant``),
    round robin: every item's first variant, then every item's second, and so on, so that a
    run cut by ``--budget-s`` still has a row of every system."""
    lists = []
    for item in selected:
        system, _, variant = item.partition(":")
        if system not in CASES:
            raise SystemExit(f"unknown system {system!r}; choose from {list(CASES)}")
        known = CASES[system][0](config, which)
        if variant and variant not in known:
            raise SystemExit(f"unknown {system} variant {variant!r}; choose from {known}")
        lists.append([(system, v) for v in ([variant] if variant else known)])
    depth = max((len(v) for v in lists), default=0)
    return [part[i] for i in range(depth) for part in lists if i < len(part)]


def run_row(system: str, variant: str, precision: str, args, head: dict) -> dict:
    """Build the task as the engine does and time its train_step."""
    device, which = args.device, "demo" if args.tiny else "paper"
    row = dict(head)
    if device == "cuda":  # what earlier rows left behind (0 when they were freed)
        row["allocated_at_start_gib"] = torch.cuda.memory_allocated() / 2**30
    AcceleratorState._reset_state(reset_partial_state=True)  # each row its own precision
    with tempfile.TemporaryDirectory() as tmp, deterministic():
        case = CASES[system][1](load_config(which), which, variant, precision, args)
        row.update(case.record)
        accelerator = accelerator_for(device, Path(tmp) / "state",
                                      mixed_precision(precision, device),
                                      case.find_unused_parameters)  # fmt: skip
        row["accelerate_mixed_precision"] = accelerator.mixed_precision
        row["samples_per_step"] = case.samples
        task = case.task
        set_seed(args.seed)  # as the engine, right before build
        start = time.perf_counter()
        model = task.build(accelerator)
        task.start(accelerator, case.first_step)  # as the engine, after (no) resume
        model.train()
        sync(device)
        row["build_s"] = time.perf_counter() - start
        row["parameters"] = case.sizes()
        if args.build_only:
            row["steps_timed"] = 0
            return row
        timing = time_train_steps(task, accelerator, case.make_batch, args.steps, device,
                                  case.first_step)  # fmt: skip
        row.update(timing, samples_per_s=case.samples / timing["s_per_step"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--systems", nargs="+", default=list(CASES),
                        help=f"{list(CASES)}, each alone or as system:variant")  # fmt: skip
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS,
                        help="on cpu the bf16 rows are recorded as skipped")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None, help="override every batch per process")
    parser.add_argument("--tiny", action="store_true", help="demo sizes (config/config.yaml)")
    parser.add_argument("--build-only", action="store_true",
                        help="build every task and count its parameters; no steps")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=math.inf,
                        help="skip the rows not started after this many seconds")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    # as the engine's deterministic(): cuBLAS reads this when CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    began = time.perf_counter()
    device, which = args.device, "demo" if args.tiny else "paper"
    plan = plan_rows(args.systems, load_config(which), which)
    base = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "cpu_threads": torch.get_num_threads(),
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "seed": args.seed,
    }
    rows = []
    for system, variant in plan:
        for precision in args.precisions:
            head = {"system": system, "variant": variant,
                    "config": str(CONFIGS[which].relative_to(ROOT)), "precision": precision,
                    **base}  # fmt: skip
            if device == "cpu" and precision != "fp32":
                row = {**head, "skipped": f"{precision} rows run on cuda only (the tasks "
                       "train in fp32 on a CPU)"}  # fmt: skip
            elif time.perf_counter() - began > args.budget_s:
                row = {**head, "skipped": f"time budget: --budget-s {args.budget_s:g} spent"}
            else:
                try:  # libraries' prints (imagen-pytorch's advice) go to stderr
                    with contextlib.redirect_stdout(sys.stderr):
                        row = run_row(system, variant, precision, args, head)
                except Exception as exc:  # record it; the next row still runs
                    traceback.print_exc()
                    row = {**head, "error": f"{type(exc).__name__}: {exc}"}
            row["elapsed_s"] = time.perf_counter() - began
            emit(rows, row, device, args.out)


if __name__ == "__main__":
    main()
