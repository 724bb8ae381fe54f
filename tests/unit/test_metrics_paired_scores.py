"""Paired (SSIM, LPIPS) and score (EF, classification) metrics vs independent references."""

from __future__ import annotations

import hashlib

import lpips as lpips_package
import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import structural_similarity
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from torchmetrics.functional.image import structural_similarity_index_measure

from echogen.data.errors import DataError
from echogen.metrics.paired import (
    LPIPS,
    RANDOM_TRUNK_SEED,
    aggregate,
    paired_video_metrics,
    ssim,
)
from echogen.metrics.scores import (
    bootstrap_ci,
    classification_metrics,
    ef_metrics,
    ef_report,
)

torch.set_num_threads(2)
# The reference lpips models below go through torchvision's deprecated `pretrained=` path.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated since 0.13:UserWarning")


def _image_pair(seed: int, shape: tuple[int, ...], dtype=torch.float64):
    """A smooth-ish image and a noisy copy, both in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)  # local structure
    y = (x + 0.1 * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


# --------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("shape", [(3, 1, 40, 40), (2, 3, 32, 48)])
def test_ssim_valid_matches_skimage(shape):
    x, y = _image_pair(0, shape)
    ours = ssim(x, y, data_range=1.0)
    assert ours.shape == (shape[0],)
    for i in range(shape[0]):
        reference = structural_similarity(
            x[i].numpy(),
            y[i].numpy(),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=0,
        )
        assert ours[i].item() == pytest.approx(reference, abs=1e-9)


def test_ssim_valid_matches_torchmetrics_interior():
    # torchmetrics >= #2721 reflect-pads; the interior of its SSIM map is the valid map.
    x, y = _image_pair(1, (2, 3, 36, 30))
    _, full_map = structural_similarity_index_measure(
        x, y, data_range=1.0, reduction="none", return_full_image=True
    )
    reference = full_map[..., 5:-5, 5:-5].flatten(1).mean(1)
    torch.testing.assert_close(ssim(x, y), reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_ssim_reflect_matches_torchmetrics_default(dtype, atol):
    x, y = _image_pair(2, (3, 3, 33, 40), dtype=dtype)
    reference = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")
    ours = ssim(x, y, border="reflect")
    torch.testing.assert_close(ours, reference.double(), rtol=0, atol=atol)
    # The two border conventions really differ, so the choice matters.
    assert (ours - ssim(x, y)).abs().max() > 1e-4


def test_ssim_identity_range_and_errors():
    x, y = _image_pair(3, (2, 1, 24, 24))
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (ssim(x, y) < 0.99).all()
    # data_range scales C1/C2 with the values: same SSIM on a 0..255 scale.
    torch.testing.assert_close(ssim(255 * x, 255 * y, data_range=255.0), ssim(x, y))
    with pytest.raises(ValueError, match="H and W"):
        ssim(x[..., :10, :], y[..., :10, :])
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, y[:1])
    with pytest.raises(ValueError, match="border"):
        ssim(x, y, border="same")


# --------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def alex_random():
    return LPIPS(net="alex")


@pytest.fixture(scope="module")
def vgg_random():
    return LPIPS(net="vgg")


def _minus1_1(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


@pytest.mark.parametrize("which", ["alex_random", "vgg_random"])
def test_lpips_identity_shape_and_flag(which, request):
    metric = request.getfixturevalue(which)
    x, y = _minus1_1(0, (3, 3, 48, 48)), _minus1_1(1, (3, 3, 48, 48))
    distance = metric(x, y)
    assert distance.shape == (3,)
    assert (distance > 0).all()
    assert torch.equal(metric(x, x), torch.zeros(3))
    assert metric.is_published is False and metric.trunk_sha256 is None


def test_lpips_grey_is_repeated_to_rgb(alex_random):
    x, y = _minus1_1(2, (2, 1, 64, 64)), _minus1_1(3, (2, 1, 64, 64))
    torch.testing.assert_close(
        alex_random(x, y), alex_random(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1))
    )


def test_lpips_random_trunk_is_the_packages_seeded_model(alex_random):
    state = torch.get_rng_state()
    LPIPS(net="alex")
    assert torch.equal(torch.get_rng_state(), state), "global RNG must be left alone"
    torch.manual_seed(RANDOM_TRUNK_SEED)
    reference = lpips_package.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    x, y = _minus1_1(4, (2, 3, 64, 64)), _minus1_1(5, (2, 3, 64, 64))
    with torch.no_grad():
        expected = reference(x, y).flatten()
    torch.testing.assert_close(alex_random(x, y), expected, rtol=0, atol=0)


def test_lpips_rejects_bad_inputs(alex_random):
    x = _minus1_1(6, (1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        alex_random(x, (x + 1) / 2 * 255)
    with pytest.raises(ValueError, match="same shape"):
        alex_random(x, x[:, :1])
    with pytest.raises(ValueError, match="net"):
        LPIPS(net="squeeze")


def _copy_convs_in_order(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Independent of key names: the i-th conv of the trunk gets the i-th conv's weights."""
    src = [m for m in source.modules() if isinstance(m, torch.nn.Conv2d)]
    dst = [m for m in target.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(src) == len(dst)
    with torch.no_grad():
        for s, d in zip(src, dst, strict=True):
            d.weight.copy_(s.weight)
            d.bias.copy_(s.bias)


@pytest.mark.parametrize(
    "net,arch,full_model",
    [("alex", "alexnet", True), ("vgg", "vgg16", False)],
    ids=["alexnet-full-model-file", "vgg16-features-file"],
)
def test_lpips_loads_local_torchvision_trunk(tmp_path, net, arch, full_model, request):
    torch.manual_seed(123)
    trunk = getattr(torchvision.models, arch)(weights=None)
    path = tmp_path / f"{arch}.pth"
    torch.save(trunk.state_dict() if full_model else trunk.features.state_dict(), path)

    loaded = LPIPS(net=net, weights=path)
    reference = lpips_package.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    _copy_convs_in_order(trunk.features, reference.net)

    x, y = _minus1_1(7, (2, 3, 64, 64)), _minus1_1(8, (2, 3, 64, 64))
    with torch.no_grad():
        expected = reference(x, y).flatten()
    torch.testing.assert_close(loaded(x, y), expected, rtol=1e-6, atol=1e-7)
    random_trunk = request.getfixturevalue(f"{net}_random")
    assert (loaded(x, y) - random_trunk(x, y)).abs().min() > 1e-4
    assert loaded.trunk_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.is_published is False  # random weights are not torchvision's published file


def test_lpips_bad_trunk_files(tmp_path):
    torch.manual_seed(0)
    alex = tmp_path / "alexnet_features.pth"
    torch.save(torchvision.models.alexnet(weights=None).features.state_dict(), alex)
    with pytest.raises(DataError, match="alexnet_features.pth.*vgg16 trunk"):
        LPIPS(net="vgg", weights=alex)
    with pytest.raises(DataError, match="missing.pth.*not found"):
        LPIPS(net="alex", weights=tmp_path / "missing.pth")


# --------------------------------------------------------------------------- paired videos


def _video_pair(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.integers(0, 256, size=shape).astype(np.float64)
    fake = np.clip(real + rng.normal(0, 30, size=shape), 0, 255)
    return real.astype(np.uint8), fake.astype(np.uint8)


def test_paired_video_metrics_grey_matches_per_frame_references(alex_random):
    # 35 frames > FRAME_CHUNK, so the chunked loop is exercised.
    real, fake = _video_pair(0, (35, 64, 64))
    record = paired_video_metrics(real, fake, lpips=alex_random)
    ssim_frames = [
        structural_similarity(
            r / 255.0,
            f / 255.0,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for r, f in zip(real, fake, strict=True)
    ]
    lpips_frames = [
        alex_random(
            torch.from_numpy(r / 127.5 - 1).float()[None, None],
            torch.from_numpy(f / 127.5 - 1).float()[None, None],
        ).item()
        for r, f in zip(real, fake, strict=True)
    ]
    assert record["frames"] == 35
    assert record["ssim"] == pytest.approx(np.mean(ssim_frames), abs=1e-9)
    assert record["lpips"] == pytest.approx(np.mean(lpips_frames), rel=1e-5)


def test_paired_video_metrics_rgb_identity_and_errors(alex_random):
    real, fake = _video_pair(1, (3, 32, 40, 3))
    record = paired_video_metrics(real, fake)
    expected = np.mean(
        [
            structural_similarity(
                r / 255.0,
                f / 255.0,
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                channel_axis=-1,
            )
            for r, f in zip(real, fake, strict=True)
        ]
    )
    assert record["ssim"] == pytest.approx(expected, abs=1e-9)
    assert record["lpips"] is None
    same = paired_video_metrics(real, real, lpips=alex_random)
    assert same["ssim"] == pytest.approx(1.0, abs=1e-12) and same["lpips"] == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        paired_video_metrics(real, fake[:2])
    with pytest.raises(ValueError, match="uint8"):
        paired_video_metrics(real.astype(np.float32), fake)


def test_aggregate():
    pairs = [(0.5, 0.2), (0.7, 0.1), (0.6, 0.6)]
    records = [{"ssim": s, "lpips": p, "frames": 4} for s, p in pairs]
    summary = aggregate(records)
    assert summary["ssim"] == pytest.approx({"mean": 0.6, "std": np.std([0.5, 0.7, 0.6]), "n": 3})
    assert summary["lpips"]["mean"] == pytest.approx(0.3)
    assert set(aggregate([{"ssim": 0.5, "lpips": None, "frames": 4}])) == {"ssim"}
    with pytest.raises(ValueError, match="lpips is missing"):
        aggregate([records[0], {"ssim": 0.5, "lpips": None, "frames": 4}])
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])


# --------------------------------------------------------------------------- EF scores


def _ef_pairs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.uniform(15, 80, size=n)
    return y_true, y_true + rng.normal(0, 5, size=n)


def test_ef_metrics_match_sklearn():
    y_true, y_pred = _ef_pairs(0, 200)
    scores = ef_metrics(y_true, y_pred)
    assert scores["n"] == 200
    assert scores["mae"] == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-12)
    assert scores["rmse"] == pytest.approx(root_mean_squared_error(y_true, y_pred), rel=1e-12)
    assert scores["r2"] == pytest.approx(r2_score(y_true, y_pred), rel=1e-12)
    # Constant targets follow sklearn's finite convention (1 if perfect, else 0).
    for y_pred_const in ([50.0, 50.0, 50.0], [49.0, 50.0, 51.0]):
        assert ef_metrics([50.0] * 3, y_pred_const)["r2"] == r2_score([50.0] * 3, y_pred_const)


def test_ef_metrics_bad_inputs_name_the_index():
    with pytest.raises(ValueError, match="y_pred is not finite at index 2"):
        ef_metrics([1.0, 2.0, 3.0], [1.0, 2.0, np.nan])
    with pytest.raises(ValueError, match="3 values but y_pred has 2"):
        ef_metrics([1.0, 2.0, 3.0], [1.0, 2.0])


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    y_true, y_pred = _ef_pairs(1, 300)
    point = ef_metrics(y_true, y_pred)
    for name in ("mae", "rmse", "r2"):
        fn = {
            "mae": mean_absolute_error,
            "rmse": root_mean_squared_error,
            "r2": r2_score,
        }[name]
        low, high = bootstrap_ci(fn, y_true, y_pred, n_boot=1000, seed=3)
        assert low < point[name] < high
        assert (low, high) == bootstrap_ci(fn, y_true, y_pred, n_boot=1000, seed=3)
        assert (low, high) != bootstrap_ci(fn, y_true, y_pred, n_boot=1000, seed=4)
        narrow = bootstrap_ci(fn, y_true, y_pred, n_boot=1000, seed=3, alpha=0.5)
        assert low < narrow[0] < narrow[1] < high


def test_bootstrap_ci_of_a_mean_matches_normal_theory():
    # For the mean error the 95% percentile interval approaches mean ± 1.96 sd / sqrt(n).
    y_true, y_pred = _ef_pairs(2, 400)
    error = y_pred - y_true
    half_width = 1.96 * error.std() / np.sqrt(len(error))
    low, high = bootstrap_ci(lambda t, p: float(np.mean(p - t)), y_true, y_pred, n_boot=4000)
    assert low == pytest.approx(error.mean() - half_width, abs=0.1 * half_width)
    assert high == pytest.approx(error.mean() + half_width, abs=0.1 * half_width)


def test_ef_report():
    y_true, y_pred = _ef_pairs(3, 100)
    report = ef_report(y_true, y_pred, n_boot=500, seed=7)
    point = ef_metrics(y_true, y_pred)
    assert report["n"] == 100 and report["n_boot"] == 500 and report["seed"] == 7
    for name, fn in (("mae", mean_absolute_error), ("r2", r2_score)):
        assert report[name]["value"] == pytest.approx(point[name])
        low, high = bootstrap_ci(fn, y_true, y_pred, n_boot=500, seed=7)
        assert report[name]["ci_low"] == pytest.approx(low)
        assert report[name]["ci_high"] == pytest.approx(high)


# --------------------------------------------------------------------------- classification


def test_binary_classification_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=150)
    # Rounded scores: many ties within and across classes.
    scores = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, size=150), 1), 0, 1)
    got = classification_metrics(y, scores)
    predicted = (scores > 0.5).astype(int)
    assert got["n"] == 150
    assert got["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, scores), rel=1e-12)
    # Hand values: one discordant pair of four; a tie counts one half.
    assert classification_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])["roc_auc"] == 0.75
    assert classification_metrics([0, 1], [0.5, 0.5])["roc_auc"] == 0.5


def test_multiclass_classification_matches_sklearn_ovr_macro_with_ties():
    rng = np.random.default_rng(1)
    palette = rng.dirichlet(np.ones(4), size=6)  # 6 distinct rows -> many tied scores
    y = rng.integers(0, 4, size=120)
    scores = palette[(y + rng.integers(0, 3, size=120)) % 6]
    got = classification_metrics(y, scores, n_classes=4)
    predicted = scores.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    expected = roc_auc_score(y, scores, multi_class="ovr", average="macro")
    assert got["roc_auc"] == pytest.approx(expected, rel=1e-12)


def test_classification_bad_inputs():
    with pytest.raises(ValueError, match=r"scores is not finite at index \(1,\)"):
        classification_metrics([0, 1, 1], [0.2, np.nan, 0.9])
    with pytest.raises(ValueError, match="y_true is not finite at index 0"):
        classification_metrics([np.nan, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="N = 3"):
        classification_metrics([0, 1, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match=r"y_true\[1\] = 2.0 is not a class"):
        classification_metrics([0, 2], [0.2, 0.9])
    with pytest.raises(ValueError, match=r"scores\[0\] = 1.5 is not a probability"):
        classification_metrics([0, 1], [1.5, 0.9])
    with pytest.raises(ValueError, match="ROC AUC is undefined"):
        classification_metrics([1, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="n_classes is 3"):
        classification_metrics([0, 1], [[0.5, 0.5], [0.1, 0.9]], n_classes=3)
