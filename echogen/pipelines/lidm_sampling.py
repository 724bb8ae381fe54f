"""LIDM sampling: synthetic *image* sets, the conditioning frames of private synthetic videos.

EchoNet-Synthetic samples each dataset's LIDM (64 DDPM steps, batch 128), decodes the latents
with the VAE to grey JPEGs and keeps the latents; the privacy filter then drops the images too
close to a real TRAIN frame, and the LVDM animates the kept latents. An image set follows the
synthetic-dataset contract (``echogen.pipelines.synthetic``) with one-frame videos:
``frames/<name>/0000.jpg`` is the grey image, ``latents/<name>.npy`` its scaled latent
``(C, h, w)``, ``Videos/<name>.mp4`` a one-frame video; FID and IS read the frame folders as
for any dataset (FVD has no meaning here and is refused by the config).

The plan gives sample ``i`` its seed (``sample_seed(run seed, i)``) and, for class models, the
class ``class_ids[i % len(class_ids)]``. Samples are generated in blocks of ``batch``
consecutive indices, each sample from its own seeded generator, so a set sampled in one job
equals one sampled in any number of shards and gathered, byte for byte, on one kind of device.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from echogen.models.lidm import LIDM, generate_latents, load_lidm
from echogen.models.vae import decode_latents, load_vae
from echogen.pipelines.sampling import SCHEDULERS
from echogen.pipelines.synthetic import (
    BASE_SCHEMA,
    Sample,
    sample_name,
    sample_seed,
    split_labels,
    write_shard,
)
from echogen.settings import DictFields

log = logging.getLogger(__name__)

# The FileList of an LIDM image set: the EchoNet-Dynamic columns (EF empty, one frame), then
# the class (class models) and the sample's seed.
LIDM_SCHEMA = {**BASE_SCHEMA, "class_id": "int", "class_name": "str", "seed": "int"}
PLAN_COLUMNS = ["index", *LIDM_SCHEMA]


@dataclass(frozen=True)
class ImageSampleConfig(DictFields):
    """How an LIDM image set is sampled (EchoNet-Synthetic's values as defaults).

    Args:
        n_samples (int, 100000): images in the set (the reference samples 100,000 so that
            enough survive the privacy filter for 50,000-image FID/IS).
        steps (int, 64): denoising steps.
        scheduler (str, "ddpm"): ``"ddpm"``, ``"ddim"`` or ``"dpm"``.
        guidance_scale (float, 1.0): classifier-free guidance of class models (EchoDream 5).
        batch (int, 128): images denoised together (a shard holds whole batches).
        class_ids (list[int] | None, None): class ids cycled over the samples of class models;
            None = every id of the model's class map.
        quality (int, 95): JPEG quality.
    """

    dict_label: ClassVar[str] = "lidm sampling keys"

    n_samples: int = 100_000
    steps: int = 64
    scheduler: str = "ddpm"
    guidance_scale: float = 1.0
    batch: int = 128
    class_ids: list[int] | None = None
    quality: int = 95

    def __post_init__(self):
        for name in ("n_samples", "steps", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"lidm sampling {name} must be an integer >= 1, got {value!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"lidm sampling scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}"
            )
        if not isinstance(self.guidance_scale, int | float) or not self.guidance_scale >= 1:
            raise ValueError(
                f"lidm sampling guidance_scale must be >= 1, got {self.guidance_scale!r}"
            )
        if self.class_ids is not None and (
            not isinstance(self.class_ids, list | tuple)
            or not self.class_ids
            or len(set(self.class_ids)) != len(self.class_ids)
        ):
            raise ValueError(
                f"lidm sampling class_ids must be None or distinct ids, got {self.class_ids!r}"
            )
        if not isinstance(self.quality, int) or not 0 <= self.quality <= 100:
            raise ValueError(f"lidm sampling quality must be in 0..100, got {self.quality!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def plan_images(config: ImageSampleConfig, spec, run_seed: int) -> pd.DataFrame:
    """One row per image index: its seed and, for class models, its class.

    Raises:
        ValueError: class ids outside the model's class map, or class ids for an
            unconditional model.
    """
    names = {int(i): str(n) for n, i in (spec.class_map or {}).items()}
    class_ids = None
    if spec.conditioning == "class":
        class_ids = (
            sorted(names) if config.class_ids is None else [int(i) for i in config.class_ids]
        )
        unknown = [i for i in class_ids if i not in names]
        if unknown:
            raise ValueError(f"lidm sampling class_ids {unknown} are not in the class map {names}")
    elif config.class_ids is not None:
        raise ValueError("lidm sampling class_ids is set but the LIDM is unconditional")
    splits = split_labels(config.n_samples, {"TRAIN": 1.0})
    records = []
    for index in range(config.n_samples):
        class_id = None if class_ids is None else class_ids[index % len(class_ids)]
        records.append(
            {
                "index": index,
                "FileName": sample_name(index),
                "EF": np.nan,
                "FrameHeight": pd.NA,
                "FrameWidth": pd.NA,
                "FPS": 1.0,
                "NumberOfFrames": 1,
                "Split": splits[index],
                "class_id": class_id,
                "class_name": None if class_id is None else names[class_id],
                "seed": sample_seed(run_seed, index),
            }
        )
    return pd.DataFrame(records, columns=PLAN_COLUMNS)


class LIDMGenerator:
    """The LIDM's generator for the sampling driver: ``config.batch`` images at a time.

    Args:
        lidm: the loaded model.
        vae: the VAE its latents decode with.
        config: sampling settings.
    """

    def __init__(self, lidm: LIDM, vae, config: ImageSampleConfig):
        self.lidm, self.vae, self.config = lidm, vae, config
        self.block = config.batch

    def generate(self, rows: pd.DataFrame) -> list[Sample]:
        """Denoise the block's images together; decode each to a one-frame grey video."""
        class_ids = None
        if self.lidm.spec.conditioning == "class":
            class_ids = [int(i) for i in rows["class_id"]]
        latents = generate_latents(
            self.lidm,
            [int(s) for s in rows["seed"]],
            class_ids,
            steps=self.config.steps,
            scheduler=self.config.scheduler,
            guidance_scale=self.config.guidance_scale,
        )
        images = decode_latents(self.vae, latents)  # uint8 (B, H, W)
        return [
            Sample(video=image[None], latent=latent.numpy())
            for image, latent in zip(images, latents, strict=True)
        ]


def sample_image_shard(
    lidm_dir: str | Path,
    vae_dir: str | Path,
    out_dir: str | Path,
    config: ImageSampleConfig,
    run_seed: int,
    shard: int,
    n_shards: int,
    device: str = "cpu",
) -> pd.DataFrame:
    """Plan the image set, then generate, decode and write the images of one shard.

    Raises:
        DataError: the LIDM and the VAE do not share a latent scaling factor.
    """
    from echogen.data.errors import DataError
    from echogen.workflow import provenance

    lidm_dir, vae_dir = Path(lidm_dir), Path(vae_dir)
    lidm = load_lidm(lidm_dir, device=device)
    vae = load_vae(vae_dir, device=device)
    if not np.isclose(lidm.spec.scaling_factor, vae.config.scaling_factor, rtol=1e-6):
        raise DataError(
            lidm_dir,
            f"the LIDM was trained on latents scaled by {lidm.spec.scaling_factor}, the VAE in "
            f"{vae_dir} scales by {vae.config.scaling_factor}",
            "sample with the VAE the LIDM's latents were encoded with",
        )
    record = provenance(
        config.to_dict(),
        device=str(device),
        lidm_dir=str(lidm_dir),
        vae_dir=str(vae_dir),
        seed=int(run_seed),
    )
    return write_shard(
        plan_images(config, lidm.spec, run_seed),
        LIDMGenerator(lidm, vae, config),
        out_dir,
        shard=shard,
        n_shards=n_shards,
        schema=LIDM_SCHEMA,
        fps=1.0,
        quality=config.quality,
        record=record,
    )
