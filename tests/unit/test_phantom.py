"""Tests for echogen.phantom: geometry, EF contract, raw layouts, determinism, params."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from echogen.data.tracings import disk_volume, read_volume_tracings, tracing_ef
from echogen.data.video import probe_video, read_video
from echogen.phantom import DATASETS, check_params, write_phantom
from echogen.phantom.datasets import random_heart
from echogen.phantom.heart import LV, Heart, Sector, contraction, label_map, lv_scale, lv_tracing

DYNAMIC = {
    "videos": {"TRAIN": 3, "VAL": 1, "TEST": 1},
    "frames": [30, 60],
    "fps": 50.0,
    "size": 112,
}
PED = {"videos_per_fold": 1, "frames": [30, 50], "fps": 50.0, "size": 112}
CARDIACNET = {"patients_per_class": 3, "frames": [12, 16], "height": 96, "width": 128}
CAMUS = {"patients": {"train": 2, "valid": 1, "test": 1}, "size": 128}
RVFAILURE = {
    "patients": 8,
    "clips_per_patient": [1, 2],
    "frames": [32, 34],
    "height": 64,
    "width": 80,
    "photometric": "RGB",
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[str, Path]:
    """Every dataset written once (seed 7)."""
    base = tmp_path_factory.mktemp("phantom")
    params = {
        "dynamic": DYNAMIC,
        "ped_a4c": PED,
        "ped_psax": PED,
        "cardiacnet": CARDIACNET,
        "camus": CAMUS,
        "rvfailure": RVFAILURE,
    }
    for dataset in DATASETS:
        write_phantom(dataset, base / dataset, params[dataset], seed=7)
    return {dataset: base / dataset for dataset in DATASETS}


# --- geometry ---------------------------------------------------------------------------


def test_contraction_is_normalised_and_scale_gives_ef():
    c = contraction(80, 50.0, 72.0, 0.3)
    assert c.max() == 1.0 and c.min() == 0.0
    s = lv_scale(c, 40.0)
    assert s.max() == pytest.approx(1.0)
    assert 1 - (s.min() / s.max()) ** 3 == pytest.approx(0.40)
    with pytest.raises(ValueError, match="ef must be"):
        lv_scale(c, 100.0)


@pytest.mark.parametrize("view", ["a4c", "psax"])
def test_tracing_is_the_rendered_cavity(view):
    rng = np.random.default_rng(0)
    heart = random_heart(rng, view, 112, 112)
    scale = lv_scale(contraction(60, 50.0, 80.0, 0.6), 55.0)
    labels = label_map(heart, 112, 112, scale)
    area = (labels == LV).sum(axis=(1, 2))
    ed, es = int(np.argmax(scale)), int(np.argmin(scale))
    assert area[ed] == area.max() and area[es] == area.min()
    lines = {ed: lv_tracing(heart, scale[ed]), es: lv_tracing(heart, scale[es])}
    assert tracing_ef(lines)[4] == pytest.approx(55.0, abs=1e-9)
    # Chord midpoints fall inside the rendered cavity; points beyond the chord ends do not.
    chords = lines[ed][1:]
    mid = np.round((chords[:, :2] + chords[:, 2:]) / 2).astype(int)
    assert (labels[ed][mid[:, 1], mid[:, 0]] == LV).all()
    direction = (chords[:, 2:] - chords[:, :2]) / np.linalg.norm(
        chords[:, 2:] - chords[:, :2], axis=1, keepdims=True
    )
    outside = np.round(chords[:, 2:] + 2 * direction).astype(int)
    assert (labels[ed][outside[:, 1], outside[:, 0]] != LV).all()
    assert disk_volume(lines[ed]) > disk_volume(lines[es])


def test_heart_rejects_unknown_view():
    with pytest.raises(ValueError, match="view must be one of"):
        Heart("plax", (50, 10), 0, 40, 12, 4)
    assert Sector(112, 112).half_angle > 0


# --- EchoNet layouts and the EF contract ---------------------------------------------------


def _check_echonet(root: Path, with_ext: bool) -> list[int]:
    """Assert the tracing EF contract for every video; return the ED-first flags."""
    files = pd.read_csv(root / "FileList.csv")
    assert (root / "VolumeTracings.csv").read_text().splitlines()[0] == "FileName,X1,Y1,X2,Y2,Frame"
    raw = pd.read_csv(root / "VolumeTracings.csv")
    assert raw["FileName"].str.endswith(".avi").all()
    tracings = read_volume_tracings(root / "VolumeTracings.csv")
    assert len(tracings) == len(files)
    ed_first = []
    for name in files["FileName"]:
        stem = name.removesuffix(".avi")
        assert name.endswith(".avi") == with_ext
        frames = tracings[stem]
        assert len(frames) == 2 and all(len(lines) == 21 for lines in frames.values())
        ed, es, _, _, ef = tracing_ef(frames)
        # As the real file: the larger (ED) tracing last, the frame echonet/dynamic's reader
        # takes as ED (its LargeIndex), whatever the frame order.
        listed = list(
            dict.fromkeys(raw.loc[raw["FileName"].str.removesuffix(".avi") == stem, "Frame"])
        )
        assert listed == [es, ed], name
        assert disk_volume(frames[listed[-1]]) > disk_volume(frames[listed[0]])
        row = files[files["FileName"] == name].iloc[0]
        assert abs(ef - row["EF"]) < 1.0, name
        n_frames = probe_video(root / "Videos" / f"{stem}.avi").frames
        assert 0 <= ed < n_frames and 0 <= es < n_frames
        ed_first.append(int(ed < es))
    return ed_first


def test_dynamic_layout_and_ef(phantoms):
    root = phantoms["dynamic"]
    files = pd.read_csv(root / "FileList.csv")
    assert list(files.columns) == [
        "FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
        "NumberOfFrames", "Split",
    ]  # fmt: skip
    assert files["FileName"].str.fullmatch(r"0X[0-9A-F]{16}").all()
    assert files["Split"].value_counts().to_dict() == {"TRAIN": 3, "VAL": 1, "TEST": 1}
    assert files["EF"].between(15, 80).all() and files["EDV"].between(70, 180).all()
    np.testing.assert_allclose(files["ESV"], files["EDV"] * (1 - files["EF"] / 100), atol=0.02)
    for _, row in files.iterrows():
        video = read_video(root / "Videos" / f"{row['FileName']}.avi")
        assert video.shape == (row["NumberOfFrames"], 112, 112)
        assert 30 <= row["NumberOfFrames"] <= 60
    ed_first = _check_echonet(root, with_ext=False)
    ed_first += _check_echonet(phantoms["ped_a4c"], with_ext=True)
    ed_first += _check_echonet(phantoms["ped_psax"], with_ext=True)
    assert 0 < sum(ed_first) < len(ed_first)  # ED first in some videos, ES first in others


def test_video_looks_like_an_echo(phantoms):
    video = read_video(next((phantoms["dynamic"] / "Videos").glob("*.avi"))).astype(float)
    # Black outside the fan (top corners), apex at the top centre, speckled tissue inside.
    assert video[:, :20, :10].max() < 10 and video[:, :20, -10:].max() < 10
    assert video[:, 60:80, 30:80].std() > 20
    assert np.abs(np.diff(video, axis=0)).mean() > 1  # it moves


def test_pediatric_layout(phantoms):
    for view in ("ped_a4c", "ped_psax"):
        files = pd.read_csv(phantoms[view] / "FileList.csv")
        assert list(files.columns) == ["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"]
        assert (
            files["FileName"]
            .str.fullmatch(r"CR\d\da[0-9a-f]{4}-CR\d\da[0-9a-f]{4}-\d{6}\.avi")
            .all()
        )
        assert sorted(files["Split"]) == list(range(10))
        assert set(files["Sex"]) <= {"M", "F"}
    a4c = pd.read_csv(phantoms["ped_a4c"] / "FileList.csv")
    psax = pd.read_csv(phantoms["ped_psax"] / "FileList.csv")
    assert set(a4c["FileName"]).isdisjoint(psax["FileName"])


def test_determinism(tmp_path, phantoms):
    write_phantom("dynamic", tmp_path / "again", DYNAMIC, seed=7)
    write_phantom("dynamic", tmp_path / "other", DYNAMIC, seed=8)
    for name in ("FileList.csv", "VolumeTracings.csv"):
        again = (tmp_path / "again" / name).read_bytes()
        assert again == (phantoms["dynamic"] / name).read_bytes()
        assert again != (tmp_path / "other" / name).read_bytes()
    for video in (phantoms["dynamic"] / "Videos").glob("*.avi"):
        np.testing.assert_array_equal(
            read_video(video), read_video(tmp_path / "again/Videos" / video.name)
        )


# --- CardiacNet --------------------------------------------------------------------------


def _cardiacnet_volumes(root: Path) -> dict[str, list[np.ndarray]]:
    """Class name -> upright float volumes (H, W, T), as EchoDream's conversion orients them."""
    volumes = {}
    for cls_dir in sorted(root.glob("CardiacNet-*/*")):
        volumes[cls_dir.name] = []
        for path in sorted(cls_dir.glob("*/*_image.nii")):
            assert path.name == f"{path.parent.name}_image.nii"
            data = np.asarray(nib.load(path).dataobj)
            assert data.dtype == np.uint8 and data.shape[:2] == (128, 96)
            upright = np.flip(np.rot90(data, k=1, axes=(0, 1)), axis=1)  # EchoDream
            volumes[cls_dir.name].append(upright.astype(float))
    return volumes


def test_cardiacnet_layout_and_class_features(phantoms):
    root = phantoms["cardiacnet"]
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("*/*")) == [
        "CardiacNet-ASD/ASD", "CardiacNet-ASD/Non-ASD", "CardiacNet-PAH/Non-PAH",
        "CardiacNet-PAH/PAH",
    ]  # fmt: skip
    ids = [p.name for p in root.glob("*/*/*")]
    assert len(ids) == len(set(ids)) == 12 and all(i.isdigit() for i in ids)
    volumes = _cardiacnet_volumes(root)
    means = {
        name: np.mean([v.mean(axis=2) for v in vols], axis=0) for name, vols in volumes.items()
    }
    # Upright: the fan apex is at the top centre, so the top corners are black.
    assert means["ASD"][:10, :10].max() < 5 and means["ASD"][:10, 60:68].mean() > 20
    nominal = random_heart(np.random.default_rng(0), "a4c", 96, 128, jitter=0.0)
    # ASD: a 3-px strip along the interatrial septum (covering its travel with the beating
    # base) has a dark run (the defect) in every frame; an intact septum has none.
    x, y = np.round(nominal.atrial_septum()).astype(int)

    def septum_darkest(volume):
        return volume[y - 14 : y + 5, x - 1 : x + 2].mean(axis=1).min(axis=0).mean()

    asd, intact = ([septum_darkest(v) for v in volumes[c]] for c in ("ASD", "Non-ASD"))
    assert max(asd) < min(intact)
    # PAH: the dilated RV covers a point just outside a normal RV's free wall with blood.
    x, y = np.round(nominal.rv_free_wall()).astype(int)
    pah, normal = (means[c][y - 2 : y + 3, x - 2 : x + 3].mean() for c in ("PAH", "Non-PAH"))
    assert pah < 0.5 * normal
    # Normal hearts from the two sites differ in gain and fan width.
    fan_a, fan_b = (means["Non-ASD"] > 3).sum(), (means["Non-PAH"] > 3).sum()
    assert fan_a > 1.1 * fan_b
    assert means["Non-ASD"].mean() > means["Non-PAH"].mean()


# --- CAMUS -------------------------------------------------------------------------------


def test_camus_hdf5(phantoms):
    with h5py.File(phantoms["camus"] / "camus05_256.hdf5", "r") as h5:
        assert sorted(h5) == ["test", "train", "valid"]
        patients = {split: sorted(h5[split]) for split in h5}
        assert patients == {
            "train": ["patient0001", "patient0002"],
            "valid": ["patient0003"],
            "test": ["patient0004"],
        }
        for split, names in patients.items():
            for name in names:
                for view in ("2CH", "4CH"):
                    im, gt = (
                        h5[f"{split}/{name}/{view}/im"][()],
                        h5[f"{split}/{name}/{view}/gt"][()],
                    )
                    assert im.shape == gt.shape == (2, 128, 128)
                    assert im.dtype == gt.dtype == np.uint8
                    assert set(np.unique(gt)) == {0, 1, 2, 3}
                    assert (gt[0] == 1).sum() > (gt[1] == 1).sum()  # ED cavity larger than ES
                    cavity, myo, atrium = (im[gt == k].mean() for k in (1, 2, 3))
                    assert cavity < 0.3 * myo and atrium < 0.3 * myo


# --- RV failure --------------------------------------------------------------------------


def test_rvfailure_dicoms_and_csvs(phantoms):
    root = phantoms["rvfailure"]
    assert (root / "REDcap_class.csv").read_text().splitlines()[0] == "redcap_id,rv_failure_class"
    assert (root / "splits.csv").read_text().splitlines()[0] == "redcap_id,split"
    classes = pd.read_csv(root / "REDcap_class.csv")
    splits = pd.read_csv(root / "splits.csv")
    assert set(classes["rv_failure_class"]) == {"normal", "mild", "moderate", "severe"}
    assert splits["split"].value_counts().to_dict() == {"train": 4, "valid": 2, "test": 2}
    assert list(classes["redcap_id"]) == list(splits["redcap_id"])
    paths = sorted((root / "dicoms").rglob("*.dcm"))
    assert len(paths) >= 8
    label = dict(zip(classes["redcap_id"], classes["rv_failure_class"], strict=True))
    nominal = random_heart(np.random.default_rng(0), "a4c", 64, 80, size=1.1, jitter=0.0)
    x, y = np.round(nominal.rv_free_wall()).astype(int)
    rv_box = {cls: [] for cls in ("normal", "severe")}
    for path in paths:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
        frames = ds.pixel_array
        assert int(ds.NumberOfFrames) == frames.shape[0] >= 32
        assert frames.shape[1:] == (64, 80, 3) and ds.PhotometricInterpretation == "RGB"
        assert float(ds.FrameTime) > 0 and int(ds.CineRate) > 0
        assert str(ds.PatientName) and ds.PatientBirthDate and ds.InstitutionName
        relative = path.relative_to(root).as_posix()
        assert path.stem == ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.PatientID not in relative and str(ds.PatientName).split("^")[0] not in relative
        if label[ds.PatientID] in rv_box:
            rv_box[label[ds.PatientID]].append(frames[:, y - 2 : y + 3, x - 2 : x + 3].mean())
    assert np.mean(rv_box["severe"]) < 0.6 * np.mean(rv_box["normal"])


def test_rvfailure_dicoms_are_byte_identical_for_a_seed(tmp_path, phantoms):
    write_phantom("rvfailure", tmp_path / "again", RVFAILURE, seed=7)
    paths = sorted((phantoms["rvfailure"] / "dicoms").rglob("*.dcm"))
    for path in paths:
        again = tmp_path / "again" / path.relative_to(phantoms["rvfailure"])
        assert again.read_bytes() == path.read_bytes(), path.name


def test_rvfailure_monochrome(tmp_path):
    params = dict(RVFAILURE, patients=5, clips_per_patient=[1, 1], photometric="MONOCHROME2")
    write_phantom("rvfailure", tmp_path / "rv", params, seed=1)
    splits = pd.read_csv(tmp_path / "rv" / "splits.csv")["split"]
    assert splits.value_counts().to_dict() == {"train": 3, "valid": 1, "test": 1}
    ds = pydicom.dcmread(next((tmp_path / "rv" / "dicoms").rglob("*.dcm")))
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.pixel_array.shape == (int(ds.NumberOfFrames), 64, 80)


# --- params validation and atomic writes ---------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "params", "match"),
    [
        ("dynamic", {**DYNAMIC, "colour": 1}, "phantom.dynamic: unknown key 'colour'"),
        ("dynamic", {k: v for k, v in DYNAMIC.items() if k != "fps"}, "missing key 'fps'"),
        ("dynamic", {**DYNAMIC, "videos": {"TRAIN": 1}}, r"phantom.dynamic.videos must map"),
        ("ped_a4c", {**PED, "videos_per_fold": 0}, "videos_per_fold must be an int >= 1"),
        ("cardiacnet", {**CARDIACNET, "frames": [10, 5]}, "frames must be"),
        ("camus", {**CAMUS, "size": 8}, r"phantom.camus.size must be an int >= 32"),
        ("rvfailure", {**RVFAILURE, "frames": [16, 40]}, "32 <= min <= max"),
        ("rvfailure", {**RVFAILURE, "photometric": "YBR"}, "photometric must be one of"),
        ("echonet", DYNAMIC, "unknown phantom dataset 'echonet'"),
    ],
)
def test_params_validation(tmp_path, dataset, params, match):
    with pytest.raises(ValueError, match=match):
        write_phantom(dataset, tmp_path / "out", params, seed=0)
    assert not (tmp_path / "out").exists()


def test_write_replaces_existing_folder(tmp_path):
    root = tmp_path / "camus"
    (root / "stale").mkdir(parents=True)
    write_phantom("camus", root, {"patients": {"train": 1, "valid": 0, "test": 0}, "size": 64}, 0)
    assert [p.name for p in root.iterdir()] == ["camus05_256.hdf5"]
    check_params("camus", {"patients": {"train": 1, "valid": 0, "test": 0}, "size": 64})
