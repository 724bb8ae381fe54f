"""CardiacNet (index, convert, gather) and CAMUS preparation on tiny hand-made files."""

from __future__ import annotations

import cv2
import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echogen.data.camus import INDEX_COLUMNS as CAMUS_COLUMNS
from echogen.data.camus import prepare_camus
from echogen.data.cardiacnet import (
    INDEX_COLUMNS,
    convert_cardiacnet,
    index_cardiacnet,
    ingest_cardiacnet,
    minmax_uint8,
    orient_frames,
)
from echogen.data.errors import DataError
from echogen.data.manifest import MANIFEST_COLUMNS, read_manifest
from echogen.data.video import probe_video, read_video

CLASS_MAP = {"ASD": 0, "Non-ASD": 1, "Non-PAH": 2, "PAH": 3}
GROUPS = {"ASD": "CardiacNet-ASD", "Non-ASD": "CardiacNet-ASD"}
GROUPS |= {"PAH": "CardiacNet-PAH", "Non-PAH": "CardiacNet-PAH"}
SPLIT = {"train": 0.8, "val": 0.1, "seed": 42}
H, W, T = 24, 20, 5


def make_cardiacnet(root, n_patients=None):
    """Write ``n_patients[class]`` volumes H×W×T per class (default 3 each)."""
    n_patients = n_patients or dict.fromkeys(CLASS_MAP, 3)
    rng = np.random.default_rng(0)
    for class_name, n in n_patients.items():
        for p in range(n):
            folder = root / GROUPS[class_name] / class_name / f"{p:03d}"
            folder.mkdir(parents=True)
            volume = rng.integers(10, 200, (H, W, T), dtype=np.uint8)
            nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / f"{p:03d}_image.nii")
    return root


def index(root, tmp_path, split=SPLIT):
    return index_cardiacnet(root, CLASS_MAP, split, tmp_path / "idx.csv", tmp_path / "idx_q.csv")


def test_orient_frames_matches_echodream():
    volume = np.arange(H * W * T, dtype=np.uint8).reshape(H, W, T)
    frames = orient_frames(volume)
    assert frames.shape == (T, W, H)
    for t in range(T):
        np.testing.assert_array_equal(frames[t], np.fliplr(np.rot90(volume[:, :, t], k=1)))
        np.testing.assert_array_equal(frames[t][::-1, ::-1].T, volume[:, :, t])  # inverse


def test_minmax_uint8():
    frames = np.array([[[2.0, 4.0], [6.0, 10.0]], [[3.0, 3.0], [3.0, 3.0]]])
    np.testing.assert_array_equal(minmax_uint8(frames), [[[0, 63], [127, 255]], [[0, 0], [0, 0]]])


def test_index_split_is_patient_stratified_and_deterministic(tmp_path):
    root = make_cardiacnet(tmp_path / "cn", {"ASD": 10, "Non-ASD": 3, "PAH": 20, "Non-PAH": 1})
    df = index(root, tmp_path)
    assert list(df.columns) == INDEX_COLUMNS
    assert pd.read_csv(tmp_path / "idx.csv", dtype=str).shape == (34, 6)
    assert df["FileName"].is_monotonic_increasing
    assert df.loc[0, "FileName"] == "ASD_000" and df.loc[0, "class_id"] == 0
    assert df.loc[0, "nifti"] == str(root / "CardiacNet-ASD" / "ASD" / "000" / "000_image.nii")
    counts = df.groupby(["class_name", "Split"]).size().to_dict()
    assert counts == {
        ("ASD", "TRAIN"): 8, ("ASD", "VAL"): 1, ("ASD", "TEST"): 1,
        ("Non-ASD", "TRAIN"): 1, ("Non-ASD", "VAL"): 1, ("Non-ASD", "TEST"): 1,
        ("PAH", "TRAIN"): 16, ("PAH", "VAL"): 2, ("PAH", "TEST"): 2,
        ("Non-PAH", "TRAIN"): 1,
    }  # fmt: skip
    again = index(root, tmp_path)
    assert again["Split"].tolist() == df["Split"].tolist()
    other = index(root, tmp_path, {**SPLIT, "seed": 7})
    assert other["Split"].tolist() != df["Split"].tolist()
    assert pd.read_csv(tmp_path / "idx_q.csv").empty


def test_unknown_class_folder(tmp_path):
    root = make_cardiacnet(tmp_path / "cn")
    (root / "CardiacNet-PAH" / "Borderline" / "000").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Borderline: unknown class folder.*'PAH'.*class_map"):
        index(root, tmp_path)
    assert not (tmp_path / "idx.csv").exists()


def test_empty_root(tmp_path):
    (tmp_path / "cn").mkdir()
    with pytest.raises(DataError, match=r"cn: empty dataset"):
        index(tmp_path / "cn", tmp_path)


def test_convert_and_ingest(tmp_path):
    root = make_cardiacnet(tmp_path / "cn")
    index(root, tmp_path)
    parts = [tmp_path / "parts" / f"part_{c:03d}" for c in range(2)]
    for c, part in enumerate(parts):
        convert_cardiacnet(tmp_path / "idx.csv", c, 2, part, fps=32.0, size=16)
    assert sorted(p.name for p in parts[0].iterdir())[:2] == ["ASD_000.mp4", "ASD_002.mp4"]
    info = probe_video(parts[0] / "ASD_000.mp4")
    assert (info.frames, info.height, info.width, info.fps) == (T, 16, 16, 32.0)
    # Content check: the first converted frame is the oriented, rescaled, resized volume.
    volume = np.asanyarray(nib.load(root / "CardiacNet-ASD/ASD/000/000_image.nii").dataobj)
    expected = cv2.resize(
        minmax_uint8(orient_frames(volume))[0], (16, 16), interpolation=cv2.INTER_AREA
    )
    got = read_video(parts[0] / "ASD_000.mp4")[0].astype(int)
    assert np.abs(got - expected).mean() < 20  # mp4v is lossy on random noise

    manifest = ingest_cardiacnet(parts, tmp_path / "m.csv", tmp_path / "q.csv")
    df = read_manifest(tmp_path / "m.csv")
    assert list(df.columns) == MANIFEST_COLUMNS and len(df) == len(manifest) == 12
    assert df["FileName"].is_monotonic_increasing
    assert df["EF"].isna().all() and (df["Dataset"] == "cardiacnet").all()
    assert (df["View"] == "A4C").all() and (df["NumberOfFrames"] == T).all()
    assert df.loc[df["class_name"] == "PAH", "class_id"].eq(3).all()
    assert df.loc[0, "Path"] == str(parts[0] / "ASD_000.mp4")
    assert set(df["Split"]) == {"TRAIN", "VAL", "TEST"}
    assert pd.read_csv(tmp_path / "q.csv").empty


def test_unreadable_nifti(tmp_path):
    root = make_cardiacnet(tmp_path / "cn", {"ASD": 3})
    bad = root / "CardiacNet-ASD" / "ASD" / "001" / "001_image.nii"
    bad.write_bytes(np.random.default_rng(3).bytes(500))
    index(root, tmp_path)
    part = tmp_path / "parts" / "part_000"
    with pytest.raises(DataError, match=r"001_image\.nii: nibabel cannot read"):
        convert_cardiacnet(tmp_path / "idx.csv", 0, 1, part, size=16)
    assert not part.exists()
    convert_cardiacnet(tmp_path / "idx.csv", 0, 1, part, size=16, on_error="skip")
    df = ingest_cardiacnet([part], tmp_path / "m.csv", tmp_path / "q.csv")
    assert df["FileName"].tolist() == ["ASD_000", "ASD_002"]
    q = pd.read_csv(tmp_path / "q.csv")
    assert q["item"].tolist() == ["ASD_001"] and q["file"].tolist() == [str(bad)]
    assert not (part / "ASD_001.mp4").exists()


# --- CAMUS -------------------------------------------------------------------------------------


def make_camus(root, groups=("train", "valid", "test"), hw=(32, 24)):
    """One patient per split; 4CH im = ramp + patient, gt = quadrants of labels 0-3."""
    root.mkdir(parents=True)
    h, w = hw
    with h5py.File(root / "camus05_256.hdf5", "w") as f:
        for i, split in enumerate(groups):
            for view in ("2CH", "4CH"):
                im = (np.arange(2 * h * w).reshape(2, h, w) % 200 + i).astype(np.uint8)
                gt = np.zeros((2, h, w), np.uint8)
                gt[:, : h // 2, w // 2 :], gt[:, h // 2 :, : w // 2], gt[:, h // 2 :, w // 2 :] = (
                    1,
                    2,
                    3,
                )
                f[f"{split}/patient{i + 1:04d}/{view}/im"] = im
                f[f"{split}/patient{i + 1:04d}/{view}/gt"] = gt
    return root


def test_camus_happy_path(tmp_path):
    root = make_camus(tmp_path / "camus")
    out = tmp_path / "res" / "camus"
    df = prepare_camus(root, out)
    assert list(df.columns) == CAMUS_COLUMNS
    written = pd.read_csv(out / "index.csv")
    assert written["patient"].tolist() == ["patient0001", "patient0002", "patient0003"]
    assert written["split"].tolist() == ["train", "valid", "test"]
    assert written["image"][1] == str(out / "valid" / "image" / "patient0002.png")
    assert (written["height"] == 32).all() and (written["width"] == 24).all()
    with h5py.File(root / "camus05_256.hdf5") as f:
        im, gt = f["valid/patient0002/4CH/im"][0], f["valid/patient0002/4CH/gt"][0]
    image = cv2.imread(written["image"][1], cv2.IMREAD_UNCHANGED)
    label = cv2.imread(written["label"][1], cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint8 and label.dtype == np.uint8
    np.testing.assert_array_equal(image, im)
    np.testing.assert_array_equal(label, gt)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    assert pd.read_csv(out / "quarantine.csv").empty


def test_camus_bad_label(tmp_path):
    root = make_camus(tmp_path / "camus")
    with h5py.File(root / "camus05_256.hdf5", "a") as f:
        gt = f["test/patient0003/4CH/gt"]
        gt[0, 0, 0] = 7
    out = tmp_path / "res" / "camus"
    with pytest.raises(DataError, match=r"hdf5:/test/patient0003/4CH/gt: label values \[7\]"):
        prepare_camus(root, out)
    assert not out.exists()
    df = prepare_camus(root, out, on_error="skip")
    assert df["patient"].tolist() == ["patient0001", "patient0002"]
    q = pd.read_csv(out / "quarantine.csv")
    assert q["item"].tolist() == ["patient0003"]
    assert not (out / "test" / "image" / "patient0003.png").exists()


def test_camus_missing_file(tmp_path):
    (tmp_path / "camus").mkdir()
    with pytest.raises(DataError, match=r"camus05_256\.hdf5: CAMUS hdf5 file not found"):
        prepare_camus(tmp_path / "camus", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_camus_unknown_split(tmp_path):
    root = make_camus(tmp_path / "camus", groups=("train", "validation"))
    with pytest.raises(DataError, match=r"hdf5:/validation: unknown split group 'validation'"):
        prepare_camus(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_camus_reads_cardigans_float_images(tmp_path):
    """cardiGAN's prepare_dataset.py reads ``im[t, :, :, :]`` and writes ``255 * image``:
    (2, H, W, 1) float images in [0, 1] become the same uint8 PNGs; floats outside are refused."""
    root = make_camus(tmp_path / "camus")
    with h5py.File(root / "camus05_256.hdf5", "a") as f:
        im = f["train/patient0001/4CH/im"][()]
        del f["train/patient0001/4CH/im"]
        f["train/patient0001/4CH/im"] = (im / 255.0)[..., None].astype(np.float32)
        gt = f["train/patient0001/4CH/gt"][()]
        del f["train/patient0001/4CH/gt"]
        f["train/patient0001/4CH/gt"] = gt.astype(np.int64)[..., None]
    out = tmp_path / "out"
    written = prepare_camus(root, out)
    image = cv2.imread(written["image"][0], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(image, im[0])
    label = cv2.imread(written["label"][0], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(label, gt[0])
    with h5py.File(root / "camus05_256.hdf5", "a") as f:
        f["train/patient0001/4CH/im"][0, 0, 0, 0] = 1.5
    with pytest.raises(DataError, match=r"patient0001/4CH/im: float image values outside"):
        prepare_camus(root, tmp_path / "out2")
    with h5py.File(root / "camus05_256.hdf5", "a") as f:
        f["train/patient0001/4CH/im"][0, 0, 0, 0] = 0.5
        del f["train/patient0001/4CH/gt"]
        f["train/patient0001/4CH/gt"] = gt.astype(np.float32)
    with pytest.raises(DataError, match=r"patient0001/4CH/gt: expected integers"):
        prepare_camus(root, tmp_path / "out3")


def test_camus_views_and_phases_name_their_items(tmp_path):
    """Both views at both phases (cardiGAN's first prepare_dataset.py): four items a patient,
    each the frame of its view and phase; a view outside 2CH/4CH is refused by name."""
    root = make_camus(tmp_path / "camus")
    with h5py.File(root / "camus05_256.hdf5", "a") as f:
        f["train/patient0001/2CH/im"][1] = 77  # the ES frame of the 2CH view
    df = prepare_camus(root, tmp_path / "out", views=["2CH", "4CH"], phases=["ED", "ES"])
    train = df[df["split"] == "train"]
    assert train["patient"].tolist() == [
        "patient0001_2CH_ED", "patient0001_2CH_ES", "patient0001_4CH_ED", "patient0001_4CH_ES",
    ]  # fmt: skip
    assert train["view"].tolist() == ["2CH", "2CH", "4CH", "4CH"]
    assert train["phase"].tolist() == ["ED", "ES", "ED", "ES"]
    es = cv2.imread(train["image"].iloc[1], cv2.IMREAD_UNCHANGED)
    assert (es == 77).all()
    assert len(df) == 12 and (tmp_path / "out/train/label/patient0001_4CH_ES.png").is_file()
    with pytest.raises(ValueError, match="views"):
        prepare_camus(root, tmp_path / "out2", views=["3CH"])


def test_camus_missing_split_group_names_it(tmp_path):
    root = make_camus(tmp_path / "camus", groups=("train", "valid"))
    with pytest.raises(DataError, match=r"no patient in split group\(s\) \['test'\]"):
        prepare_camus(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_camus_missing_group_or_sizes_name_the_patient(tmp_path):
    root = make_camus(tmp_path / "camus")
    with h5py.File(root / "camus05_256.hdf5", "a") as f:
        del f["valid/patient0002/4CH/gt"]
    with pytest.raises(DataError, match=r"hdf5:/valid/patient0002/4CH/gt: dataset is missing"):
        prepare_camus(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with h5py.File(root / "camus05_256.hdf5", "a") as f:
        f["valid/patient0002/4CH/gt"] = np.zeros((2, 16, 16), np.uint8)
    with pytest.raises(DataError, match=r"patient0002/4CH/gt: label shape \(16, 16\) differs"):
        prepare_camus(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
