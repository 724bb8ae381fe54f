"""SPADE (cardiGAN): the models against NVlabs/SPADE's sizes and names, the losses against
hand computations, the training schedule, and the CAMUS pair reader's errors."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from trainer_cases import camus_pairs

from echogen.data.camus import CamusPairSet, load_pair, read_camus_index
from echogen.data.errors import DataError
from echogen.models import spade
from echogen.training.spade import SpadeTrainConfig, resolve_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_sizes_equal_nvlabs_spade_at_cardigan_settings():
    # Counted on NVlabs/SPADE's own modules with cardiGAN's options (--ngf 48 --ndf 48,
    # crop 256, label_nc 3 + don't-care, no instance map, n_layers_D 4, num_D 2).
    assert n_params(spade.build_generator("reference")) == 56_578_515
    assert n_params(spade.build_generator("reference", use_vae=True)) == 69_182_163
    assert n_params(spade.build_discriminator("reference")) == 3_119_714
    assert n_params(spade.ConvEncoder(in_channels=3, ndf=48, encoder_size=256)) == 6_672_656


def test_module_names_are_the_reference_checkpoint_keys():
    g = spade.build_generator("tiny").state_dict()
    for key in ("fc.weight", "head_0.conv_0.weight_orig", "head_0.conv_0.weight_u",
                "head_0.norm_0.mlp_shared.0.weight", "head_0.norm_0.mlp_gamma.bias",
                "up_0.conv_s.weight_orig", "up_0.norm_s.mlp_beta.weight",
                "G_middle_1.norm_1.param_free_norm.running_var", "conv_img.weight"):  # fmt: skip
        assert key in g, key
    d = spade.build_discriminator("tiny").state_dict()
    assert "discriminator_1.model1.0.0.weight_orig" in d
    assert "discriminator_0.model1.0.0.bias" not in d  # spectral-instance drops the bias
    assert "discriminator_0.model0.0.bias" in d  # the first conv keeps it


def test_load_reference_state_accepts_sync_bn_keys_and_names_mismatches(tmp_path):
    net = spade.build_generator("tiny")
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "latest_net_G.pth")
    other = spade.build_generator("tiny")
    spade.load_reference_state(other, tmp_path / "latest_net_G.pth")
    assert torch.equal(other.state_dict()["fc.weight"], net.state_dict()["fc.weight"])
    with pytest.raises((ValueError, RuntimeError), match="ngf|size mismatch"):
        spade.load_reference_state(
            spade.build_generator("tiny", ngf=8), tmp_path / "latest_net_G.pth"
        )


@pytest.mark.parametrize("mode,side", [("normal", 64), ("more", 64), ("most", 128)])
def test_generator_makes_images_of_the_mask_size_in_range(mode, side):
    torch.manual_seed(0)
    g = spade.build_generator("tiny", crop_size=side, num_upsampling_layers=mode).eval()
    seg = spade.one_hot(torch.randint(0, 4, (2, side, side)), 4)
    with torch.no_grad():
        out = g(seg)
    assert out.shape == (2, 1, side, side)
    assert out.abs().max() <= 1
    with pytest.raises(ValueError, match="expected masks"):
        g(seg[:, :, :32, :32])


def test_generator_follows_the_mask_and_the_style_code():
    torch.manual_seed(0)
    g = spade.build_generator("tiny", use_vae=True, z_dim=8).eval()
    seg = spade.one_hot(torch.randint(0, 4, (1, 64, 64)), 4)
    other = spade.one_hot(torch.randint(0, 4, (1, 64, 64)), 4)
    z = torch.randn(1, 8)
    with torch.no_grad():
        a, b, c = g(seg, z), g(other, z), g(seg, z + 1)
        assert torch.equal(a, g(seg, z))
    assert (a - b).abs().mean() > 1e-3 and (a - c).abs().mean() > 1e-3


def test_crop_size_must_fit_the_upsampling():
    with pytest.raises(ValueError, match="multiple of 2\\*\\*5"):
        spade.build_generator("tiny", crop_size=48)
    with pytest.raises(ValueError, match="unknown SPADE generator preset"):
        spade.build_generator("huge")


def test_one_hot_names_labels_out_of_range():
    out = spade.one_hot(torch.tensor([[[0, 3], [1, 2]]]), 4)
    assert out.shape == (1, 4, 2, 2) and out.sum(1).eq(1).all() and out[0, 3, 0, 1] == 1
    with pytest.raises(ValueError, match="0..3, got 0..4"):
        spade.one_hot(torch.tensor([[[0, 4]]]), 4)


def test_discriminator_scales_and_features():
    d = spade.build_discriminator("tiny", in_channels=5, n_layers=3, num_d=2)
    out = d(torch.randn(2, 5, 64, 64))
    assert len(out) == 2 and [len(o) for o in out] == [4, 4]
    # 4x4 convs with padding 2: 64 -> 33 -> 17 -> 18 -> 19; the second scale reads 32x32.
    assert [tuple(f.shape[1:]) for f in out[0]] == [(8, 33, 33), (16, 17, 17), (32, 18, 18),
                                                    (1, 19, 19)]  # fmt: skip
    assert out[1][-1].shape[-1] == 11


def test_hinge_loss_equals_hand_computation():
    a = torch.tensor([[2.0, 0.5, -1.5]])
    b = torch.tensor([[0.0, -3.0]])
    preds = [[torch.zeros(1), a], [b]]
    real_d = (np.mean([0, 0.5, 2.5]) + np.mean([1, 4])) / 2
    fake_d = (np.mean([3, 1.5, 0]) + np.mean([1, 0])) / 2
    gen = (-np.mean([2, 0.5, -1.5]) - np.mean([0, -3])) / 2
    assert spade.hinge_loss(preds, True, True).item() == pytest.approx(real_d)
    assert spade.hinge_loss(preds, False, True).item() == pytest.approx(fake_d)
    assert spade.hinge_loss(preds, True, False).item() == pytest.approx(gen)
    with pytest.raises(ValueError, match="aim at real"):
        spade.hinge_loss(preds, False, False)


def test_feature_matching_and_kld():
    fake = [[torch.ones(2, 3), torch.zeros(1)], [torch.zeros(4), torch.ones(2), torch.zeros(1)]]
    real = [[torch.zeros(2, 3), torch.ones(1)], [torch.ones(4), torch.ones(2), torch.ones(1)]]
    # the logits (last) are left out; each L1 weighted 10 / 2 discriminators
    assert spade.feature_matching_loss(fake, real, 10.0).item() == pytest.approx(5 * 1 + 5 * 1)
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    expected = -0.5 * ((1 + 0 - 1 - 1) + (1 + math.log(2.0) - 0 - 2))
    assert spade.kld_loss(mu, logvar).item() == pytest.approx(expected)


def test_vgg_loss_is_zero_on_equal_images_and_loads_torchvision_weights(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    x = torch.rand(1, 1, 32, 32) * 2 - 1
    random = spade.VGGLoss(seed=0)
    assert not random.pretrained and random(x, x).item() == 0
    assert random(x, -x).item() > 0
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # a whole torchvision state dict has more
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = spade.VGGLoss(tmp_path / "vgg19.pth")
    assert loaded.pretrained
    assert torch.equal(loaded.slices[0][0].weight, state["features.0.weight"])
    assert loaded.training is False and loaded.train().training is False
    torch.save({"features.0.weight": state["features.0.weight"]}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision vgg19"):
        spade.VGGLoss(tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="vgg_weights"):
        spade.VGGLoss(tmp_path / "absent.pth")


def test_lr_schedule_is_the_references_linear_decay_and_ttur():
    cfg = SpadeTrainConfig()  # cardiGAN: niter 20, niter_decay 10, lr 2e-4, TTUR
    assert [cfg.lr_factor(e) for e in (0, 19, 20)] == [1.0, 1.0, 1.0]
    assert cfg.lr_factor(21) == pytest.approx(0.9) and cfg.lr_factor(29) == pytest.approx(0.1)
    assert cfg.rates(0) == pytest.approx((1e-4, 4e-4))
    assert SpadeTrainConfig(ttur=False).rates(29) == pytest.approx((2e-5, 2e-5))
    assert SpadeTrainConfig(decay_epochs=0).lr_factor(29) == 1.0
    with pytest.raises(ValueError, match="decay_epochs"):
        SpadeTrainConfig(epochs=5, decay_epochs=6)
    with pytest.raises(ValueError, match="unknown SPADE train settings"):
        SpadeTrainConfig.from_dict({"niter": 3})


def test_resolve_models_ties_the_discriminator_and_encoder_to_the_generator():
    models = resolve_models({"preset": "tiny", "out_channels": 3}, {"preset": "tiny"})
    assert models["discriminator"]["in_channels"] == 4 + 3 and "encoder" not in models
    models = resolve_models({"preset": "tiny", "use_vae": True, "z_dim": 16}, {"preset": "tiny"},
                            {"encoder_size": 64})  # fmt: skip
    assert models["encoder"] == {"ndf": 4, "encoder_size": 64, "in_channels": 1, "z_dim": 16}


@pytest.fixture(scope="module")
def camus(tmp_path_factory):
    return camus_pairs(tmp_path_factory.mktemp("camus"), size=32)["index"]


def test_pair_set_reads_resizes_and_scales(camus):
    rows = read_camus_index(camus, "train")
    assert len(rows) == 4
    pairs = CamusPairSet(rows, 16, channels=3)
    image, label = pairs[0]
    assert image.shape == (3, 16, 16) and label.shape == (16, 16)
    assert -1 <= image.min() and image.max() <= 1 and set(np.unique(label)) <= {0, 1, 2, 3}


def test_index_errors_name_the_problem_and_fix(camus, tmp_path):
    with pytest.raises(DataError, match="no patient in split 'TRAIN'"):
        read_camus_index(camus, "TRAIN")
    rows = pd.read_csv(camus)
    rows.drop(columns="label").to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(DataError, match="missing column 'label'.*prepare_camus"):
        read_camus_index(tmp_path / "nolabel.csv", "train")
    rows.assign(split="training").to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(DataError, match="unknown split 'training'"):
        read_camus_index(tmp_path / "split.csv", "train")


def test_bad_pairs_name_the_patient(camus, tmp_path):
    row = read_camus_index(camus, "valid").iloc[0].copy()
    bad = np.full((32, 32), 5, np.uint8)
    cv2.imwrite(str(tmp_path / "bad.png"), bad)
    with pytest.raises(DataError, match=f"label values \\[5\\] of patient {row['patient']}"):
        load_pair(row.copy().replace({row["label"]: str(tmp_path / "bad.png")}), 32)
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((16, 16), np.uint8))
    with pytest.raises(DataError, match="differ in size"):
        load_pair(row.copy().replace({row["label"]: str(tmp_path / "small.png")}), 32)
    with pytest.raises(DataError, match=f"image of patient {row['patient']} missing"):
        load_pair(row.copy().replace({row["image"]: str(tmp_path / "absent.png")}), 32)


def test_encoder_mode_trains_and_exports_the_encoder(camus, tmp_path):
    from echogen.models.spade import ConvEncoder, SPADEGenerator
    from echogen.training.spade import train_spade

    result = train_spade(
        camus, tmp_path / "out", tmp_path / "state",
        generator={"preset": "tiny", "use_vae": True, "z_dim": 8},
        discriminator={"preset": "tiny"}, encoder={"encoder_size": 32},
        train={"batch_size": 2, "epochs": 1, "decay_epochs": 0, "size": 32},
    )  # fmt: skip
    assert result["steps"] == 2
    log = pd.read_csv(tmp_path / "out" / "log.csv")
    assert log["g_kld"].iloc[-1] > 0 and np.isfinite(log["val_loss"]).all()
    encoder = ConvEncoder.from_pretrained(tmp_path / "out" / "encoder")
    assert encoder.config.z_dim == 8 and encoder.config.in_channels == 1
    generator = SPADEGenerator.from_pretrained(tmp_path / "out" / "generator")
    assert generator.config.crop_size == 32  # follows train.size
    record = json.loads((tmp_path / "out" / "train.json").read_text())
    assert record["vgg"].startswith("random")


def test_generator_size_must_match_train_size(camus, tmp_path):
    from echogen.training.spade import train_spade

    with pytest.raises(ValueError, match="crop_size 64 differs from train.size 32"):
        train_spade(camus, tmp_path / "o", tmp_path / "s", generator={"preset": "tiny",
                    "crop_size": 64}, train={"size": 32})  # fmt: skip


def test_sync_batchnorm_weights_export_into_the_plain_generator():
    """A multi-GPU run trains the generator with SyncBatchNorm (the reference's hand-cloned
    SynchronizedBatchNorm2d); the export loads its state into a plain generator: same keys,
    same values, BatchNorm again."""
    torch.manual_seed(0)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(spade.build_generator("tiny"))
    kinds = {type(m).__name__ for m in synced.modules()}
    assert "SyncBatchNorm" in kinds and "BatchNorm2d" not in kinds
    for module in synced.modules():
        if isinstance(module, torch.nn.SyncBatchNorm):
            module.running_mean.uniform_()  # statistics a run would have gathered
    plain = spade.build_generator("tiny")
    plain.load_state_dict(synced.state_dict())  # strict: the export's own call
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in plain.modules())
    for key, value in synced.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value), key
