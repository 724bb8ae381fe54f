"""LVDM training (echogen.training.lvdm): data windows, per-step draws, loss, resume, export."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate.utils import set_seed
from diffusers import DDPMScheduler
from trainer_cases import toy_latent_index

from echogen.data.errors import DataError
from echogen.models.lvdm import LVDMSpec, build_unet, load_lvdm
from echogen.models.text import write_tiny_text_encoder
from echogen.training.lvdm import (
    LVDM_TRAIN_PRESETS,
    LatentClipDataset,
    LVDMTrainConfig,
    drop_conditioning,
    make_spec,
    resolve_train_config,
    step_noise,
    train_lvdm,
)

torch.set_num_threads(1)


def _spec(conditioning: str = "ef", frames: int = 8, **kw) -> LVDMSpec:
    return LVDMSpec(conditioning=conditioning, frames=frames, latent_size=14, pad_to=16, **kw)


def _train(tmp_path: Path, index: Path, name: str, steps: int, spec=None, **kw) -> dict:
    config = {
        **LVDM_TRAIN_PRESETS["tiny"]["train"],
        "batch_size": 2,
        "max_steps": steps,
        "checkpoint_every": 2,
        "checkpoints_total_limit": 2,
        "log_every": 1,
        **kw.pop("train", {}),
    }
    return train_lvdm(
        [index],
        tmp_path / name / "model",
        tmp_path / name / "state",
        spec or _spec(),
        "tiny",
        config,
        seed=3,
        root=tmp_path,
        **kw,
    )


def test_presets_hold_published_values():
    paper = resolve_train_config("paper")
    assert (paper.lr, paper.batch_size, paper.max_steps) == (1e-4, 16, 500_000)
    # EchoNet-Synthetic computes its 10 % dropout mask and never applies it.
    assert (paper.noise_offset, paper.cond_dropout, paper.ema_decay) == (0.1, 0.0, 0.9999)
    text = resolve_train_config("echodream_text")
    assert (text.lr, text.batch_size, text.max_steps) == (1e-5, 3, 100_000)
    assert LVDM_TRAIN_PRESETS["echodream_text"]["conditioning"] == "text"
    assert resolve_train_config("echodream_class").max_steps == 100_000
    assert resolve_train_config("tiny").ema_decay == 0.99
    assert resolve_train_config("tiny", {"lr": 0.5}).lr == 0.5
    with pytest.raises(ValueError, match="unknown training keys"):
        resolve_train_config("tiny", {"learning_rate": 1.0})
    with pytest.raises(ValueError, match="cond_dropout"):
        LVDMTrainConfig(cond_dropout=1.5)


def test_batch_per_process_is_the_references_train_batch_size():
    """EchoNet-Synthetic's train_batch_size is accelerate's per-process batch: 16 on 8 GPUs
    is 128 videos a step; echogen's global batch stays the default for the other presets."""
    paper = resolve_train_config("paper")
    assert (paper.batch_size, paper.batch_per, paper.global_batch(8)) == (16, "process", 128)
    for name in ("echodream_text", "echodream_class"):
        assert resolve_train_config(name).batch_per == "process"
    for name in ("echodream_text", "echodream_class"):
        dream = resolve_train_config(name)
        assert (dream.cond_dropout, dream.dropout_target) == (0.3, "token")
    assert resolve_train_config("echodream_class").batch_size == 4  # configs/cardiacnet.yaml
    assert resolve_train_config("paper").dropout_target == "token"
    tiny = resolve_train_config("tiny")
    assert (tiny.batch_per, tiny.global_batch(2)) == ("global", tiny.batch_size)
    assert (tiny.cond_dropout, tiny.dropout_target) == (0.1, "token_frame")  # the demo's
    with pytest.raises(ValueError, match="batch_per"):
        LVDMTrainConfig(batch_per="node")


def test_a_unet_with_the_references_one_zero_time_id_trains(tmp_path):
    index = toy_latent_index(tmp_path, [12, 10])
    one_id = {"addition_time_embed_dim": 1, "projection_class_embeddings_input_dim": 1}
    _train(tmp_path, index, "one_id", 2, unet_overrides=one_id)
    unet = load_lvdm(tmp_path / "one_id" / "model").unet
    assert unet.config.projection_class_embeddings_input_dim == 1


@pytest.mark.parametrize("padding, size", [("clean", 16), ("noised", 14)])
def test_the_loss_sees_the_padded_or_the_unpadded_latents(tmp_path, monkeypatch, padding, size):
    """clean: the loss covers the padded 16x16; noised (EchoNet-Synthetic): the UNet's output
    is cropped back to the 14x14 latent before the loss."""
    import echogen.training.lvdm as module

    shapes, mse = [], module.F.mse_loss

    def spy(prediction, target):
        shapes.append((tuple(prediction.shape), tuple(target.shape)))
        return mse(prediction, target)

    monkeypatch.setattr(module.F, "mse_loss", spy)
    index = toy_latent_index(tmp_path, [12, 10])
    _train(tmp_path, index, padding, 1, spec=_spec(padding=padding))
    assert shapes and all(p == t and p[-2:] == (size, size) for p, t in shapes)
    assert load_lvdm(tmp_path / padding / "model").spec.padding == padding


def test_one_process_trains_the_same_whether_batch_is_per_process_or_global(tmp_path):
    index = toy_latent_index(tmp_path, [12, 10, 14, 11])
    _train(tmp_path, index, "global", 3)
    _train(tmp_path, index, "process", 3, train={"batch_per": "process"})
    for run in ("global", "process"):
        record = json.loads((tmp_path / run / "model" / "train.json").read_text())
        assert record["global_batch"] == 2
    weights = [
        (tmp_path / run / "model/unet/diffusion_pytorch_model.safetensors").read_bytes()
        for run in ("global", "process")
    ]
    assert weights[0] == weights[1]


def test_make_spec_reads_the_index(tmp_path):
    index = toy_latent_index(tmp_path, [10, 12, 9])
    spec = make_spec([index], "class", frames=8, root=tmp_path)
    assert (spec.latent_channels, spec.latent_size, spec.pad_to) == (4, 14, 16)
    assert spec.scaling_factor == 0.5 and spec.fps == 32.0
    assert spec.class_map == {"normal": 0, "asd": 1, "pah": 2}


def test_clip_is_a_padded_window_of_one_video(tmp_path):
    index = toy_latent_index(tmp_path, [10, 12, 9])
    dataset = LatentClipDataset([index], _spec("class"), seed=0, batch_size=2, root=tmp_path)
    seen = set()
    for step in range(20):
        for i in range(2):
            item = dataset.clip(0, step, i)
            array = np.load(tmp_path / f"latents/toy/video{item['video']}.npy").astype(np.float32)
            window = array[item["start"] : item["start"] + 8]
            pad = [(0, 0), (0, 0), (1, 1), (1, 1)]
            assert np.array_equal(item["latents"].numpy(), np.pad(window, pad, mode="edge"))
            assert np.array_equal(
                item["cond_latent"].numpy(), np.pad(array[item["cond_frame"]], pad[1:], "edge")
            )
            assert item["value"] == item["video"] % 3  # class id
            seen.add(item["video"])
            again = dataset[step * 2 + i]
            assert torch.equal(again["latents"], item["latents"])
    assert seen == {0, 1, 2}


def test_short_videos_are_dropped(tmp_path, caplog):
    index = toy_latent_index(tmp_path, [10, 5, 12, 30], splits=["TRAIN", "TRAIN", "TRAIN", "VAL"])
    with caplog.at_level(logging.WARNING):
        dataset = LatentClipDataset([index], _spec(), seed=0, root=tmp_path)
    assert dataset.names == ["video0", "video2"] and dataset.n_dropped == 1
    assert "dropped 1 TRAIN video" in caplog.text
    assert dataset.values == [20.0, 50.0]

    short = toy_latent_index(tmp_path, [5, 7], name="short")
    with pytest.raises(DataError, match="short/index.csv.*no TRAIN video has at least 8"):
        LatentClipDataset([short], _spec(), seed=0, root=tmp_path)


def test_bad_latent_index_rows_are_named(tmp_path):
    index = toy_latent_index(tmp_path, [10, 10])
    rows = pd.read_csv(index)
    rows.loc[1, "EF"] = np.nan
    rows.to_csv(index, index=False)
    with pytest.raises(DataError, match="row 3.*no EF"):
        LatentClipDataset([index], _spec(), seed=0, root=tmp_path)
    with pytest.raises(DataError, match="shape"):
        LatentClipDataset([index], _spec(latent_channels=3), seed=0, root=tmp_path)


def test_step_noise_draws():
    config = LVDMTrainConfig(cond_dropout=0.1, noise_offset=0.1)
    shape = (16, 4, 2, 3, 3)
    rates = [step_noise(0, s, shape, config, 1000)[2].float().mean() for s in range(2000)]
    # 32000 Bernoulli(0.1) draws: standard error 0.0017
    assert abs(float(np.mean(rates)) - 0.1) < 0.008
    noise, t, drop = step_noise(5, 7, shape, config, 1000)
    again = step_noise(5, 7, shape, config, 1000)
    assert torch.equal(noise, again[0]) and torch.equal(t, again[1]) and torch.equal(drop, again[2])
    assert not torch.equal(noise, step_noise(5, 8, shape, config, 1000)[0])
    assert t.min() >= 0 and t.max() < 1000
    # The offset is shared by the frames and pixels of one video and channel.
    plain = step_noise(5, 7, shape, LVDMTrainConfig(noise_offset=0.0), 1000)[0]
    shift = noise - plain
    assert torch.allclose(shift, shift[:, :1, :, :1, :1].expand_as(shift), atol=1e-6)
    assert shift[:, 0, :, 0, 0].std() > 0.05
    none = step_noise(5, 7, shape, LVDMTrainConfig(cond_dropout=0.0), 1000)[2]
    assert not none.any()


def test_drop_conditioning_replaces_tokens_and_frame():
    hidden = torch.arange(1.0, 4.0).reshape(3, 1, 1)
    cond = torch.ones(3, 4, 2, 2)
    null = torch.full((3, 1, 1), -7.0)
    drop = torch.tensor([False, True, False])
    tokens, latent = drop_conditioning(hidden, cond, drop, null)
    assert tokens.flatten().tolist() == [1.0, -7.0, 3.0]
    assert latent[1].abs().sum() == 0 and torch.equal(latent[[0, 2]], cond[[0, 2]])
    # EchoNet-Synthetic and EchoDream mask the token only: the frame stays.
    tokens, latent = drop_conditioning(hidden, cond, drop, null, target="token")
    assert tokens.flatten().tolist() == [1.0, -7.0, 3.0] and torch.equal(latent, cond)
    with pytest.raises(ValueError, match="target"):
        drop_conditioning(hidden, cond, drop, null, target="frame")


def test_training_lowers_the_loss_and_exports(tmp_path):
    index = toy_latent_index(tmp_path, [12, 10, 14, 11])
    summary = _train(tmp_path, index, "run", 30, train={"lr": 2e-3, "checkpoint_every": 30})
    assert summary["steps"] == 30 and summary["n_videos"] == 4
    log_csv = pd.read_csv(tmp_path / "run" / "model" / "log.csv")
    assert log_csv["step"].tolist() == list(range(1, 31))
    first, last = log_csv["loss"][:8].mean(), log_csv["loss"][-8:].mean()
    assert last < 0.7 * first, (first, last)
    model_dir = tmp_path / "run" / "model"
    assert {p.name for p in model_dir.iterdir()} == {
        "unet",
        "scheduler",
        "lvdm.json",
        "train.json",
        "log.csv",
    }
    model = load_lvdm(model_dir)
    assert model.spec == _spec()
    assert model.scheduler_config["prediction_type"] == "v_prediction"
    # Independent check: the exported (EMA) model beats the initial weights on fixed draws.
    set_seed(3)
    initial = build_unet("tiny", "ef").eval()
    dataset = LatentClipDataset([index], _spec(), seed=0, root=tmp_path)
    assert _eval_loss(model.unet, dataset) < 0.7 * _eval_loss(initial, dataset)


def _eval_loss(unet, dataset: LatentClipDataset) -> float:
    """Mean v-prediction MSE over 8 fixed clips, noises and evenly spread timesteps."""
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, prediction_type="v_prediction"
    )
    losses = []
    for k in range(8):
        item = dataset.clip(99, k, 0)
        x = item["latents"][None]  # (1, F, C, 16, 16)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(k))
        t = torch.tensor([125 * k + 60])
        noisy = scheduler.add_noise(x, noise, t)
        target = scheduler.get_velocity(x, noise, t)
        sample = torch.cat([noisy, item["cond_latent"][None, None].expand_as(x)], dim=2)
        hidden = torch.tensor([[[item["value"] / 100]]])
        time_ids = torch.tensor([[32.0, 0.0, 0.0]])
        with torch.no_grad():
            prediction = unet(sample, t, hidden, time_ids).sample
        losses.append(float(((prediction - target) ** 2).mean()))
    return float(np.mean(losses))


def test_text_conditioned_training_exports_the_encoder(tmp_path):
    index = toy_latent_index(tmp_path, [9, 9])
    clip = write_tiny_text_encoder(tmp_path / "clip", seed=0, hidden_size=32)
    spec = _spec("text", prompt="An echocardiography video with {class_name} condition")
    summary = _train(tmp_path, index, "text", 2, spec=spec, text_encoder_dir=clip)
    assert summary["steps"] == 2
    model = load_lvdm(tmp_path / "text" / "model")
    assert model.unet.config.cross_attention_dim == 32
    hidden = model.conditioner.encode(["An echocardiography video with asd condition"], "cpu")
    assert hidden.shape == (1, 77, 32)
    assert torch.equal(model.conditioner.null(1, "cpu"), model.conditioner.encode([""], "cpu"))
