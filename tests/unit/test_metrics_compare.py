"""One comparison of two frame folders: generation + paired metrics in one record and table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from echogen.data.errors import DataError
from echogen.data.frames import write_frames
from echogen.metrics.compare import compare_frame_folders
from echogen.metrics.detectors import write_tiny_detector
from echogen.metrics.generation import write_metric_table
from echogen.metrics.paired import paired_video_metrics


def write_set(root, videos: dict[str, np.ndarray]):
    for name, frames in videos.items():
        write_frames(frames, root / name)
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("compare")
    real = {f"v{i:02d}": rng.integers(0, 256, (12, 32, 32), dtype=np.uint8) for i in range(10)}
    # Fake videos are 8-frame, slightly noisy copies; one has no real namesake.
    fake = {
        name: np.clip(v[:8].astype(int) + rng.integers(-20, 21, v[:8].shape), 0, 255).astype(
            np.uint8
        )
        for name, v in real.items()
    }
    fake["extra"] = fake["v00"]
    detectors = {}
    for kind in ("inception", "i3d"):
        path = root / f"{kind}.pt"
        detectors[kind] = {
            "path": str(path),
            "sha256": write_tiny_detector(kind, path, seed=0),
            "source": "tiny",
        }
    return {
        "real": write_set(root / "real", real),
        "fake": write_set(root / "fake", fake),
        "other": write_set(root / "other", {"unrelated": real["v00"]}),
        "detectors": detectors,
    }


def test_paired_and_generation_metrics_in_one_record(folders, tmp_path):
    record = compare_frame_folders(
        folders["real"],
        folders["fake"],
        ["fid1k_full", "fvd10_8f", "ssim", "lpips"],
        folders["detectors"],
        cache_dir=None,
        seed=0,
    )
    assert set(record["metrics"]) >= {"fid1k_full", "fvd10_8f", "ssim", "ssim_std", "lpips"}
    detail = record["details"]["ssim"]
    assert detail["n_pairs"] == 10 and detail["unmatched_fake"] == 1
    assert detail["frames_per_pair"] == [8, 8]
    # Paired SSIM equals the mean of per-video values computed directly from the jpg frames.
    from echogen.metrics.frame_folders import list_frames, load_frames

    values = []
    for i in range(10):
        real = load_frames(list_frames(folders["real"] / f"v{i:02d}"))[:8]
        fake = load_frames(list_frames(folders["fake"] / f"v{i:02d}"))
        values.append(paired_video_metrics(real, fake)["ssim"])
    assert record["metrics"]["ssim"] == pytest.approx(np.mean(values), rel=1e-9)
    assert 0 < record["metrics"]["ssim"] < 1 and record["metrics"]["lpips"] > 0
    # Tiny detectors and the random LPIPS trunk are never verified.
    assert record["verified"] == {"inception": False, "i3d": False, "lpips_vgg": False}
    assert record["tf32"] is False
    write_metric_table(record, tmp_path / "t.txt", tmp_path / "t.json")
    assert (tmp_path / "t.txt").read_text().startswith("PLUMBING CHECK")
    assert json.loads((tmp_path / "t.json").read_text())["metrics"]["ssim"] == pytest.approx(
        record["metrics"]["ssim"]
    )


def test_identical_folders_give_perfect_paired_scores(folders):
    record = compare_frame_folders(
        folders["real"],
        folders["real"],
        ["ssim", "lpips"],
        folders["detectors"],
        None,
        0,
        lpips_net="alex",
    )
    assert record["metrics"]["ssim"] == pytest.approx(1.0)
    assert record["metrics"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert record["detectors"] == {
        "lpips_alex": {"path": "random trunk", "sha256": None},
    }


def test_paired_metrics_need_namesakes(folders):
    with pytest.raises(DataError, match="no video folder has a namesake"):
        compare_frame_folders(folders["real"], folders["other"], ["ssim"], {}, None, 0)
