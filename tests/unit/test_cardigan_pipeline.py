"""cardiGAN's evaluation: synthetic image datasets through the shared driver, the scores
(checked on a generator that returns the real image), and the segmentation tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from trainer_cases import camus_pairs

from echogen.data.camus import CamusPairSet, pair_rows
from echogen.data.errors import DataError
from echogen.models.segmenter import build_segmenter, dice_per_structure
from echogen.models.spade import build_generator
from echogen.pipelines import cardigan as cg
from echogen.pipelines.synthetic import Sample, gather_samples, write_shard

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A CAMUS index, an untrained tiny SPADE (encoder mode) and an untrained segmenter."""
    base = tmp_path_factory.mktemp("cardigan")
    index = camus_pairs(base / "camus", size=SIZE)["index"]
    torch.manual_seed(0)
    build_generator("tiny", use_vae=True, z_dim=8).save_pretrained(base / "spade" / "generator")
    build_segmenter("tiny").save_pretrained(base / "seg" / "segmenter")
    (base / "seg" / "train.json").write_text(json.dumps({"train": {"size": SIZE}}))
    return {"base": base, "index": index, "spade": base / "spade", "seg": base / "seg"}


def sample(data, out, n_shards=1, **config):
    shards = []
    for shard in range(1, n_shards + 1):
        folder = out.parent / f"{out.name}_shard{shard}"
        cg.sample_cardigan_shard(data["spade"], data["index"], folder, "train", config, 3, shard,
                                 n_shards)  # fmt: skip
        shards.append(folder)
    gather_samples(shards, out)
    return pd.read_csv(out / "FileList.csv")


def test_images_of_masks_are_shard_invariant_and_carry_their_masks(data, tmp_path):
    one = sample(data, tmp_path / "one", per_mask=2)
    two = sample(data, tmp_path / "two", n_shards=2, per_mask=2)
    assert len(one) == 8 and one.equals(two)
    assert list(one["Source"][:2]) == ["patient0001"] * 2 and (one["Split"] == "TRAIN").all()
    for name in one["FileName"]:
        a = (tmp_path / "one" / "frames" / name / "0000.jpg").read_bytes()
        assert a == (tmp_path / "two" / "frames" / name / "0000.jpg").read_bytes()
    assert (one[["FrameHeight", "FrameWidth", "NumberOfFrames"]] == [SIZE, SIZE, 1]).all().all()
    # encoder mode: the two images of one mask differ by their seeded style codes
    import cv2

    a, b = (
        cv2.imread(str(tmp_path / "one" / "frames" / n / "0000.jpg"), 0)
        for n in one["FileName"][:2]
    )
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.1
    # the dataset is a segmentation dataset: its pairs are (generated image, input mask)
    rows = pair_rows(tmp_path / "one", "train")
    assert list(rows["label"]) == list(one["Mask"]) and rows["image"][0].endswith("0000.jpg")


def test_pair_rows_names_what_a_synthetic_dataset_lacks(data, tmp_path):
    sample(data, tmp_path / "set", max_masks=1)
    with pytest.raises(DataError, match="no sample in split 'test'"):
        pair_rows(tmp_path / "set", "test")
    filelist = pd.read_csv(tmp_path / "set" / "FileList.csv")
    filelist.drop(columns="Mask").to_csv(tmp_path / "set" / "FileList.csv", index=False)
    with pytest.raises(DataError, match="missing column 'Mask'"):
        pair_rows(tmp_path / "set", "train")


class RealImages:
    """A perfect generator: the real image of each mask."""

    block = 1

    def generate(self, rows):
        from echogen.data.camus import load_pair

        out = []
        for row in rows.itertuples(index=False):
            image, _ = load_pair(pd.Series({"patient": row.Source, "image": row.Image,
                                            "label": row.Mask}), SIZE)  # fmt: skip
            out.append(Sample(video=(image * 255).round().astype(np.uint8)[None]))
        return out


def test_scores_of_real_images_are_the_ceiling(data, tmp_path):
    plan = cg.plan_images(data["index"], "test", cg.CardiganSamplingConfig(), 0)
    write_shard(plan, RealImages(), tmp_path / "shard", shard=1, n_shards=1,
                schema=cg.CARDIGAN_SCHEMA, fps=1.0, quality=100, record={})  # fmt: skip
    gather_samples([tmp_path / "shard"], tmp_path / "real")
    scores = cg.score_images(tmp_path / "real", data["seg"])
    assert len(scores) == 2 and scores["ssim"].min() > 0.99
    for column in cg.DICE_COLUMNS:  # the same image (up to JPEG rounding): the same Dice
        np.testing.assert_allclose(scores[column], scores[f"real_{column}"], atol=0.01)
    record = cg.write_cardigan_table({"real": {"scores": scores, "plumbing": True}},
                                     tmp_path / "t.txt", tmp_path / "t.json")  # fmt: skip
    assert record["models"]["real"]["ssim"] == pytest.approx(scores["ssim"].mean())
    text = (tmp_path / "t.txt").read_text()
    assert "real *" in text and "plumbing check" in text


def test_segmenter_evaluation_equals_an_independent_dice(data):
    scores = cg.evaluate_segmenter(data["seg"], data["index"], "test")
    from echogen.models.segmenter import load_segmenter

    seg = load_segmenter(data["seg"])
    pairs = CamusPairSet(pair_rows(data["index"], "test"), SIZE)
    pred = seg.predict(torch.from_numpy(pairs.images)).numpy()
    for i, label in enumerate((1, 2, 3)):
        for n in range(len(pairs)):
            p, t = pred[n] == label, pairs.labels[n] == label
            expected = 2 * (p & t).sum() / (p.sum() + t.sum())
            assert scores[cg.DICE_COLUMNS[i]][n] == pytest.approx(expected, abs=1e-6)


def test_dice_per_structure_by_hand():
    truth = np.zeros((1, 4, 4), int)
    truth[0, :2] = 1
    truth[0, 2:, :2] = 2
    truth[0, 2:, 2:] = 3
    pred = truth.copy()
    pred[0, 0] = 2  # 4 LV pixels lost to myocardium
    dice = dice_per_structure(pred, truth)[0]
    assert dice == pytest.approx([2 * 4 / (4 + 8), 2 * 4 / (8 + 4), 1.0])
    with pytest.raises(ValueError, match="two \\(N, H, W\\) label maps"):
        dice_per_structure(pred[0], truth)


def test_segmentation_table_intervals_hold_the_mean(tmp_path):
    rng = np.random.default_rng(0)
    runs = {name: pd.DataFrame({c: rng.uniform(lo, lo + 0.1, 20) for c in cg.DICE_COLUMNS})
            for name, lo in (("real", 0.8), ("synthetic", 0.5))}  # fmt: skip
    record = cg.write_segmentation_table(runs, tmp_path / "s.txt", tmp_path / "s.json", n_boot=500)
    for name, scores in runs.items():
        for structure in ("lv_cavity", "myocardium", "left_atrium"):
            cell = record["runs"][name][structure]
            assert cell["low"] < cell["mean"] < cell["high"]
            assert cell["mean"] == pytest.approx(scores[f"dice_{structure}"].mean())
    assert record["runs"]["real"]["mean"] > record["runs"]["synthetic"]["mean"]
    assert "real" in (tmp_path / "s.txt").read_text()


def test_nearest_neighbour_accuracy_separates_and_mixes():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 4))
    assert cg.nearest_neighbour_accuracy(real, real + 10) == 1.0
    mixed = cg.nearest_neighbour_accuracy(real, rng.normal(size=(20, 4)))
    assert 0.2 < mixed < 0.8


def test_embedding_plot_of_real_and_generated_frames(tmp_path):
    from echogen.data.frames import write_frames
    from echogen.metrics.detectors import write_tiny_detector

    rng = np.random.default_rng(0)
    for name, shift in (("real", 0), ("fake", 120)):
        for i in range(6):
            frame = np.clip(rng.normal(60 + shift, 20, (1, 32, 32)), 0, 255).astype(np.uint8)
            write_frames(frame, tmp_path / name / f"item{i}")
    detector = tmp_path / "inception.pt"
    write_tiny_detector("inception", detector, seed=0)
    record = cg.write_embedding_plot(tmp_path / "real", tmp_path / "fake", detector,
                                     tmp_path / "e.png", seed=0)  # fmt: skip
    assert record["n_real"] == record["n_fake"] == 6 and record["nn_accuracy"] == 1.0
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
