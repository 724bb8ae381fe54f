"""SPADE's adversarial training (cardiGAN's settings) on the trainer engine.

As NVlabs/SPADE's ``train.py`` with ``trainers/pix2pix_trainer.py`` and
``models/pix2pix_model.py`` (``/work/shared/PAPERS.md`` §8), every step, on a batch of
masks and their real images:

1. the generator steps on ``hinge_G(D(mask, fake))`` + ``lambda_feat`` x the discriminators'
   feature matching + ``lambda_vgg`` x the VGG19 perceptual loss (+ ``lambda_kld`` x the
   style code's KL divergence in encoder mode, the encoder stepping with the generator),
   with the discriminator frozen; fake and real go through it as one batch;
2. the discriminator steps on ``hinge_D(real) + hinge_D(fake)`` with a fake made again,
   without gradients, by the generator just updated (the reference's order and cost).

Adam with ``beta1``/``beta2`` (cardiGAN passes 0 and 0.999; SPADE's default ``beta2`` is 0.9)
and the two time-scale update rule (the reference's default, cardiGAN keeps it): the
generator at ``lr / 2``, the discriminator at ``lr * 2``. The rate is constant for
``epochs - decay_epochs`` epochs and decays linearly over the last ``decay_epochs`` as the
reference's ``update_learning_rate`` does at the end of each epoch: 0-based epoch ``e`` runs
at ``lr * (1 - max(0, e - n_const) / decay_epochs)`` with ``n_const = epochs -
decay_epochs``, so the first decay epoch still runs at the full rate and the rate never
reaches 0. Training images are flipped left-right with probability 1/2 (the reference's
default, no ``--no_flip``; ``flip: false`` turns it off).

Everything random is a function of ``(seed, step, process)`` (flips, style codes) or of
``(seed, epoch)`` (the data order). Validation (every epoch, on the VAL split, generator in
eval mode): the L1 and the perceptual loss between the images generated from VAL masks and
the real ones, and ``val_loss`` their sum (the reference selects nothing; ``select:
best_val`` keeps the lowest).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.configuration_utils import FrozenDict

from echogen.data.camus import CamusPairSet, read_camus_index
from echogen.models.spade import (
    DISCRIMINATOR_DIR,
    ENCODER_DIR,
    GENERATOR_DIR,
    ConvEncoder,
    VGGLoss,
    build_discriminator,
    build_generator,
    feature_matching_loss,
    hinge_loss,
    kld_loss,
    one_hot,
    reparameterize,
)
from echogen.training import gan
from echogen.training.engine import (
    Budget,
    RunResult,
    Task,
    accelerator_for,
    steps_per_epoch,
)
from echogen.training.engine import train as engine_train
from echogen.training.settings import TrainSettings, mixed_precision
from echogen.training.supervised import epoch_loader, rows_digest

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["g_gan", "g_feat", "g_vgg", "g_kld", "d_fake", "d_real"]
VAL_COLUMNS = ["val_l1", "val_vgg", "val_loss"]
LOG_COLUMNS = ["epoch", "step", *LOSS_COLUMNS, *VAL_COLUMNS]
BUDGET_FIELDS = ("epochs", "max_steps", "checkpoint_every", "checkpoints_total_limit",
                 "log_every", "num_workers")  # fmt: skip
STEP_STREAM, VAL_STREAM = 21, 22


@dataclass(frozen=True)
class SpadeTrainConfig(TrainSettings):
    """SPADE's optimisation with cardiGAN's command-line settings.

    Args:
        batch_size (int, 4): images per step over all processes is ``batch_size x
            processes`` (cardiGAN: ``--batchSize 4`` over 2 GPUs, i.e. 2 per GPU: set 2 with
            2 processes).
        epochs (int, 30): ``niter + niter_decay`` (20 + 10).
        decay_epochs (int, 10): ``niter_decay``; the rate decays linearly over these last
            epochs (0: constant).
        max_steps (int | None, None): cap on the steps (None: ``epochs`` epochs).
        lr (float, 2e-4): the base rate.
        beta1 (float, 0.0), beta2 (float, 0.999): Adam's betas (cardiGAN's).
        ttur (bool, True): generator at ``lr / 2``, discriminator at ``lr * 2`` (SPADE's
            default; False: both at ``lr``).
        lambda_feat (float, 10.0): feature-matching weight (0 turns it off).
        lambda_vgg (float, 10.0): perceptual-loss weight (0 turns it off).
        lambda_kld (float, 0.05): style-code KL weight (encoder mode only).
        flip (bool, True): random left-right flips of training pairs.
        size (int, 256): images and masks are resized to ``size x size`` (the generator's
            ``crop_size`` must equal it).
        vgg_weights (str | None, None): a local torchvision ``vgg19`` state dict for the
            perceptual loss (the ImageNet weights the reference downloads); None: a seeded
            random VGG19, a plumbing setting named in ``train.json``.
        select (str, "last"): export the last weights or those of the lowest ``val_loss``.
        precision (str, "fp32"): ``"fp16"`` or ``"bf16"`` autocast on a GPU.
        checkpoint_every (int, 500), checkpoints_total_limit (int, 2), log_every (int, 10),
        num_workers (int, 0): the engine's cadences and the loader's workers.
    """

    batch_size: int = 4
    epochs: int = 30
    decay_epochs: int = 10
    max_steps: int | None = None
    lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    ttur: bool = True
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_kld: float = 0.05
    flip: bool = True
    size: int = 256
    vgg_weights: str | None = None
    select: str = "last"
    precision: str = "fp32"
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 2
    log_every: int = 10
    num_workers: int = 0

    label: ClassVar[str] = "SPADE"
    positive: ClassVar[tuple[str, ...]] = (*TrainSettings.positive, "size")

    def __post_init__(self):
        self.check_engine_fields()
        if not 0 <= self.decay_epochs <= self.epochs:
            raise ValueError(f"train.decay_epochs must be in 0..epochs, got {self.decay_epochs}")
        if self.lr <= 0 or not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("train.lr must be > 0 and beta1, beta2 in [0, 1)")
        if min(self.lambda_feat, self.lambda_vgg, self.lambda_kld) < 0:
            raise ValueError("loss weights must be >= 0")

    def lr_factor(self, epoch: int) -> float:
        """The rate's factor in 0-based ``epoch`` (see the module's docstring)."""
        if self.decay_epochs == 0:
            return 1.0
        return 1.0 - max(0, epoch - (self.epochs - self.decay_epochs)) / self.decay_epochs

    def rates(self, epoch: int) -> tuple[float, float]:
        """``(generator, discriminator)`` learning rates of ``epoch``."""
        lr = self.lr * self.lr_factor(epoch)
        return (lr / 2, lr * 2) if self.ttur else (lr, lr)


class SpadeTask(Task):
    """SPADE's generator (and encoder) and multi-scale discriminator (epoch task)."""

    name = "SPADE"
    log_columns = LOG_COLUMNS
    select_metric = "val_loss"
    select_mode = "min"

    def __init__(self, models: dict, config: SpadeTrainConfig, train_set: CamusPairSet,
                 val_set: CamusPairSet, steps_per_epoch: int, seed: int,
                 records: dict):  # fmt: skip
        self.models, self.config = models, config
        self.train_set, self.val_set = train_set, val_set
        self.steps_per_epoch, self.seed, self.records = steps_per_epoch, seed, records
        self.select = config.select
        self.use_vae = bool(models["generator"].get("use_vae", False))

    def build(self, accelerator: Accelerator) -> torch.nn.Module:
        generator = build_generator(**self.models["generator"])
        discriminator = build_discriminator(**self.models["discriminator"])
        self.label_nc = generator.config.label_nc
        if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
            # the reference's hand-cloned SynchronizedBatchNorm2d, from PyTorch itself
            generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        lr_g, lr_d = self.config.rates(0)
        betas = (self.config.beta1, self.config.beta2)
        params_g = list(generator.parameters())
        encoder = None
        if self.use_vae:
            encoder = ConvEncoder(**self.models["encoder"])
            params_g += list(encoder.parameters())
        opt_g = torch.optim.Adam(params_g, lr=lr_g, betas=betas)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
        prepared = accelerator.prepare(generator, discriminator, opt_g, opt_d,
                                       *([encoder] if encoder is not None else []))  # fmt: skip
        self.generator, self.discriminator, self.opt_g, self.opt_d = prepared[:4]
        self.encoder = prepared[4] if encoder is not None else None
        self.vgg = VGGLoss(self.config.vgg_weights, seed=self.seed).to(accelerator.device)
        return self.generator

    def fingerprint(self) -> dict:
        def public(model) -> dict:
            config = getattr(model, "module", model).config
            return {k: v for k, v in config.items() if not k.startswith("_")}

        return {"generator_config": public(self.generator),
                "discriminator_config": public(self.discriminator)}  # fmt: skip

    def batches(self, accelerator: Accelerator, epoch: int, start: int) -> Iterable:
        lr_g, lr_d = self.config.rates(epoch)
        for opt, lr in ((self.opt_g, lr_g), (self.opt_d, lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr
        return epoch_loader(self.train_set, self.steps_per_epoch, self.config.batch_size,
                            accelerator, self.seed, epoch, start,
                            self.config.num_workers)  # fmt: skip

    def _fake(self, seg: torch.Tensor, real: torch.Tensor, noise: torch.Generator):
        """The generator's images (and the KL term in encoder mode)."""
        if self.encoder is None:
            return self.generator(seg), None
        mu, logvar = self.encoder(real)
        z = reparameterize(mu, logvar, noise)
        return self.generator(seg, z), kld_loss(mu, logvar)

    def _discriminate(self, disc, seg, fake, real):
        """The discriminator's outputs for fake and real, run as one batch as the reference."""
        both = disc(torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0))
        n = fake.shape[0]
        return [[f[:n] for f in out] for out in both], [[f[n:] for f in out] for out in both]

    def train_step(self, accelerator: Accelerator, batch, step: int) -> dict[str, float]:
        device = accelerator.device
        images, labels = batch
        rng, noise_seed = gan.seeded(self.seed, STEP_STREAM, step, accelerator.process_index)
        if self.config.flip:
            flip = torch.from_numpy(rng.random(len(images)) < 0.5)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            labels = torch.where(flip[:, None, None], labels.flip(-1), labels)
        real = images.to(device)
        seg = one_hot(labels.to(device), self.label_nc)
        noise = torch.Generator(device=device).manual_seed(noise_seed)
        cfg = self.config
        self.generator.train()
        self.discriminator.train()
        losses = {}
        # 1: the generator (and encoder), the discriminator frozen.
        with gan.discriminator_frozen(accelerator, self.discriminator) as disc, \
                accelerator.autocast():  # fmt: skip
            fake, kld = self._fake(seg, real, noise)
            pred_fake, pred_real = self._discriminate(disc, seg, fake, real)
            losses["g_gan"] = hinge_loss(pred_fake, True, for_discriminator=False)
            zero = torch.zeros((), device=device)
            losses["g_feat"] = feature_matching_loss(pred_fake, pred_real, cfg.lambda_feat) \
                if cfg.lambda_feat else zero  # fmt: skip
            losses["g_vgg"] = self.vgg(fake, real) * cfg.lambda_vgg if cfg.lambda_vgg else zero
            losses["g_kld"] = kld * cfg.lambda_kld if kld is not None else zero
            loss = losses["g_gan"] + losses["g_feat"] + losses["g_vgg"] + losses["g_kld"]
        accelerator.backward(loss)
        gan.step((self.opt_g, True))
        # 2: the discriminator, on a fake made again by the updated generator.
        with torch.no_grad(), accelerator.autocast():
            fake, _ = self._fake(seg, real, noise)
        with accelerator.autocast():
            pred_fake, pred_real = self._discriminate(self.discriminator, seg, fake.detach(), real)
            losses["d_fake"] = hinge_loss(pred_fake, False, for_discriminator=True)
            losses["d_real"] = hinge_loss(pred_real, True, for_discriminator=True)
        accelerator.backward(losses["d_fake"] + losses["d_real"])
        gan.step((self.opt_d, True))
        return {k: accelerator.reduce(torch.as_tensor(v, device=device).detach().float(),
                                      "mean").item() for k, v in losses.items()}  # fmt: skip

    @torch.no_grad()
    def validate(self, accelerator: Accelerator) -> dict[str, float]:
        """L1 and perceptual loss of the images generated from every VAL mask (eval mode; in
        encoder mode the style code is the encoder's mean of the real image)."""
        device = accelerator.device
        net = accelerator.unwrap_model(self.generator)
        net.eval()
        encoder = accelerator.unwrap_model(self.encoder) if self.encoder is not None else None
        l1, vgg = [], []
        for start in range(0, len(self.val_set), self.config.batch_size):
            items = [self.val_set[i] for i in range(start, min(start + self.config.batch_size,
                                                                len(self.val_set)))]  # fmt: skip
            real = torch.from_numpy(np.stack([i[0] for i in items])).to(device)
            seg = one_hot(torch.from_numpy(np.stack([i[1] for i in items])).to(device),
                          self.label_nc)  # fmt: skip
            z = None
            if encoder is not None:
                encoder.eval()
                z = encoder(real)[0]
                encoder.train()
            fake = net(seg, z)
            l1 += [F.l1_loss(fake[i], real[i]).item() for i in range(len(items))]
            vgg += [self.vgg(fake[i : i + 1], real[i : i + 1]).item() for i in range(len(items))]
        net.train()
        val_l1, val_vgg = float(np.mean(l1)), float(np.mean(vgg))
        return {"val_l1": val_l1, "val_vgg": val_vgg, "val_loss": val_l1 + val_vgg}

    def export(self, folder: Path, model: torch.nn.Module, result: RunResult) -> dict:
        if hasattr(model, "module"):
            model = model.module
        plain = build_generator(**self.models["generator"])  # SyncBatchNorm back to BatchNorm
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(folder / GENERATOR_DIR)
        getattr(self.discriminator, "module", self.discriminator).save_pretrained(
            folder / DISCRIMINATOR_DIR
        )
        if self.encoder is not None:
            getattr(self.encoder, "module", self.encoder).save_pretrained(folder / ENCODER_DIR)
        return {
            **self.records,
            "train": self.config.to_dict(),
            "models": self.models,
            "vgg": "pretrained" if self.vgg.pretrained else "random (plumbing check)",
        }


def resolve_models(generator: dict | None, discriminator: dict | None,
                   encoder: dict | None = None) -> dict:  # fmt: skip
    """Keyword arguments of the generator, discriminator (and, in encoder mode, encoder):
    ``preset`` plus overrides, checked by building them. The discriminator's input channels
    and the encoder's image channels, size and code follow the generator."""
    return _resolve(generator, discriminator, encoder)[0]


def _resolve(generator, discriminator, encoder) -> tuple[dict, FrozenDict]:
    """:func:`resolve_models`'s models and the generator's resolved config (built once)."""
    gen = {"preset": "reference", **(generator or {})}
    built = build_generator(**gen)
    disc = {"preset": "reference", **(discriminator or {}),
            "in_channels": built.config.label_nc + built.config.out_channels}  # fmt: skip
    build_discriminator(**disc)
    models = {"generator": gen, "discriminator": disc}
    if built.config.use_vae:
        enc = {"ndf": built.config.ngf, "encoder_size": 256, **(encoder or {}),
               "in_channels": built.config.out_channels, "z_dim": built.config.z_dim}  # fmt: skip
        ConvEncoder(**enc)
        models["encoder"] = enc
    return models, built.config


def train_spade(
    index_csv: str | Path,
    out_dir: str | Path,
    state_dir: str | Path,
    generator: dict | None = None,
    discriminator: dict | None = None,
    encoder: dict | None = None,
    train: dict | SpadeTrainConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Train SPADE on the ``train`` pairs of a CAMUS ``index.csv`` (``prepare_camus``),
    validating on ``valid``.

    ``out_dir`` is replaced atomically at the end by ``generator/``, ``discriminator/`` (and
    ``encoder/``) ``save_pretrained`` folders, ``train.json`` and ``log.csv``; ``state_dir``
    holds the resumable checkpoints.

    Args:
        index_csv: ``resources/camus/index.csv``.
        out_dir: the model folder.
        state_dir: the training state (not a workflow output).
        generator, discriminator, encoder: ``preset`` and overrides (:mod:`echogen.models.
            spade`); the encoder is used when the generator has ``use_vae``; the
            generator's ``crop_size`` is ``train.size`` unless given.
        train: :class:`SpadeTrainConfig` or its fields.
        seed: the run's seed.
        device: ``"cpu"`` or ``"cuda"`` (all visible GPUs under ``accelerate launch``).
    """
    config = train if isinstance(train, SpadeTrainConfig) else SpadeTrainConfig.from_dict(train)
    # the generator's size follows train.size unless it is given
    models, gen = _resolve({"crop_size": config.size, **(generator or {})}, discriminator, encoder)
    if gen.crop_size != config.size:
        raise ValueError(f"generator crop_size {gen.crop_size} differs from train.size "
                         f"{config.size}; set both to the same size")  # fmt: skip
    train_rows, val_rows = (
        read_camus_index(index_csv, "train"),
        read_camus_index(index_csv, "valid"),
    )
    accelerator = accelerator_for(device, state_dir, mixed_precision(config.precision, device))
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(train_rows), config.batch_size, world, index_csv)
    budget = Budget.of(config, per_epoch)
    fingerprint = {
        "models": models,
        "train": {k: v for k, v in config.to_dict().items() if k not in BUDGET_FIELDS},
        "seed": seed,
        "num_processes": world,
        "train_rows": rows_digest(train_rows, {"patient": str, "image": str, "label": str}),
    }
    channels = gen.out_channels
    task = SpadeTask(
        models, config,
        CamusPairSet(train_rows, config.size, channels),
        CamusPairSet(val_rows, config.size, channels),
        budget.steps_per_epoch, seed,
        records={"index": str(index_csv), "n_train": len(train_rows), "n_val": len(val_rows)},
    )  # fmt: skip
    result = engine_train(task, accelerator, state_dir=state_dir, out_dir=out_dir, budget=budget,
                          seed=seed, fingerprint=fingerprint,
                          config={"models": models, "train": config.to_dict()})  # fmt: skip
    return {"steps": result.step, "steps_per_epoch": per_epoch,
            "resumed_from": result.resumed_from, "val_l1": result.last("val_l1"),
            "val_loss": result.last("val_loss"), "out_dir": str(out_dir)}  # fmt: skip
