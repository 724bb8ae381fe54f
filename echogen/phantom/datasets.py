"""Writers of synthetic datasets in the raw layouts of the public downloads.

Each ``write_<dataset>(root, params, seed)`` fills an (empty, temporary) folder ``root``
with the files the public dataset ships (see ``docs/data_contracts.md``, "Raw layouts"), so
the real ingestion code runs on them. Everything is drawn from ``np.random.default_rng``
seeded by ``seed`` (one child generator per item), so equal seeds give equal files.
Hearts come from :mod:`echogen.phantom.heart`; for EchoNet-style datasets the LV tracings
are chords of the rendered cavity, so the tracing EF equals the FileList EF.
"""

from __future__ import annotations

import datetime
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from tqdm import tqdm

from echogen.data.video import write_video
from echogen.phantom.heart import (
    CAMUS_LABELS,
    Heart,
    Sector,
    contraction,
    lv_scale,
    lv_tracing,
    render,
)

DYNAMIC_SPLITS = ("TRAIN", "VAL", "TEST")
CAMUS_SPLITS = ("train", "valid", "test")
N_FOLDS = 10
EF_RANGE = (15.0, 80.0)
EDV_RANGE = (70.0, 180.0)  # mL
HEART_RATE = (50.0, 110.0)  # bpm
N_CHORDS = 20
# CardiacNet: (condition folder, class folder, acquisition site, heart features).
CARDIACNET_CLASSES = (
    ("ASD", "ASD", "a", {"asd": 0.6}),
    ("ASD", "Non-ASD", "a", {}),
    ("PAH", "PAH", "b", {"rv_scale": 1.6, "rv_motion": 0.1}),
    ("PAH", "Non-PAH", "b", {}),
)
# Sites differ in overall gain and fan opening, so normal hearts of the two are separable.
CARDIACNET_SITES = {
    "a": {"gain": 1.05, "half_angle": 42.0},
    "b": {"gain": 0.75, "half_angle": 34.0},
}
CARDIACNET_FPS = 30.0
# RV failure severity: RV dilation and reduced RV wall motion grow with the class.
RV_CLASSES = {
    "normal": {"rv_scale": 1.0, "rv_motion": 0.25},
    "mild": {"rv_scale": 1.2, "rv_motion": 0.17},
    "moderate": {"rv_scale": 1.4, "rv_motion": 0.1},
    "severe": {"rv_scale": 1.6, "rv_motion": 0.04},
}
RV_FPS = 30.0
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
FAKE_FIRST = ("Jane", "John", "Alex", "Maria", "Wei", "Fatima", "Lars", "Ana")
FAKE_LAST = ("Doe", "Smith", "Garcia", "Chen", "Okafor", "Novak", "Silva", "Berg")
FAKE_SITES = ("Phantom General Hospital", "Synthetic Heart Institute")


def random_heart(
    rng: np.random.Generator,
    view: str,
    height: int,
    width: int,
    size: float = 1.0,
    jitter: float = 1.0,
    **features,
) -> Heart:
    """Draw a plausible ED heart for a ``height × width`` image.

    Args:
        rng: random generator.
        view: ``"a4c"``, ``"a2c"`` or ``"psax"``.
        height, width: image size (px).
        size: LV size factor (1 = adult average; e.g. ``(EDV/120)^(1/3)``).
        jitter: scale of the random position/angle/shape variation (0 = nominal heart).
        features: extra :class:`Heart` fields (``rv_scale``, ``rv_motion``, ``asd``).
    """
    k = min(height, width)

    def vary(spread):
        return jitter * rng.uniform(-spread, spread)

    if view == "psax":
        radius = 0.15 * k * size * (1 + vary(0.08))
        centre = (width / 2 + k * vary(0.04), k * (0.5 + vary(0.03)))
        angle = vary(20.0)
        theta = np.deg2rad(angle)
        apex = (centre[0] - radius * np.sin(theta), centre[1] - radius * np.cos(theta))
        return Heart(
            "psax", apex, angle, 2 * radius, radius, 0.05 * k * (1 + vary(0.1)), **features
        )
    return Heart(
        view,
        apex=(width / 2 + k * (0.01 + vary(0.02)), k * (0.11 + vary(0.02))),
        angle=10.0 + vary(5.0),
        length=0.41 * k * size * (1 + vary(0.05)),
        radius=0.13 * k * size * (1 + vary(0.08)),
        wall=0.045 * k * (1 + vary(0.1)),
        **features,
    )


def random_sector(rng: np.random.Generator, height: int, width: int, **site) -> Sector:
    """Draw fan settings; ``site`` fixes ``gain``/``half_angle`` around which they vary."""
    return Sector(
        height,
        width,
        half_angle=site.get("half_angle", 42.0) + rng.uniform(-2, 2),
        gain=site.get("gain", 1.0) * rng.uniform(0.92, 1.08),
        attenuation=rng.uniform(0.6, 1.1),
    )


def beating_clip(
    rng: np.random.Generator,
    heart: Heart,
    sector: Sector,
    n_frames: int,
    fps: float,
    ef: float,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Render a clip with a random heart rate and phase.

    The heart rate is drawn so that a full beat fits in the clip where 50-110 bpm allows.

    Returns:
        ``(frames uint8 (T, H, W), lv_scale (T,), ed_frame, es_frame)``.
    """
    low = min(max(HEART_RATE[0], 60.0 * fps / n_frames), HEART_RATE[1])
    heart_rate = rng.uniform(low, HEART_RATE[1])
    scale = lv_scale(contraction(n_frames, fps, heart_rate, rng.uniform()), ef)
    frames, _ = render(heart, sector, scale, rng)
    return frames, scale, int(np.argmax(scale)), int(np.argmin(scale))


def _tracing_rows(file_name: str, heart: Heart, scale: np.ndarray, ed: int, es: int) -> list:
    """A video's tracing rows in the real file's order: the smaller (ES) tracing first, the
    larger (ED) last, whatever their frame order (echonet/dynamic's ``Echo`` takes the last
    traced frame as ED, and D'ARTAGNAN's preprocessing does too)."""
    rows = []
    for frame in (es, ed):
        lines = np.round(lv_tracing(heart, float(scale[frame]), N_CHORDS), 4)
        rows += [(file_name, *map(float, line), frame) for line in lines]
    return rows


def _write_tracings(path: Path, rows: list) -> None:
    pd.DataFrame(rows, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(
        path, index=False
    )


def write_dynamic(root: Path, params: dict, seed: int) -> None:
    """EchoNet-Dynamic: ``FileList.csv``, ``VolumeTracings.csv``, ``Videos/<name>.avi`` (A4C)."""
    rng = _rng(seed, "dynamic")
    splits = rng.permutation([s for s in DYNAMIC_SPLITS for _ in range(params["videos"][s])])
    names = _unique(lambda: f"0X{int(rng.integers(0, 2**62)):016X}", len(splits))
    size, fps = params["size"], float(params["fps"])
    files, tracings = [], []
    for i, (name, split) in enumerate(
        tqdm(list(zip(names, splits, strict=True)), desc="phantom dynamic")
    ):
        item = _rng(seed, "dynamic", i)
        ef = round(item.uniform(*EF_RANGE), 2)
        edv = round(item.uniform(*EDV_RANGE), 2)
        n_frames = int(item.integers(params["frames"][0], params["frames"][1] + 1))
        heart = random_heart(item, "a4c", size, size, size=(edv / 120) ** (1 / 3))
        frames, scale, ed, es = beating_clip(
            item, heart, random_sector(item, size, size), n_frames, fps, ef
        )
        write_video(root / "Videos" / f"{name}.avi", frames, fps)
        files.append(
            (name, ef, round(edv * (1 - ef / 100), 2), edv, size, size, fps, n_frames, split)
        )
        tracings += _tracing_rows(f"{name}.avi", heart, scale, ed, es)
    columns = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
               "NumberOfFrames", "Split"]  # fmt: skip
    pd.DataFrame(files, columns=columns).to_csv(root / "FileList.csv", index=False)
    _write_tracings(root / "VolumeTracings.csv", tracings)


def _write_pediatric(root: Path, params: dict, seed: int, view: str) -> None:
    """EchoNet-Pediatric A4C or PSAX.

    PSAX clips show a round LV ring with an RV crescent; their tracings still use the
    long-axis-plus-chords format (a diameter and chords perpendicular to it), for simplicity.
    """
    rng = _rng(seed, f"ped_{view}")
    folds = rng.permutation([f for f in range(N_FOLDS) for _ in range(params["videos_per_fold"])])

    def pid():
        return f"CR{int(rng.integers(10, 100))}a{int(rng.integers(0, 16**4)):04x}"

    names = _unique(lambda: f"{pid()}-{pid()}-{int(rng.integers(0, 10**6)):06d}.avi", len(folds))
    size, fps = params["size"], float(params["fps"])
    files, tracings = [], []
    desc = f"phantom ped_{view}"
    for i, (name, fold) in enumerate(tqdm(list(zip(names, folds, strict=True)), desc=desc)):
        item = _rng(seed, f"ped_{view}", i)
        ef = round(item.uniform(*EF_RANGE), 2)
        age = round(item.uniform(0.1, 18.0), 1)
        height_cm = round(float(np.clip(55 + 6.5 * age + item.normal(0, 5), 45, 195)), 1)
        weight = round((height_cm / 100) ** 2 * item.uniform(14.5, 22.0), 1)
        n_frames = int(item.integers(params["frames"][0], params["frames"][1] + 1))
        heart = random_heart(item, view, size, size, size=(height_cm / 170) ** 0.25)
        frames, scale, ed, es = beating_clip(
            item, heart, random_sector(item, size, size), n_frames, fps, ef
        )
        write_video(root / "Videos" / name, frames, fps)
        files.append((name, ef, str(item.choice(["M", "F"])), age, weight, height_cm, int(fold)))
        tracings += _tracing_rows(name, heart, scale, ed, es)
    columns = ["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"]
    pd.DataFrame(files, columns=columns).to_csv(root / "FileList.csv", index=False)
    _write_tracings(root / "VolumeTracings.csv", tracings)


def write_ped_a4c(root: Path, params: dict, seed: int) -> None:
    """EchoNet-Pediatric A4C folder (``FileList.csv``, ``VolumeTracings.csv``, ``Videos/``)."""
    _write_pediatric(root, params, seed, "a4c")


def write_ped_psax(root: Path, params: dict, seed: int) -> None:
    """EchoNet-Pediatric PSAX folder; tracings use the long-axis+chords format (see above)."""
    _write_pediatric(root, params, seed, "psax")


def to_cardiacnet_volume(frames: np.ndarray) -> np.ndarray:
    """Upright ``(T, H, W)`` frames → the stored CardiacNet array, shape ``(W, H, T)``.

    Applies ``np.rot90(np.flip(v, axis=1), k=-1, axes=(0, 1))`` to ``v = (H, W, T)``, the
    inverse of EchoDream's conversion ``np.flip(np.rot90(x, k=1, axes=(0, 1)), axis=1)``,
    which therefore gives the upright frames back.
    """
    upright = np.transpose(frames, (1, 2, 0))  # (H, W, T)
    return np.ascontiguousarray(np.rot90(np.flip(upright, axis=1), k=-1, axes=(0, 1)))


def write_cardiacnet(root: Path, params: dict, seed: int) -> None:
    """CardiacNet: ``CardiacNet-{ASD,PAH}/<class>/<id>/<id>_image.nii`` (uint8 ``(W, H, T)``).

    ``height``/``width`` are the upright frame size (after EchoDream's rotate-and-flip, see
    :func:`to_cardiacnet_volume`). ASD hearts have a gap in the atrial septum, PAH hearts a
    dilated, hypokinetic RV; each condition's pair comes from its own "site" (gain, fan).
    Patient ids are numeric strings, unique across classes (EchoDream parses them as int).
    """
    rng = _rng(seed, "cardiacnet")
    n = params["patients_per_class"]
    items = [cls for cls in CARDIACNET_CLASSES for _ in range(n)]
    ids = [f"{i + 1:04d}" for i in rng.permutation(len(items))]
    height, width = params["height"], params["width"]
    for i, ((condition, name, site, features), pid) in enumerate(
        tqdm(list(zip(items, ids, strict=True)), desc="phantom cardiacnet")
    ):
        item = _rng(seed, "cardiacnet", i)
        heart = random_heart(item, "a4c", height, width, jitter=0.25, **features)
        sector = random_sector(item, height, width, **CARDIACNET_SITES[site])
        n_frames = int(item.integers(params["frames"][0], params["frames"][1] + 1))
        ef = item.uniform(52, 70)
        frames, _, _, _ = beating_clip(item, heart, sector, n_frames, CARDIACNET_FPS, ef)
        folder = root / f"CardiacNet-{condition}" / name / pid
        folder.mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(to_cardiacnet_volume(frames), np.eye(4)), folder / f"{pid}_image.nii"
        )


def write_camus(root: Path, params: dict, seed: int) -> None:
    """CAMUS as cardiGAN's ``camus05_256.hdf5``: ``<split>/patientNNNN/{2CH,4CH}/{im,gt}``.

    Each dataset is uint8 ``(2, size, size)`` (0 = ED, 1 = ES); ``gt`` labels 0 background,
    1 LV cavity, 2 myocardium, 3 left atrium; ``im`` is rendered from the same geometry.
    """
    size = params["size"]
    splits = [s for s in CAMUS_SPLITS for _ in range(params["patients"][s])]
    with h5py.File(root / "camus05_256.hdf5", "w") as h5:
        for i, split in enumerate(tqdm(splits, desc="phantom camus")):
            item = _rng(seed, "camus", i)
            ef, size_factor = item.uniform(30, 70), item.uniform(0.9, 1.1)
            for view, key in (("a2c", "2CH"), ("a4c", "4CH")):
                heart = random_heart(item, view, size, size, size=size_factor)
                scale = lv_scale(np.array([1.0, 0.0]), ef)
                frames, labels = render(heart, random_sector(item, size, size), scale, item)
                group = h5.create_group(f"{split}/patient{i + 1:04d}/{key}")
                group.create_dataset("im", data=frames)
                group.create_dataset("gt", data=CAMUS_LABELS[labels])


def _stratified_splits(labels: list[str], rng: np.random.Generator) -> list[str]:
    """~60/20/20 train/valid/test by patient, stratified by class: the patients, the
    severest class first (shuffled within a class), follow train, held out, held out, train,
    train, ..., the held-out ones going alternately to TEST and VALID; so the severe class is
    in TRAIN, then in TEST, then in VALID as it has 1, 2, 3 patients."""
    order = [i for name in reversed(RV_CLASSES)
             for i in rng.permutation([j for j, x in enumerate(labels) if x == name])]  # fmt: skip
    splits = ["train"] * len(labels)
    held = 0
    for position, index in enumerate(order):
        if position % 5 in (1, 2):
            splits[index], held = ("test", "valid")[held % 2], held + 1
    return splits


def write_rvfailure(root: Path, params: dict, seed: int) -> None:
    """RV failure: multi-frame US DICOMs under ``dicoms/<study>/<series>/<uid>.dcm``.

    ``PatientID`` holds the REDCap id (``RV0001``); PatientName, PatientBirthDate and
    InstitutionName carry fake identifying values. File and folder names are UIDs only.
    ``REDcap_class.csv`` (``redcap_id,rv_failure_class``) and ``splits.csv``
    (``redcap_id,split``, ~60/20/20 train/valid/test) sit in ``root``.
    """
    rng = _rng(seed, "rvfailure")
    n = params["patients"]
    ids = [f"RV{i + 1:04d}" for i in range(n)]
    classes = list(RV_CLASSES)
    labels = [classes[c] for c in rng.permutation(np.arange(n) % len(classes))]
    splits = _stratified_splits(labels, rng)
    height, width = params["height"], params["width"]
    for i, (pid, label) in enumerate(
        tqdm(list(zip(ids, labels, strict=True)), desc="phantom rvfailure")
    ):
        item = _rng(seed, "rvfailure", i)
        identity = {
            "PatientName": f"{item.choice(FAKE_LAST)}^{item.choice(FAKE_FIRST)}",
            "PatientBirthDate": (
                datetime.date(1940, 1, 1) + datetime.timedelta(days=int(item.integers(0, 18000)))
            ).strftime("%Y%m%d"),
            "InstitutionName": str(item.choice(FAKE_SITES)),
        }
        study = generate_uid(entropy_srcs=[str(seed), "rvfailure", pid, "study"])
        n_clips = int(
            item.integers(params["clips_per_patient"][0], params["clips_per_patient"][1] + 1)
        )
        ef = item.uniform(15, 40)  # LVAD candidates have poor LV function
        heart = random_heart(item, "a4c", height, width, size=1.1, **RV_CLASSES[label])
        for clip in range(n_clips):
            n_frames = int(item.integers(params["frames"][0], params["frames"][1] + 1))
            frames, _, _, _ = beating_clip(
                item, heart, random_sector(item, height, width), n_frames, RV_FPS, ef
            )
            if params["photometric"] == "RGB":
                frames = np.repeat(frames[..., None], 3, axis=-1)
            uids = [generate_uid(entropy_srcs=[str(seed), pid, str(clip), kind]) for kind in "se"]
            path = root / "dicoms" / study / uids[0] / f"{uids[1]}.dcm"
            _write_dicom(path, frames, params["photometric"], pid, identity, study, *uids)
    pd.DataFrame({"redcap_id": ids, "rv_failure_class": labels}).to_csv(
        root / "REDcap_class.csv", index=False
    )
    pd.DataFrame({"redcap_id": ids, "split": splits}).to_csv(root / "splits.csv", index=False)


def _write_dicom(
    path: Path,
    frames: np.ndarray,
    photometric: str,
    patient_id: str,
    identity: dict,
    study: str,
    series: str,
    sop: str,
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "US"
    ds.PatientID = patient_id
    for tag, value in identity.items():
        setattr(ds, tag, value)
    # generate_instance_uid=False: keep the seeded SOP UID (pydicom would draw a random one).
    ds.set_pixel_data(frames, photometric, 8, generate_instance_uid=False)
    ds.NumberOfFrames = len(frames)
    ds.CineRate = int(RV_FPS)
    ds.FrameTime = f"{1000 / RV_FPS:.4f}"
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    """Generator for one named stream (dataset or dataset item) of ``seed``."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode()), *index])


def _unique(draw: Callable[[], str], n: int) -> list[str]:
    """``n`` distinct values of ``draw()`` in draw order."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen[draw()] = None
    return list(seen)
