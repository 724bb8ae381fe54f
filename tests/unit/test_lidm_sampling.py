"""LIDM image sets (echogen.pipelines.lidm_sampling) on the synthetic-dataset contract."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from echogen.data.errors import DataError
from echogen.models.lidm import LIDMSpec, build_lidm_unet, save_lidm
from echogen.models.lvdm import build_scheduler
from echogen.models.vae import build_vae
from echogen.pipelines.lidm_sampling import (
    LIDM_SCHEMA,
    ImageSampleConfig,
    plan_images,
    sample_image_shard,
)
from echogen.pipelines.synthetic import gather_samples, read_filelist

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32  # pixels: the tiny VAE's factor 8 gives 4 x 4 latents
CLASSES = {"normal": 0, "asd": 1, "pah": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_torch_thread) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("lidm_models")
    build_vae("tiny", {"sample_size": SIZE, "scaling_factor": 0.5}).save_pretrained(root / "vae")
    for conditioning in ("none", "class"):
        spec = LIDMSpec(
            conditioning=conditioning,
            latent_size=4,
            pad_to=8,
            scaling_factor=0.5,
            class_map=CLASSES if conditioning == "class" else None,
        )
        unet = build_lidm_unet("tiny", conditioning, {"sample_size": 4})
        save_lidm(root / conditioning, unet, spec, build_scheduler())
    return SimpleNamespace(root=root, vae=root / "vae", plain=root / "none", cls=root / "class")


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "sampling.json"
    }


def test_config_checks_name_the_key():
    with pytest.raises(ValueError, match="batch"):
        ImageSampleConfig(batch=0)
    with pytest.raises(ValueError, match="scheduler"):
        ImageSampleConfig(scheduler="euler")
    with pytest.raises(ValueError, match=r"unknown lidm sampling keys \['frames'\]"):
        ImageSampleConfig.from_dict({"frames": 3})


def test_plan_cycles_classes_and_seeds_by_index():
    spec = LIDMSpec(conditioning="class", class_map=CLASSES)
    plan = plan_images(ImageSampleConfig(n_samples=5), spec, run_seed=3)
    assert plan["class_id"].tolist() == [0, 1, 2, 0, 1]
    assert plan["class_name"].tolist() == ["normal", "asd", "pah", "normal", "asd"]
    assert (
        plan["seed"].tolist()
        == plan_images(ImageSampleConfig(n_samples=7), spec, 3)["seed"][:5].tolist()
    )
    with pytest.raises(ValueError, match="not in the class map"):
        plan_images(ImageSampleConfig(class_ids=[7]), spec, 0)
    with pytest.raises(ValueError, match="unconditional"):
        plan_images(ImageSampleConfig(class_ids=[0]), LIDMSpec(), 0)


@pytest.mark.parametrize("which", ["plain", "cls"])
def test_shards_gathered_equal_one_job(models, tmp_path, which):
    """Blocks of 2 over 5 images: 1 job and 3 shards gather to the same bytes."""
    guidance = 2.0 if which == "cls" else 1.0
    config = ImageSampleConfig(
        n_samples=5, steps=3, scheduler="ddpm", batch=2, guidance_scale=guidance
    )
    common = dict(lidm_dir=getattr(models, which), vae_dir=models.vae, config=config, run_seed=5)
    whole = sample_image_shard(out_dir=tmp_path / "whole", shard=1, n_shards=1, **common)
    for s in (1, 2, 3):
        sample_image_shard(out_dir=tmp_path / f"part_{s}", shard=s, n_shards=3, **common)
    gather_samples([tmp_path / f"part_{s}" for s in (1, 2, 3)], tmp_path / "gathered")
    one, many = _files(tmp_path / "whole"), _files(tmp_path / "gathered")
    assert sorted(one) == sorted(many) and all(one[k] == many[k] for k in one)
    merged = read_filelist(tmp_path / "gathered" / "FileList.csv", LIDM_SCHEMA)
    pd.testing.assert_frame_equal(whole, merged)
    assert (merged[["FrameHeight", "FrameWidth", "NumberOfFrames"]] == [SIZE, SIZE, 1]).all().all()
    assert len([k for k in one if k.endswith(".jpg")]) == 5
    image = np.asarray(Image.open(tmp_path / "gathered" / "frames" / "sample_00003" / "0000.jpg"))
    assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8
    latent = np.load(tmp_path / "gathered" / "latents" / "sample_00003.npy")
    assert latent.shape == (4, 4, 4)
    record = json.loads((tmp_path / "gathered" / "sampling.json").read_text())
    assert record["block"] == 2 and record["latents"] is True
    if which == "cls":
        assert merged["class_id"].tolist() == [0, 1, 2, 0, 1]


def test_refuses_a_vae_of_another_scaling(models, tmp_path):
    build_vae("tiny", {"sample_size": SIZE, "scaling_factor": 0.25}).save_pretrained(tmp_path / "v")
    with pytest.raises(DataError, match="scales by 0.25"):
        sample_image_shard(
            models.plain, tmp_path / "v", tmp_path / "o", ImageSampleConfig(n_samples=1), 0, 1, 1
        )
