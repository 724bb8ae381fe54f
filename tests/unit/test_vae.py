"""Image VAE: presets, frame/latent helpers, the ldm loss, and resumable training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from trainer_cases import disk_videos

from echogen.data.errors import DataError
from echogen.data.manifest import write_manifest
from echogen.data.video import read_video, resize_frames
from echogen.metrics.paired import LPIPS
from echogen.models.vae import (
    PatchDiscriminator,
    VAELoss,
    build_vae,
    decode_latents,
    encode_frames,
    frames_to_tensor,
    load_vae,
    tensor_to_frames,
    vae_config,
)
from echogen.training.vae import resolve_train_config, train_vae

SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_vae(seed: int = 0):
    torch.manual_seed(seed)
    return build_vae("tiny").eval()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return disk_videos(tmp_path_factory.mktemp("vae_data"))


def _config(**overrides):
    base = {
        "size": SIZE,
        "batch_size": 4,
        "max_steps": 4,
        "disc_start": 2,
        "checkpoint_every": 2,
        "checkpoints_total_limit": 2,
        "log_every": 2,
        "scale_frames": 64,
    }
    return resolve_train_config("tiny", {**base, **overrides})


def _train(root, tag, **overrides):
    return train_vae(
        [root / "manifest.csv"],
        root / f"out_{tag}",
        root / f"state_{tag}",
        "tiny",
        None,
        _config(**overrides),
        seed=3,
        root=root,
    )


def _train_frames(root) -> np.ndarray:
    """Every frame of the TRAIN videos at SIZE (the VAL video is never drawn)."""
    return np.concatenate([resize_frames(read_video(root / f"v{i}.avi"), SIZE) for i in range(3)])


def test_tiny_preset_gives_4x14x14_latents_at_112():
    vae = _tiny_vae()
    frames = np.random.default_rng(0).integers(0, 256, (3, 112, 112), dtype=np.uint8)
    latents = encode_frames(vae, frames)
    assert latents.shape == (3, 4, 14, 14) and latents.dtype == np.float32
    decoded = decode_latents(vae, latents)
    assert decoded.shape == (3, 112, 112) and decoded.dtype == np.uint8
    paper = vae_config("paper")
    assert paper["block_out_channels"] == [128, 256, 256, 512]
    assert paper["in_channels"] == 3 and paper["latent_channels"] == 4
    assert paper["mid_block_add_attention"] is False
    with pytest.raises(ValueError, match="bogus"):
        build_vae("tiny", {"bogus": 1})
    with pytest.raises(ValueError, match="huge"):
        build_vae("huge")


def test_frames_tensor_round_trip_is_exact():
    values = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    for channels in (1, 3):
        x = frames_to_tensor(values, channels)
        assert x.shape == (4, channels, 8, 8) and x.dtype == torch.float32
        assert x.min().item() == -1.0 and x.max().item() == 127 / 128
        assert torch.equal(x[:, -1], torch.from_numpy(values.astype(np.float32) / 128 - 1))
        assert np.array_equal(tensor_to_frames(x), values)
    # Out-of-range reconstructions are clipped, not wrapped.
    assert tensor_to_frames(torch.full((1, 1, 2, 2), 3.0)).max() == 255
    assert tensor_to_frames(torch.full((1, 1, 2, 2), -3.0)).min() == 0
    with pytest.raises(ValueError):
        frames_to_tensor(values.astype(np.float32), 1)


def test_encode_decode_match_the_diffusers_calls(tmp_path):
    vae = _tiny_vae(1)
    vae.register_to_config(scaling_factor=0.7)
    frames = np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE), dtype=np.uint8)
    x = torch.from_numpy(frames).float().unsqueeze(1) / 128 - 1
    with torch.no_grad():
        expected = vae.encode(x).latent_dist.mean * 0.7
    got = encode_frames(vae, frames, batch_size=2)  # batching must not matter
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        pixels = vae.decode(expected / 0.7).sample
    expected_frames = ((pixels[:, 0] + 1) * 128).round().clamp(0, 255).to(torch.uint8).numpy()
    decoded = decode_latents(vae, torch.from_numpy(got), batch_size=3)
    assert np.abs(decoded.astype(int) - expected_frames.astype(int)).max() <= 1

    vae.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae")
    assert loaded.config.scaling_factor == 0.7
    np.testing.assert_array_equal(encode_frames(loaded, frames, batch_size=2), got)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="config.json missing"):
        load_vae(tmp_path / "empty")
    PatchDiscriminator().save_pretrained(tmp_path / "disc")
    with pytest.raises(DataError, match="PatchDiscriminator"):
        load_vae(tmp_path / "disc")


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_patch_discriminator_shapes_and_round_trip(tmp_path, norm):
    torch.manual_seed(0)
    disc = PatchDiscriminator(in_channels=1, channels=8, n_layers=3, norm=norm).eval()
    x = torch.rand(2, 1, SIZE, SIZE) * 2 - 1
    # Three stride-2 convolutions (32 -> 4), then two 4x4 stride-1 ones (4 -> 3 -> 2).
    assert disc(x).shape == (2, 1, 2, 2)
    assert disc(torch.zeros(1, 1, 112, 112)).shape == (1, 1, 12, 12)
    disc.save_pretrained(tmp_path)
    loaded = PatchDiscriminator.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(x), disc(x))
    widths = [block["conv"].out_channels for block in disc.blocks]
    assert widths == [16, 32, 64]


def test_adaptive_weight_matches_a_hand_computation():
    w = torch.tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)
    a = torch.tensor([[1.0, 2.0], [0.5, 3.0]])
    b = torch.tensor([[0.1, -0.2], [0.3, 0.4]])
    nll = ((w * a) ** 2).sum()  # d/dw = 2 a^2 w
    g = (w * b).sum()  # d/dw = b
    grad_nll = 2 * a**2 * w.detach()
    expected = grad_nll.pow(2).sum().sqrt() / (b.pow(2).sum().sqrt() + 1e-4) * 0.5
    got = VAELoss.adaptive_weight(nll, g, w, disc_weight=0.5)
    assert not got.requires_grad
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # A generator loss with no gradient gives the clamped maximum 1e4 (times disc_weight).
    flat = (w * 0).sum()
    assert VAELoss.adaptive_weight(nll, flat, w, disc_weight=2.0).item() == pytest.approx(2e4)


def test_generator_and_discriminator_losses_match_ldm_formulas():
    torch.manual_seed(0)
    x = torch.rand(2, 1, SIZE, SIZE) * 2 - 1
    recon = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    mean, logvar = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4) * 0.1
    perceptual = LPIPS("alex")
    loss_fn = VAELoss(perceptual, kl_weight=0.01, disc_start=5, logvar_init=0.3)

    loss, logs = loss_fn.generator_loss(x, recon, mean, logvar, step=4)
    pixels = x[0].numel()
    distances = perceptual(x, recon)  # the no-grad metric path: (N,)
    rec_sum = (x - recon).abs().sum() + distances.sum() * pixels
    nll = rec_sum / np.exp(0.3) / 2 + 0.3 * pixels
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum() / 2
    assert logs["nll"] == pytest.approx(nll.item(), rel=1e-5)
    assert logs["kl"] == pytest.approx(kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx((nll + 0.01 * kl).item(), rel=1e-5)
    assert logs["g_loss"] == 0 and logs["d_weight"] == 0 and logs["disc_factor"] == 0

    disc = PatchDiscriminator(in_channels=1, channels=8, n_layers=2)
    d_loss, _ = loss_fn.discriminator_loss(disc, x, recon, step=4)
    assert d_loss.item() == 0.0  # adopt_weight: no discriminator loss before disc_start
    d_loss, d_logs = loss_fn.discriminator_loss(disc, x, recon, step=5)
    real, fake = disc(x), disc(recon)
    hinge = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    assert d_loss.item() == pytest.approx(hinge.item(), rel=1e-6)
    assert d_logs["logits_fake"] == pytest.approx(fake.mean().item(), rel=1e-6)

    # From disc_start: + adaptive weight * -mean(D(x̂)), gradients w.r.t. the last layer.
    last = torch.nn.Parameter(torch.ones(1, 1, 1, 1))
    scaled = F.conv2d(recon, last)  # a stand-in "decoder" whose last layer is `last`
    loss, logs = loss_fn.generator_loss(x, scaled, mean, logvar, 5, disc.eval(), last)
    g = -disc(scaled).mean()
    weight = VAELoss.adaptive_weight(_nll_with_grad(loss_fn, x, scaled), g, last, 0.5)
    assert logs["d_weight"] == pytest.approx(weight.item(), rel=1e-4)
    assert loss.item() == pytest.approx(
        logs["nll"] + 0.01 * logs["kl"] + weight.item() * g.item(), rel=1e-5
    )


def _nll_with_grad(loss_fn: VAELoss, x, recon):
    """The NLL term recomputed with gradients (LPIPS network called directly)."""
    distances = loss_fn.perceptual.model(x.expand(-1, 3, -1, -1), recon.expand(-1, 3, -1, -1))
    rec = (x - recon).abs() + distances.view(-1, 1, 1, 1)
    return (rec / loss_fn.logvar.exp() + loss_fn.logvar).sum() / x.shape[0]


def test_train_config_errors_name_the_key():
    with pytest.raises(ValueError, match="train.bogus"):
        resolve_train_config("tiny", {"bogus": 1})
    with pytest.raises(ValueError, match="train.batch_size"):
        resolve_train_config("tiny", {"batch_size": 0})
    with pytest.raises(ValueError, match="train.disc_norm"):
        resolve_train_config("tiny", {"disc_norm": "layer"})
    paper = resolve_train_config("paper")
    assert (paper.disc_start, paper.kl_weight, paper.disc_weight) == (50001, 1e-6, 0.5)


def test_missing_training_video_names_the_manifest_row(tmp_path, dataset):
    rows = pd.read_csv(dataset / "manifest.csv")
    rows.loc[1, "Path"] = "nowhere.avi"
    write_manifest(rows, tmp_path / "manifest.csv")
    with pytest.raises(DataError, match=r"row 3.*v1"):
        train_vae(
            [tmp_path / "manifest.csv"],
            tmp_path / "o",
            tmp_path / "s",
            config=_config(),
            root=dataset,
        )


def test_training_lowers_reconstruction_error_and_fits_the_scaling_factor(dataset):
    frames = _train_frames(dataset)

    def l1(folder) -> float:
        vae = load_vae(folder)
        recon = decode_latents(vae, encode_frames(vae, frames))
        return float(np.abs(recon.astype(float) - frames).mean())

    # L1 only (LPIPS and the discriminator are covered above), to keep the test fast.
    settings = {"disc_start": 1000, "perceptual_weight": 0.0, "checkpoint_every": 100}
    settings.update(log_every=5, lr=1e-3, batch_size=2)
    _train(dataset, "init", max_steps=0, **settings)
    summary = _train(dataset, "fit", max_steps=20, **settings)
    before, after = l1(dataset / "out_init"), l1(dataset / "out_fit")
    assert after < 0.6 * before, (before, after)
    train_log = pd.read_csv(dataset / "out_fit" / "log.csv")
    assert train_log["rec_l1"].iloc[-1] < 0.6 * train_log["rec_l1"].iloc[0]

    vae = load_vae(dataset / "out_fit")
    config = json.loads((dataset / "out_fit" / "config.json").read_text())
    train_json = json.loads((dataset / "out_fit" / "train.json").read_text())
    assert config["scaling_factor"] == train_json["scaling_factor"] == summary["scaling_factor"]
    assert summary["scaling_factor"] != 0.18215
    # Fitted on 64 drawn frames; every TRAIN frame's scaled latents have std ~1.
    assert np.std(encode_frames(vae, frames)) == pytest.approx(1.0, rel=0.05)


def test_paper_reference_preset_has_ldms_mid_block_attention():
    """ldm's Encoder/Decoder always build mid.attn_1; EchoNet-Synthetic's conversion maps it
    to mid_block.attentions.0, which echogen's paper preset leaves out."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        reference = build_vae("paper_reference").state_dict()
        paper = build_vae("paper").state_dict()
    for side in ("encoder", "decoder"):
        key = f"{side}.mid_block.attentions.0.to_q.weight"
        assert tuple(reference[key].shape) == (512, 512) and key not in paper
    extra = set(reference) - set(paper)
    assert extra and all(".mid_block.attentions.0." in k for k in extra)
    assert {k: v.shape for k, v in paper.items()} == {
        k: v.shape for k, v in reference.items() if k in paper
    }


def test_a_fixed_scaling_factor_is_exported_unfitted(dataset):
    summary = _train(dataset, "fixed_scale", max_steps=1, scaling_factor=0.18215)
    assert summary["scaling_factor"] == 0.18215
    config = json.loads((dataset / "out_fixed_scale" / "config.json").read_text())
    assert config["scaling_factor"] == 0.18215
    with pytest.raises(ValueError, match="scaling_factor"):
        resolve_train_config("tiny", {"scaling_factor": 0})
