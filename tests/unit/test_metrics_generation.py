"""Generation metrics (FID, IS, FVD) against independent references, with tiny real detectors.

References: closed forms and pytorch-fid's ``calculate_frechet_distance`` for the distance,
``np.cov`` for the statistics, and direct detector calls on in-memory frames for whole metrics
(so frame selection, order, windows and the IS split formula are re-derived, not reused).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance

from echogen.data.errors import DataError
from echogen.metrics import detectors as detectors_module
from echogen.metrics.detectors import (
    TINY_I3D_FEATURES,
    TINY_INCEPTION_CLASSES,
    TINY_INCEPTION_FEATURES,
    load_detector,
    sha256_file,
    write_tiny_detector,
)
from echogen.metrics.frame_folders import content_hash, list_frames, list_videos, load_frames
from echogen.metrics.frechet import FeatureStats, frechet_distance
from echogen.metrics.generation import (
    METRICS,
    evaluate_generation,
    pad_frames,
    parse_metric,
    write_metric_table,
)

torch.set_num_threads(2)
# pytorch-fid still passes scipy's deprecated ``disp`` argument.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SIZE = 24


# ---------------------------------------------------------------------------------------------
# helpers


def moving_videos(rng: np.random.Generator, lengths: list[int]) -> list[np.ndarray]:
    """Grey uint8 videos (T, SIZE, SIZE): a random block pattern sliding one pixel per frame."""
    videos = []
    for length in lengths:
        pattern = np.kron(rng.integers(0, 256, (6, 6)), np.ones((4, 4))).astype(np.uint8)
        videos.append(np.stack([np.roll(pattern, t, axis=1) for t in range(length)]))
    return videos


def perturbed(rng: np.random.Generator, videos: list[np.ndarray], amount: int) -> list[np.ndarray]:
    return [
        np.clip(v.astype(int) + rng.integers(-amount, amount + 1, v.shape), 0, 255).astype(np.uint8)
        for v in videos
    ]


def noise_like(rng: np.random.Generator, videos: list[np.ndarray]) -> list[np.ndarray]:
    return [rng.integers(0, 256, v.shape).astype(np.uint8) for v in videos]


def write_set(root: Path, videos: list[np.ndarray], padded: bool = True) -> Path:
    """StyleGAN-V layout; frames numbered from 1, ``0001.png`` or ``1.png``."""
    for i, video in enumerate(videos):
        folder = root / f"video{i:03d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(video, start=1):
            Image.fromarray(frame).save(folder / (f"{t:04d}.png" if padded else f"{t}.png"))
    return root


def rgb(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W) grey -> uint8 [N, 3, H, W]."""
    return torch.from_numpy(np.repeat(frames[:, None], 3, axis=1))


def reference_fd(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """pytorch-fid's distance on biased (1/n) covariances, as StyleGAN-V defines them."""
    return float(
        calculate_frechet_distance(
            features_a.mean(0),
            np.cov(features_a, rowvar=False, bias=True),
            features_b.mean(0),
            np.cov(features_b, rowvar=False, bias=True),
        )
    )


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("detectors")
    inception_sha = write_tiny_detector("inception", folder / "inception.pt", seed=0)
    i3d_sha = write_tiny_detector("i3d", folder / "i3d.pt", seed=0)
    return {
        "inception": {
            "path": str(folder / "inception.pt"),
            "sha256": inception_sha,
            "source": "tiny",
        },
        "i3d": {"path": str(folder / "i3d.pt"), "sha256": i3d_sha, "source": "tiny"},
    }


@pytest.fixture(scope="module")
def nets(detector_files) -> dict:
    return {name: load_detector(d["path"], d["sha256"]) for name, d in detector_files.items()}


@torch.no_grad()
def inception_features(net, frames: np.ndarray) -> np.ndarray:
    return net(rgb(frames), return_features=True).double().numpy()


@torch.no_grad()
def i3d_features(net, clips: list[np.ndarray]) -> np.ndarray:
    video = torch.stack([rgb(clip).permute(1, 0, 2, 3) for clip in clips])  # [N, 3, T, H, W]
    return net(video, rescale=True, resize=True, return_features=True).double().numpy()


# ---------------------------------------------------------------------------------------------
# Fréchet distance and feature statistics


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    var1, var2 = rng.uniform(0.1, 3, 12), rng.uniform(0.1, 3, 12)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_pytorch_fid(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(0.3, 1.2, size=(150, 16)) @ rng.normal(size=(16, 16))
    mu1, sigma1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, sigma2 = b.mean(0), np.cov(b, rowvar=False)
    expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal length"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_feature_stats_match_numpy_biased_covariance(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(2.0, 1.5, size=(103, 7))
    stats = FeatureStats()
    stats.append(features[:40].astype(np.float32))
    stats.append(torch.from_numpy(features[40:90]))
    stats.append(features[90:])
    assert stats.num_items == 103
    mean, cov = stats.mean_cov()
    assert mean.dtype == np.float64 and cov.dtype == np.float64
    reference = np.concatenate([features[:40].astype(np.float32), features[40:]])
    np.testing.assert_allclose(mean, reference.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(reference, rowvar=False, bias=True), rtol=1e-9)

    stats.to_npz(tmp_path / "stats.npz")
    restored = FeatureStats.from_npz(tmp_path / "stats.npz")
    assert restored.num_items == 103
    for a, b in zip(restored.mean_cov(), stats.mean_cov(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_feature_stats_reject_bad_input():
    stats = FeatureStats()
    with pytest.raises(ValueError, match="no features"):
        stats.mean_cov()
    with pytest.raises(ValueError, match="2-D"):
        stats.append(np.zeros(5))
    stats.append(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="expected 5"):
        stats.append(np.zeros((2, 4)))


# ---------------------------------------------------------------------------------------------
# metric names


def test_parse_metric_handles_the_families_with_any_numbers():
    assert [parse_metric(m).family for m in METRICS] == ["fid", "is", "fvd", "fvd"]
    assert parse_metric("fid50k_full").max_items == 50_000
    assert parse_metric("is10k").max_items == 10_000
    fvd = parse_metric("fvd2048_128f")
    assert (fvd.max_items, fvd.frames) == (2048, 128)
    assert (parse_metric("fvd8_4f").max_items, parse_metric("fvd8_4f").frames) == (8, 4)
    assert parse_metric("kid50k_full").family == "kid"
    for bad in ["fid50k", "fvd16f", "kid50k", "fid0k_full", "is50k_full", "FID50K_FULL"]:
        with pytest.raises(ValueError, match=r"fid<K>k_full, kid<K>k_full, is<K>k, fvd<N>_<F>f"):
            parse_metric(bad)


# ---------------------------------------------------------------------------------------------
# frame folders


def test_frames_are_ordered_numerically_for_padded_and_unpadded_names(tmp_path):
    video = moving_videos(np.random.default_rng(0), [12])
    padded = write_set(tmp_path / "padded", video, padded=True)
    unpadded = write_set(tmp_path / "unpadded", video, padded=False)
    frames_padded = list_frames(list_videos(padded)[0])
    frames_unpadded = list_frames(list_videos(unpadded)[0])
    assert [int(p.stem) for p in frames_unpadded] == list(range(1, 13))
    # Plain string sorting (StyleGAN-V) would put 10, 11, 12 right after 1.
    assert sorted(p.name for p in frames_unpadded)[:2] == ["1.png", "10.png"]
    np.testing.assert_array_equal(load_frames(frames_padded), load_frames(frames_unpadded))
    np.testing.assert_array_equal(load_frames(frames_unpadded)[..., 1], video[0])


def test_hidden_entries_are_skipped_and_grey_jpgs_become_rgb(tmp_path):
    root = tmp_path / "set"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    (root / ".snakemake_timestamp").write_text("")
    (root / "a" / ".DS_Store").write_text("")
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "a" / "0.jpg")
    Image.fromarray(np.full((8, 8), 50, np.uint8)).save(root / "b" / "0.png")
    assert [p.name for p in list_videos(root)] == ["a", "b"]
    frames = load_frames(list_frames(root / "a"))
    assert frames.shape == (1, 8, 8, 3) and frames.dtype == np.uint8
    assert np.all(np.abs(frames.astype(int) - 100) <= 1)


def make_bad(kind: str, root: Path) -> Path:
    """Build a broken frame set; return the path the error must name."""
    good = root / "video000"
    if kind == "missing root":
        return root
    root.mkdir(parents=True)
    if kind == "empty root":
        return root
    good.mkdir()
    for t in range(4):
        Image.fromarray(np.full((SIZE, SIZE), 9 * t, np.uint8)).save(good / f"{t}.png")
    if kind == "loose file":
        (root / "stray.png").write_bytes((good / "0.png").read_bytes())
        return root / "stray.png"
    if kind == "empty video folder":
        (root / "video001").mkdir()
        return root / "video001"
    if kind == "nested folder":
        (good / "deeper").mkdir()
        return good / "deeper"
    if kind == "not an image":
        (good / "notes.txt").write_text("x")
        return good / "notes.txt"
    if kind == "non-integer name":
        shutil.copy(good / "0.png", good / "frame_a.png")
        return good / "frame_a.png"
    if kind == "duplicate number":
        shutil.copy(good / "1.png", good / "01.png")
        return good / "1.png"
    if kind == "unreadable image":
        (good / "2.png").write_bytes(b"not a png")
        return good / "2.png"
    if kind == "mixed resolution":
        Image.fromarray(np.zeros((SIZE, SIZE + 2), np.uint8)).save(good / "3.png")
        return good / "3.png"
    raise AssertionError(kind)


BAD_KINDS = [
    "missing root",
    "empty root",
    "loose file",
    "empty video folder",
    "nested folder",
    "not an image",
    "non-integer name",
    "duplicate number",
    "unreadable image",
    "mixed resolution",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_layouts_raise_data_error_naming_the_path(kind, tmp_path, detector_files):
    real = write_set(tmp_path / "real", moving_videos(np.random.default_rng(0), [4, 4]))
    culprit = make_bad(kind, tmp_path / "bad")
    with pytest.raises(DataError) as err:
        evaluate_generation(
            real, tmp_path / "bad", ["fid1k_full"], detector_files, cache_dir=None, seed=0
        )
    assert str(culprit) in str(err.value)
    assert "Fix:" in str(err.value)


def test_content_hash_follows_names_and_bytes_not_location(tmp_path):
    root = write_set(tmp_path / "a", moving_videos(np.random.default_rng(0), [3, 3]))
    files = [f for v in list_videos(root) for f in list_frames(v)]
    key = content_hash(files, {"x": 1})
    copy = tmp_path / "elsewhere" / "b"
    shutil.copytree(root, copy)
    copied = [f for v in list_videos(copy) for f in list_frames(v)]
    assert content_hash(copied, {"x": 1}) == key
    assert content_hash(files, {"x": 2}) != key
    assert content_hash(files[:-1], {"x": 1}) != key
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(copied[0])
    assert content_hash(copied, {"x": 1}) != key


# ---------------------------------------------------------------------------------------------
# detectors


def test_tiny_detectors_are_deterministic_torchscript(tmp_path):
    for kind in ["inception", "i3d"]:
        sha_a = write_tiny_detector(kind, tmp_path / f"{kind}_a.pt", seed=3)
        sha_b = write_tiny_detector(kind, tmp_path / f"{kind}_b.pt", seed=3)
        sha_c = write_tiny_detector(kind, tmp_path / f"{kind}_c.pt", seed=4)
        assert (tmp_path / f"{kind}_a.pt").read_bytes() == (tmp_path / f"{kind}_b.pt").read_bytes()
        assert sha_a == sha_b == sha256_file(tmp_path / f"{kind}_a.pt")
        assert sha_c != sha_a
        assert isinstance(load_detector(tmp_path / f"{kind}_a.pt", sha_a), torch.jit.ScriptModule)
    with pytest.raises(ValueError, match="kind"):
        write_tiny_detector("vgg", tmp_path / "vgg.pt", seed=0)


def test_tiny_detector_bytes_do_not_depend_on_the_python_hash_seed(tmp_path):
    sha = write_tiny_detector("inception", tmp_path / "here.pt", seed=5)
    code = (
        "import sys; from echogen.metrics.detectors import write_tiny_detector; "
        "print(write_tiny_detector('inception', sys.argv[1], seed=5))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "there.pt")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == sha


def test_tiny_inception_call_signature_and_outputs(nets):
    net = nets["inception"]
    rng = np.random.default_rng(0)
    for size in [(24, 24), (40, 31)]:
        img = torch.from_numpy(rng.integers(0, 256, (5, 3, *size)).astype(np.uint8))
        features = net(img, return_features=True)
        probs = net(img, no_output_bias=True)
        assert features.shape == (5, TINY_INCEPTION_FEATURES)
        assert probs.shape == (5, TINY_INCEPTION_CLASSES)
        torch.testing.assert_close(probs.sum(1), torch.ones(5))
        assert not torch.allclose(probs, net(img))  # the default keeps the output bias
        torch.testing.assert_close(net(img, return_features=True), features, rtol=0, atol=0)
    with pytest.raises(Exception, match="uint8"):
        net(img.float(), return_features=True)


def test_tiny_i3d_call_signature_and_outputs(nets):
    net = nets["i3d"]
    rng = np.random.default_rng(0)
    for frames in [4, 16]:
        video = torch.from_numpy(rng.integers(0, 256, (3, 3, frames, 20, 28)).astype(np.uint8))
        logits = net(video, rescale=True, resize=True, return_features=True)
        assert logits.shape == (3, TINY_I3D_FEATURES)
        probs = net(video, rescale=True, resize=True, return_features=False)
        torch.testing.assert_close(probs, torch.softmax(logits, dim=1))
    with pytest.raises(Exception, match="uint8"):
        net(video.float(), rescale=True, resize=True, return_features=True)


def test_load_detector_errors_name_the_fix(tmp_path, detector_files):
    with pytest.raises(DataError, match="download_weights"):
        load_detector(tmp_path / "absent.pt", None)
    path = detector_files["inception"]["path"]
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        load_detector(path, wrong)
    assert wrong in str(err.value) and detector_files["inception"]["sha256"] in str(err.value)


# ---------------------------------------------------------------------------------------------
# end to end with tiny detectors


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict:
    """Real videos of exactly 8 frames, a slightly perturbed copy, and pure noise."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("sets")
    real = moving_videos(rng, [8] * 20)
    return {
        "videos": real,
        "real": write_set(root / "real", real),
        "close": write_set(root / "close", perturbed(rng, real, 3)),
        "noise": write_set(root / "noise", noise_like(rng, real)),
    }


def test_a_set_against_itself_scores_zero_and_noise_scores_worst(sets, detector_files):
    metrics = ["fid1k_full", "fvd20_8f"]
    runs = {
        name: evaluate_generation(
            sets["real"], sets[name], metrics, detector_files, cache_dir=None, seed=0
        )["metrics"]
        for name in ["real", "close", "noise"]
    }
    for metric in metrics:
        scale = runs["noise"][metric]
        assert abs(runs["real"][metric]) <= 1e-6 * scale
        assert 0 < runs["close"][metric] < scale


def test_fid_matches_an_independent_computation(tmp_path, detector_files, nets):
    rng = np.random.default_rng(1)
    real = moving_videos(rng, [12] * 8 + [7] * 3)
    fake = perturbed(rng, moving_videos(rng, [48] * 21), 20)  # 1,008 frames: fid1k cuts video 20
    write_set(tmp_path / "real", real)
    write_set(tmp_path / "fake", fake, padded=False)
    record = evaluate_generation(
        tmp_path / "real", tmp_path / "fake", ["fid1k_full"], detector_files, None, seed=0
    )
    fake_frames = np.concatenate(fake)[:1000]  # sorted videos, frames in numeric order
    expected = reference_fd(
        inception_features(nets["inception"], np.concatenate(real)),
        inception_features(nets["inception"], fake_frames),
    )
    assert record["metrics"]["fid1k_full"] == pytest.approx(expected, rel=1e-5)
    detail = record["details"]["fid1k_full"]
    assert (detail["n_real"], detail["n_fake"], detail["frames"]) == (117, 1000, None)
    assert detail["resolution"] == {"real": [SIZE, SIZE], "fake": [SIZE, SIZE]}
    inception = detector_files["inception"]
    assert record["detectors"] == {
        "inception": {
            "path": inception["path"],
            "sha256": inception["sha256"],
            "sha256_pinned": inception["sha256"],
            "source": "tiny",
        }
    }
    assert record["verified"] == {"inception": False}  # a tiny stand-in, pinned or not
    assert detail["warning"] is None and record["warnings"] == []  # 1000 fake frames: fid1k


def test_kid_matches_torchmetrics_on_whole_sets():
    """With one subset as large as both sets, KID is the unbiased MMD² of the whole sets:
    torchmetrics' KernelInceptionDistance with the same kernel must agree."""
    from torchmetrics.image.kid import poly_mmd

    from echogen.metrics.frechet import kernel_inception_distance

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 16)), rng.normal(0.3, 1.2, size=(40, 16))
    ours = kernel_inception_distance(real, fake, num_subsets=1, max_subset_size=40)
    theirs = poly_mmd(torch.from_numpy(real), torch.from_numpy(fake), degree=3, coef=1.0)
    assert ours == pytest.approx(float(theirs), rel=1e-9)
    close = real + rng.normal(0, 0.1, size=real.shape)
    assert kernel_inception_distance(real, close, num_subsets=3, max_subset_size=20) < ours
    with pytest.raises(ValueError, match="at least 2 items"):
        kernel_inception_distance(real[:1], fake)


def test_kid_in_a_metric_record_matches_an_independent_computation(tmp_path, detector_files, nets):
    from echogen.metrics.frechet import kernel_inception_distance

    rng = np.random.default_rng(2)
    real, fake = moving_videos(rng, [3] * 6), perturbed(rng, moving_videos(rng, [2] * 7), 20)
    write_set(tmp_path / "real", real)
    write_set(tmp_path / "fake", fake)
    record = evaluate_generation(tmp_path / "real", tmp_path / "fake", ["kid1k_full"],
                                 detector_files, str(tmp_path / "cache"), seed=5)  # fmt: skip
    expected = kernel_inception_distance(
        inception_features(nets["inception"], np.concatenate(real)),
        inception_features(nets["inception"], np.concatenate(fake)), seed=5,
    )  # fmt: skip
    assert record["metrics"]["kid1k_full"] == pytest.approx(expected, rel=1e-6)
    again = evaluate_generation(tmp_path / "real", tmp_path / "fake", ["kid1k_full"],
                                detector_files, str(tmp_path / "cache"), seed=5)  # fmt: skip
    assert again["metrics"] == record["metrics"]  # the cached real features give the same KID


def _imagemagick() -> bool:
    if shutil.which("convert") is None:
        return False
    result = subprocess.run(["convert", "-version"], capture_output=True, text=True)
    return "ImageMagick" in result.stdout and result.returncode == 0


@pytest.mark.skipif(not _imagemagick(), reason="ImageMagick's convert is absent")
@pytest.mark.parametrize(("height", "width", "size"), [(112, 112, 128), (5, 8, 10)])
def test_padding_matches_imagemagick_centre_extent(tmp_path, height, width, size):
    """EchoDiffusion pads its frames with `convert -background black -gravity center -extent`."""
    frame = np.random.default_rng(0).integers(1, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "in.png")
    subprocess.run(
        ["convert", tmp_path / "in.png", "-background", "black", "-gravity", "center",
         "-extent", f"{size}x{size}", "+repage", tmp_path / "out.png"],
        check=True,
    )  # fmt: skip
    expected = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    assert np.array_equal(pad_frames(frame[None], size)[0], expected)
    with pytest.raises(DataError, match=f"do not fit a {height - 1}x{height - 1} canvas"):
        pad_frames(frame[None], height - 1)


def test_padded_fid_and_fvd_match_an_independent_computation(tmp_path, detector_files, nets):
    rng = np.random.default_rng(4)
    real = moving_videos(rng, [8] * 6)
    fake = perturbed(rng, moving_videos(rng, [8] * 5), 20)
    write_set(tmp_path / "real", real)
    write_set(tmp_path / "fake", fake)
    metrics = ["fid1k_full", "fvd10_8f"]
    record = evaluate_generation(
        tmp_path / "real", tmp_path / "fake", metrics, detector_files, tmp_path / "cache",
        seed=0, pad_to=SIZE + 8,
    )  # fmt: skip

    def padded(frames):  # (N, H, W) grey, 4 black pixels on every side
        return np.pad(frames, ((0, 0), (4, 4), (4, 4)))

    expected_fid = reference_fd(
        inception_features(nets["inception"], padded(np.concatenate(real))),
        inception_features(nets["inception"], padded(np.concatenate(fake))),
    )
    assert record["metrics"]["fid1k_full"] == pytest.approx(expected_fid, rel=1e-5)
    expected_fvd = reference_fd(
        i3d_features(nets["i3d"], [padded(v) for v in real]),
        i3d_features(nets["i3d"], [padded(v) for v in fake]),
    )
    assert record["metrics"]["fvd10_8f"] == pytest.approx(expected_fvd, rel=1e-5)
    assert all(record["details"][m]["pad_to"] == SIZE + 8 for m in metrics)
    plain = evaluate_generation(
        tmp_path / "real", tmp_path / "fake", metrics, detector_files, tmp_path / "cache", seed=0
    )
    assert "pad_to" not in plain["details"]["fid1k_full"]
    assert plain["metrics"]["fid1k_full"] != pytest.approx(expected_fid, rel=1e-3)
    # Padded and plain statistics are cached apart: two entries per metric.
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4


def test_inception_score_matches_an_independent_computation(tmp_path, detector_files, nets):
    rng = np.random.default_rng(2)
    fake = noise_like(rng, moving_videos(rng, [11] * 5))  # 55 frames: uneven splits
    write_set(tmp_path / "fake", fake, padded=False)
    record = evaluate_generation(
        tmp_path / "missing_real_is_not_read",
        tmp_path / "fake",
        ["is1k"],
        detector_files,
        cache_dir=None,
        seed=0,
        batch_size=8,
    )
    with torch.no_grad():
        probs = nets["inception"](rgb(np.concatenate(fake)), no_output_bias=True).double().numpy()
    n, scores = len(probs), []
    for k in range(10):
        part = probs[k * n // 10 : (k + 1) * n // 10]
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    assert record["metrics"]["is1k_mean"] == pytest.approx(np.mean(scores), rel=1e-6)
    assert record["metrics"]["is1k_std"] == pytest.approx(np.std(scores), rel=1e-4)
    assert record["metrics"]["is1k_mean"] > 1.01  # the tiny classifier is not degenerate
    assert record["details"]["is1k"]["n_fake"] == 55


def test_fvd_windows_drops_and_value_match_an_independent_computation(
    tmp_path, detector_files, nets
):
    rng = np.random.default_rng(3)
    real_lengths = [9, 3, 12, 5, 2, 15, 8, 4] * 4  # 12 shorter than 5 frames
    fake_lengths = [5, 4, 7, 6, 9, 6, 3, 5] * 4  # 8 shorter than 5 frames
    real = moving_videos(rng, real_lengths)
    fake = perturbed(rng, moving_videos(rng, fake_lengths), 30)
    write_set(tmp_path / "real", real, padded=False)
    write_set(tmp_path / "fake", fake)

    def run(seed):
        return evaluate_generation(
            tmp_path / "real",
            tmp_path / "fake",
            ["fvd18_5f"],
            detector_files,
            None,
            seed,
            batch_size=16,
        )

    record = run(seed=7)
    real_clips = []
    for index, video in enumerate(real):
        if len(video) >= 5 and len(real_clips) < 18:
            start = np.random.default_rng([7, index]).integers(0, len(video) - 5 + 1)
            real_clips.append(video[start : start + 5])
    fake_clips = [video[:5] for video in fake if len(video) >= 5][:18]
    expected = reference_fd(
        i3d_features(nets["i3d"], real_clips), i3d_features(nets["i3d"], fake_clips)
    )
    assert record["metrics"]["fvd18_5f"] == pytest.approx(expected, rel=1e-5)
    detail = record["details"]["fvd18_5f"]
    assert (detail["n_real"], detail["n_fake"], detail["frames"]) == (18, 18, 5)
    assert (detail["dropped_short_real"], detail["dropped_short_fake"]) == (12, 8)
    assert "random 5-frame window" in detail["window_policy"]
    assert run(seed=8)["metrics"]["fvd18_5f"] != record["metrics"]["fvd18_5f"]


def test_unpadded_frame_names_give_the_numeric_order_not_the_string_order(
    tmp_path, sets, detector_files
):
    rng = np.random.default_rng(4)
    videos = perturbed(rng, moving_videos(rng, [12] * 20), 10)
    # What string sorting of 1.png .. 12.png would read: 1, 10, 11, 12, 2, 3, ...
    string_order = [int(s) - 1 for s in sorted(str(t) for t in range(1, 13))]
    write_set(tmp_path / "padded", videos, padded=True)
    write_set(tmp_path / "unpadded", videos, padded=False)
    write_set(tmp_path / "scrambled", [v[string_order] for v in videos], padded=True)
    values = {
        name: evaluate_generation(
            sets["real"], tmp_path / name, ["fvd20_4f", "fid1k_full"], detector_files, None, 0
        )["metrics"]
        for name in ["padded", "unpadded", "scrambled"]
    }
    assert values["unpadded"] == values["padded"]
    assert values["scrambled"]["fvd20_4f"] != pytest.approx(values["unpadded"]["fvd20_4f"])


def test_real_statistics_cache_is_keyed_by_content(tmp_path, sets, detector_files, caplog):
    caplog.set_level(logging.INFO, logger="echogen.metrics.generation")
    cache = tmp_path / "cache"
    real = tmp_path / "real"
    shutil.copytree(sets["real"], real)
    metrics = ["fid1k_full", "fvd20_6f"]

    def run(real_dir, detectors=detector_files):
        caplog.clear()
        record = evaluate_generation(real_dir, sets["close"], metrics, detectors, str(cache), 0)
        hits = [
            m
            for m in metrics
            if any(f"{m}: real statistics cache hit" in r.message for r in caplog.records)
        ]
        return record["metrics"], hits

    first, hits = run(real)
    assert hits == [] and len(list(cache.glob("*.npz"))) == 2  # real sets only, never fake
    second, hits = run(real)
    assert hits == metrics and second == first
    # A renamed copy of the same files hits: the key is the content, not the folder name.
    shutil.copytree(real, tmp_path / "renamed")
    assert run(tmp_path / "renamed")[1] == metrics
    # Another detector misses.
    other = dict(detector_files)
    other_path = tmp_path / "other_inception.pt"
    other["inception"] = {"path": str(other_path), "sha256": None}
    write_tiny_detector("inception", other_path, seed=1)
    assert run(real, other)[1] == ["fvd20_6f"]
    # Editing one frame changes the key of every metric that reads it.
    frame = list_frames(list_videos(real)[0])[0]
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(frame)
    edited, hits = run(real)
    assert "fid1k_full" not in hits
    assert edited["fid1k_full"] != first["fid1k_full"]
    assert len(list(cache.glob("*.npz"))) >= 4


def test_metric_table_files(tmp_path, sets, detector_files, monkeypatch):
    record = evaluate_generation(
        sets["real"], sets["close"], ["fid1k_full", "is1k", "fvd20_8f"], detector_files, None, 3
    )
    write_metric_table(record, tmp_path / "table.txt", tmp_path / "table.json")
    assert json.loads((tmp_path / "table.json").read_text()) == record
    lines = (tmp_path / "table.txt").read_text().splitlines()
    assert lines[0].startswith("PLUMBING CHECK: the weights of i3d, inception are not verified")
    for name in ["fid1k_full", "is1k_mean", "is1k_std", "fvd20_8f"]:
        assert any(line.startswith(f"{name}: ") for line in lines)
    assert "seed: 3" in lines
    assert any(detector_files["i3d"]["sha256"] in line for line in lines)
    # 160 fake frames for fid1k_full and is1k, and 20 videos a side for fvd20_8f.
    assert [line.split(":")[1].strip() for line in lines if line.startswith("WARNING")] == [
        "fid1k_full",
        "is1k",
    ]
    assert "160 fake frames, fewer than the 1000" in record["details"]["fid1k_full"]["warning"]
    assert record["details"]["fvd20_8f"]["warning"] is None

    # A record without the verdicts (written before them) falls back to the published hashes.
    old = {k: v for k, v in record.items() if k != "verified"}
    old["detectors"] = {
        n: {**d, "source": None, "sha256_pinned": None} for n, d in record["detectors"].items()
    }
    for name, detector in detector_files.items():
        monkeypatch.setitem(detectors_module.PUBLISHED_SHA256, name, detector["sha256"])
    write_metric_table(old, tmp_path / "table.txt", tmp_path / "table.json")
    assert "PLUMBING CHECK" not in (tmp_path / "table.txt").read_text()


def test_a_detector_pinned_in_the_config_is_verified(tmp_path, sets, detector_files):
    """A (non-tiny) detector file whose SHA-256 the config pins is verified: its table has
    no PLUMBING CHECK line. Unpinned, or pinned to another hash, it is not, and the json
    says which network and both hashes."""
    inception = {"path": detector_files["inception"]["path"], "source": "url"}
    actual = detector_files["inception"]["sha256"]

    def table(sha256):
        detectors = {"inception": {**inception, "sha256": sha256}}
        record = evaluate_generation(sets["real"], sets["close"], ["is1k"], detectors, None, 0)
        write_metric_table(record, tmp_path / "t.txt", tmp_path / "t.json")
        return (tmp_path / "t.txt").read_text(), json.loads((tmp_path / "t.json").read_text())

    text, record = table(actual)
    assert "PLUMBING CHECK" not in text and record["verified"] == {"inception": True}
    assert f"pinned {actual}" in text
    text, record = table(None)
    assert text.startswith("PLUMBING CHECK: the weights of inception") and not any(
        record["verified"].values()
    )
    text, record = table("0" * 64)
    assert text.startswith("PLUMBING CHECK: the weights of inception")
    assert record["verified"] == {"inception": False}
    assert record["detectors"]["inception"]["sha256"] == actual
    assert record["detectors"]["inception"]["sha256_pinned"] == "0" * 64


def test_bad_requests_are_refused(tmp_path, sets, detector_files):
    def run(metrics, detectors=detector_files, fake=sets["close"], seed=0):
        return evaluate_generation(sets["real"], fake, metrics, detectors, None, seed)

    with pytest.raises(ValueError, match="unknown metric"):
        run(["fid50k"])
    with pytest.raises(ValueError, match="i3d"):
        run(["fvd20_8f"], {"inception": detector_files["inception"]})
    with pytest.raises(ValueError, match="seed"):
        run(["fid1k_full"], seed=-1)
    with pytest.raises(DataError, match="at least 9 frames"):
        run(["fvd20_9f"])
    few = write_set(tmp_path / "few", moving_videos(np.random.default_rng(0), [4, 4]))
    with pytest.raises(DataError, match="fewer than the 10 IS splits"):
        run(["is1k"], fake=few)


def test_every_table_records_the_reference_policy(tmp_path):
    """The index beside a reference set names its policy; the record and the table carry it."""
    import pandas as pd

    from echogen.metrics.generation import metric_record

    (tmp_path / "ref").mkdir()
    pd.DataFrame(
        {"FileName": ["a", "b"], "start": [0, 0], "frames": [16, 16], "policy": "echonet_synthetic"}
    ).to_csv(tmp_path / "ref.csv", index=False)
    record = metric_record(tmp_path / "ref", tmp_path / "fake", seed=0)
    assert record["reference"] == {
        "index": str(tmp_path / "ref.csv"),
        "policy": "echonet_synthetic",
        "videos": 2,
        "frames": [16],
    }
    write_metric_table(record, tmp_path / "t.txt", tmp_path / "t.json")
    text = (tmp_path / "t.txt").read_text()
    assert "real reference: policy echonet_synthetic, 2 videos of 16 frames" in text
    # An index written before policies were recorded: the only policy there was.
    pd.DataFrame({"FileName": ["a"], "frames": [128]}).to_csv(tmp_path / "ref.csv", index=False)
    assert metric_record(tmp_path / "ref", "f", 0)["reference"]["policy"] == "seeded_windows"
    # A folder without an index (not an echogen set) says so.
    record = metric_record(tmp_path / "other", tmp_path / "fake", seed=0)
    write_metric_table(record, tmp_path / "u.txt", tmp_path / "u.json")
    assert record["reference"] is None
    assert "policy not recorded" in (tmp_path / "u.txt").read_text()


def test_tables_say_where_the_conditioning_frames_came_from(tmp_path):
    """The sampling.json beside a fake frame folder says whether its videos animate real
    TRAIN frames; the table flags those as non-private at the top."""
    import json

    from echogen.metrics.generation import metric_record

    fake = tmp_path / "samples" / "frames"
    fake.mkdir(parents=True)
    real = {"frames": "real", "private": False, "source": "resources/latents/d/index.csv"}
    (fake.parent / "sampling.json").write_text(json.dumps({"conditioning": real}))
    record = metric_record(tmp_path / "ref", fake, seed=0)
    assert record["conditioning"] == real
    write_metric_table(record, tmp_path / "t.txt", tmp_path / "t.json")
    lines = (tmp_path / "t.txt").read_text().splitlines()
    assert lines[0] == "NON-PRIVATE: the generated videos animate real TRAIN frames"
    assert "conditioning frames: non-private (resources/latents/d/index.csv)" in lines
    kept = {"frames": "synthetic", "private": True, "source": "results/privacy/x/FileList.csv"}
    (fake.parent / "sampling.json").write_text(json.dumps({"conditioning": kept}))
    write_metric_table(metric_record("r", fake, 0), tmp_path / "p.txt", tmp_path / "p.json")
    text = (tmp_path / "p.txt").read_text()
    assert "NON-PRIVATE" not in text and "conditioning frames: private" in text
    # No sampling record (another system): no line at all.
    write_metric_table(
        metric_record("r", tmp_path / "x", 0), tmp_path / "n.txt", tmp_path / "n.json"
    )
    assert "conditioning frames" not in (tmp_path / "n.txt").read_text()
