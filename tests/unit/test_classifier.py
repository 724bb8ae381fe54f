"""Downstream video classifier: rows, training (learns, resumes bit for bit), prediction, table.

Two visually separable classes (a bright or a dark blob circling on a mid-grey noisy
background; CardiacNet ids 2 and 3) in 32 px MP4s, with a third class (id 0) that must be
dropped, and a micro network (widths 4-8, 8-frame clips) keep every run to seconds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import KFold
from trainer_cases import BLOB_CLASSES, BLOB_FRAMES, BLOB_SIZE, blob_cardiac

from echogen.data.class_rows import (
    ROW_COLUMNS,
    Folds,
    heldout_rows,
    kfold_validation,
    sample_rows,
    training_rows,
)
from echogen.data.ef_clips import ClassClipDataset, ClipSpec
from echogen.data.errors import DataError
from echogen.models.regressor import MODEL_PRESETS, EFRegressor, load_classifier
from echogen.pipelines.classification import (
    classification_tables,
    predict_classes,
    predict_test_sets,
    prob_columns,
    score_folds,
    score_sources,
)
from echogen.training.classifier import (
    CLASSIFIER_PRESETS,
    resolve_classifier_config,
    train_classifier,
    train_classifier_from_config,
)
from echogen.training.state import checkpoints

SEED = 5
pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = BLOB_CLASSES
SIZE = BLOB_SIZE
REAL = {"TRAIN": 8, "VAL": 3, "TEST": 5}  # videos per class and split
N_SYNTHETIC = 4  # per class
EPOCHS, STEPS_PER_EPOCH = 6, 4  # 16 real TRAIN videos / batch 4
MICRO = {
    "model": {"widths": [4, 8, 8, 8]},
    "clips": {"frames": 8, "period": 2, "size": SIZE, "pad": 2, "test_clip_stride": 4},
    "train": {
        "lr": 3e-3,
        "epochs": EPOCHS,
        "batch_size": 4,
        # Not a multiple of the epoch length, so the cut run resumes mid-epoch.
        "checkpoint_every": 3,
        "checkpoints_total_limit": 2,
    },
}
EXPORT_FILES = {"config.json", "diffusion_pytorch_model.safetensors", "clips.json", "train.json"}
EXPORT_FILES |= {"log.csv"}


def micro(**train) -> dict:
    return {**MICRO, "train": {**MICRO["train"], **train}}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return blob_cardiac(tmp_path_factory.mktemp("cardiac"), REAL, N_SYNTHETIC)


@pytest.fixture(scope="module")
def reference(one_torch_thread, data, tmp_path_factory) -> dict:
    """The uninterrupted run on real videos that every resumed run must reproduce."""
    base = tmp_path_factory.mktemp("reference")
    rows = training_rows("real", data["manifest"], None, CLASSES, root=data["root"])
    config = resolve_classifier_config("tiny", MICRO)
    summary = train_classifier(
        rows, base / "out", base / "state", config, len(CLASSES), SEED, root=data["root"]
    )
    return {"out": base / "out", "state": base / "state", "rows": rows, "summary": summary}


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(out_dir / "diffusion_pytorch_model.safetensors")


# --- model ---


def test_out_features_keeps_the_regressor_and_adds_class_logits(tmp_path):
    torch.manual_seed(0)
    plain = EFRegressor(**MODEL_PRESETS["tiny"])
    torch.manual_seed(0)
    one = EFRegressor(**MODEL_PRESETS["tiny"], out_features=1)
    assert list(one.state_dict()) == list(plain.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(one.state_dict()[key], value), key
    video = torch.randn(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    assert one.eval()(video).shape == (2,)

    three = EFRegressor(**{**MODEL_PRESETS["tiny"], "fc_bias_init": 0.0}, out_features=3).eval()
    assert tuple(three.fc.weight.shape) == (3, MODEL_PRESETS["tiny"]["widths"][-1])
    assert torch.equal(three.fc.bias, torch.zeros(3))
    with torch.no_grad():
        logits = three(video)
    assert logits.shape == (2, 3)
    three.save_pretrained(tmp_path)
    again = EFRegressor.from_pretrained(tmp_path).eval()
    assert again.config.out_features == 3
    with torch.no_grad():
        assert torch.equal(again(video), logits)
    with pytest.raises(ValueError, match="out_features"):
        EFRegressor(out_features=0)


# --- configuration ---


def test_presets_and_overrides():
    echodream = resolve_classifier_config("echodream")
    assert echodream.model["arch"] == "r3d_18" and echodream.clips.frames == 32
    assert (echodream.clips.period, echodream.clips.fps, echodream.clips.size) == (2, 32.0, 112)
    assert echodream.clips.sampling == "uniform"  # one clip over the whole video
    train = echodream.train
    assert (train.optimizer, train.lr, train.epochs, train.batch_size) == ("sgd", 5e-4, 45, 8)
    assert (train.lr_schedule, train.dropout, train.select) == ("cosine", 0.5, "best_val")
    tiny = resolve_classifier_config("tiny")
    assert tiny.model["widths"] == (8, 16, 32, 32) and tiny.clips.channels == 1
    assert (tiny.clips.frames, tiny.clips.period, tiny.clips.size) == (16, 4, 48)
    for name in CLASSIFIER_PRESETS:
        config = resolve_classifier_config(name)
        assert config.model["in_channels"] == config.clips.channels
    assert resolve_classifier_config("tiny", {"train": {"lr": 0.5}}).train.lr == 0.5
    with pytest.raises(ValueError, match="model.out_features"):
        resolve_classifier_config("tiny", {"model": {"out_features": 2}})
    with pytest.raises(ValueError, match="train.optimiser"):
        resolve_classifier_config("tiny", {"train": {"optimiser": "adam"}})
    with pytest.raises(ValueError, match="in_channels"):
        resolve_classifier_config("tiny", {"clips": {"channels": 3}})
    with pytest.raises(ValueError, match="unknown classifier preset"):
        resolve_classifier_config("echonet")


# --- rows ---


def test_training_rows_of_each_source(data):
    root, manifest, samples = data["root"], data["manifest"], data["samples"]
    n_train, n_val = 2 * REAL["TRAIN"], 2 * REAL["VAL"]
    real = training_rows("real", manifest, None, CLASSES, root=root)
    assert list(real.columns) == ROW_COLUMNS
    assert real["Split"].value_counts().to_dict() == {"TRAIN": n_train, "VAL": n_val}
    assert set(real["source"]) == {"real"} and set(real["class_id"]) == set(CLASSES)
    assert (real["label"] == real["class_id"].map({2: 0, 3: 1})).all()
    assert all((root / p).is_file() for p in real["Path"])

    synthetic = training_rows("synthetic", manifest, samples, CLASSES, root=root)
    train = synthetic[synthetic["Split"] == "TRAIN"]
    assert len(train) == 2 * N_SYNTHETIC and set(train["source"]) == {"synthetic"}
    assert set(synthetic.loc[synthetic["Split"] == "VAL", "source"]) == {"real"}
    assert (synthetic["Split"] == "VAL").sum() == n_val
    assert all((root / p).is_file() for p in synthetic["Path"])
    assert train["Path"].iloc[0] == str(samples / "Videos" / f"{train['FileName'].iloc[0]}.mp4")

    both = training_rows("real+synthetic", manifest, samples, CLASSES, root=root)
    assert (both["Split"] == "TRAIN").sum() == n_train + 2 * N_SYNTHETIC
    assert both.groupby("source").size().to_dict() == {
        "real": n_train + n_val,
        "synthetic": 2 * N_SYNTHETIC,
    }

    # The label is the position in `classes`; TEST rows are only in heldout_rows.
    flipped = training_rows("real", manifest, None, [3, 2], root=root)
    assert (flipped["label"] == flipped["class_id"].map({3: 0, 2: 1})).all()
    test = heldout_rows("real", manifest, None, CLASSES, root=root)
    assert len(test) == 2 * REAL["TEST"] and set(test["Split"]) == {"TEST"}
    assert not set(test["FileName"]) & set(both["FileName"])


def test_bad_rows_name_file_row_and_fix(data, tmp_path):
    root, manifest, samples = data["root"], data["manifest"], data["samples"]
    table = pd.read_csv(manifest, dtype={"FileName": str})

    def bad(change, **kwargs) -> DataError:
        broken = change(table.copy())
        path = tmp_path / "bad.csv"
        broken.to_csv(path, index=False)
        with pytest.raises(DataError) as err:
            training_rows("real", path, None, kwargs.get("classes", CLASSES), root=root)
        assert str(path) in str(err.value) and "Fix:" in str(err.value)
        return err.value

    err = bad(lambda t: t.drop(columns=["class_id"]))
    assert "class_id" in err.problem and err.row == 1
    err = bad(lambda t: t, classes=[2, 7])
    assert "[7]" in err.problem
    err = bad(lambda t: t.assign(Path=t["Path"].where(t.index != 4, "videos/gone.mp4")))
    assert "missing" in err.problem and err.row == 6 and err.item == table["FileName"][4]
    err = bad(lambda t: t.assign(class_id=t["class_id"].astype(object).where(t.index != 1, "x")))
    assert "not an integer" in err.problem and err.row == 3
    err = bad(lambda t: t.assign(class_name=t["class_name"].where(t.index != 2, "Other")))
    assert "named both" in err.problem and err.row == 4
    err = bad(lambda t: t.assign(Split=t["Split"].where(t.index != 0, "HOLDOUT")))
    assert "HOLDOUT" in err.problem and err.row == 2

    # Synthetic side: a missing video and a missing FileList.
    copy = tmp_path / "samples"
    listing = pd.read_csv(root / samples / "FileList.csv", dtype={"FileName": str})
    (tmp_path / "samples" / "Videos").mkdir(parents=True)
    listing.to_csv(copy / "FileList.csv", index=False)
    with pytest.raises(DataError, match="synthetic video sample_00000 is missing") as err:
        training_rows("synthetic", manifest, copy, CLASSES, root=root)
    assert err.value.row == 2 and str(copy / "FileList.csv") in str(err.value)
    with pytest.raises(DataError, match="does not exist"):
        training_rows("synthetic", manifest, tmp_path / "nowhere", CLASSES, root=root)
    with pytest.raises(ValueError, match="needs samples_dir"):
        training_rows("real+synthetic", manifest, None, CLASSES, root=root)
    with pytest.raises(ValueError, match="source"):
        training_rows("fake", manifest, None, CLASSES, root=root)


@pytest.mark.parametrize("n, k, seed", [(7, 2, 0), (26, 3, 42), (554, 5, 42)])
def test_kfold_validation_is_sklearns_shuffled_kfold(n, k, seed):
    ours = kfold_validation(n, k, seed)
    theirs = [val for _, val in KFold(k, shuffle=True, random_state=seed).split(np.zeros(n))]
    assert len(ours) == k
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="cannot cut 3 videos into 5 folds"):
        kfold_validation(3, 5, 0)
    with pytest.raises(ValueError, match="fold must be in 1..5"):
        Folds(5, 6)


@pytest.fixture(scope="module")
def split_samples(data) -> Path:
    """The blob samples with a FileList split TRAIN, VAL, TEST, TRAIN, ... by row."""
    root, samples = data["root"], data["samples"]
    folder = samples.parent / "split"
    (root / folder).mkdir(exist_ok=True)
    if not (root / folder / "Videos").exists():
        (root / folder / "Videos").symlink_to((root / samples / "Videos").resolve())
    listing = pd.read_csv(root / samples / "FileList.csv", dtype={"FileName": str})
    listing["Split"] = [("TRAIN", "VAL", "TEST")[i % 3] for i in range(len(listing))]
    listing.to_csv(root / folder / "FileList.csv", index=False)
    return folder


def test_folds_and_validation_choose_the_train_and_val_videos(data, split_samples):
    """EchoDream's cross-validation: KFold over the TRAIN+VAL videos of every class (class 0
    included), the task's classes picked afterwards; validation "real" keeps the real VAL
    videos out of training and selects on them."""
    root, manifest = data["root"], data["manifest"]
    real = pd.read_csv(manifest, dtype={"FileName": str})
    pool = real[real["Split"].isin(["TRAIN", "VAL"])]["FileName"].tolist()
    task = set(real.loc[real["class_id"].isin(CLASSES), "FileName"])
    folds = [val for _, val in KFold(3, shuffle=True, random_state=SEED).split(pool)]
    seen = []
    for fold, val in enumerate(folds, start=1):
        rows = training_rows("real", manifest, None, CLASSES, root, "source", Folds(3, fold, SEED))
        expected_val = {pool[i] for i in val} & task
        assert set(rows.loc[rows["Split"] == "VAL", "FileName"]) == expected_val
        assert (
            set(rows.loc[rows["Split"] == "TRAIN", "FileName"]) == (set(pool) & task) - expected_val
        )
        seen += sorted(expected_val)
    assert sorted(seen) == sorted(set(pool) & task)  # every pooled video validates once

    fixed = training_rows("real", manifest, None, CLASSES, root, "real", Folds(3, 1, SEED))
    real_val = set(real.loc[(real["Split"] == "VAL") & real["class_id"].isin(CLASSES), "FileName"])
    assert set(fixed.loc[fixed["Split"] == "VAL", "FileName"]) == real_val
    assert not set(fixed.loc[fixed["Split"] == "TRAIN", "FileName"]) & real_val
    assert len(fixed[fixed["Split"] == "TRAIN"]) < 2 * REAL["TRAIN"]  # fold 1 left out

    # A synthetic FileList's own split: TRAIN trains; its VAL validates only with "source".
    listing = pd.read_csv(root / split_samples / "FileList.csv", dtype={"FileName": str})
    listing = listing[listing["class_id"].isin(CLASSES)]
    by_split = {s: set(listing.loc[listing["Split"] == s, "FileName"]) for s in ("TRAIN", "VAL")}
    own = training_rows("synthetic", manifest, split_samples, CLASSES, root, "source")
    assert set(own["source"]) == {"synthetic"}
    for split in ("TRAIN", "VAL"):
        assert set(own.loc[own["Split"] == split, "FileName"]) == by_split[split]
    selected_on_real = training_rows("synthetic", manifest, split_samples, CLASSES, root, "real")
    train = selected_on_real[selected_on_real["Split"] == "TRAIN"]
    assert set(train["FileName"]) == by_split["TRAIN"]
    assert set(selected_on_real.loc[selected_on_real["Split"] == "VAL", "FileName"]) == real_val

    test = heldout_rows("synthetic", manifest, split_samples, CLASSES, root)
    expected_test = set(listing.loc[listing["Split"] == "TEST", "FileName"])
    assert set(test["FileName"]) == expected_test and set(test["Split"]) == {"TEST"}
    assert not expected_test & set(own["FileName"])  # TEST videos never train
    every = sample_rows(split_samples, CLASSES, root)
    assert every["FileName"].tolist() == listing["FileName"].tolist()
    assert every["Split"].tolist() == listing["Split"].tolist()
    with pytest.raises(ValueError, match="validation must be one of"):
        training_rows("real", manifest, None, CLASSES, root, "test")
    with pytest.raises(DataError, match="no synthetic TEST videos"):
        heldout_rows("synthetic", manifest, data["samples"], CLASSES, root)


# --- training ---


def test_training_learns_exports_and_selects_best_val(data, reference):
    out, state = reference["out"], reference["state"]
    total = EPOCHS * STEPS_PER_EPOCH
    assert [p.name for p in checkpoints(state)] == ["checkpoint_00000021", "checkpoint_00000024"]
    assert {p.name for p in out.iterdir()} == EXPORT_FILES

    log = pd.read_csv(out / "log.csv")
    assert log["epoch"].tolist() == list(range(EPOCHS))
    assert log["step"].tolist() == [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)]
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == total and info["n_train"] == {"real": 2 * REAL["TRAIN"]}
    assert info["classes"] == [
        {"label": 0, "class_id": 2, "class_name": "Non-PAH"},
        {"label": 1, "class_id": 3, "class_name": "PAH"},
    ]
    # Balanced training classes: both weights 1.
    assert info["class_weights"] == [1.0, 1.0]
    # The exported weights are those of the first epoch with the best VAL accuracy.
    best = int(np.argmax(log["val_accuracy"].to_numpy()))
    assert info["selected"]["epoch"] == best
    assert info["selected"]["val_accuracy"] == log["val_accuracy"].iloc[best]

    # The logged VAL accuracy of the selected epoch equals a direct evaluation of the export.
    model, spec, _ = load_classifier(out)
    rows = reference["rows"]
    val = ClassClipDataset(rows[rows["Split"] == "VAL"], spec, False, 0, data["root"])
    with torch.no_grad():
        pred = [model.eval()(val[i][0][None]).argmax().item() for i in range(len(val))]
    assert np.mean(np.array(pred) == val.labels) == pytest.approx(info["selected"]["val_accuracy"])

    # Trained on real TRAIN, tested on real TEST: far above chance (0.5).
    test = heldout_rows("real", data["manifest"], None, CLASSES, root=data["root"])
    predictions = predict_classes(out, test, batch_size=5, root=data["root"])
    accuracy = (predictions["pred"] == predictions["label"]).mean()
    assert accuracy >= 0.8, predictions


# --- prediction and table ---


def test_predict_classes_averages_softmax_over_all_clips(data, reference):
    test = heldout_rows("real", data["manifest"], None, CLASSES, root=data["root"]).iloc[:3]
    predictions = predict_classes(reference["out"], test, batch_size=4, root=data["root"])
    assert list(predictions.columns) == ["FileName", "label", "pred", *prob_columns(2), "n_clips"]
    model, spec, _ = load_classifier(reference["out"])
    span = (spec.frames - 1) * spec.period + 1
    assert (predictions["n_clips"] == (BLOB_FRAMES - span) // spec.test_clip_stride + 1).all()
    dataset = ClassClipDataset(test, spec, False, 0, data["root"])
    for i in range(len(test)):
        clips, label = dataset.all_clips(i)
        with torch.no_grad():
            expected = torch.softmax(model.eval()(clips), dim=1).mean(dim=0).numpy()
        got = predictions.loc[i, prob_columns(2)].to_numpy(float)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert predictions.loc[i, "label"] == label.item()
        assert predictions.loc[i, "pred"] == expected.argmax()


def _bootstrap(labels, probs, fn, n_boot, seed) -> tuple[float, float]:
    """Percentile bootstrap written out: draws as bootstrap_ci, order statistics at q*B."""
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        index = rng.integers(0, len(labels), size=len(labels))
        stats.append(fn(labels[index], probs[index]))
    stats = np.sort(stats)
    return stats[round(0.025 * n_boot)], stats[min(round(0.975 * n_boot), n_boot - 1)]


def classification_table(results, txt, json_path, n_bootstrap, seed=0, classes=None) -> dict:
    """One task's report on the real TEST set, through the workflow's table writer."""
    names = None if classes is None else {"one": classes}
    record = classification_tables({"one": results}, txt, json_path, n_bootstrap, seed, None, names)
    return record["tasks"]["one"]["real"]


def test_classification_table_matches_sklearn(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    labels = np.repeat([0, 1, 2], [14, 13, 13])
    names = [f"v{i:02d}" for i in range(n)]
    results = {}
    for source, noise in (("real", 0.6), ("synthetic", 1.5)):
        logits = rng.normal(0, noise, size=(n, 3)) + np.eye(3)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        table = pd.DataFrame({"FileName": names, "label": labels, "pred": probs.argmax(1)})
        for k in range(3):
            table[f"prob_{k}"] = probs[:, k]
        # Row order differs between sources; the table matches videos by name.
        results[source] = table.sample(frac=1, random_state=int(noise * 10))
    n_boot = 100
    report = classification_table(
        results, tmp_path / "t.txt", tmp_path / "t.json", n_boot, seed=4, classes=["A", "B", "C"]
    )
    assert json.loads((tmp_path / "t.json").read_text())["tasks"]["one"]["real"] == report
    assert [r["source"] for r in report["rows"]] == ["real", "synthetic"]
    reference = {
        "accuracy": lambda y, p: accuracy_score(y, p.argmax(1)),
        "balanced_accuracy": lambda y, p: balanced_accuracy_score(y, p.argmax(1)),
        "roc_auc": lambda y, p: roc_auc_score(y, p, multi_class="ovr", average="macro"),
    }
    for row in report["rows"]:
        table = results[row["source"]].sort_values("FileName")
        y, p = table["label"].to_numpy(), table[prob_columns(3)].to_numpy()
        assert row["n"] == n and row["n_undefined"] == 0
        for name, fn in reference.items():
            assert row[name]["value"] == pytest.approx(fn(y, p), abs=1e-12), name
            low, high = _bootstrap(y, p, fn, n_boot, seed=4)
            assert (row[name]["ci_low"], row[name]["ci_high"]) == pytest.approx((low, high))
            assert row[name]["ci_low"] <= row[name]["value"] <= row[name]["ci_high"]
    text = (tmp_path / "t.txt").read_text().splitlines()[3:]  # trunk line, blank, task line
    assert "40 real TEST videos" in text[0] and "A, B, C" in text[0]
    assert text[1].split()[:3] == ["training", "data", "N"]
    real = report["rows"][0]["accuracy"]
    assert text[2].startswith("real ") and f"{real['value']:.3f} [{real['ci_low']:.3f}" in text[2]
    assert text[2].index("[") == text[3].index("[")  # columns aligned

    # Different videos per source, or a tiny set whose resamples lose a class.
    with pytest.raises(ValueError, match="same TEST videos"):
        classification_table(
            {"real": results["real"], "synthetic": results["synthetic"].iloc[1:]},
            tmp_path / "x.txt",
            tmp_path / "x.json",
            10,
        )
    small = results["real"].sort_values("FileName").iloc[[0, 1, 20, 21, 30, 31]]
    tiny = classification_table({"real": small}, tmp_path / "s.txt", tmp_path / "s.json", 50)
    row = tiny["rows"][0]
    assert row["n_undefined"] > 0 and row["roc_auc"]["ci_low"] is None
    assert "n/a" in (tmp_path / "s.txt").read_text()
    # Accuracy and balanced accuracy stay defined on resamples that lose a class (sklearn's
    # balanced accuracy also averages the recall of the classes present).
    y, p = small["label"].to_numpy(), small[prob_columns(3)].to_numpy()
    for name in ("accuracy", "balanced_accuracy"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn: "y_pred contains classes not in y_true"
            low, high = _bootstrap(y, p, reference[name], 50, seed=0)
        assert (row[name]["ci_low"], row[name]["ci_high"]) == pytest.approx((low, high))


def _binary_predictions(seed: int, n: int, noise: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    logits = rng.normal(0, noise, size=(n, 2)) + np.eye(2)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame({"FileName": [f"v{i:02d}" for i in range(n)], "label": labels})
    table["pred"] = probs.argmax(1)
    for k in range(2):
        table[f"prob_{k}"] = probs[:, k]
    return table


def test_classification_tables_one_section_per_task(tmp_path):
    """EchoDream's two binary tasks in one table: a section each, scored as on their own."""
    tasks = {
        "asd": {
            "real": _binary_predictions(0, 20, 0.5),
            "synthetic": _binary_predictions(1, 20, 2),
        },
        "pah": {
            "real": _binary_predictions(2, 16, 0.5),
            "synthetic": _binary_predictions(3, 16, 2),
        },
    }
    record = classification_tables(tasks, tmp_path / "t.txt", tmp_path / "t.json", 50, seed=3)
    assert json.loads((tmp_path / "t.json").read_text()) == record
    assert record["trunk"] is None and list(record["tasks"]) == ["asd", "pah"]
    for name, results in tasks.items():
        expected = {"test_set": "real", **score_sources(results, 50, seed=3)}
        assert record["tasks"][name] == {"real": expected}
    text = (tmp_path / "t.txt").read_text().splitlines()
    assert text[0] == "Video classifiers' trunk: random initialisation (no Kinetics-400 weights)"
    asd, pah = text.index("task asd"), text.index("task pah")
    assert "20 real TEST videos" in text[asd + 1] and "16 real TEST videos" in text[pah + 1]
    assert text[asd + 3].startswith("real ") and text[asd + 4].startswith("synthetic ")
    assert record["plumbing"] is False and "ASD" not in text[asd + 1]
    named = classification_tables(
        tasks,
        tmp_path / "k.txt",
        tmp_path / "k.json",
        50,
        trunk="resources/weights/r3d.pth",
        classes={"asd": ["ASD", "Non-ASD"], "pah": ["Non-PAH", "PAH"]},
        plumbing=True,
    )
    assert named["trunk"] == "resources/weights/r3d.pth" and named["plumbing"] is True
    assert named["tasks"]["pah"]["real"]["classes"] == ["Non-PAH", "PAH"]
    text = (tmp_path / "k.txt").read_text().splitlines()
    assert text[0].startswith("PLUMBING CHECK")
    assert text[1] == "Video classifiers' trunk: Kinetics-400 weights resources/weights/r3d.pth"
    assert "classes ASD, Non-ASD" in text[text.index("task asd") + 1]
    with pytest.raises(ValueError, match="tasks is empty"):
        classification_tables({}, tmp_path / "e.txt", tmp_path / "e.json")


def test_folds_score_mean_and_population_std_per_test_set(tmp_path):
    """EchoDream reports mean ± np.std (ddof 0) of the fold test accuracies; each TEST set
    (the `test_set` column) is its own section."""
    tasks = {"asd": {}}
    for source, noise in (("real", 0.5), ("synthetic", 2.0)):
        folds = []
        for fold in range(3):
            real = _binary_predictions(10 * fold + int(noise), 20, noise).assign(test_set="real")
            synthetic = _binary_predictions(fold, 12, noise).assign(test_set="synthetic")
            folds.append(pd.concat([synthetic, real], ignore_index=True))
        tasks["asd"][source] = folds
    record = classification_tables(tasks, tmp_path / "t.txt", tmp_path / "t.json", 50)
    assert list(record["tasks"]["asd"]) == ["real", "synthetic"]
    for test_set, n in (("real", 20), ("synthetic", 12)):
        report = record["tasks"]["asd"][test_set]
        assert report["folds"] == 3 and report["n"] == n and report["test_set"] == test_set
        for row in report["rows"]:
            per_fold = [f[f["test_set"] == test_set] for f in tasks["asd"][row["source"]]]
            accuracy = [accuracy_score(f["label"], f["pred"]) for f in per_fold]
            auc = [roc_auc_score(f["label"], f["prob_1"]) for f in per_fold]
            assert row["accuracy"]["folds"] == pytest.approx(accuracy)
            assert row["accuracy"]["value"] == pytest.approx(np.mean(accuracy))
            assert row["accuracy"]["std"] == pytest.approx(np.std(accuracy))
            assert row["roc_auc"]["value"] == pytest.approx(np.mean(auc))
    text = (tmp_path / "t.txt").read_text()
    assert "20 real TEST videos" in text and "12 synthetic TEST videos" in text
    assert "mean ± population std over 3 cross-validation folds" in text
    mean = record["tasks"]["asd"]["real"]["rows"][0]["accuracy"]
    assert f"{mean['value']:.3f} ± {mean['std']:.3f}" in text
    with pytest.raises(ValueError, match="same number of folds"):
        score_folds({"real": tasks["asd"]["real"], "synthetic": tasks["asd"]["synthetic"][:2]})


def test_from_config_trains_one_fold(data, tmp_path):
    """The workflow's entry point: fold k of evaluation.classification.cv_folds trains on the
    other folds' videos."""
    root = data["root"]
    classification = {
        "preset": "tiny",
        "overrides": micro(epochs=1),
        "cv_folds": 3,
        "validation": "source",
    }
    out = tmp_path / "out"
    summary = train_classifier_from_config(
        "real", str(data["manifest"]), None, str(out), str(tmp_path / "state"),
        classification, CLASSES, SEED, root=str(root), fold=2,
    )  # fmt: skip
    rows = training_rows("real", data["manifest"], None, CLASSES, root, "source", Folds(3, 2, SEED))
    info = json.loads((out / "train.json").read_text())
    assert info["n_train"] == {"real": int((rows["Split"] == "TRAIN").sum())}
    assert info["n_val"] == int((rows["Split"] == "VAL").sum())
    assert summary["steps"] == int((rows["Split"] == "TRAIN").sum()) // 4
    with pytest.raises(ValueError, match="cv_folds is not set"):
        train_classifier_from_config(
            "real", str(data["manifest"]), None, str(out), str(tmp_path / "s2"),
            {"preset": "tiny"}, CLASSES, SEED, root=str(root), fold=1,
        )  # fmt: skip


def test_another_validation_set_is_another_run(data, split_samples, tmp_path):
    """The same TRAIN rows selected on other VAL rows (validation real -> source) must not
    resume the finished run and re-export its selection."""
    root, manifest = data["root"], data["manifest"]
    config = resolve_classifier_config("tiny", micro(epochs=1, batch_size=2))
    for validation in ("real", "source"):
        rows = training_rows("synthetic", manifest, split_samples, CLASSES, root, validation)
        if validation == "real":
            train_classifier(rows, tmp_path / "out", tmp_path / "state", config, 2, SEED, root=root)
            continue
        with pytest.raises(ValueError, match="val_rows"):
            train_classifier(rows, tmp_path / "out", tmp_path / "state", config, 2, SEED, root=root)


def test_predict_test_sets_labels_each_set(data, reference, split_samples):
    root = data["root"]
    table = predict_test_sets(
        reference["out"], data["manifest"], split_samples, ["real", "synthetic"], root=root
    )
    assert list(table.columns)[:2] == ["test_set", "FileName"]
    real = heldout_rows("real", data["manifest"], None, CLASSES, root)
    synthetic = heldout_rows("synthetic", data["manifest"], split_samples, CLASSES, root)
    assert table["test_set"].tolist() == ["real"] * len(real) + ["synthetic"] * len(synthetic)
    expected = predict_classes(reference["out"], real, root=root)
    got = table[table["test_set"] == "real"].drop(columns="test_set")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected)
    with pytest.raises(ValueError, match="test_sets"):
        predict_test_sets(reference["out"], data["manifest"], None, ["val"], root=root)


def test_synthetic_source_trains_and_reports(data, tmp_path):
    root = data["root"]
    rows = training_rows("real+synthetic", data["manifest"], data["samples"], CLASSES, root=root)
    config = resolve_classifier_config("tiny", micro(epochs=2, select="last", dropout=0.0))
    summary = train_classifier(
        rows, tmp_path / "out", tmp_path / "state", config, 2, SEED, root=root
    )
    assert summary["steps"] == 2 * (2 * (REAL["TRAIN"] + N_SYNTHETIC) // 4)
    info = json.loads((tmp_path / "out" / "train.json").read_text())
    assert info["n_train"] == {"real": 2 * REAL["TRAIN"], "synthetic": 2 * N_SYNTHETIC}
    assert info["selected"]["epoch"] == 1
    spec = ClipSpec.from_dict(json.loads((tmp_path / "out" / "clips.json").read_text()))
    assert spec.mean is not None and min(spec.std) > 0
