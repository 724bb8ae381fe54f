"""D'ARTAGNAN's generator, discriminator, expert preset, counterfactual targets and training
settings (the training run itself is in the trainer contract, tests/trainer_cases.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from trainer_cases import dartagnan_data

from echogen.data.clips import METAINFO_COLUMNS, load_clip, read_metainfo
from echogen.data.ef_clips import ClipSpec
from echogen.data.errors import DataError
from echogen.models.dartagnan import (
    DartagnanGenerator,
    FrameDiscriminator,
    build_discriminator,
    build_generator,
    counterfactual_efs,
    expert_input,
    shared_noise,
)
from echogen.models.regressor import MODEL_PRESETS, EFRegressor
from echogen.training.dartagnan import DartagnanTrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_reference_sizes_have_the_references_parameter_counts():
    """Counted on HReynaud/dartagnan's own modules (VideoTwinNet, VideoDiscriminator and
    EFExpert with --internal_dim 32, the README's commands; commit of 2026-12-03's mirror)."""
    assert n_params(build_generator("reference")) == 3_077_610
    assert n_params(build_discriminator("reference")) == 343_584
    assert n_params(EFRegressor(**MODEL_PRESETS["dartagnan_expert"])) == 7_827_621


def test_generator_returns_two_clips_in_unit_range():
    torch.manual_seed(0)
    g = build_generator("tiny").eval()
    video = torch.rand(2, 1, 8, 16, 16)
    factual, counterfactual = g(torch.tensor([0.5, 0.6]), torch.tensor([0.2, 0.9]), video)
    assert factual.shape == counterfactual.shape == video.shape
    assert 0 < float(factual.detach().min()) and float(factual.detach().max()) < 1


def test_branches_share_one_noise_draw():
    """With shared weights and the same EF, the twin outputs are identical: one noise draw."""
    torch.manual_seed(0)
    g = build_generator("tiny", share_weights=True).eval()
    assert g.star is g.branch
    video, ef = torch.rand(1, 1, 8, 16, 16), torch.tensor([0.4])
    y, y_star = g(ef, ef, video, torch.Generator().manual_seed(3))
    torch.testing.assert_close(y, y_star)
    again = g.counterfactual(video, ef, torch.Generator().manual_seed(3))
    # counterfactual() draws the same noise from the same seed: the same video.
    torch.testing.assert_close(again, y_star)
    other = g.counterfactual(video, ef, torch.Generator().manual_seed(4))
    assert not torch.allclose(other, y_star)


def test_ef_changes_the_counterfactual_only():
    torch.manual_seed(0)
    g = build_generator("tiny").eval()
    video = torch.rand(1, 1, 8, 16, 16)
    a = g(torch.tensor([0.5]), torch.tensor([0.2]), video, torch.Generator().manual_seed(0))
    b = g(torch.tensor([0.5]), torch.tensor([0.8]), video, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_concat_noise_widens_the_fourth_stage():
    g = build_generator("tiny", noise="concat")
    assert g.branch.layer4[0].conv1[0][0].in_channels == 4 * 4
    out = g.counterfactual(torch.rand(1, 1, 8, 16, 16), torch.tensor([0.3]))
    assert out.shape == (1, 1, 8, 16, 16)


@pytest.mark.parametrize("shape", [(1, 1, 7, 16, 16), (1, 1, 8, 15, 16), (1, 2, 8, 16, 16)])
def test_generator_refuses_odd_or_wrong_clips(shape):
    with pytest.raises(ValueError):
        build_generator("tiny").counterfactual(torch.rand(*shape), torch.tensor([0.3]))


def test_noise_is_multiplicative_around_one():
    noise = shared_noise((200_000,), 0.25, torch.Generator().manual_seed(0))
    assert 0 < float(noise.min()) and float(noise.max()) < 2
    assert float(noise.mean()) == pytest.approx(1.0, abs=0.01)
    assert float(noise.std()) == pytest.approx(0.25, abs=0.01)


def test_frame_discriminator_scores_frames_independently_of_their_order():
    torch.manual_seed(0)
    d = build_discriminator("tiny").eval()
    video = torch.rand(2, 1, 6, 16, 16)
    p = d(video)
    assert p.shape == (2,) and bool(((p > 0) & (p < 1)).all())
    torch.testing.assert_close(d(video[:, :, torch.randperm(6)]), p)
    d3 = build_discriminator("tiny", three_d=True).eval()
    assert d3(video).shape == (2,)
    assert not torch.allclose(d3(video[:, :, torch.randperm(6)]), d3(video))


def test_models_round_trip_through_save_pretrained(tmp_path):
    torch.manual_seed(0)
    for model, cls in ((build_generator("tiny"), DartagnanGenerator),
                       (build_discriminator("tiny"), FrameDiscriminator)):  # fmt: skip
        model.save_pretrained(tmp_path / cls.__name__)
        loaded = cls.from_pretrained(tmp_path / cls.__name__)
        for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items(),
                                    strict=True):  # fmt: skip
            assert k == k2 and torch.equal(v, v2)


def test_counterfactual_targets_are_integers_at_least_margin_away():
    efs = np.array([55.3, 60.0, 5.0, 97.0, 10.0, 89.9] * 50)
    targets = counterfactual_efs(efs, 10, np.random.default_rng(0))
    clamped = np.clip(efs, 10.5, 89.5)
    assert np.all(np.abs(targets - clamped) >= 10)
    assert np.all(targets == np.round(targets)) and targets.min() >= 0 and targets.max() <= 100
    again = counterfactual_efs(efs, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(targets, again)
    # Both sides of the EF are drawn.
    assert (targets[1::6] < 60).any() and (targets[1::6] > 60).any()


def test_lr_decay_stops_where_the_reference_stops():
    config = DartagnanTrainConfig()
    assert config.lr_factor(0) == 1.0
    assert config.lr_factor(10) == pytest.approx(10 ** (-10 / 25))
    assert config.lr_factor(40) == config.lr_factor(10)
    full = DartagnanTrainConfig(decay_until=None)
    assert full.lr_factor(25) == pytest.approx(0.1) and full.lr_factor(49) == pytest.approx(0.1)


def test_loss_weights_ramp_with_a_sigmoid():
    config = DartagnanTrainConfig(expert_offset=0)
    w = config.weights(0)
    assert w["recon"] == pytest.approx(1 / (1 + math.e**3))
    assert w["expert"] == 1.0
    assert config.weights(3)["disc"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "bad", [{"size": 15}, {"margin": 0}, {"select": "best"}, {"batch_size": 0}]
)
def test_train_config_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        DartagnanTrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        DartagnanTrainConfig.from_dict({"lr": 1e-3})


def test_expert_input_matches_the_experts_clip_settings():
    video = torch.full((1, 1, 4, 8, 8), 0.5)
    unit = ClipSpec(frames=4, period=1, size=16, channels=3, normalisation="unit")
    x = expert_input(video, unit)
    assert x.shape == (1, 3, 4, 16, 16)
    torch.testing.assert_close(x, torch.full_like(x, 0.5))
    zscore = ClipSpec(frames=4, period=1, size=8, channels=1, normalisation="zscore",
                      mean=100.0, std=20.0)  # fmt: skip
    torch.testing.assert_close(expert_input(video, zscore),
                               torch.full((1, 1, 4, 8, 8), (127.5 - 100) / 20))  # fmt: skip


def test_metainfo_errors_name_the_row_and_the_fix(tmp_path):
    data = dartagnan_data(tmp_path / "data")
    rows = pd.read_csv(data["metainfo"])
    assert len(read_metainfo(data["metainfo"], "TRAIN")) == 4
    bad = rows.copy()
    bad.loc[2, "EF"] = np.nan
    bad.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(DataError, match=r"row 4: EF nan .*Fix"):
        read_metainfo(tmp_path / "nan.csv", "TRAIN")
    rows.drop(columns="EF").to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(DataError, match="missing columns"):
        read_metainfo(tmp_path / "cols.csv", "TRAIN")
    rows.assign(Split="train").to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(DataError, match="no TRAIN clips"):
        read_metainfo(tmp_path / "split.csv", "TRAIN")
    assert set(METAINFO_COLUMNS) <= set(rows.columns)


def test_clips_load_resized_and_refuse_other_lengths(tmp_path):
    data = dartagnan_data(tmp_path / "data", frames=8, size=16)
    path = tmp_path / "data" / "clips" / "video0.npy"
    clip = load_clip(path, 8, 8)
    assert clip.shape == (1, 8, 8, 8) and clip.dtype == np.float32
    assert 0.099 <= clip.min() and clip.max() <= 0.801
    with pytest.raises(DataError, match=r"expected \(16, H, W\)"):
        load_clip(path, 16, 8)
    (tmp_path / "bad.npy").write_bytes(b"not a clip")
    with pytest.raises(DataError, match="unreadable"):
        load_clip(tmp_path / "bad.npy", 8, 8)
    assert data["metainfo"].endswith("metainfo.csv")


def test_a_shared_weight_generator_saves_one_branch_and_loads_back(tmp_path):
    """save_pretrained (safetensors) refuses tensors saved under two names: with shared
    weights the generator registers one branch, and it loads back to the same outputs."""
    torch.manual_seed(0)
    g = build_generator("tiny", share_weights=True).eval()
    assert not any(k.startswith("branch_star.") for k in g.state_dict())
    g.save_pretrained(tmp_path / "g")
    loaded = type(g).from_pretrained(tmp_path / "g").eval()
    video, ef = torch.rand(1, 1, 8, 16, 16), torch.tensor([0.4])
    want = g.counterfactual(video, ef, torch.Generator().manual_seed(1))
    got = loaded.counterfactual(video, ef, torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want)
