"""The RV-failure line: the two-stream network, its clips, its training, prediction and table.

Independent references: MONAI's own ``resnet152`` factory for the paper-size stream,
scikit-learn's ROC for the AUC and the operating point, hand-built clips whose values say
which frame they came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from trainer_cases import rv_clips

from echogen.data.errors import DataError
from echogen.data.rvfailure import read_split_rows
from echogen.data.stream_clips import (
    StreamClipSet,
    StreamClipSpec,
    augmentation,
    stream_statistics,
    warp,
    with_stream_statistics,
)
from echogen.metrics.scores import (
    confusion_at,
    roc_auc,
    specificity_at_sensitivity,
    threshold_at_sensitivity,
)
from echogen.models.rvfailure import (
    TwoStreamNet,
    load_kinetics_trunk,
    load_pretrained_stream,
    load_rvfailure_model,
)
from echogen.pipelines.rvfailure import (
    patient_scores,
    predict_rvfailure,
    stratified_auc_ci,
    write_rvfailure_table,
)
from echogen.training.rvfailure import RVConfig, RVTrainSettings, train_rvfailure

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = {"depth": 10, "widths": (4, 4, 8, 8)}


# ---------------------------------------------------------------- network


def test_paper_stream_is_monai_resnet152():
    from monai.networks.nets import resnet152

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        net = TwoStreamNet(streams=("grey",), depth=152)
        reference = resnet152(spatial_dims=3, n_input_channels=1, feed_forward=False,
                              conv1_t_size=7, conv1_t_stride=2)  # fmt: skip
    ours = sum(p.numel() for p in net.trunks["grey"].parameters())
    assert ours == sum(p.numel() for p in reference.parameters()) == 117_363_776
    assert net.fc.in_features == 2048


def test_two_streams_fuse_features_into_one_unit():
    net = TwoStreamNet(streams=("grey", "flow"), **TINY).eval()
    grey, flow = torch.randn(3, 1, 8, 24, 24), torch.randn(3, 2, 8, 24, 24)
    out = net(grey, flow)
    assert out.shape == (3,)
    features = net.features(grey, flow)
    assert features.shape == (3, 16)  # 8 + 8 (basic blocks)
    torch.testing.assert_close(out, net.fc(features).squeeze(1))
    # late fusion: the grey half of the features does not depend on the flow clip
    other = net.features(grey, torch.randn_like(flow))
    torch.testing.assert_close(features[:, :8], other[:, :8])
    assert not torch.allclose(features[:, 8:], other[:, 8:])
    with pytest.raises(ValueError, match="one clip per stream"):
        net(grey)
    with pytest.raises(ValueError, match="streams must be distinct"):
        TwoStreamNet(streams=("grey", "grey"), **TINY)


def test_pretrained_stream_trunk_is_copied_and_checked(tmp_path):
    stream = TwoStreamNet(streams=("flow",), **TINY)
    stream.save_pretrained(tmp_path / "flow")
    net = TwoStreamNet(**TINY)
    load_pretrained_stream(net, "flow", tmp_path / "flow")
    for key, value in stream.trunks["flow"].state_dict().items():
        torch.testing.assert_close(net.trunks["flow"].state_dict()[key], value)
    with pytest.raises(DataError, match="not the 'grey' pretraining"):
        load_pretrained_stream(net, "grey", tmp_path / "flow")
    wide = TwoStreamNet(streams=("flow",), depth=10, widths=(4, 4, 8, 16))
    wide.save_pretrained(tmp_path / "wide")
    with pytest.raises(DataError, match="widths"):
        load_pretrained_stream(net, "flow", tmp_path / "wide")


def test_kinetics_trunk_loads_a_hara_style_checkpoint(tmp_path):
    from monai.networks.nets import ResNet

    rgb = ResNet("basic", [1, 1, 1, 1], [4, 4, 8, 8], spatial_dims=3, n_input_channels=3,
                 conv1_t_size=7, conv1_t_stride=2, num_classes=700)  # fmt: skip
    state = {f"module.{k}": v for k, v in rgb.state_dict().items()}
    torch.save({"arch": "resnet-10", "state_dict": state}, tmp_path / "k.pth")
    net = TwoStreamNet(**TINY)
    load_kinetics_trunk(net, "grey", tmp_path / "k.pth")
    load_kinetics_trunk(net, "flow", tmp_path / "k.pth")
    stem = rgb.conv1.weight.detach()
    torch.testing.assert_close(net.trunks["grey"].conv1.weight, stem.sum(1, keepdim=True))
    torch.testing.assert_close(net.trunks["flow"].conv1.weight[:, 1], stem.mean(1))
    torch.testing.assert_close(net.trunks["grey"].layer4[0].conv1.weight,
                               rgb.layer4[0].conv1.weight)  # fmt: skip
    deeper = TwoStreamNet(streams=("grey",), depth=18, widths=(4, 4, 8, 8))
    with pytest.raises(DataError, match="does not fit"):
        load_kinetics_trunk(deeper, "grey", tmp_path / "k.pth")


# ---------------------------------------------------------------- clips


def _ramp_rows(tmp_path, frames=12, size=16):
    """One video whose grey frame t is t/100 everywhere and whose flow t is (t, -t)."""
    grey = np.broadcast_to(np.arange(frames)[:, None, None] / 100, (frames, size, size))
    flow = np.zeros((frames - 1, size, size, 2))
    flow[..., 0] = np.arange(frames - 1)[:, None, None]
    flow[..., 1] = -flow[..., 0]
    np.save(tmp_path / "v.npy", grey.astype(np.float32))
    np.save(tmp_path / "v_flow.npy", flow.astype(np.float32))
    return pd.DataFrame({"FileName": ["v"], "Path": [str(tmp_path / "v.npy")],
                         "FlowPath": [str(tmp_path / "v_flow.npy")], "label": [1]})  # fmt: skip


PLAIN = {"grey_mean": 0.0, "grey_std": 1.0, "flow_mean": 0.0, "flow_std": 1.0}


def test_grey_and_flow_windows_are_the_same_frames(tmp_path):
    rows = _ramp_rows(tmp_path)
    spec = StreamClipSpec(frames=4, size=16, test_clips=60, **PLAIN)
    data = StreamClipSet(rows, spec, ("grey", "flow"), "label", seed=3)
    clips = data.evaluation_clips(0)
    starts = set()
    for grey, flow in clips:
        assert grey.shape == (1, 4, 16, 16) and flow.shape == (2, 4, 16, 16)
        start = round(float(grey[0, 0, 0, 0]) * 100)
        starts.add(start)
        np.testing.assert_allclose(grey[0, :, 5, 5], (start + np.arange(4)) / 100, atol=1e-6)
        expected = start + np.arange(4.0)
        expected[expected > 10] = 10  # the last grey frame gets the last flow frame again
        np.testing.assert_allclose(flow[0, :, 5, 5], expected)
        np.testing.assert_allclose(flow[1, :, 5, 5], -expected)
    assert starts <= set(range(9)) and len(starts) > 3 and 8 in starts
    # the VAL clip is the first prediction clip; draws are reproducible
    first, _ = data[0]
    torch.testing.assert_close(first[0], clips[0][0])
    again = StreamClipSet(rows, spec, ("grey", "flow"), "label", seed=3).evaluation_clips(0)
    torch.testing.assert_close(again[5][1], clips[5][1])


def test_resize_scales_flow_vectors(tmp_path):
    rows = _ramp_rows(tmp_path, size=16)
    spec = StreamClipSpec(frames=4, size=8, **PLAIN)
    (grey, flow), _ = StreamClipSet(rows, spec, ("grey", "flow"), "label")[0]
    start = round(float(grey[0, 0, 0, 0]) * 100)
    np.testing.assert_allclose(flow[0, 1, 3, 3], (start + 1) * 0.5, rtol=1e-5)
    # the reference's units (clips.scale_flow false): the stored flow's pixels
    native = StreamClipSpec(frames=4, size=8, scale_flow=False, **PLAIN)
    (grey, flow), _ = StreamClipSet(rows, native, ("grey", "flow"), "label")[0]
    start = round(float(grey[0, 0, 0, 0]) * 100)
    np.testing.assert_allclose(flow[0, 1, 3, 3], start + 1, rtol=1e-5)
    # the statistics are in the clips' units: half the stored flow's spread at half the size
    scaled = stream_statistics(rows, ("flow",), StreamClipSpec(size=8), seed=0)
    stored = stream_statistics(rows, ("flow",), StreamClipSpec(size=8, scale_flow=False), 0)
    assert scaled["flow_std"] == pytest.approx(stored["flow_std"] / 2)
    values = np.load(rows["FlowPath"][0])
    assert stored["flow_std"] == pytest.approx(values.std())  # one video: its own std


def test_statistics_come_from_the_stat_splits_videos(tmp_path):
    """clips.stat_splits picks the videos the z-score statistics are estimated on: TRAIN by
    default, every split as the reference; a named split without videos is refused."""
    videos = []
    for i, (split, level) in enumerate([("TRAIN", 0.2), ("VAL", 0.6), ("TEST", 1.0)]):
        np.save(tmp_path / f"v{i}.npy", np.full((6, 8, 8), level, np.float32))
        videos.append({"FileName": f"v{i}", "Path": str(tmp_path / f"v{i}.npy"), "Split": split})
    rows = pd.DataFrame(videos)
    train = with_stream_statistics(StreamClipSpec(size=8), rows, ("grey",), seed=0)
    pooled_spec = StreamClipSpec(size=8, stat_splits=["TRAIN", "VAL", "TEST"])
    pooled = with_stream_statistics(pooled_spec, rows, ("grey",), seed=0)
    assert train.grey_mean == pytest.approx(0.2) and pooled.grey_mean == pytest.approx(0.6)
    assert pooled.stat_splits == ["TRAIN", "VAL", "TEST"]
    with pytest.raises(DataError, match="stat_splits names TEST"):
        with_stream_statistics(pooled_spec, rows[rows["Split"] != "TEST"], ("grey",), seed=0)
    for bad in ([], ["TRAIN", "TRAIN"], ["DEV"], "TRAIN"):
        with pytest.raises(ValueError, match="stat_splits"):
            StreamClipSpec(stat_splits=bad)


def test_augmentation_moves_grey_and_flow_together():
    spec = StreamClipSpec(size=32, p=1.0, rotate=30, translate=10, resize=0.2)
    matrix = augmentation(np.random.default_rng(0), spec)
    frames = np.zeros((2, 32, 32, 3), np.float32)
    frames[:, 10:14, 20:24, :] = [1.0, 2.0, 3.0]
    moved = warp(frames, matrix)
    assert moved.shape == frames.shape
    mask = moved[..., 0] > 0.5
    assert mask.any() and not np.array_equal(mask, frames[..., 0] > 0.5)
    np.testing.assert_allclose(moved[..., 1][mask], 2 * moved[..., 0][mask], rtol=1e-5)
    assert augmentation(np.random.default_rng(0), StreamClipSpec(p=0.0)) is None


def test_training_clips_follow_seed_epoch_and_index(tmp_path):
    rows = _ramp_rows(tmp_path, frames=30)
    spec = StreamClipSpec(frames=4, size=16, p=0.5, **PLAIN)
    data = StreamClipSet(rows, spec, ("grey", "flow"), "label", train=True, seed=1)
    a, _ = data[0]
    b, _ = data[0]
    data.set_epoch(1)
    c, _ = data[0]
    torch.testing.assert_close(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_bad_clips_name_the_file_and_the_fix(tmp_path):
    rows = _ramp_rows(tmp_path, frames=6)
    spec = StreamClipSpec(frames=8, size=16, **PLAIN)
    with pytest.raises(DataError, match="v has 6 frames, fewer than a clip's 8"):
        StreamClipSet(rows, spec, ("grey", "flow"), "label")[0]
    with pytest.raises(DataError, match="column 'FlowPath' is missing"):
        StreamClipSet(rows.drop(columns="FlowPath"), spec, ("grey", "flow"), "label")
    nan = rows.assign(label=[float("nan")])
    with pytest.raises(DataError, match="v has no numeric label"):
        StreamClipSet(nan, spec, ("grey",), "label")
    with pytest.raises(ValueError, match="mean/std are not set"):
        StreamClipSet(rows, StreamClipSpec(frames=4), ("grey",), "label")
    np.save(tmp_path / "v_flow.npy", np.zeros((3, 16, 16, 2), np.float32))
    with pytest.raises(DataError, match="3 flow frames for 6 grey frames"):
        StreamClipSet(rows, StreamClipSpec(frames=4, size=16, **PLAIN), ("grey", "flow"),
                      "label")[0]  # fmt: skip
    (tmp_path / "v_flow.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="cannot read the clip"):
        StreamClipSet(rows, StreamClipSpec(frames=4, size=16, **PLAIN), ("flow",), "label")[0]


# ---------------------------------------------------------------- scores


def test_binary_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, size=30)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(30) + 0.4 * labels, 1)  # ties
        assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
        fpr, tpr, _ = roc_curve(labels, scores)
        best = (1 - fpr[tpr >= 0.8 - 1e-12]).max()
        assert specificity_at_sensitivity(labels, scores, 0.8) == pytest.approx(best)
        threshold = threshold_at_sensitivity(labels, scores, 0.8)
        counts = confusion_at(labels, scores, threshold)
        assert counts["sensitivity"] >= 0.8
        assert counts["tp"] + counts["fn"] == labels.sum()
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))
    low, high = stratified_auc_ci([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9], 200, 0)
    assert 0 <= low <= roc_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]) <= high <= 1


def test_patients_average_their_videos():
    predictions = pd.DataFrame({"Split": ["TEST"] * 3, "patient_id": ["a", "a", "b"],
                                "label": [1, 1, 0], "prob": [0.2, 0.6, 0.3],
                                "FileName": ["x", "y", "z"]})  # fmt: skip
    patients = patient_scores(predictions)
    assert patients.set_index("patient_id")["prob"].to_dict() == pytest.approx({"a": 0.4, "b": 0.3})
    with pytest.raises(DataError, match="patient a has videos of both labels"):
        patient_scores(predictions.assign(label=[1, 0, 0]))


# ---------------------------------------------------------------- training and prediction


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("rv")
    splits = rv_clips(base / "data")
    rows = read_split_rows({"TRAIN": splits["TRAIN"], "VAL": splits["VAL"]})
    config = RVConfig.from_dict({"model": {**TINY, "streams": ["grey", "flow"]},
                                 "clips": {"frames": 8, "size": 24},
                                 "train": {"batch_size": 2, "epochs": 3, "lr": 1e-3,
                                           "checkpoint_every": 4}})  # fmt: skip
    summary = train_rvfailure(rows, base / "model", base / "state", config, "rvfailure", seed=0)
    return {"base": base, "splits": splits, "summary": summary}


def test_fusion_trains_and_selects_on_val(trained):
    summary, model = trained["summary"], trained["base"] / "model"
    assert summary["steps"] == 12 and summary["selected"]["select"] == "best_val"
    assert "val_auc" in summary["selected"]
    record = json.loads((model / "train.json").read_text())
    assert record["streams"] == ["grey", "flow"] and record["n_train_positive"] == 4
    net, spec = load_rvfailure_model(model)
    assert spec.grey_std > 0 and spec.flow_std > 0
    log = pd.read_csv(model / "log.csv")
    assert list(log.columns) == ["epoch", "step", "train_loss", "val_loss", "val_auc"]


def test_prediction_and_table(trained, tmp_path):
    rows = read_split_rows({"VAL": trained["splits"]["VAL"], "TEST": trained["splits"]["TEST"]})
    out = tmp_path / "pred.csv"
    table = predict_rvfailure(trained["base"] / "model", rows, out, seed=0)
    assert list(table["Split"]) == ["VAL"] * 4 + ["TEST"] * 4
    clip_probs = table["clip_probs"].str.split(";").map(lambda x: np.mean(list(map(float, x))))
    np.testing.assert_allclose(table["prob"], clip_probs, rtol=1e-5)
    assert table["clip_probs"].str.count(";").eq(4).all()  # 5 clips per video
    again = predict_rvfailure(trained["base"] / "model", rows, tmp_path / "again.csv", seed=0)
    pd.testing.assert_frame_equal(table, again)
    report = write_rvfailure_table({"tiny": out}, tmp_path / "t.txt", tmp_path / "t.json",
                                   n_bootstrap=50, plumbing=True)  # fmt: skip
    row = report["models"]["tiny"]
    patients = patient_scores(table)
    test = patients[patients["Split"] == "TEST"]
    assert row["auc"]["value"] == pytest.approx(roc_auc_score(test["label"], test["prob"]))
    assert row["n_patients"] == len(test) == 2 and row["n_positive"] == 1 and row["n_videos"] == 4
    val = patients[patients["Split"] == "VAL"]
    assert row["val_threshold"] == threshold_at_sensitivity(val["label"], val["prob"], 0.8)
    text = (tmp_path / "t.txt").read_text()
    assert "PLUMBING CHECK" in text and "AUC 0.729" in text and "tiny" in text
    json.loads((tmp_path / "t.json").read_text())


def test_training_refuses_one_class_and_wrong_objective(tmp_path):
    splits = rv_clips(tmp_path / "data", counts=(("TRAIN", 4), ("VAL", 2)))
    rows = read_split_rows({"TRAIN": splits["TRAIN"], "VAL": splits["VAL"]})
    config = RVConfig.from_dict({"model": {**TINY}, "clips": {"frames": 8, "size": 24}})
    only_negatives = rows[rows["label"] == 0]
    only_negatives.attrs["source"] = "rows.csv"
    with pytest.raises(DataError, match="both present"):
        train_rvfailure(only_negatives, tmp_path / "m", tmp_path / "s", config, "rvfailure", 0)
    with pytest.raises(ValueError, match="one stream"):
        train_rvfailure(rows, tmp_path / "m", tmp_path / "s", config, "ef", 0)
    with pytest.raises(ValueError, match="class_weights must be two positive"):
        RVTrainSettings(class_weights=(0.2,))
    with pytest.raises(ValueError, match="unknown RV-failure train settings"):
        RVTrainSettings.from_dict({"lr_decay": 1})
    with pytest.raises(ValueError, match="train.decay_on must be one of"):
        RVTrainSettings(decay_on="biases")


def test_kernels_only_weight_decay_spares_biases_and_batch_norm():
    from echogen.training.supervised import make_optimizer

    net = TwoStreamNet(("grey",), **TINY)
    for param in net.parameters():
        torch.nn.init.constant_(param, 1.0)
    optimizer = make_optimizer(net, "adamw", lr=0.1, momentum=0.0, weight_decay=0.5,
                               decay_on="kernels")  # fmt: skip
    for param in net.parameters():
        param.grad = torch.zeros_like(param)  # no gradient: only the decay moves a parameter
    optimizer.step()
    trunk = net.trunks["grey"]
    with torch.no_grad():
        assert float(trunk.conv1.weight.flatten()[0]) == pytest.approx(1 - 0.1 * 0.5)
        assert float(net.fc.weight.flatten()[0]) == pytest.approx(1 - 0.1 * 0.5)
        assert float(trunk.bn1.weight[0]) == 1.0 and float(net.fc.bias[0]) == 1.0
    with pytest.raises(
        ValueError, match=r"unknown RV-failure model keys \['depht'\]; known: depth"
    ):
        RVConfig.from_dict({"model": {"depht": 50}})


# ---------------------------------------------------------------- guided backpropagation


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes a gradient only where the input and the gradient are
    positive (the definition, written independently of captum)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


class _Guided(torch.nn.Module):
    def forward(self, x):
        return _GuidedReLU.apply(x)


def _hand_guided_backprop(net, clips):
    import copy

    net = copy.deepcopy(net)
    replaced = 0
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, _Guided())
                replaced += 1
    assert replaced > 0
    inputs = [c.clone().requires_grad_(True) for c in clips]
    net(*inputs).sum().backward()
    return [x.grad for x in inputs]


def test_guided_backprop_matches_the_definition(trained):
    from echogen.pipelines.rvfailure import guided_backprop

    net, _ = load_rvfailure_model(trained["base"] / "model")
    generator = torch.Generator().manual_seed(0)
    clips = [torch.randn(2, 1, 8, 24, 24, generator=generator),
             torch.randn(2, 2, 8, 24, 24, generator=generator)]  # fmt: skip
    ours = guided_backprop(net, clips)
    reference = _hand_guided_backprop(net, clips)
    # (a stream whose fusion weights are all negative gets an all-zero map: the last ReLU
    # passes no negative gradient)
    assert sum(float(a.abs().sum()) for a in ours) > 0
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    inputs = [c.clone().requires_grad_(True) for c in clips]
    net(*inputs).sum().backward()
    assert not torch.allclose(inputs[0].grad, ours[0])  # not the plain gradient


def test_explanation_writes_inputs_maps_and_a_gif(trained, tmp_path, monkeypatch):
    from PIL import Image

    import echogen.pipelines.rvfailure as pipeline
    from echogen.pipelines.rvfailure import explain_rvfailure

    seen, guided_backprop = [], pipeline.guided_backprop

    def recording(net, clips):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return guided_backprop(net, clips)

    monkeypatch.setattr(pipeline, "guided_backprop", recording)

    rows = read_split_rows({"TEST": trained["splits"]["TEST"]})
    out, gif = tmp_path / "saliency", tmp_path / "saliency.gif"
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        index = explain_rvfailure(trained["base"] / "model", rows, out, gif, n_videos=3, seed=0)
        # TF32 is off inside (maps in full float32) and the process's setting comes back.
        assert seen == [(False, False)] * 3
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert index["label"].tolist() == [1, 0, 1]  # positives and negatives alternating
    net, spec = load_rvfailure_model(trained["base"] / "model")
    data = StreamClipSet(rows, spec, ("grey", "flow"), "label", seed=0)
    first = data.evaluation_clips(1, 1)[0]  # test_01 (label 1) is the first explained
    assert index["FileName"].iloc[0] == "test_01"
    for stream, clip in zip(("grey", "flow"), first, strict=True):
        saved = np.load(out / "inputs" / f"test_01_{stream}.npy")
        np.testing.assert_array_equal(saved, clip.numpy())
        saliency = np.load(out / "captum" / f"test_01_{stream}.npy")
        assert saliency.shape == saved.shape and np.isfinite(saliency).all()
    with Image.open(gif) as image:
        assert image.n_frames == 8 and image.size == (3 * 64, 3 * 64)


def test_split_rows_errors_name_their_own_csv_and_line(tmp_path):
    for split, names in (("val", ["a", "b"]), ("test", ["c", "d"])):
        rows = pd.DataFrame({"FileName": names, "patient_id": names, "label": [1, 0],
                             "Path": ["x.avi"] * 2})  # fmt: skip
        rows.to_csv(tmp_path / f"{split}.csv", index=False)
    bad = pd.read_csv(tmp_path / "test.csv").assign(label=[1, "severe?"])
    bad.to_csv(tmp_path / "test.csv", index=False)
    rows = read_split_rows({"VAL": tmp_path / "val.csv", "TEST": tmp_path / "test.csv"})
    spec = StreamClipSpec(frames=4, size=16, **PLAIN)
    with pytest.raises(DataError, match=r"test\.csv, row 3: video d has no numeric label") as err:
        StreamClipSet(rows, spec, ("grey",), "label")
    assert "val.csv" not in str(err.value)


def test_ef_pretraining_rows_leave_out_short_videos_and_missing_flow(tmp_path):
    from echogen.data.rvfailure import ef_stream_rows

    manifest = pd.DataFrame({"FileName": ["a", "b", "c", "d"], "Split": ["TRAIN"] * 4,
                             "EF": [50.0, 60.0, None, 40.0], "Path": ["a.avi", "b.avi", "c.avi",
                             "d.avi"], "NumberOfFrames": [40, 20, 40, 40]})  # fmt: skip
    manifest.to_csv(tmp_path / "m.csv", index=False)
    flow = pd.DataFrame({"FileName": ["a", "b", "c"], "Path": ["a.npy", "b.npy", "c.npy"]})
    flow.to_csv(tmp_path / "f.csv", index=False)
    rows = ef_stream_rows(tmp_path / "m.csv", tmp_path / "f.csv", min_frames=32)
    assert rows["FileName"].tolist() == ["a"] and rows["FlowPath"].tolist() == ["a.npy"]
    grey = ef_stream_rows(tmp_path / "m.csv", None, min_frames=32)  # the grey stream
    assert grey["FileName"].tolist() == ["a", "d"] and "FlowPath" not in grey
    with pytest.raises(DataError, match="no video has both an EF and flow"):
        ef_stream_rows(tmp_path / "m.csv", tmp_path / "f.csv", min_frames=64)


# ---------------------------------------------------------------- the TF1 innvestigate step

REPO = Path(__file__).resolve().parents[2]
TF1_PYTHON = REPO / ".venv-innvestigate" / "bin" / "python"  # rvfailure.innvestigate.python
TF1_STEP = REPO / "workflow_scripts" / "innvestigate_rvfailure.py"
needs_tf1 = pytest.mark.skipif(
    not TF1_PYTHON.is_file(),
    reason=f"no TF1 interpreter at {TF1_PYTHON}: build it with `bash envs/setup_innvestigate.sh` "
    "(needs a Python 3.6; PYTHON36=/path/to/python3.6)",
)


def test_keras_export_is_in_keras_layout():
    from echogen.models.rvfailure import keras_export

    for depth, block in ((10, "basic"), (50, "bottleneck")):
        net = TwoStreamNet(("grey", "flow"), depth=depth, widths=(2, 2, 4, 4)).eval()
        arch, weights = keras_export(net)
        assert arch["block"] == block and arch["streams"] == ["grey", "flow"]
        assert arch["stem"] == {"kernel": [7, 7, 7], "stride": [2, 2, 2], "padding": [3, 3, 3]}
        conv = net.trunks["flow"].conv1.weight  # (out, in, kT, kH, kW) -> (kT, kH, kW, in, out)
        kernel = weights["flow_conv1/0"]
        assert kernel.shape == (7, 7, 7, 2, 2)
        for o, i, t, h, w in ((1, 0, 2, 5, 6), (0, 1, 6, 0, 3)):
            assert kernel[t, h, w, i, o] == conv.detach()[o, i, t, h, w].item()
        assert "flow_conv1/1" not in weights  # no bias on MONAI's convolutions ...
        assert "grey_layer2_0_downsample_0/1" in weights  # ... but on its shortcuts
        bn = net.trunks["grey"].bn1
        order = [bn.weight, bn.bias, bn.running_mean, bn.running_var]
        for i, tensor in enumerate(order):
            np.testing.assert_array_equal(weights[f"grey_bn1/{i}"], tensor.detach().numpy())
        features = 4 * (4 if block == "bottleneck" else 1) * 2
        assert weights["fc/0"].shape == (features, 1)
        expected = sum(
            (2 if m.bias is not None else 1) if isinstance(m, torch.nn.Conv3d)
            else 4 if isinstance(m, torch.nn.BatchNorm3d)
            else 2 if isinstance(m, torch.nn.Linear) else 0
            for m in net.modules()
        )  # fmt: skip
        assert len(weights) == expected


def test_saliency_agreement_names_a_disagreeing_map(trained, tmp_path):
    import shutil

    from echogen.pipelines.rvfailure import explain_rvfailure, saliency_agreement

    rows = read_split_rows({"TEST": trained["splits"]["TEST"]})
    out = tmp_path / "saliency"
    explain_rvfailure(trained["base"] / "model", rows, out, tmp_path / "a.gif", 2, seed=0)
    assert json.loads((out / "keras" / "architecture.json").read_text())["block"] == "basic"
    other = tmp_path / "other"
    shutil.copytree(out / "captum", other)
    pd.read_csv(out / "index.csv")[["FileName", "prob"]].to_csv(other / "index.csv", index=False)
    record = saliency_agreement(out, other, tolerance=1e-3)
    assert record["max_relative_error"] == 0 and len(record["maps"]) == 4
    name = sorted(other.glob("*_grey.npy"))[0]
    saliency = np.load(name)
    np.save(name, saliency + 0.01 * np.abs(saliency).max())
    record = saliency_agreement(out, other, tolerance=None)
    assert record["max_relative_difference"] == pytest.approx(0.01, rel=1e-3)
    error = np.linalg.norm(np.full(saliency.shape, 0.01 * np.abs(saliency).max()))
    assert record["max_relative_error"] == pytest.approx(error / np.linalg.norm(saliency), rel=1e-3)
    with pytest.raises(DataError, match=f"{name.name}.*differs from captum's map"):
        saliency_agreement(out, other, tolerance=1e-3)
    name.unlink()
    with pytest.raises(DataError, match=f"{name.name}.*missing"):
        saliency_agreement(out, other, tolerance=1e-3)


@needs_tf1
def test_innvestigate_step_names_a_missing_export(tmp_path):
    import subprocess

    (tmp_path / "explained").mkdir()
    result = subprocess.run([TF1_PYTHON, TF1_STEP, tmp_path / "explained", tmp_path / "out"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1
    assert "keras/architecture.json: missing (fix: rerun rule explain_rvfailure)" in result.stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


@pytest.mark.e2e
@needs_tf1
@pytest.mark.parametrize("start", ["unit", "output"])
def test_innvestigate_maps_equal_captums(trained, tmp_path, start):
    """The TF1 step (innvestigate 1.0.8 on Keras 2.2.4, its own interpreter) rebuilds the
    trained network from its export and explains the same clips: its maps equal captum's
    within 1e-4 of each map's largest value when both start from 1; started from the
    output's value (innvestigate's own), each map is captum's map of the output's sign
    times the network's magnitude."""
    import subprocess

    from echogen.pipelines.rvfailure import (
        explain_rvfailure,
        guided_backprop,
        saliency_agreement,
    )

    rows = read_split_rows({"TEST": trained["splits"]["TEST"]})
    out = tmp_path / "saliency"
    index = explain_rvfailure(trained["base"] / "model", rows, out, tmp_path / "a.gif", 3, 0)
    result = subprocess.run([TF1_PYTHON, TF1_STEP, out, tmp_path / "tf1", "--start", start],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "tf1" / "model.h5").stat().st_size > 0
    theirs = pd.read_csv(tmp_path / "tf1" / "index.csv")
    np.testing.assert_allclose(theirs["prob"], index["prob"], atol=1e-5)
    if start == "unit":
        record = saliency_agreement(out, tmp_path / "tf1", tolerance=1e-4)
        assert record["max_relative_difference"] < 1e-4 and record["min_correlation"] > 0.99999
        assert any(np.abs(np.load(out / "captum" / f"{m['FileName']}_{m['stream']}.npy")).max()
                   > 0 for m in record["maps"])  # fmt: skip
        return
    net, _ = load_rvfailure_model(trained["base"] / "model")
    for name, prob in zip(index["FileName"], index["prob"], strict=True):
        logit = float(np.log(prob / (1 - prob)))
        clips = [torch.from_numpy(np.load(out / "inputs" / f"{name}_{s}.npy"))[None]
                 for s in ("grey", "flow")]  # fmt: skip
        expected = guided_backprop(_Signed(net, np.sign(logit)), clips)
        for stream, ours in zip(("grey", "flow"), expected, strict=True):
            ours = abs(logit) * ours[0].numpy()
            tf1 = np.load(tmp_path / "tf1" / f"{name}_{stream}.npy")
            np.testing.assert_allclose(tf1, ours, rtol=0, atol=1e-4 * np.abs(ours).max())


class _Signed(torch.nn.Module):
    """``sign`` times a network's output (guided backpropagation is not odd: the map of
    ``-f`` is not minus the map of ``f``)."""

    def __init__(self, net, sign):
        super().__init__()
        self.net, self.sign = net, float(sign)

    def forward(self, *clips):
        return self.sign * self.net(*clips)
