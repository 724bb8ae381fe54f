"""Benchmark: one real training step of D'ARTAGNAN and of cardiGAN's SPADE (random weights).

Each row times the task's own ``train_step`` (``DartagnanTask`` / ``SpadeTask`` of
``echogen.training``), built by the task's own ``build`` on an accelerator from
``accelerator_for``, inside the engine's ``deterministic()`` context and after the engine's
``set_seed``, exactly as ``echogen.training.engine.train`` runs it. Only the dataset is
replaced: every step gets a random batch of the shape the task's loader yields (CPU tensors;
their copy to the device is inside the timed step, as in a real run; data loading is not).
Sizes, batch size per process and loss settings come from ``config/paper.yaml`` (models
``reference``) or, with ``--tiny``, from ``config/config.yaml`` (the demo's ``tiny`` models).

D'ARTAGNAN (one step = the task's three backward passes and three Adam steps):
  the twin generator makes the factual and counterfactual clips; the discriminator steps on
  ``L1(D(real), 1)`` and then on ``L1(D(counterfactual.detach()), 0)``; the generator steps
  on ``w_d L1(D(Y*), 1) + w_r L1(Y, Z) + w_e L1(E(Y*) / 100, X*)`` (discriminator frozen,
  gradients through the frozen EF expert ``E``). Substitution: the expert is the repo's
  ``EFRegressor`` of the run's regressor preset (``dartagnan_expert``: 7.8 M parameters)
  with RANDOM weights, saved to a temporary folder so that ``DartagnanTask.build`` loads it
  through ``load_expert`` (no trained expert is needed for speed). The loss weights are
  epoch 0's ramped weights (``sigmoid(0 - 3)``, about 0.047 each): every term is computed.
SPADE (one step = two backward passes, two Adam steps, one extra no-grad generator pass):
  the generator steps on ``hinge_G + lambda_feat x feature matching + lambda_vgg x VGG19``
  with the discriminator frozen (fake and real through it as one batch); the discriminator
  steps on ``hinge_D(real) + hinge_D(fake)`` with a fake regenerated without gradients;
  random left-right flips as the task does. Substitution: ``vgg_weights`` is None, so the
  VGG19 perceptual loss runs on the task's seeded RANDOM VGG19 (no ImageNet weights file
  here; same compute). One process, so no SyncBatchNorm (the paper's 2-GPU run has it).

Precision rows: fp32, fp16 and bf16, the tasks' ``train.precision`` (accelerate's autocast,
with its GradScaler for fp16; D'ARTAGNAN's paper run uses fp16, SPADE's fp32). On CPU only
fp32 runs.

Every row: system, preset, precision, batch, input shapes, parameter counts (G, D and the
frozen helpers), seconds per step (mean over ``--steps`` timed steps after one warm-up step,
synchronised), samples/s, peak GPU memory (GiB, ``max_memory_allocated`` reset after build),
the last step's losses, device name and versions. One JSON line per row on stdout; ``--out``
is rewritten after every row. A failing row records its error and the next one still runs.
Weights are random: these are speed and memory numbers only.

Usage: python bench/gan_gpu.py --device cuda [--systems dartagnan spade] [--steps 3] [--out F.json]
       python bench/gan_gpu.py --device cpu --tiny --steps 1   (a CPU smoke run of the same code)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import accelerate
import torch
import yaml
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed

from echogen.numerics import deterministic
from echogen.training.engine import accelerator_for
from echogen.training.settings import mixed_precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_timing import emit, n_params, time_train_steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"paper": ROOT / "config" / "paper.yaml", "demo": ROOT / "config" / "config.yaml"}
MODEL_NAMES = {"paper": "reference", "demo": "tiny"}
SECTIONS = {"dartagnan": "dartagnan", "spade": "cardigan"}


def settings(system: str, which: str) -> tuple[dict, dict]:
    """The system's section of the config and its benchmarked model entry."""
    config = yaml.safe_load(CONFIGS[which].read_text())
    section = config[SECTIONS[system]]
    models = section["models"]
    name = MODEL_NAMES[which] if MODEL_NAMES[which] in models else next(iter(models))
    return config, {"name": name, **models[name]}


def _record_head(model: dict, models: dict, batch: int) -> dict:
    """The fields every row starts with: model entry, presets, batch, the paper's precision."""
    return {
        "model": model["name"],
        "preset": {
            "generator": models["generator"]["preset"],
            "discriminator": models["discriminator"]["preset"],
        },
        "batch": batch,
        "paper_precision": model.get("train", {}).get("precision", "fp32"),
    }


def dartagnan_case(which: str, precision: str, tmp: Path, seed: int, batch: int | None):
    """D'ARTAGNAN's task with a random expert on disk, its batch maker and its record."""
    from echogen.models.regressor import EFRegressor
    from echogen.training.dartagnan import DartagnanTask, DartagnanTrainConfig, resolve_models
    from echogen.training.regressor import resolve_config

    config, model = settings("dartagnan", which)
    train = {**model.get("train", {}), "precision": precision}
    if batch is not None:
        train["batch_size"] = batch
    cfg = DartagnanTrainConfig.from_dict(train)
    models = resolve_models(model.get("generator"), model.get("discriminator"))
    run_name = config["dartagnan"]["expert"]
    run = config["regressors"]["runs"][run_name]
    expert_cfg = resolve_config(run["preset"], run.get("overrides"))
    expert_dir = tmp / "expert"
    EFRegressor(**expert_cfg.model).save_pretrained(expert_dir)
    (expert_dir / "clips.json").write_text(json.dumps(expert_cfg.clips.to_dict()))
    task = DartagnanTask(models, cfg, None, None, expert_dir, 1, seed, records={})
    b, t, s = cfg.batch_size, cfg.frames, cfg.size

    def make_batch(step: int):
        gen = torch.Generator().manual_seed(seed + step)
        clips = torch.rand(b, 1, t, s, s, generator=gen)  # the loader's (B, 1, T, S, S) in [0, 1]
        ef = (15.0 + 70.0 * torch.rand(b, generator=gen)).float()  # EF in %
        return clips, ef

    record = {
        **_record_head(model, models, b),
        "input": {"clips": [b, 1, t, s, s], "ef": [b]},
        "step": "D on real (L1 to 1) + Adam; D on detached counterfactual (L1 to 0) + Adam; "
        "G on w_d*L1(D(Y*),1) + w_r*L1(Y,Z) + w_e*L1(E(Y*)/100,X*) + Adam (D frozen)",
        "loss_weights_epoch0": cfg.weights(0),
        "expert": f"random-init EFRegressor preset {run['preset']!r} (regressors.runs."
        f"{run_name}; no trained expert), frozen, clips {expert_cfg.clips.size} px "
        f"{expert_cfg.clips.normalisation}",
    }

    def sizes() -> dict:
        return {"G": n_params(task.generator), "D": n_params(task.discriminator),
                "expert_frozen": n_params(task.expert)}  # fmt: skip

    return task, make_batch, record, sizes


def spade_case(which: str, precision: str, tmp: Path, seed: int, batch: int | None):
    """SPADE's task (random VGG19: no weights file), its batch maker and its record."""
    from echogen.training.spade import SpadeTask, SpadeTrainConfig, resolve_models

    config, model = settings("spade", which)
    train = {**model.get("train", {}), "precision": precision, "vgg_weights": None}
    if batch is not None:
        train["batch_size"] = batch
    cfg = SpadeTrainConfig.from_dict(train)
    # as train_spade: the generator's crop size follows train.size unless given
    gen_kw = {"crop_size": cfg.size, **(model.get("generator") or {})}
    models = resolve_models(gen_kw, model.get("discriminator"), model.get("encoder"))
    task = SpadeTask(models, cfg, None, None, 1, seed, records={})
    from echogen.models.spade import build_generator

    gen_cfg = build_generator(**models["generator"]).config
    b, s, c, nc = cfg.batch_size, cfg.size, gen_cfg.out_channels, gen_cfg.label_nc

    def make_batch(step: int):
        gen = torch.Generator().manual_seed(seed + step)
        images = torch.rand(b, c, s, s, generator=gen) * 2 - 1  # the loader's [-1, 1] images
        labels = torch.randint(0, nc, (b, s, s), generator=gen)  # int64 label maps
        return images, labels

    record = {
        **_record_head(model, models, b),
        "input": {"images": [b, c, s, s], "labels": [b, s, s], "one_hot": [b, nc, s, s]},
        "step": "G(+E) on hinge_G + lambda_feat*feature matching + lambda_vgg*VGG19 (+ "
        "lambda_kld*KLD in encoder mode) + Adam (D frozen); no-grad G pass; D on "
        "hinge_D(real) + hinge_D(fake) + Adam",
        "lambdas": {
            "feat": cfg.lambda_feat,
            "vgg": cfg.lambda_vgg,
            "kld": cfg.lambda_kld if gen_cfg.use_vae else None,
        },
        "vgg_loss": f"on, random-init VGG19 (vgg_weights None: no weights file; config "
        f"cardigan.vgg = {config['cardigan'].get('vgg')!r}); same compute as a pretrained one",
        "sync_bn": "off (one process)",
        "flip": cfg.flip,
    }

    def sizes() -> dict:
        out = {"G": n_params(task.generator), "D": n_params(task.discriminator),
               "vgg_frozen": n_params(task.vgg)}  # fmt: skip
        if task.encoder is not None:
            out["E"] = n_params(task.encoder)
        return out

    return task, make_batch, record, sizes


CASES = {"dartagnan": dartagnan_case, "spade": spade_case}


def run_row(system: str, precision: str, args, base: dict) -> dict:
    """Build the task as the engine does and time its train_step."""
    device, which = args.device, "demo" if args.tiny else "paper"
    row = {"system": system, "config": str(CONFIGS[which].relative_to(ROOT)),
           "precision": precision, **base}  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)  # each row its own precision
    with tempfile.TemporaryDirectory() as tmp, deterministic():
        tmp = Path(tmp)
        accelerator = accelerator_for(device, tmp / "state", mixed_precision(precision, device))
        task, make_batch, record, sizes = CASES[system](which, precision, tmp, args.seed,
                                                        args.batch)  # fmt: skip
        row.update(record)
        row["accelerate_mixed_precision"] = accelerator.mixed_precision
        set_seed(args.seed)  # as the engine, right before build
        task.build(accelerator)
        row["parameters"] = sizes()
        timing = time_train_steps(task, accelerator, make_batch, args.steps, device)
        row.update(timing, samples_per_s=row["batch"] / timing["s_per_step"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--systems", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--precisions", nargs="+", default=None, choices=("fp32", "fp16", "bf16"),
                        help="default: fp32 fp16 bf16 on cuda, fp32 on cpu")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None, help="override the config's batch")
    parser.add_argument("--tiny", action="store_true", help="demo sizes (config/config.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.device == "cpu" and {"fp16", "bf16"} & set(args.precisions or []):
        parser.error("fp16/bf16 need --device cuda (the tasks fall back to fp32 on a CPU)")
    # as the engine's deterministic(): cuBLAS reads this when CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = args.device
    precisions = args.precisions or (["fp32", "fp16", "bf16"] if device == "cuda" else ["fp32"])
    base = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    rows = []
    for system in args.systems:
        for precision in precisions:
            try:
                row = run_row(system, precision, args, base)
            except Exception as exc:  # record it; the next row still runs
                traceback.print_exc()
                config = CONFIGS["demo" if args.tiny else "paper"].relative_to(ROOT)
                row = {"system": system, "config": str(config), "precision": precision,
                       **base, "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
            emit(rows, row, device, args.out)


if __name__ == "__main__":
    main()
