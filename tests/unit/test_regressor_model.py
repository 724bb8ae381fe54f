"""EF regressor (torchvision-compatible R(2+1)D-18 / R3D-18) and its clip dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.models.video import r2plus1d_18, r3d_18

from echogen.data.ef_clips import ClipSpec, EFClipDataset, estimate_mean_std
from echogen.data.errors import DataError
from echogen.data.video import read_video, resize_frames, write_video
from echogen.models.regressor import (
    MODEL_PRESETS,
    EFRegressor,
    load_kinetics_trunk,
    load_published_weights,
)

torch.set_num_threads(2)
TORCHVISION = {"r2plus1d_18": r2plus1d_18, "r3d_18": r3d_18}
# Frame k of the synthetic videos is the constant grey STEP * k + OFFSET (MJPG keeps flat
# frames to within a grey level or two).
STEP, OFFSET = 5, 10


def _torchvision(arch: str, num_classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return TORCHVISION[arch](weights=None, num_classes=num_classes).eval()


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("arch", ["r2plus1d_18", "r3d_18"])
def test_state_dict_and_outputs_match_torchvision(arch):
    reference = _torchvision(arch, num_classes=1, seed=0)
    model = EFRegressor(arch=arch).eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs

    model.load_state_dict(reference.state_dict())
    video = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(video)[:, 0]
        got = model(video)
    assert got.shape == (2,)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_fc_bias_init_and_presets():
    torch.manual_seed(0)
    model = EFRegressor(**{**MODEL_PRESETS["tiny"], "fc_bias_init": 61.0}).eval()
    assert model.fc.bias.item() == pytest.approx(61.0)
    assert MODEL_PRESETS["echonet"]["fc_bias_init"] == pytest.approx(55.6)
    for name, kwargs in MODEL_PRESETS.items():
        preset = EFRegressor(**kwargs)
        video = torch.zeros(2, kwargs["in_channels"], 8, 32, 32)
        assert preset(video).shape == (2,), name
    assert set(MODEL_PRESETS) == {"echonet", "echodiffusion", "dartagnan_expert", "tiny"}
    with pytest.raises(ValueError, match="expected video"):
        model(torch.zeros(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="arch"):
        EFRegressor(arch="resnet50")


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = EFRegressor(**MODEL_PRESETS["dartagnan_expert"]).eval()
    model.save_pretrained(tmp_path / "model")
    loaded = EFRegressor.from_pretrained(tmp_path / "model").eval()
    assert tuple(loaded.config.widths) == (32, 64, 128, 256)
    assert loaded.config.in_channels == 1
    video = torch.randn(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), model(video), rtol=0, atol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_published_weights(tmp_path):
    reference = _torchvision("r2plus1d_18", num_classes=1, seed=3)
    # EchoNet's checkpoint: a DataParallel state dict plus training bookkeeping (its R² is
    # a NumPy float, which the safe unpickler must accept).
    wrapped = {"module." + k: v for k, v in reference.state_dict().items()}
    checkpoint = tmp_path / "r2plus1d_18_32_2_pretrained.pt"
    extra = {"epoch": 44, "best_loss": 30.5, "r2": np.float64(0.8), "period": 2, "frames": 32}
    torch.save({"state_dict": wrapped, **extra}, checkpoint)
    bare = tmp_path / "bare.pt"
    torch.save(reference.state_dict(), bare)

    video = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = reference(video)[:, 0]
    for path in (checkpoint, bare):
        torch.manual_seed(5)
        model = load_published_weights(EFRegressor(**MODEL_PRESETS["echonet"]), path).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(video), expected, rtol=0, atol=0)

    with pytest.raises(DataError, match=r"r2plus1d_18_32_2_pretrained\.pt.*missing"):
        load_published_weights(EFRegressor(**MODEL_PRESETS["tiny"]), checkpoint)
    with pytest.raises(DataError, match="download_weights"):
        load_published_weights(EFRegressor(), tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"garbage\.pt: cannot read the weights file"):
        load_published_weights(EFRegressor(), garbage)


def test_kinetics_trunk_one_channel_equals_rgb_repeat(tmp_path):
    kinetics = _torchvision("r2plus1d_18", num_classes=400, seed=6)
    path = tmp_path / "r2plus1d_18-91a641e6.pth"
    torch.save(kinetics.state_dict(), path)

    torch.manual_seed(7)
    model = EFRegressor(arch="r2plus1d_18", in_channels=1).eval()
    fc_before = {k: v.clone() for k, v in model.fc.state_dict().items()}
    load_kinetics_trunk(model, path)
    assert model.fc.bias.item() == pytest.approx(55.6)
    for key, value in fc_before.items():
        assert torch.equal(model.fc.state_dict()[key], value)
    assert model.stem[0].weight.shape == (45, 1, 1, 7, 7)

    # torchvision with our fc, fed the grey clip repeated to RGB, must give the same EF.
    kinetics.fc = torch.nn.Linear(512, 1)
    kinetics.fc.load_state_dict(model.fc.state_dict())
    grey = torch.randn(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = kinetics(grey.repeat(1, 3, 1, 1, 1))[:, 0]
        got = model(grey)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)

    with pytest.raises(ValueError, match="widths"):
        load_kinetics_trunk(EFRegressor(**MODEL_PRESETS["dartagnan_expert"]), path)
    with pytest.raises(DataError, match="other shapes"):
        load_kinetics_trunk(EFRegressor(arch="r3d_18"), path)


# ---------------------------------------------------------------- clips


def _video(n_frames: int, size: int = 32) -> np.ndarray:
    values = STEP * np.arange(n_frames) + OFFSET
    return np.broadcast_to(values[:, None, None], (n_frames, size, size)).astype(np.uint8)


@pytest.fixture
def videos(tmp_path):
    """Three AVIs (20, 20 and 5 frames at 50 fps) and their manifest rows."""
    rows = []
    for name, n_frames, ef in [("long", 20, 40.0), ("other", 20, 60.0), ("short", 5, 55.0)]:
        write_video(tmp_path / "videos" / f"{name}.avi", _video(n_frames), fps=50)
        rows.append({"FileName": name, "EF": ef, "FPS": 50.0, "Path": f"videos/{name}.avi"})
    return tmp_path, pd.DataFrame(rows)


def _frame_index(clip: torch.Tensor) -> np.ndarray:
    """Video frame index of each clip frame, from the unit-normalised grey level."""
    level = clip[0].mean(dim=(1, 2)).numpy() * 255
    return np.round((level - OFFSET) / STEP).astype(int)


def test_eval_clip_indices_channels_and_ef(videos):
    root, rows = videos
    spec = ClipSpec(frames=4, period=3, size=16, channels=3, normalisation="unit")
    dataset = EFClipDataset(rows, spec, train=False, seed=0, root=root)
    clip, ef = dataset[0]
    assert clip.shape == (3, 4, 16, 16) and clip.dtype == torch.float32
    assert torch.equal(clip[0], clip[2])
    np.testing.assert_array_equal(_frame_index(clip), [0, 3, 6, 9])
    assert ef.dtype == torch.float32 and ef.item() == 40.0
    assert len(dataset) == 3


def test_train_clips_random_start_deterministic(videos):
    root, rows = videos
    spec = ClipSpec(frames=4, period=3, size=16, channels=1, normalisation="unit")
    dataset = EFClipDataset(rows, spec, train=True, seed=11, root=root)
    starts = []
    for epoch in range(8):
        dataset.set_epoch(epoch)
        index = _frame_index(dataset[0][0])
        assert 0 <= index[0] <= 20 - 10
        np.testing.assert_array_equal(index, index[0] + 3 * np.arange(4))
        starts.append(index[0])
    assert len(set(starts)) > 1  # different epochs draw different starts

    # Same (seed, epoch, i) -> same clip, whatever was read before.
    again = EFClipDataset(rows, spec, train=True, seed=11, root=root)
    again.set_epoch(5)
    again[1]
    dataset.set_epoch(5)
    assert torch.equal(again[0][0], dataset[0][0])
    other_seed = EFClipDataset(rows, spec, train=True, seed=12, root=root)
    clips = []
    for epoch in range(8):
        other_seed.set_epoch(epoch)
        clips.append(_frame_index(other_seed[0][0])[0])
    assert clips != starts


def test_short_video_zero_padded_after_normalisation(videos):
    root, rows = videos
    spec = ClipSpec(frames=4, period=3, size=16, channels=1, mean=100.0, std=50.0)
    dataset = EFClipDataset(rows, spec, train=True, seed=0, root=root)
    clip, _ = dataset[2]  # 5 frames, clip span 10: only start 0 is valid
    means = clip[0].mean(dim=(1, 2)).numpy()
    raw = read_video(root / "videos" / "short.avi").astype(np.float64)
    expected = [(raw[0].mean() - 100) / 50, (raw[3].mean() - 100) / 50, 0.0, 0.0]
    np.testing.assert_allclose(means, expected, atol=1e-4)
    clips, _ = dataset.all_clips(2)
    assert clips.shape == (1, 1, 4, 16, 16)


def test_pad_and_crop(videos):
    root, rows = videos
    pad = 3
    spec = ClipSpec(frames=2, period=1, size=16, channels=1, normalisation="unit", pad=pad)
    dataset = EFClipDataset(rows, spec, train=True, seed=1, root=root)
    offsets = set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        frame = dataset[0][0][0, 0].numpy()
        assert frame.shape == (16, 16)
        # A crop at offset t of the padded frame leaves max(pad - t, 0) zero lines before the
        # image and max(t - pad, 0) after it; EchoNet's offsets are 0..2*pad-1.
        bands = []
        for axis in (1, 0):  # rows, then columns
            zero = np.flatnonzero(frame.max(axis=axis) == 0)
            before = int(np.sum(zero < 8))
            after = len(zero) - before
            assert before == 0 or after == 0
            assert before <= pad and after <= pad - 1
            bands.append((before, after))
        (top, bottom), (left, right) = bands
        assert frame[top : 16 - bottom, left : 16 - right].min() > 0
        offsets.add((pad - top + bottom, pad - left + right))
    assert len(offsets) > 1
    evaluation = EFClipDataset(rows, spec, train=False, seed=1, root=root)
    assert evaluation[0][0].min() > 0  # no augmentation at evaluation


def test_all_clips_starts(videos):
    root, rows = videos
    spec = ClipSpec(
        frames=4, period=3, size=16, channels=1, normalisation="unit", test_clip_stride=3
    )
    dataset = EFClipDataset(rows, spec, train=False, seed=0, root=root)
    clips, ef = dataset.all_clips(1)
    # 20 frames, span 10: valid starts 0..10, every 3rd -> 0, 3, 6, 9.
    assert clips.shape == (4, 1, 4, 16, 16)
    assert [_frame_index(c)[0] for c in clips] == [0, 3, 6, 9]
    assert torch.equal(clips[0], dataset[1][0])
    assert ef.item() == 60.0
    every = EFClipDataset(
        rows, ClipSpec(**{**spec.to_dict(), "test_clip_stride": 1}), False, 0, root
    )
    assert every.all_clips(1)[0].shape[0] == 11


def test_uniform_sampling_spreads_one_clip_over_the_whole_video(videos):
    """EchoDream's classifier clip: files[::period], then np.linspace(0, n-1, F, dtype=int);
    the same clip in training and test, the only one of all_clips; short videos repeat."""
    root, rows = videos
    spec = ClipSpec(frames=4, period=2, size=16, channels=1, normalisation="unit")
    uniform = ClipSpec(**{**spec.to_dict(), "sampling": "uniform"})
    train = EFClipDataset(rows, uniform, train=True, seed=3, root=root)
    test = EFClipDataset(rows, uniform, train=False, seed=3, root=root)
    for i, n_frames in enumerate([20, 20, 5]):
        kept = np.arange(n_frames)[::2]
        echodream = kept[np.linspace(0, len(kept) - 1, 4, dtype=int)]
        for epoch in range(3):
            train.set_epoch(epoch)
            np.testing.assert_array_equal(_frame_index(train[i][0]), echodream)
        clips, _ = test.all_clips(i)
        assert clips.shape == (1, 1, 4, 16, 16) and torch.equal(clips[0], test[i][0])
    np.testing.assert_array_equal(_frame_index(test[0][0]), [0, 6, 12, 18])
    np.testing.assert_array_equal(_frame_index(test[2][0]), [0, 0, 2, 4])  # 5 frames: repeats
    with pytest.raises(ValueError, match="sampling"):
        ClipSpec(sampling="random")


def test_fps_resampling(videos):
    root, rows = videos
    spec = ClipSpec(frames=5, period=1, fps=25.0, size=16, channels=1, normalisation="unit")
    dataset = EFClipDataset(rows, spec, train=False, seed=0, root=root)
    # 50 -> 25 fps keeps every other frame.
    np.testing.assert_array_equal(_frame_index(dataset[0][0]), [0, 2, 4, 6, 8])
    # 20 frames at 25 fps: 10 frames, span 5 -> 6 starts.
    assert dataset.all_clips(0)[0].shape[0] == 6


def test_estimate_mean_std(videos):
    root, rows = videos
    spec = ClipSpec(size=16)
    pixels = np.concatenate(
        [resize_frames(read_video(root / p), 16).ravel() for p in rows["Path"]]
    ).astype(np.float64)
    mean, std = estimate_mean_std(rows, spec, n_videos=128, seed=0, root=root)
    # One value per channel (grey repeated to RGB: the three agree).
    assert mean == pytest.approx([pixels.mean()] * 3, rel=1e-9)
    assert std == pytest.approx([pixels.std()] * 3, rel=1e-9)
    one = estimate_mean_std(rows, spec, n_videos=1, seed=3, root=root)
    assert one == estimate_mean_std(rows, spec, n_videos=1, seed=3, root=root)
    singles = [
        read_video(root / p).astype(np.float64).mean() for p in rows["Path"]
    ]  # constant frames: resizing keeps the mean
    assert min(abs(one[0][0] - s) for s in singles) < 1e-6


def test_clip_spec_dict_and_validation():
    spec = ClipSpec(frames=16, fps=32.0, channels=1, mean=30.0, std=40.0, pad=4)
    assert ClipSpec.from_dict(spec.to_dict()) == spec
    assert spec.span == 31  # (16 - 1) * 2 + 1
    with pytest.raises(ValueError, match="unknown ClipSpec keys"):
        ClipSpec.from_dict({"frames": 8, "stride": 2})
    with pytest.raises(ValueError, match="normalisation"):
        ClipSpec(normalisation="minmax")
    with pytest.raises(ValueError, match="channels"):
        ClipSpec(channels=2)


def test_bad_rows_raise(videos):
    root, rows = videos
    spec = ClipSpec(size=16, normalisation="unit")
    with pytest.raises(DataError, match="'FPS' is missing"):
        EFClipDataset(rows.drop(columns="FPS"), spec, train=True, seed=0, root=root)
    bad = rows.copy()
    bad.loc[1, "EF"] = np.nan
    bad.attrs["source"] = "manifest.csv"
    with pytest.raises(DataError, match=r"manifest\.csv, row 3: video other has no numeric EF"):
        EFClipDataset(bad, spec, train=True, seed=0, root=root)
    text = rows.astype({"EF": object})
    text.loc[2, "EF"] = "n/a"
    with pytest.raises(DataError, match="row 4: video short"):
        EFClipDataset(text, spec, train=True, seed=0, root=root)
    no_fps = rows.copy()
    no_fps.loc[0, "FPS"] = np.nan
    EFClipDataset(no_fps, spec, train=True, seed=0, root=root)  # native rate: FPS unused
    with pytest.raises(DataError, match="row 2: video long has no positive FPS"):
        EFClipDataset(no_fps, ClipSpec(fps=32.0, normalisation="unit"), True, 0, root)
    with pytest.raises(ValueError, match="mean and .std"):
        EFClipDataset(rows, ClipSpec(size=16), train=True, seed=0, root=root)
    missing = rows.copy()
    missing.loc[0, "Path"] = "videos/absent.avi"
    dataset = EFClipDataset(missing, spec, train=False, seed=0, root=root)
    with pytest.raises(DataError, match="absent.avi"):
        dataset[0]


# ---------------------------------------------------------------- paper protocols (issue 12)


def test_statistics_one_clip_is_echonets_get_mean_and_std(videos):
    """One random 16-frame clip (every 2nd frame) per video; the 5-frame video zero-padded to 32."""
    root, rows = videos
    spec = ClipSpec(size=16, statistics="one_clip")
    grey = {p: resize_frames(read_video(root / p), 16).astype(np.float64) for p in rows["Path"]}

    def candidates(frames: np.ndarray) -> list[np.ndarray]:
        padded = np.concatenate([frames, np.zeros((max(32 - len(frames), 0), 16, 16))])
        return [padded[s + 2 * np.arange(16)] for s in range(len(padded) - 30)]

    for seed in range(4):
        (mean, *others), (std, *_) = estimate_mean_std(rows, spec, n_videos=1, seed=seed, root=root)
        assert others == [mean, mean]
        stats = [(c.mean(), c.std()) for f in grey.values() for c in candidates(f)]
        assert min(abs(m - mean) + abs(s - std) for m, s in stats) < 1e-9
    # All three videos: one clip each, pooled; differs from the all-frame statistics.
    mean, std = estimate_mean_std(rows, spec, seed=0, root=root)
    every = estimate_mean_std(rows, ClipSpec(size=16), seed=0, root=root)
    assert mean != every[0]
    short = grey["videos/short.avi"]
    assert len(candidates(short)) == 2  # 5 frames padded to 32: starts 0 and 1


def test_per_channel_mean_and_std(videos):
    root, rows = videos
    spec = ClipSpec(frames=2, period=1, size=16, channels=3, mean=[10.0, 20.0, 30.0], std=[1, 2, 4])
    clip = EFClipDataset(rows, spec, train=False, seed=0, root=root)[0][0]
    grey = resize_frames(read_video(root / "videos/long.avi"), 16)[:2].astype(np.float32)
    for c, (m, s) in enumerate([(10, 1), (20, 2), (30, 4)]):
        np.testing.assert_allclose(clip[c].numpy(), (grey - m) / s, rtol=1e-6)
    with pytest.raises(ValueError, match="one per channel"):
        ClipSpec(channels=3, mean=[1.0, 2.0], std=1.0)


def test_train_start_first_takes_frame_zero_every_epoch(videos):
    root, rows = videos
    spec = ClipSpec(
        frames=4, period=3, size=16, channels=1, normalisation="unit", train_start="first"
    )
    dataset = EFClipDataset(rows, spec, train=True, seed=11, root=root)
    for epoch in range(6):
        dataset.set_epoch(epoch)
        np.testing.assert_array_equal(_frame_index(dataset[0][0]), [0, 3, 6, 9])


def _crop_offsets(spec: ClipSpec, rows, root, epochs: int) -> set[tuple[int, int]]:
    """(row, column) offsets of the crop inside the padded frame, over ``epochs`` draws."""
    dataset = EFClipDataset(rows, spec, train=True, seed=1, root=root)
    pad, offsets = spec.pad, set()
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        frame = dataset[0][0][0, 0].numpy()
        found = []
        for axis in (1, 0):
            zero = np.flatnonzero(frame.max(axis=axis) == 0)
            before = int(np.sum(zero < 8))
            found.append(pad - before + (len(zero) - before))
        offsets.add(tuple(found))
    return offsets


@pytest.mark.parametrize("crop, high", [("echonet", 5), ("torchvision", 6)])
def test_crop_offsets_follow_echonet_or_torchvision(videos, crop, high):
    """EchoNet draws randint(0, 2*pad): 0..5 for pad 3; torchvision's RandomCrop 0..6."""
    root, rows = videos
    spec = ClipSpec(frames=2, period=1, size=16, channels=1, normalisation="unit", pad=3, crop=crop)
    offsets = {v for pair in _crop_offsets(spec, rows, root, epochs=60) for v in pair}
    assert offsets == set(range(high + 1))


def test_clip_start_random_is_a_seeded_all_clip_window(videos):
    root, rows = videos
    spec = ClipSpec(
        frames=4, period=3, size=16, channels=1, normalisation="unit", clip_start="random"
    )
    starts = {}
    for seed in range(6):
        dataset = EFClipDataset(rows, spec, train=False, seed=seed, root=root)
        clip = dataset[1][0]
        windows = dataset.all_clips(1)[0]
        index = dataset.single_clip_index(1, len(windows))
        assert torch.equal(clip, windows[index])
        assert torch.equal(clip, EFClipDataset(rows, spec, False, seed, root)[1][0])
        starts[seed] = _frame_index(clip)[0]
    assert len(set(starts.values())) > 1  # 11 possible starts: seeds draw different ones
    first = EFClipDataset(
        rows, ClipSpec(**{**spec.to_dict(), "clip_start": "first"}), False, 0, root
    )
    assert _frame_index(first[1][0])[0] == 0


def test_linear_resampling_matches_linear_interpolation():
    """scipy zoom(order=1): round(T * ratio) frames, ends aligned, blends of neighbours."""
    from echogen.data.video import resample_frames, resample_frames_linear

    levels = np.array([0.0, 10.0, 40.0, 50.0, 90.0, 100.0, 160.0, 200.0], np.float32)
    frames = np.broadcast_to(levels[:, None, None], (8, 2, 3)).copy()
    out = resample_frames_linear(frames, 50.0, 32.0)  # 8 * 32 / 50 = 5.12 -> 5 frames
    positions = np.arange(5) * (8 - 1) / (5 - 1)  # 0, 1.75, 3.5, 5.25, 7
    np.testing.assert_allclose(out[:, 0, 0], np.interp(positions, np.arange(8), levels), atol=1e-4)
    assert out.shape == (5, 2, 3)
    as_uint8 = resample_frames_linear(frames.astype(np.uint8), 50.0, 32.0)
    assert as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8[:, 0, 0], np.floor(out[:, 0, 0] + 0.5))  # 32.5 -> 33
    # Nearest-frame selection picks input frames only; linear blends them.
    assert set(resample_frames(frames, 50.0, 32.0)[:, 0, 0]) <= set(levels)
    assert not set(out[:, 0, 0]) <= set(levels)
