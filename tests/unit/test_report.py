"""Report figures: the real/generated GIF strip, EF scatter, loss curves, metric HTML."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from echogen.data.errors import DataError
from echogen.data.frames import write_frames
from echogen.data.video import write_video
from echogen.metrics.generation import metric_record, write_metric_table
from echogen.report import ef_scatter, loss_curves, metric_summary_html, video_strip_gif

SIZE = 16


def _video(seed: int, frames: int) -> np.ndarray:
    """Blocky frames (8×8 blocks of one value) that survive JPEG almost untouched."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(frames, SIZE // 8, SIZE // 8), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8), dtype=np.uint8))


def _read_gif(path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        out = []
        for t in range(gif.n_frames):
            gif.seek(t)
            out.append(np.asarray(gif.convert("L")))
    return out


@pytest.fixture
def videos(tmp_path):
    """Four real frame folders with unpadded names (10 sorts after 9) and generated videos."""
    real, arrays = [], []
    for i, length in enumerate([12, 14, 12, 13, 15]):  # the 5th is beyond the row of 4
        video = _video(i, length)
        folder = tmp_path / "real" / f"video_{i}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(video):
            Image.fromarray(frame).save(folder / f"{t}.png")  # lossless, unpadded names
        real.append(folder)
        arrays.append(video)
    fake = []
    for i, length in enumerate([11, 16]):
        video = _video(100 + i, length)
        if i == 0:
            write_frames(video, tmp_path / "fake" / f"sample_{i}")
            fake.append(tmp_path / "fake" / f"sample_{i}")
        else:
            write_video(tmp_path / "fake" / f"sample_{i}.avi", video, fps=32)
            fake.append(tmp_path / "fake" / f"sample_{i}.avi")
    return real, arrays, fake


def test_gif_strip(tmp_path, videos):
    real, arrays, fake = videos
    out = tmp_path / "strip.gif"
    n = video_strip_gif(real, fake, out, frames=32, size=SIZE)
    assert n == 11  # the shortest shown video (a generated one)
    frames = _read_gif(out)
    assert len(frames) == 11
    assert frames[0].shape == (2 * SIZE, 4 * SIZE)
    for t in (0, 5, 10):
        # Top row: the real videos exactly (PNG frames, greyscale GIF); frame order numeric.
        for c in range(4):
            np.testing.assert_array_equal(frames[t][:SIZE, c * SIZE : (c + 1) * SIZE], arrays[c][t])
        # Bottom row: the generated videos (JPEG / MJPG, so close), then black padding.
        jpg = frames[t][SIZE:, :SIZE].astype(int)
        assert np.abs(jpg - _video(100, 11)[t]).mean() < 6
        avi = frames[t][SIZE:, SIZE : 2 * SIZE].astype(int)
        assert np.abs(avi - _video(101, 16)[t]).mean() < 12
        assert (frames[t][SIZE:, 2 * SIZE :] == 0).all()

    # frames caps the length; fewer videos make a narrower strip; output is deterministic.
    short = tmp_path / "short.gif"
    assert video_strip_gif(real[:2], fake[:1], short, frames=3, size=SIZE) == 3
    again = tmp_path / "again.gif"
    video_strip_gif(real[:2], fake[:1], again, frames=3, size=SIZE)
    assert short.read_bytes() == again.read_bytes()
    frames = _read_gif(short)
    assert len(frames) == 3 and frames[0].shape == (2 * SIZE, 2 * SIZE)
    np.testing.assert_array_equal(frames[2][:SIZE, SIZE : 2 * SIZE], arrays[1][2])


def test_gif_resizes_and_rejects_bad_input(tmp_path, videos):
    real, arrays, fake = videos
    out = tmp_path / "big.gif"
    video_strip_gif(real[:1], fake[:1], out, frames=4, size=32)
    frames = _read_gif(out)
    assert frames[0].shape == (64, 32)
    # Upscaling blocky 16² frames by 2 keeps each block's interior value.
    assert frames[1][5, 5] == arrays[0][1][2, 2]
    with pytest.raises(ValueError, match="need real and generated"):
        video_strip_gif(real, [], out)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder of frames"):
        video_strip_gif([tmp_path / "notes.txt"], fake, out)


def _assert_png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 0  # something is drawn
    return image.size


def test_ef_scatter(tmp_path):
    rng = np.random.default_rng(0)
    requested = rng.uniform(20, 75, 30)
    table = pd.DataFrame({"EF_requested": requested, "EF_predicted": requested + 3})
    table.to_csv(tmp_path / "per_video.csv", index=False)
    scores = ef_scatter(tmp_path / "per_video.csv", tmp_path / "a.png", "EF fidelity")
    assert scores["mae"] == pytest.approx(3.0)
    assert scores["n"] == 30
    _assert_png(tmp_path / "a.png")
    ef_scatter(table, tmp_path / "b.png", "EF fidelity")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()

    other = table.rename(columns={"EF_requested": "EF", "EF_predicted": "EF_pred_all"})
    ef_scatter(other, tmp_path / "c.png", "test", requested="EF", predicted="EF_pred_all")
    _assert_png(tmp_path / "c.png")
    with pytest.raises(DataError, match="missing"):
        ef_scatter(other, tmp_path / "d.png", "test")
    table.loc[4, "EF_predicted"] = np.nan
    with pytest.raises(DataError, match="not a finite number") as err:
        ef_scatter(table, tmp_path / "d.png", "test")
    assert err.value.row == 6
    assert not (tmp_path / "d.png").exists()


def test_loss_curves(tmp_path):
    steps = np.arange(0, 200, 10)
    pd.DataFrame(
        {
            "epoch": steps // 50,
            "step": steps,
            "train_loss": 100 * np.exp(-steps / 40),
            "val_loss": np.where(steps % 50 == 0, 90 * np.exp(-steps / 50), np.nan),
            "lr": 1e-3,
        }
    ).to_csv(tmp_path / "regressor.csv", index=False)
    pd.DataFrame({"step": steps, "g": np.sin(steps), "d": np.cos(steps), "note": "x"}).to_csv(
        tmp_path / "gan.csv", index=False
    )
    logs = {"regressor": tmp_path / "regressor.csv", "gan": tmp_path / "gan.csv"}
    loss_curves(logs, tmp_path / "curves.png")
    width, height = _assert_png(tmp_path / "curves.png")
    assert width > height  # two panels side by side
    loss_curves(logs, tmp_path / "again.png")
    assert (tmp_path / "curves.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    # A column subset draws a different figure.
    loss_curves(logs, tmp_path / "subset.png", columns=["train_loss", "g"])
    assert (tmp_path / "subset.png").read_bytes() != (tmp_path / "curves.png").read_bytes()

    with pytest.raises(DataError, match="none of the columns"):
        loss_curves({"gan": tmp_path / "gan.csv"}, tmp_path / "x.png", columns=["kl"])
    pd.DataFrame({"loss": [1.0, 0.5]}).to_csv(tmp_path / "nostep.csv", index=False)
    with pytest.raises(DataError, match="'step'"):
        loss_curves({"bad": tmp_path / "nostep.csv"}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _metric_files(tmp_path) -> list:
    """Two metric files as the compute_generation_metrics rule writes them."""
    published = metric_record(
        "real", "samples/ef", 0, {"fid50k_full": 12.3456789, "fvd2048_16f": 210.987654}
    )
    published["details"] = {
        "fid50k_full": {
            "n_real": 1000,
            "n_fake": 500,
            "frames": None,
            "resolution": {"real": [112, 112], "fake": [112, 112]},
        },
        "fvd2048_16f": {
            "n_real": 40,
            "n_fake": 32,
            "frames": 16,
            "resolution": {"real": [112, 112], "fake": [112, 112]},
        },
    }
    published["detectors"] = {"inception": {"path": "inc.pt", "sha256": "aa"}}
    published["published"] = {"inception": True}
    tiny = metric_record(
        "real", "samples/demo", 1, {"is50k_mean": 1.2345, "is50k_std": 0.0321, "ssim": 0.5678}
    )
    tiny["details"] = {
        "is50k": {
            "n_real": None,
            "n_fake": 77,
            "frames": None,
            "resolution": {"real": None, "fake": [64, 64]},
        },
        "ssim": {"n_pairs": 9, "frames_per_pair": [16, 16]},
    }
    tiny["detectors"] = {"inception": {"path": "tiny.pt", "sha256": "bb"}}
    tiny["published"] = {"inception": False}
    paths = []
    for name, record in (("lvdm_ef", published), ("lvdm_demo", tiny)):
        paths.append(tmp_path / "metrics" / f"{name}.json")
        write_metric_table(record, tmp_path / "metrics" / f"{name}.txt", paths[-1])
    return paths


def test_metric_summary_html(tmp_path):
    paths = _metric_files(tmp_path)
    out = tmp_path / "metrics.html"
    metric_summary_html(paths, out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for value in ("12.3457", "210.988", "1.2345", "0.0321", "0.5678"):
        assert value in page
    for count in ("1000", "500", "40", "32", "77", "9"):
        assert f"<td>{count}</td>" in page
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    summary = [r for r in rows if r.startswith("<td>lvdm_")][:2]
    assert "lvdm_ef" in summary[0] and "published weights" in summary[0]
    assert "lvdm_demo" in summary[1] and "PLUMBING CHECK (inception)" in summary[1]
    detail = [r for r in rows if "<td>fvd2048_16f</td>" in r]
    assert len(detail) == 1 and "<td>40</td><td>32</td><td>16</td>" in detail[0]
    assert "<td>112×112</td>" in detail[0]
    metric_summary_html(paths, tmp_path / "again.html")
    assert (tmp_path / "again.html").read_text() == page

    (tmp_path / "bad.json").write_text('{"metrics": {}}')
    with pytest.raises(DataError, match="missing"):
        metric_summary_html([tmp_path / "bad.json"], tmp_path / "x.html")
