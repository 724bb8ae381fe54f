"""cardiGAN's evaluation: SPADE images of CAMUS masks as synthetic datasets, their scores,
and the segmentation experiment.

- **Synthesis** through the shared sampling driver (image datasets: one frame per item):
  sample ``v`` is the image SPADE makes from the ``v``-th mask (by patient) of a CAMUS split,
  its style code (encoder mode) drawn from the sample's seed; ``Source`` names the patient,
  ``Mask`` the label file and ``Image`` the real image of that mask, so a synthetic dataset
  is also a segmentation dataset (:func:`echogen.data.camus.pair_rows`). Without the
  encoder, SPADE is deterministic given the mask, as the reference.
- **Scores** (:func:`score_images`): SSIM and LPIPS of each image against the real image of
  the same mask, and *mask fidelity*: a segmenter trained on real images segments the
  generated image and its Dice per structure against the input mask is reported beside the
  same segmenter's Dice on the real image (the ceiling). FID comes from the shared
  generation metrics of the registered dataset. :func:`write_cardigan_table` is
  ``results/metrics/cardigan.txt``.
- **Segmentation experiment** (:func:`evaluate_segmenter`, :func:`write_segmentation_table`):
  segmenters trained on real, synthetic and real + synthetic images, each tested on the real
  TEST split, Dice per structure with bootstrap CIs: ``results/metrics/
  cardigan_segmentation.txt``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.camus import CONTRACT_SPLITS, STRUCTURES, CamusPairSet, load_pair, pair_rows
from echogen.data.errors import DataError
from echogen.data.frames import write_frames
from echogen.data.io import atomic_dir, atomic_path, write_json
from echogen.metrics.paired import LPIPS, ssim
from echogen.metrics.scores import bootstrap_ci, interval_label
from echogen.models.segmenter import dice_per_structure, load_segmenter
from echogen.models.spade import load_generator, one_hot
from echogen.pipelines.cascade_scoring import fid_fvd16
from echogen.pipelines.synthetic import (
    BASE_SCHEMA,
    Sample,
    gather_samples,
    read_filelist,
    sample_name,
    sample_seed,
    write_shard,
)

log = logging.getLogger(__name__)

CARDIGAN_SCHEMA = {**BASE_SCHEMA, "Source": "str", "Mask": "str", "Image": "str", "seed": "int"}
DICE_COLUMNS = [f"dice_{name}" for name in STRUCTURES.values()]
SCORE_COLUMNS = ["FileName", "Source", "ssim", "lpips", *DICE_COLUMNS,
                 *(f"real_{c}" for c in DICE_COLUMNS)]  # fmt: skip
FPS = 1.0  # an image dataset's "video" is one frame


@dataclass(frozen=True)
class CardiganSamplingConfig:
    """How a synthetic image dataset is made from a CAMUS split's masks.

    Args:
        per_mask (int, 1): images per mask (several: several style codes in encoder mode).
        max_masks (int | None, None): the first masks only (by patient), None: all.
        quality (int, 95): JPEG quality of the frame folders.
    """

    per_mask: int = 1
    max_masks: int | None = None
    quality: int = 95

    def __post_init__(self):
        if self.per_mask < 1 or (self.max_masks is not None and self.max_masks < 1):
            raise ValueError("per_mask and max_masks must be >= 1")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"quality must be in 0..100, got {self.quality}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict | None) -> CardiganSamplingConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (settings or {}).items() if k in known})


def plan_images(index_csv: str | Path, split: str, config: CardiganSamplingConfig,
                run_seed: int) -> pd.DataFrame:  # fmt: skip
    """One row per image: the mask's patient (``Source``) and label file (``Mask``)."""
    rows = pair_rows(index_csv, split).sort_values("patient", kind="stable")
    if config.max_masks is not None:
        rows = rows.head(config.max_masks)
    records = []
    for row in rows.itertuples(index=False):
        for _ in range(config.per_mask):
            v = len(records)
            records.append({"index": v, "FileName": sample_name(v),
                            "Split": CONTRACT_SPLITS.get(split, split), "EF": float("nan"),
                            "seed": sample_seed(run_seed, v), "Source": str(row.patient),
                            "Mask": str(row.label), "Image": str(row.image)})  # fmt: skip
    return pd.DataFrame.from_records(records)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generated images ``(B, C, H, W)`` in [-1, 1] → grey ``uint8 (B, H, W)`` (channel mean)."""
    grey = images.float().mean(1).clamp(-1, 1)
    return ((grey + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


class SpadeImages:
    """The image of each plan row's mask; in encoder mode, the style code from its seed."""

    block = 1

    def __init__(self, generator, device):
        self.generator, self.device = generator, torch.device(device)
        self.size = generator.config.crop_size

    @torch.no_grad()
    def image(self, mask: np.ndarray, seed: int) -> np.ndarray:
        seg = one_hot(torch.from_numpy(mask[None].astype(np.int64)), self.generator.config.label_nc)
        noise = torch.Generator(device=self.device).manual_seed(int(seed))
        return to_uint8(self.generator(seg.to(self.device), generator=noise))[0]

    def generate(self, rows: pd.DataFrame) -> list[Sample]:
        samples = []
        for row in rows.itertuples(index=False):
            pair = pd.Series({"patient": row.Source, "image": row.Image, "label": row.Mask})
            _, mask = load_pair(pair, self.size)
            samples.append(Sample(video=self.image(mask, row.seed)[None]))
        return samples


def sample_cardigan_shard(
    model_dir: str | Path,
    index_csv: str | Path,
    out_dir: str | Path,
    split: str,
    config: CardiganSamplingConfig | dict,
    run_seed: int,
    shard: int,
    n_shards: int,
    device: str = "cpu",
) -> pd.DataFrame:
    """Plan a split's images and write one shard of them (:data:`CARDIGAN_SCHEMA`)."""
    from echogen.workflow import provenance

    if not isinstance(config, CardiganSamplingConfig):
        config = CardiganSamplingConfig.from_settings(config)
    generator = SpadeImages(load_generator(model_dir, device), device)
    plan = plan_images(index_csv, split, config, run_seed)
    record = provenance(config.to_dict(), device=str(device), model_dir=str(model_dir),
                        index=str(index_csv), split=split, seed=int(run_seed),
                        video={"frames": 1, "size": generator.size},
                        # no conditioning frames: the images are made from masks alone
                        masks={"split": split, "source": str(index_csv)})  # fmt: skip
    return write_shard(plan, generator, out_dir, shard=shard, n_shards=n_shards,
                       schema=CARDIGAN_SCHEMA, fps=FPS, quality=config.quality,
                       record=record)  # fmt: skip


def sample_cardigan_dataset(model_dir: str | Path, index_csv: str | Path, out_dir: str | Path,
                            split: str, config: CardiganSamplingConfig | dict, run_seed: int,
                            device: str = "cpu") -> pd.DataFrame:  # fmt: skip
    """A split's whole image dataset in one job: one shard, gathered into ``out_dir`` (the
    same files as any number of shards gathered by the shared rule)."""
    out_dir = Path(out_dir)
    shard_dir = out_dir.parent / f".{out_dir.name}.shard"
    sample_cardigan_shard(model_dir, index_csv, shard_dir, split, config, run_seed, 1, 1, device)
    try:
        return gather_samples([shard_dir], out_dir)
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)


def write_reference_frames(index_csv: str | Path, split: str, size: int, out_dir: str | Path,
                           quality: int = 95) -> pd.DataFrame:  # fmt: skip
    """The real images of a split as a frame folder ``<out_dir>/<patient>/0000.jpg`` at
    ``size`` px (the generated images' size and JPEG quality), the generation metrics'
    reference, with its index ``<out_dir>.csv`` (``FileName``, ``frames``, ``policy``)."""
    rows = pair_rows(index_csv, split)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for row in tqdm(list(rows.itertuples(index=False)), desc=f"camus {split} frames"):
            image, _ = load_pair(pd.Series(row._asdict()), size)
            frame = (image * 255.0).round().astype(np.uint8)[None]
            write_frames(frame, tmp / str(row.patient), quality)
    index = pd.DataFrame({"FileName": rows["patient"], "frames": 1,
                          "policy": f"camus_{split}_images"})  # fmt: skip
    with atomic_path(Path(f"{out_dir}.csv")) as tmp_csv:
        index.to_csv(tmp_csv, index=False)
    return index


# Label colours of the report strips (BGR): background black, LV cavity red, myocardium
# green, left atrium blue.
LABEL_COLOURS = np.array([[0, 0, 0], [60, 60, 230], [60, 200, 60], [230, 120, 40]], np.uint8)


def write_strips(samples_dir: str | Path, path: str | Path, n: int = 4) -> None:
    """``mask | real | generated`` rows of the first ``n`` samples as one PNG."""
    samples_dir = Path(samples_dir)
    filelist = read_filelist(samples_dir / "FileList.csv", CARDIGAN_SCHEMA).head(n)
    rows = []
    for sample in filelist.itertuples(index=False):
        fake = _read_grey(samples_dir / "frames" / sample.FileName / "0000.jpg", sample.FileName)
        real, mask = load_pair(pd.Series({"patient": sample.Source, "image": sample.Image,
                                          "label": sample.Mask}), fake.shape[0])  # fmt: skip
        grey = [np.repeat(x[..., None], 3, axis=2) for x in ((real * 255).round().astype(np.uint8),
                                                             fake)]  # fmt: skip
        rows.append(np.concatenate([LABEL_COLOURS[mask], *grey], axis=1))
    if not rows:
        raise ValueError(f"{samples_dir} has no sample to show")
    with atomic_path(Path(path)) as tmp:
        if not cv2.imwrite(str(tmp), np.concatenate(rows, axis=0)):
            raise RuntimeError(f"OpenCV cannot write {path}")


def _read_grey(path: Path, item: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError(path, f"generated image of {item} missing or unreadable",
                        "re-run the sampling rule")  # fmt: skip
    return image


def score_images(samples_dir: str | Path, segmenter_dir: str | Path, lpips: LPIPS | None = None,
                 device: str = "cpu") -> pd.DataFrame:  # fmt: skip
    """Every generated image against the real image of its mask (SSIM, LPIPS), and the mask
    fidelity: the real-trained segmenter's Dice per structure on the generated image and on
    the real one, both against the input mask, at the generated size."""
    samples_dir = Path(samples_dir)
    filelist = read_filelist(samples_dir / "FileList.csv", CARDIGAN_SCHEMA)
    segmenter = load_segmenter(segmenter_dir, device)
    channels = segmenter.config.in_channels
    rows = []
    for sample in tqdm(filelist.itertuples(index=False), total=len(filelist), desc="score"):
        fake = _read_grey(samples_dir / "frames" / sample.FileName / "0000.jpg", sample.FileName)
        size = fake.shape[0]
        real, mask = load_pair(pd.Series({"patient": sample.Source, "image": sample.Image,
                                          "label": sample.Mask}), size)  # fmt: skip
        fake = torch.from_numpy(fake.astype(np.float32) / 255.0)[None, None]
        real = torch.from_numpy(real)[None, None]
        images = torch.cat([fake, real]) * 2 - 1
        pred = segmenter.predict(images.expand(-1, channels, -1, -1).to(device)).cpu()
        dice = dice_per_structure(
            pred, torch.from_numpy(mask.astype(np.int64))[None].expand(2, -1, -1)
        )
        rows.append({
            "FileName": sample.FileName, "Source": sample.Source,
            "ssim": float(ssim(fake.double(), real.double())[0]),
            "lpips": float(lpips(images[:1], images[1:])[0]) if lpips is not None else None,
            **dict(zip(DICE_COLUMNS, dice[0].tolist(), strict=True)),
            **dict(zip((f"real_{c}" for c in DICE_COLUMNS), dice[1].tolist(), strict=True)),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def write_scores(scores: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        scores.to_csv(tmp, index=False, float_format="%.6g")


def _cell(value, width: int = 6, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"


def write_cardigan_table(models: dict[str, dict], txt_path: str | Path,
                         json_path: str | Path) -> dict:  # fmt: skip
    """``results/metrics/cardigan.txt`` and ``.json``: per SPADE model, the mean SSIM and
    LPIPS to the real image of the same mask, FID and KID of the TEST images, the mask fidelity
    (the real-trained segmenter's Dice per structure on generated images, and on the real
    images of the same masks in brackets).

    Args:
        models: ``{model: {"scores": DataFrame (:func:`score_images`), "generation": the
            dataset's generation-metric record or None, "plumbing": bool}}``.
    """
    names = list(STRUCTURES.values())
    record = {"structures": names, "models": {}}
    head = (f"{'model':<12} {'n':>4}  {'SSIM':>6} {'LPIPS':>6} {'FID':>8} {'KID':>8}  "
            + "  ".join(f"{name:>17}" for name in names))  # fmt: skip
    lines = [
        "cardiGAN: SPADE images of the CAMUS TEST masks.",
        "SSIM/LPIPS: to the real image of the same mask. FID, KID: generated vs real TEST images. "
        "Dice (mask fidelity): a segmenter trained on real images, applied to the generated "
        "image, against the input mask; in brackets the same segmenter on the real image.",
        "",
        head,
    ]
    for name, entry in models.items():
        scores = entry["scores"]
        if scores.empty:
            raise ValueError(f"model {name!r} has no scores")
        fid, _ = fid_fvd16(entry.get("generation"))
        generated = (entry.get("generation") or {}).get("metrics", {})
        kid = next((v for k, v in generated.items() if k.startswith("kid")), None)
        lpips = scores["lpips"].astype(float)
        row = {
            "n": int(len(scores)),
            "ssim": float(scores["ssim"].mean()),
            "lpips": None if lpips.isna().any() else float(lpips.mean()),
            "fid": fid,
            "kid": kid,
            "dice": {n: float(np.nanmean(scores[f"dice_{n}"])) for n in names},
            "dice_real": {n: float(np.nanmean(scores[f"real_dice_{n}"])) for n in names},
            "plumbing": bool(entry.get("plumbing")),
        }
        record["models"][name] = row
        dice = "  ".join(
            f"{_cell(row['dice'][n])} ({_cell(row['dice_real'][n], 5)})" + " " * 2 for n in names
        )
        label = name + (" *" if row["plumbing"] else "")
        lines.append(f"{label:<12} {row['n']:>4}  {_cell(row['ssim'])} {_cell(row['lpips'])} "
                     f"{_cell(fid, 8, 2)} {_cell(kid, 8, 4)}  {dice}".rstrip())  # fmt: skip
    if any(r["plumbing"] for r in record["models"].values()):
        lines += ["", "* tiny model, random detector or random perceptual network: a plumbing "
                  "check, not a paper number."]  # fmt: skip
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    write_json(json_path, record)
    return record


def nearest_neighbour_accuracy(real: np.ndarray, fake: np.ndarray) -> float:
    """Leave-one-out accuracy of a 1-nearest-neighbour classifier telling real from
    generated features (Euclidean): 0.5 when the sets mix, 1.0 when they separate."""
    x = np.concatenate([real, fake]).astype(np.float64)
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(1)] == y).mean())


def write_embedding_plot(real_dir: str | Path, fake_dir: str | Path, detector_path: str | Path,
                         path: str | Path, seed: int = 0, device: str = "cpu") -> dict:  # fmt: skip
    """cardiGAN's UMAP, as a t-SNE: the detector's features of the real and generated images
    embedded in 2-D (scikit-learn's TSNE, seeded), one colour per set, with the 1-NN
    real-vs-generated accuracy in the title. Returns ``{"n_real", "n_fake", "nn_accuracy"}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from echogen.metrics.detectors import load_detector
    from echogen.metrics.generation import frame_features

    detector = load_detector(detector_path, None, device)
    real, _ = frame_features(real_dir, detector, device=device)
    fake, _ = frame_features(fake_dir, detector, device=device)
    both = np.concatenate([real, fake])
    perplexity = float(max(1.0, min(30.0, (len(both) - 1) / 3)))
    points = TSNE(n_components=2, perplexity=perplexity, random_state=seed,
                  init="pca").fit_transform(both)  # fmt: skip
    accuracy = nearest_neighbour_accuracy(real, fake)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(*points[: len(real)].T, s=12, label=f"real ({len(real)})")
    ax.scatter(*points[len(real) :].T, s=12, label=f"generated ({len(fake)})")
    ax.set_title(f"t-SNE of detector features; 1-NN real/generated accuracy {accuracy:.2f}")
    ax.legend()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return {"n_real": len(real), "n_fake": len(fake), "nn_accuracy": accuracy}


# --------------------------------------------------------------- segmentation experiment


def evaluate_segmenter(segmenter_dir: str | Path, index_csv: str | Path, split: str = "test",
                       device: str = "cpu") -> pd.DataFrame:  # fmt: skip
    """Dice per structure of a segmenter on each real image of ``split`` (at the size it was
    trained at, from its ``train.json``)."""
    import json

    segmenter = load_segmenter(segmenter_dir, device)
    size = int(json.loads((Path(segmenter_dir) / "train.json").read_text())["train"]["size"])
    pairs = CamusPairSet(pair_rows(index_csv, split), size, segmenter.config.in_channels)
    preds = [segmenter.predict(torch.from_numpy(pairs.images[i : i + 8]).to(device)).cpu()
             for i in range(0, len(pairs), 8)]  # fmt: skip
    dice = dice_per_structure(torch.cat(preds), pairs.labels)
    return pd.DataFrame({"patient": pairs.patients,
                         **{c: dice[:, i] for i, c in enumerate(DICE_COLUMNS)}})  # fmt: skip


def _mean(values: np.ndarray, _: np.ndarray) -> float:
    return float(np.mean(values))


def write_segmentation_table(runs: dict[str, pd.DataFrame], txt_path: str | Path,
                             json_path: str | Path, n_boot: int = 1000, seed: int = 0,
                             plumbing: bool = False) -> dict:  # fmt: skip
    """``results/metrics/cardigan_segmentation.txt`` and ``.json``: per training set (real,
    synthetic, real + synthetic), the mean Dice per structure on the real TEST images with a
    percentile bootstrap interval over images, and the mean of the three."""
    names = list(STRUCTURES.values())
    record = {"structures": names, "n_boot": n_boot, "seed": seed, "plumbing": plumbing,
              "interval": interval_label(n_boot, seed), "runs": {}}  # fmt: skip
    lines = [
        "cardiGAN's segmentation experiment: a 2-D U-Net trained on each set, tested on the "
        "real CAMUS TEST images.",
        f"Dice per structure, mean over images [{interval_label(n_boot, seed)}].",
        "",
        f"{'trained on':<16} {'n':>4}  " + "  ".join(f"{n:>22}" for n in names) + f"  {'mean':>6}",
    ]
    for run, scores in runs.items():
        entry = {"n": int(len(scores))}
        cells = []
        for name in names:
            values = scores[f"dice_{name}"].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            mean = float(values.mean()) if len(values) else None
            low, high = bootstrap_ci(_mean, values, values, n_boot=n_boot, seed=seed) \
                if len(values) else (None, None)  # fmt: skip
            entry[name] = {"mean": mean, "low": low, "high": high}
            cells.append(f"{_cell(mean)} [{_cell(low, 5)}, {_cell(high, 5)}]")
        means = [entry[n]["mean"] for n in names if entry[n]["mean"] is not None]
        entry["mean"] = float(np.mean(means)) if means else None
        record["runs"][run] = entry
        lines.append(f"{run:<16} {entry['n']:>4}  " + "  ".join(f"{c:>22}" for c in cells)
                     + f"  {_cell(entry['mean'])}")  # fmt: skip
    if plumbing:
        lines += ["", "Tiny segmenters or generator: a plumbing check, not a paper number."]
    with atomic_path(txt_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    write_json(json_path, record)
    return record
