"""Privacy filter: embedder, Siamese training (resumable), Pearson matching, threshold, filter."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from trainer_cases import LATENT_C, LATENT_H, latent_videos

from echogen.data.errors import DataError
from echogen.models.privacy import (
    PRIVACY_PRESETS,
    PrivacyEmbedder,
    load_imagenet_trunk,
    load_privacy_model,
    load_reference_weights,
)
from echogen.pipelines import privacy as pipeline
from echogen.pipelines.privacy import embed, filter_samples, max_correlation, privacy_threshold
from echogen.training.privacy import draw_pairs, train_privacy

torch.set_num_threads(1)

TINY = {"widths": (8, 16), "layers": (1, 1), "embedding_dim": 16}
C, H = LATENT_C, LATENT_H


def _train_kwargs(root, index, name, max_steps, **train) -> dict:
    """train_privacy's arguments for a tiny run (JSON-able: run_distributed passes them on)."""
    spec = {"lr": 3e-3, "batch_size": 8, "max_steps": max_steps, "checkpoint_every": 2}
    spec.update({"checkpoints_total_limit": 2, "log_every": 2, **train})
    return {
        "latent_indexes": [str(index)],
        "out_dir": str(root / name),
        "state_dir": str(root / f"{name}_state"),
        "preset": "tiny",
        "overrides": TINY,
        "train": spec,
        "seed": 3,
        "root": str(root),
    }


def _train(root, index, name, max_steps, **train):
    return train_privacy(**_train_kwargs(root, index, name, max_steps, **train))


def _state(folder):
    return load_privacy_model(folder).state_dict()


# --- model -----------------------------------------------------------------------------


def _reference_siamese() -> torch.nn.Module:
    """EchoNet-Synthetic's SiameseNetwork as echosyn/privacy/shared.py builds it, from
    torchvision parts: ResNet-50 (its max-pool kept), a 4-channel 7x7 first convolution, a
    2048 -> 128 fc (as `model`), and the 128 -> 1 head (as `fc_end`)."""
    import torchvision

    net = torch.nn.Module()
    net.model = torchvision.models.resnet50(weights=None)
    net.model.conv1 = torch.nn.Conv2d(4, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.model.fc = torch.nn.Linear(2048, 128)
    net.fc_end = torch.nn.Linear(128, 1)
    return net.eval()


def test_released_reidentification_weights_load_into_paper_reference(tmp_path):
    """Keys and shapes of the released network equal the paper_reference preset's once
    renamed, and the loaded embedder computes the reference's forward_once."""
    torch.manual_seed(0)
    reference = _reference_siamese()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "reidentification_dynamic_best_network.pth")
    ours = PrivacyEmbedder(**PRIVACY_PRESETS["paper_reference"]).eval()
    assert isinstance(ours.trunk.maxpool, torch.nn.MaxPool2d)
    load_reference_weights(ours, tmp_path / "reidentification_dynamic_best_network.pth")
    x = torch.randn(3, 4, 14, 14)
    with torch.no_grad():
        expected = torch.sigmoid(reference.model(ours.prepare(x)))
        torch.testing.assert_close(ours(x), expected)
        first, second = ours(x[:2]), ours(x[1:])
        torch.testing.assert_close(
            ours.pair_logits(first, second), reference.fc_end((first - second).abs())[:, 0]
        )
    # Another architecture is refused, naming the keys.
    with pytest.raises(DataError, match="does not fit"):
        tiny = PrivacyEmbedder(**{**PRIVACY_PRESETS["tiny"], **TINY})
        load_reference_weights(tiny, tmp_path / "reidentification_dynamic_best_network.pth")


def test_imagenet_trunk_loads_all_but_the_first_convolution_and_fc(tmp_path):
    import torchvision

    torch.manual_seed(1)
    imagenet = torchvision.models.resnet50(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "resnet50.pth")
    model = PrivacyEmbedder(**PRIVACY_PRESETS["paper_reference"])
    conv1, fc = model.trunk.conv1.weight.clone(), model.trunk.fc.weight.clone()
    load_imagenet_trunk(model, tmp_path / "resnet50.pth")
    assert torch.equal(model.trunk.layer3[2].conv2.weight, imagenet.layer3[2].conv2.weight)
    assert torch.equal(model.trunk.bn1.running_var, imagenet.bn1.running_var)
    assert torch.equal(model.trunk.conv1.weight, conv1) and torch.equal(model.trunk.fc.weight, fc)
    torch.save({"layer1.0.conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="does not fit"):
        load_imagenet_trunk(model, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="resnet50"):
        load_imagenet_trunk(PrivacyEmbedder(**{**PRIVACY_PRESETS["tiny"], **TINY}), "x.pth")


def test_embedder_shapes_presets_and_round_trip(tmp_path):
    torch.manual_seed(0)
    paper = PrivacyEmbedder(**PRIVACY_PRESETS["paper"]).eval()
    with torch.no_grad():
        emb = paper(torch.randn(2, 4, 14, 14))
    assert emb.shape == (2, 128) and bool(((emb > 0) & (emb < 1)).all())
    assert paper.trunk.conv1.in_channels == 4 and isinstance(paper.trunk.maxpool, torch.nn.Identity)

    model = PrivacyEmbedder(**{**PRIVACY_PRESETS["tiny"], **TINY, "pad_to": 10}).eval()
    x = torch.randn(3, C, H, H)
    padded = model.prepare(x)
    assert padded.shape == (3, C, 10, 10)
    # replicate padding then per-frame min-max to [-1, 1]
    ref = F.pad(x, (1, 1, 1, 1), mode="replicate")
    low, high = ref.amin(dim=(1, 2, 3), keepdim=True), ref.amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(padded, (ref - low) / (high - low) * 2 - 1)
    # min-max makes the embedding blind to the latents' affine scaling
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(3 * x + 1), atol=1e-5, rtol=1e-5)
        logits = model.pair_logits(model(x), model(x.flip(0)))
    assert logits.shape == (3,)

    model.save_pretrained(tmp_path / "m")
    again = load_privacy_model(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with pytest.raises(ValueError, match="arch"):
        PrivacyEmbedder(arch="vit")
    with pytest.raises(ValueError, match="resnet50"):
        PrivacyEmbedder(arch="resnet50", widths=(8, 16), layers=(1, 1))
    with pytest.raises(ValueError, match=r"latents \[B, 4"):
        model(torch.randn(2, 3, H, H))


# --- matching and threshold ----------------------------------------------------------------


def test_max_correlation_matches_corrcoef(monkeypatch):
    monkeypatch.setattr(pipeline, "BLOCK_ENTRIES", 23)  # blocks of 2 queries: chunking exercised
    rng = np.random.default_rng(1)
    queries, refs = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
    values, argmax = max_correlation(queries, refs)
    brute = np.corrcoef(np.vstack([queries, refs]))[:7, 7:]
    np.testing.assert_allclose(values, brute.max(axis=1), atol=1e-12)
    np.testing.assert_array_equal(argmax, brute.argmax(axis=1))

    same = np.corrcoef(refs)
    np.fill_diagonal(same, -np.inf)
    values, argmax = max_correlation(refs, refs, exclude_same=True)
    np.testing.assert_allclose(values, same.max(axis=1), atol=1e-12)
    np.testing.assert_array_equal(argmax, same.argmax(axis=1))
    # without exclusion every row finds itself
    values, argmax = max_correlation(refs, refs)
    np.testing.assert_allclose(values, 1.0)
    np.testing.assert_array_equal(argmax, np.arange(11))

    with pytest.raises(ValueError, match="row 1 is constant"):
        max_correlation(np.vstack([queries[:1], np.ones((1, 5))]), refs)
    with pytest.raises(ValueError, match="features"):
        max_correlation(queries, refs[:, :4])


def test_privacy_threshold_on_hand_built_embeddings():
    # Zero-mean orthonormal directions: a row cos(t) e1 + sin(t) e3 has Pearson r = cos(t)
    # with e1 and 0 with e2, whatever affine rescaling it gets.
    e1 = np.array([1.0, -1.0, 0.0, 0.0]) / np.sqrt(2)
    e2 = np.array([0.0, 0.0, 1.0, -1.0]) / np.sqrt(2)
    e3 = np.array([1.0, 1.0, -1.0, -1.0]) / 2
    r = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    train = [3 * (c * e1 + np.sqrt(1 - c**2) * e3) + 5 for c in r]
    heldout = np.stack([e1, e2, 2 * e2 + 1])
    assert privacy_threshold(train, heldout, 50) == pytest.approx(0.5)
    assert privacy_threshold(train, heldout, 100) == pytest.approx(0.9)
    assert privacy_threshold(train, heldout, 95) == pytest.approx(0.7 + 0.8 * 0.2)
    assert privacy_threshold(train, heldout) == pytest.approx(0.86)
    with pytest.raises(ValueError, match="percentile"):
        privacy_threshold(train, heldout, 101)


# --- training ------------------------------------------------------------------------


def test_draw_pairs_balanced_and_valid():
    frames = np.array([2, 5, 3, 9])
    a = draw_pairs(np.random.default_rng([4, 7]), frames, 400)
    b = draw_pairs(np.random.default_rng([4, 7]), frames, 400)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    video_a, frame_a, video_b, frame_b, label = a
    pos = label == 1
    assert pos.sum() == 200
    assert (video_a[pos] == video_b[pos]).all() and (frame_a[pos] != frame_b[pos]).all()
    assert (video_a[~pos] != video_b[~pos]).all()
    assert (frame_a < frames[video_a]).all() and (frame_b < frames[video_b]).all()
    assert set(video_a.tolist()) == {0, 1, 2, 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset, its untrained export (max_steps 0) and a 40-step export, trained once."""
    root = tmp_path_factory.mktemp("trained")
    index = latent_videos(root)
    before = _train(root, index, "init", max_steps=0)
    summary = _train(
        root, index, "trained", max_steps=40, lr=1e-2, log_every=10, checkpoint_every=20
    )
    return root, index, before, summary


def test_training_lowers_bce_and_exports(trained):
    tmp_path, index, before, summary = trained
    assert before["steps"] == 0
    assert summary["steps"] == 40 and summary["n_videos"] == 8 and summary["n_frames"] == 48
    out = tmp_path / "trained"
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "train.json",
        "log.csv",
    }
    train_json = json.loads((out / "train.json").read_text())
    assert train_json["steps"] == 40 and train_json["frame_shape"] == [C, H, H]
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == [10, 20, 30, 40]

    # BCE of both exports on the same 64 fixed pairs of TRAIN frames (eval mode)
    latents = [
        np.load(tmp_path / f"latents/video_{i:02d}.npy").astype(np.float32) for i in range(8)
    ]
    video_a, frame_a, video_b, frame_b, label = draw_pairs(
        np.random.default_rng(99), np.full(8, 6), 64
    )
    first = np.stack([latents[v][f] for v, f in zip(video_a, frame_a, strict=True)])
    second = np.stack([latents[v][f] for v, f in zip(video_b, frame_b, strict=True)])

    def bce(folder):
        model = load_privacy_model(folder).eval()
        with torch.no_grad():
            logits = model.pair_logits(model(torch.tensor(first)), model(torch.tensor(second)))
        return F.binary_cross_entropy_with_logits(logits, torch.tensor(label)).item()

    bce_init, bce_trained = bce(tmp_path / "init"), bce(out)
    assert bce_init == pytest.approx(np.log(2), abs=0.05)  # untrained: chance
    assert bce_trained < 0.6 * bce_init, (bce_init, bce_trained)
    assert log["accuracy"].iloc[-1] > 0.8


def test_training_bad_inputs(tmp_path):
    index = latent_videos(tmp_path)
    rows = pd.read_csv(index)
    rows.drop(columns="latent_path").to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(
        DataError, match=r"nocol.csv: not a latents index \(missing \['latent_path'\]\)"
    ):
        _train(tmp_path, tmp_path / "nocol.csv", "a", max_steps=1)
    (tmp_path / "latents/video_03.npy").unlink()
    with pytest.raises(DataError, match=r"index.csv, row 5: latent file .*video_03.npy does not"):
        _train(tmp_path, index, "a", max_steps=1)
    np.save(tmp_path / "latents/video_03.npy", np.zeros((6, 3, H, H), np.float16))
    with pytest.raises(DataError, match=r"row 5: .*shape \(6, 3, 8, 8\).*in_channels"):
        _train(tmp_path, index, "a", max_steps=1)
    one = latent_videos(tmp_path / "one", splits=("TRAIN", "VAL"))
    with pytest.raises(DataError, match="only one TRAIN video"):
        _train(tmp_path / "one", one, "a", max_steps=1)
    short = latent_videos(tmp_path / "short", splits=("TRAIN", "TRAIN"), frames=1)
    with pytest.raises(DataError, match="fewer than 2 frames"):
        _train(tmp_path / "short", short, "a", max_steps=1)
    with pytest.raises(ValueError, match="unknown privacy model keys"):
        train_privacy([index], tmp_path / "b", tmp_path / "s", "tiny", {"depth": 3}, {}, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        _train(tmp_path, index, "a", max_steps=1, batch_size=1)


# --- filter --------------------------------------------------------------------------


def _samples(root, copy_of, n_noise=3, seed=5):
    """A sample folder: sample_00000 copies a real latent's first frame, the rest are noise."""
    rng = np.random.default_rng(seed)
    (root / "latents").mkdir(parents=True)
    frames = [copy_of] + [rng.normal(size=(C, H, H)) for _ in range(n_noise)]
    names = [f"sample_{i:05d}" for i in range(len(frames))]
    for name, frame in zip(names, frames, strict=True):
        np.save(root / "latents" / f"{name}.npy", frame.astype(np.float16))
    filelist = pd.DataFrame(
        {"FileName": names, "EF": [30.0, 40.0, np.nan, 60.0][: len(names)], "Split": "TRAIN"}
    )
    filelist.to_csv(root / "FileList.csv", index=False)
    return filelist


def test_filter_drops_exact_copy_of_a_train_frame(trained, tmp_path):
    root, index, _, _ = trained
    real = np.load(root / "latents/video_03.npy")[0]
    filelist = _samples(tmp_path / "samples", copy_of=real)

    summary = filter_samples(
        root / "trained", index, tmp_path / "samples", tmp_path / "out", root=root
    )
    assert summary["n_train"] == 8 and summary["n_heldout"] == 6 and summary["n_samples"] == 4
    assert summary["n_dropped"] == 1 and summary["n_kept"] == 3
    assert summary["tau"] < 0.999

    kept = pd.read_csv(tmp_path / "out" / "FileList.csv")
    assert kept.columns.tolist() == filelist.columns.tolist()
    assert kept["FileName"].tolist() == ["sample_00001", "sample_00002", "sample_00003"]
    dropped = pd.read_csv(tmp_path / "out" / "dropped.csv")
    assert dropped["FileName"].tolist() == ["sample_00000"]
    assert dropped["nearest_real"].tolist() == ["video_03"]
    assert dropped["max_corr"].iloc[0] == pytest.approx(1.0, abs=1e-9)
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written.pop("heldout") == summary["heldout"] == ["VAL", "TEST"]
    assert written == pytest.approx({k: v for k, v in summary.items() if k != "heldout"})

    # tau and the scores, recomputed here from the embeddings with numpy's corrcoef
    model = load_privacy_model(root / "trained")
    rows = pd.read_csv(index)
    first = np.stack([np.load(root / p)[0].astype(np.float32) for p in rows["latent_path"]])
    emb = embed(model, first, batch_size=5, device="cpu")
    train, held = emb[:8], emb[8:]
    corr = np.corrcoef(np.vstack([train, held]))[:8, 8:]
    # float32 embeddings: the two correlation routes agree to ~1e-9, BLAS-dependent.
    assert summary["tau"] == pytest.approx(np.percentile(corr.max(axis=1), 95), abs=1e-7)
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert scores["kept"].tolist() == [False, True, True, True]
    assert (scores["max_corr"].iloc[1:] < summary["tau"]).all()

    # EchoNet-Synthetic sets tau against TEST only (the last 3 videos of the index).
    test_only = filter_samples(
        root / "trained", index, tmp_path / "samples", tmp_path / "t", root=root, heldout=("TEST",)
    )
    assert test_only["n_heldout"] == 3 and test_only["heldout"] == ["TEST"]
    expected = np.percentile(np.corrcoef(np.vstack([train, emb[11:]]))[:8, 8:].max(axis=1), 95)
    assert test_only["tau"] == pytest.approx(expected, abs=1e-7)
    with pytest.raises(ValueError, match="heldout"):
        filter_samples(root / "trained", index, tmp_path / "samples", tmp_path / "u", heldout=())

    # link_frames: the kept samples' frame folders, for FID/IS after filtering.
    for name in filelist["FileName"]:
        (tmp_path / "samples" / "frames" / name).mkdir(parents=True)
        (tmp_path / "samples" / "frames" / name / "0000.jpg").write_bytes(name.encode())
    filter_samples(
        root / "trained", index, tmp_path / "samples", tmp_path / "f", root=root, link_frames=True
    )
    linked = sorted(p.name for p in (tmp_path / "f" / "frames").iterdir())
    assert linked == ["sample_00001", "sample_00002", "sample_00003"]
    assert (tmp_path / "f" / "frames" / "sample_00002" / "0000.jpg").read_bytes() == b"sample_00002"


def test_filter_bad_inputs(tmp_path):
    index = latent_videos(tmp_path, splits=("TRAIN", "TRAIN", "VAL"))
    PrivacyEmbedder(**{**PRIVACY_PRESETS["tiny"], **TINY}).save_pretrained(tmp_path / "model")
    _samples(tmp_path / "samples", copy_of=np.zeros((C, H, H)), n_noise=1)
    args = (tmp_path / "model", index, tmp_path / "samples", tmp_path / "out")

    (tmp_path / "samples/latents/sample_00001.npy").unlink()
    with pytest.raises(DataError, match=r"FileList.csv, row 3: .*sample_00001.npy does not exist"):
        filter_samples(*args, root=tmp_path)
    np.save(tmp_path / "samples/latents/sample_00001.npy", np.zeros((1, C, H, H)))
    with pytest.raises(DataError, match=r"row 3: .*shape \(1, 4, 8, 8\)"):
        filter_samples(*args, root=tmp_path)
    pd.DataFrame({"Name": ["sample_00000"]}).to_csv(tmp_path / "samples/FileList.csv", index=False)
    with pytest.raises(DataError, match="lacks the FileName column"):
        filter_samples(*args, root=tmp_path)
    pd.read_csv(index).drop(columns="Split").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv: not a latents index \(missing \['Split'\]\)"):
        filter_samples(args[0], tmp_path / "bad.csv", *args[2:], root=tmp_path)
    pd.read_csv(index).query("Split == 'TRAIN'").to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="no VAL/TEST rows"):
        filter_samples(args[0], tmp_path / "train.csv", *args[2:], root=tmp_path)
    with pytest.raises(DataError, match="config.json missing"):
        filter_samples(tmp_path / "nomodel", *args[1:], root=tmp_path)
    assert not (tmp_path / "out").exists()
