"""Latents of every video: per-chunk .npy files and index, quarantine, readers."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from echogen.data.errors import DataError
from echogen.data.manifest import MANIFEST_COLUMNS, write_manifest
from echogen.data.parts import gather_parts
from echogen.data.video import write_video
from echogen.models.vae import build_vae, encode_frames, load_vae
from echogen.pipelines.latents import encode_chunk, load_latent, read_latents

# (FileName, native fps, frames): at 32 fps they keep int(T * 32 / fps) frames.
VIDEOS = [("a4c_1", 50.0, 20), ("a4c_2", 25.0, 10), ("psax_3", 32.0, 7)]
EXPECTED_FRAMES = {"a4c_1": 12, "a4c_2": 12, "psax_3": 7}
SCALING = 0.5


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workflow folder with three MP4s (48 px), their manifest and a tiny VAE folder."""
    root = tmp_path_factory.mktemp("latents")
    rng = np.random.default_rng(0)
    rows = []
    for i, (name, fps, n) in enumerate(VIDEOS):
        frames = rng.integers(0, 256, (n, 6, 6), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
        write_video(root / "videos" / f"{name}.mp4", frames, fps)
        rows.append(
            {
                "FileName": name,
                "EF": 40.0 + i,
                "FPS": fps,
                "NumberOfFrames": n,
                "FrameHeight": 48,
                "FrameWidth": 48,
                "Split": ["TRAIN", "VAL", "TEST"][i],
                "Path": f"videos/{name}.mp4",
                "View": name.split("_")[0].upper(),
                "class_id": i,
            }
        )
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    torch.manual_seed(0)
    vae = build_vae("tiny").eval()
    vae.register_to_config(scaling_factor=SCALING)
    vae.save_pretrained(root / "vae")
    return root


def test_encode_chunk_writes_scaled_means_and_index(workdir):
    part = workdir / "resources" / "latents" / "demo" / "part_0"
    index = encode_chunk(
        workdir / "manifest.csv", workdir / "vae", part, 0, 1, fps=32, size=112, root=workdir
    )
    assert index["FileName"].tolist() == [v[0] for v in VIDEOS]
    on_disk = read_latents(part / "index.csv")
    assert set(MANIFEST_COLUMNS) < set(on_disk.columns)
    assert on_disk["View"].tolist() == ["A4C", "A4C", "PSAX"]
    assert on_disk["FPS"].tolist() == [50.0, 25.0, 32.0]  # the original frame rate
    assert (on_disk["latent_fps"] == 32.0).all() and (on_disk["scaling_factor"] == SCALING).all()
    assert on_disk["latent_path"].tolist() == [
        f"resources/latents/demo/part_0/{v[0]}.npy" for v in VIDEOS
    ]
    assert not (part / "quarantine.csv").read_text().strip().count("\n")  # header only

    # Recomputed by hand: OpenCV decode, nearest frame at 32 fps, bilinear 112 px, mean x 0.5.
    vae = load_vae(workdir / "vae")
    for _, row in on_disk.iterrows():
        raw = np.load(workdir / row["latent_path"])
        assert raw.dtype == np.float16
        assert raw.shape == (EXPECTED_FRAMES[row["FileName"]], 4, 14, 14)
        assert row["latent_frames"] == len(raw)
        latents = load_latent(row, root=workdir)
        assert latents.dtype == np.float32 and np.array_equal(latents, raw.astype(np.float32))

        cap = cv2.VideoCapture(str(workdir / row["Path"]))
        decoded = []
        while (frame := cap.read())[0]:
            decoded.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2GRAY))
        picks = [min(round(i * row["FPS"] / 32), len(decoded) - 1) for i in range(len(raw))]
        big = np.stack([cv2.resize(decoded[i], (112, 112)) for i in picks])
        expected = encode_frames(vae, big)
        np.testing.assert_allclose(latents, expected, atol=2e-3, rtol=2e-3)


def test_chunks_partition_the_manifest_and_gather(workdir):
    parts = []
    for chunk in range(2):
        part = workdir / "chunks" / f"part_{chunk}"
        encode_chunk(
            workdir / "manifest.csv", workdir / "vae", part, chunk, 2, 32, 32, root=workdir
        )
        parts.append(part)
    assert read_latents(parts[0] / "index.csv")["FileName"].tolist() == ["a4c_1", "psax_3"]
    assert read_latents(parts[1] / "index.csv")["FileName"].tolist() == ["a4c_2"]
    gathered = gather_parts(parts, workdir / "chunks" / "index.csv", workdir / "chunks" / "q.csv")
    assert sorted(gathered["FileName"]) == ["a4c_1", "a4c_2", "psax_3"]
    table = read_latents(workdir / "chunks" / "index.csv")
    shapes = {r.FileName: load_latent(r._asdict(), workdir).shape for r in table.itertuples()}
    assert shapes["psax_3"] == (7, 4, 4, 4)  # 32 px -> 4 x 4 latents


def test_bad_video_raises_or_is_quarantined(workdir, tmp_path):
    rows = pd.read_csv(workdir / "manifest.csv")
    (workdir / "videos" / "broken.mp4").write_bytes(b"not a video at all")
    bad = rows.iloc[[0]].assign(FileName="broken", Path="videos/broken.mp4")
    write_manifest(pd.concat([rows, bad], ignore_index=True), tmp_path / "manifest.csv")
    part = tmp_path / "part_0"
    with pytest.raises(DataError, match="broken.mp4"):
        encode_chunk(tmp_path / "manifest.csv", workdir / "vae", part, 0, 1, 32, 32, root=workdir)
    assert not part.exists()  # nothing half-written

    index = encode_chunk(
        tmp_path / "manifest.csv", workdir / "vae", part, 0, 1, 32, 32, "cpu", 4, "skip", workdir
    )
    assert index["FileName"].tolist() == ["a4c_1", "a4c_2", "psax_3"]
    quarantine = pd.read_csv(part / "quarantine.csv")
    assert quarantine["item"].tolist() == ["broken"]
    assert len(quarantine) == 1 and "broken.mp4" in quarantine.loc[0, "file"]
    assert sorted(p.name for p in part.glob("*.npy")) == ["a4c_1.npy", "a4c_2.npy", "psax_3.npy"]


def test_missing_fps_names_the_manifest_row(workdir, tmp_path):
    rows = pd.read_csv(workdir / "manifest.csv")
    rows.loc[2, "FPS"] = np.nan
    write_manifest(rows, tmp_path / "manifest.csv")
    with pytest.raises(DataError, match=r"row 4.*psax_3"):
        encode_chunk(tmp_path / "manifest.csv", workdir / "vae", tmp_path / "p", 0, 1, root=workdir)


def test_readers_reject_bad_files(workdir, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_latents(tmp_path / "index.csv")
    pd.DataFrame({"FileName": ["x"]}).to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(DataError, match="latent_path"):
        read_latents(tmp_path / "index.csv")
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 14, 14), np.float16))
    row = {"FileName": "x", "latent_path": "x.npy", "latent_frames": 5}
    with pytest.raises(DataError, match=r"shape \(3, 4, 14, 14\)"):
        load_latent(row, tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_latent({**row, "latent_path": "y.npy"}, tmp_path)
