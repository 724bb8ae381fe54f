"""The latent image diffusion model (echogen.models.lidm, echogen.training.lidm)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel, UNet2DModel
from trainer_cases import TOY_OFFSETS, toy_latent_index

from echogen.data.errors import DataError
from echogen.models.lidm import (
    LIDMSpec,
    build_lidm_unet,
    class_tokens,
    denoise,
    generate_latents,
    load_lidm,
    null_tokens,
    save_lidm,
)
from echogen.models.lvdm import build_scheduler
from echogen.training.lidm import (
    LIDM_TRAIN_PRESETS,
    LatentFrameDataset,
    make_lidm_spec,
    train_lidm_from_config,
)
from echogen.training.lvdm import resolve_train_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The published LIDM networks, as their configs give them (settings read from
# HReynaud/EchoNet-Synthetic echosyn/lidm/configs/dynamic.yaml and Marshall-mk/Echodream
# echo/lidm/configs/cardiacnet.yaml); the released `unet_ema` folders hold these classes.
_BLOCKS = {
    "down_block_types": ["AttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["AttnUpBlock2D"] * 3,
    "block_out_channels": [128, 256, 256, 512],
    "layers_per_block": 2,
}
ECHONET_SYNTHETIC_LIDM = {
    **_BLOCKS,
    "sample_size": 14,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "resnet",
    "upsample_type": "resnet",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "class_embed_type": None,
    "num_class_embeds": None,
}
ECHODREAM_CLASS_LIDM = {
    **_BLOCKS,
    "sample_size": 14,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "dropout": 0.0,
    "act_fn": "silu",
    "cross_attention_dim": 1,
    "norm_eps": 1e-5,
}
CLASSES = {"normal": 0, "asd": 1, "pah": 2}


def _shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("conditioning", "cls", "published"),
    [
        ("none", UNet2DModel, ECHONET_SYNTHETIC_LIDM),
        ("class", UNet2DConditionModel, ECHODREAM_CLASS_LIDM),
    ],
)
def test_paper_preset_has_the_published_state_dict(conditioning, cls, published):
    """Keys and shapes of the UNet built from each published config equal echogen's paper
    preset, so the released weights load (meta device: nothing allocated)."""
    with init_empty_weights():
        reference = cls.from_config(published)
        ours = build_lidm_unet("paper", conditioning)
    assert type(ours) is cls
    assert _shapes(ours) == _shapes(reference)
    assert len(_shapes(ours)) > 200


def test_echodream_class_unet_downsamples_with_convolutions():
    """EchoDream's config leaves out downsample_type: its UNet2DConditionModel down-samples
    with a convolution where EchoNet-Synthetic's resamples with resnet blocks."""
    with init_empty_weights():
        plain = build_lidm_unet("paper", "none")
        conditional = build_lidm_unet("paper", "class")
    assert "down_blocks.0.downsamplers.0.conv.weight" in conditional.state_dict()
    assert "down_blocks.0.downsamplers.0.conv1.weight" in plain.state_dict()


def test_build_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown LIDM preset"):
        build_lidm_unet("huge", "none")
    with pytest.raises(ValueError, match="conditioning"):
        build_lidm_unet("tiny", "text")
    with pytest.raises(ValueError, match="unknown UNet2DModel keys"):
        build_lidm_unet("tiny", "none", {"chanels": 3})
    with pytest.raises(ValueError, match="multiples of 8"):
        build_lidm_unet("tiny", "none", {"block_out_channels": (32, 36)})
    with pytest.raises(ValueError, match="class_map"):
        LIDMSpec(conditioning="class")
    with pytest.raises(ValueError, match="pad_to"):
        LIDMSpec(latent_size=14, pad_to=12)


def test_tokens_and_padding():
    spec = LIDMSpec(conditioning="class", class_map=CLASSES)
    assert torch.equal(class_tokens(spec, [2, 0], "cpu"), torch.tensor([[[2.0]], [[0.0]]]))
    assert torch.equal(null_tokens(spec, 2, "cpu"), torch.full((2, 1, 1), -1.0))
    reference = LIDMSpec(conditioning="class", class_map=CLASSES, class_null="reference")
    assert torch.equal(null_tokens(reference, 1, "cpu"), torch.zeros(1, 1, 1))

    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, sample, t, encoder_hidden_states=None):
            seen["shape"] = tuple(sample.shape)
            seen["corner"] = sample[0, 0, 0, 0].item()
            return type("Out", (), {"sample": sample * 2})()

    x = torch.arange(2 * 4 * 14 * 14, dtype=torch.float32).reshape(2, 4, 14, 14)
    out = denoise(Probe(), LIDMSpec(), x, torch.tensor([1, 2]))
    # The UNet sees the replicate-padded 16 x 16 latent; the output is cropped back.
    assert seen["shape"] == (2, 4, 16, 16) and seen["corner"] == x[0, 0, 0, 0].item()
    assert torch.equal(out, x * 2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread) -> dict:
    """A tiny class LIDM trained on the toy latents (channel offsets TOY_OFFSETS)."""
    base = tmp_path_factory.mktemp("lidm")
    index = toy_latent_index(base, [12, 10, 9, 8, 8, 8])
    model = {
        "conditioning": "class",
        "preset": "tiny",
        "train_preset": "tiny",
        "train": {"max_steps": 100, "batch_size": 8, "lr": 2e-3, "checkpoint_every": 1000},
    }
    out = base / "model"
    summary = train_lidm_from_config([index], out, base / "state", model, seed=0, root=base)
    return {"out": out, "summary": summary, "index": index, "root": base}


def test_training_exports_a_loadable_model(trained):
    out, summary = trained["out"], trained["summary"]
    assert summary["steps"] == 100 and summary["n_videos"] == 6
    record = json.loads((out / "train.json").read_text())
    assert record["spec"]["class_map"] == {"normal": 0, "asd": 1, "pah": 2}
    assert record["spec"]["scaling_factor"] == 0.5 and record["weights"] == "ema"
    lidm = load_lidm(out)
    assert isinstance(lidm.unet, UNet2DConditionModel) and not lidm.unet.training
    assert lidm.scheduler_config["prediction_type"] == "v_prediction"


def test_samples_learn_the_data_channel_means(trained):
    """Behaviour, not plumbing: after 100 steps the generated latents' per-channel means sit
    near the toy data's offsets (2, -1.5, 1, 0.5 plus the blob), far from noise's 0."""
    lidm = load_lidm(trained["out"])
    latents = generate_latents(lidm, list(range(8)), [i % 3 for i in range(8)], steps=20)
    means = latents.mean(dim=(0, 2, 3)).numpy()
    frames = np.concatenate(
        [
            np.load(p).astype(np.float32)
            for p in sorted((trained["root"] / "latents").rglob("*.npy"))
        ]
    )
    target = frames.mean(axis=(0, 2, 3))
    assert np.allclose(target, TOY_OFFSETS, atol=0.5)
    error = np.abs(means - target).mean()
    # Measured: 0.043 at 100 steps, 0.012 at 150 (an untrained UNet's samples sit ~1.4 away).
    assert error < 0.1 * np.abs(target).mean(), (means, target)


def test_a_sample_does_not_depend_on_its_batch(trained):
    lidm = load_lidm(trained["out"])
    both = generate_latents(lidm, [11, 12], [0, 2], steps=4, guidance_scale=3.0)
    alone = generate_latents(lidm, [12], [2], steps=4, guidance_scale=3.0)
    assert both.shape == (2, 4, 14, 14)
    torch.testing.assert_close(both[1:], alone, atol=1e-4, rtol=1e-4)
    again = generate_latents(lidm, [11, 12], [0, 2], steps=4, guidance_scale=3.0)
    assert torch.equal(both, again)
    with pytest.raises(ValueError, match="class_ids"):
        generate_latents(lidm, [1], None)
    with pytest.raises(ValueError, match="guidance_scale"):
        generate_latents(lidm, [1], [0], guidance_scale=0.5)


def test_save_load_round_trip(tmp_path):
    spec = LIDMSpec(latent_size=8, pad_to=8, scaling_factor=0.18215)
    unet = build_lidm_unet("tiny", "none", {"sample_size": 8})
    save_lidm(tmp_path / "m", unet, spec, build_scheduler())
    loaded = load_lidm(tmp_path / "m")
    assert loaded.spec == spec
    for key, value in unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[key], value)
    with pytest.raises(DataError, match="lidm.json"):
        load_lidm(tmp_path)


def test_dataset_draws_frames_of_train_videos(tmp_path):
    index = toy_latent_index(tmp_path, [5, 3], splits=["TRAIN", "TEST"])
    spec = make_lidm_spec([index], "none", root=tmp_path)
    data = LatentFrameDataset([index], spec, seed=1, batch_size=4, root=tmp_path)
    assert len(data) == 1  # the TEST video is not drawn
    items = [data[i] for i in range(8)]
    assert all(it["latent"].shape == (4, 14, 14) and it["video"] == 0 for it in items)
    assert len({it["frame"] for it in items}) > 1
    assert data[5]["frame"] == data.frame(1, 1, 1)["frame"]
    with pytest.raises(DataError, match="class_name and class_id"):
        plain = tmp_path / "plain.csv"
        import pandas as pd

        pd.read_csv(index).drop(columns=["class_id", "class_name"]).to_csv(plain, index=False)
        make_lidm_spec([plain], "class", root=tmp_path)


def test_presets_hold_the_published_values():
    paper = resolve_train_config("paper", presets=LIDM_TRAIN_PRESETS)
    assert (paper.lr, paper.batch_size, paper.batch_per) == (3e-4, 256, "process")
    assert (paper.max_steps, paper.noise_offset, paper.ema_decay) == (500_000, 0.0, 0.9999)
    echodream = resolve_train_config("echodream_class", presets=LIDM_TRAIN_PRESETS)
    assert (echodream.max_steps, echodream.cond_dropout) == (5_000, 0.3)
    assert LIDM_TRAIN_PRESETS["echodream_class"]["conditioning"] == "class"
    with pytest.raises(ValueError, match="dropout_target"):
        train_lidm_from_config(
            [],
            "out",
            "state",
            {"train_preset": "tiny", "train": {"dropout_target": "token_frame"}},
            0,
        )
