"""RV-failure prediction and its table: video probabilities, patients, AUC, operating point.

rohanshad/postop_rv_failure_echo's ``predict.py`` (``/work/shared/PAPERS.md`` §7) scores a
video by the mean sigmoid output over 5 random 32-frame clips; the paper reports the AUC of
severe RV failure (0.729) and the specificity at 80 % sensitivity (52 %).
:func:`predict_rvfailure` writes every VAL and TEST video's probability (clips drawn from
``(seed, video)``, so the csv is reproducible); :func:`write_rvfailure_table` aggregates
videos per patient (the mean of a patient's videos) and reports, per model, the TEST AUC with
a stratified bootstrap interval, the specificity at 80 % sensitivity, and the confusion
matrix at the threshold chosen on VAL (the highest reaching 80 % VAL sensitivity), so TEST
never chooses anything.

:func:`explain_rvfailure` writes guided-backpropagation maps (captum) of TEST clips with the
inputs they explain, so another implementation (the reference's TF1 innvestigate step) can
be fed the same clips. Difference from ``visualize_GBP.py``: the maps explain the trained
output unit; the reference adds a new, untrained 2-way softmax head on the fused features and
explains its larger logit.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.io import atomic_dir, atomic_path, write_json
from echogen.data.stream_clips import StreamClipSet, StreamClipSpec
from echogen.metrics.scores import (
    confusion_at,
    interval_label,
    roc_auc,
    specificity_at_sensitivity,
    threshold_at_sensitivity,
)
from echogen.models.rvfailure import TwoStreamNet, keras_export, load_rvfailure_model

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["FileName", "patient_id", "Split", "class_name", "label", "prob",
                      "clip_probs"]  # fmt: skip
ALPHA = 0.05


@torch.no_grad()
def predict_rvfailure(model_dir: str | Path, rows: pd.DataFrame, out_csv: str | Path,
                      seed: int, device: str = "cpu", root: str | Path = ".",
                      n_clips: int | None = None) -> pd.DataFrame:  # fmt: skip
    """Probability of the positive class per video: the mean sigmoid output over
    ``n_clips`` (default: the model's ``clips.test_clips``) random clips.

    Args:
        model_dir: an exported fusion (or single-stream) network.
        rows: FileName, patient_id, Split, label, Path/FlowPath
            (:func:`echogen.data.rvfailure.read_split_rows`).
        out_csv: written atomically with :data:`PREDICTION_COLUMNS` (``clip_probs`` joined
            by ``;``).
        seed: seeds the clip starts (video ``i`` draws from ``(seed, i)``).
        device: torch device.
        root: folder the clip paths are relative to.
        n_clips: clips per video.
    """
    net, spec = load_rvfailure_model(model_dir)
    net = net.to(device)
    streams = tuple(net.config.streams)
    dataset = StreamClipSet(rows, spec, streams, "label", train=False, seed=seed, root=root)
    records = []
    for index in tqdm(range(len(dataset)), desc="RV-failure prediction", unit="video"):
        clips = dataset.evaluation_clips(index, n_clips)
        inputs = [torch.stack([c[k] for c in clips]).to(device) for k in range(len(streams))]
        probs = torch.sigmoid(net(*inputs).float()).cpu().numpy().astype(np.float64)
        row = dataset.rows.iloc[index]
        records.append({
            "FileName": row["FileName"], "patient_id": row["patient_id"], "Split": row["Split"],
            "class_name": row.get("class_name", ""), "label": int(row["label"]),
            "prob": float(probs.mean()), "clip_probs": ";".join(f"{p:.6g}" for p in probs),
        })  # fmt: skip
    table = pd.DataFrame(records, columns=PREDICTION_COLUMNS)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def patient_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (Split, patient): the mean probability of its videos and its label
    (a patient whose videos disagree on the label is an error)."""
    grouped = predictions.groupby(["Split", "patient_id"], sort=True)
    labels = grouped["label"].nunique()
    if (labels > 1).any():
        bad = labels[labels > 1].index[0]
        raise DataError("predictions", f"patient {bad[1]} has videos of both labels",
                        "fix the class csv: one class per patient")  # fmt: skip
    return grouped.agg(prob=("prob", "mean"), label=("label", "first"),
                       videos=("FileName", "size")).reset_index()  # fmt: skip


def stratified_auc_ci(labels, scores, n_boot: int, seed: int, alpha: float = ALPHA):
    """Percentile interval of the AUC over resamples drawn within each class (so every
    resample has both classes, as pROC's stratified bootstrap); (nan, nan) when a class is
    absent."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, np.float64)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        index = np.concatenate([rng.choice(positives, len(positives)),
                                rng.choice(negatives, len(negatives))])  # fmt: skip
        stats[b] = roc_auc(labels[index], scores[index])
    stats.sort()
    low = stats[int(round(alpha / 2 * n_boot))]
    high = stats[min(int(round((1 - alpha / 2) * n_boot)), n_boot - 1)]
    return float(low), float(high)


def score_model(predictions: pd.DataFrame, sensitivity: float, n_boot: int, seed: int) -> dict:
    """One model's TEST report from its VAL + TEST video predictions (see the module)."""
    patients = patient_scores(predictions)
    val, test = (patients[patients["Split"] == s] for s in ("VAL", "TEST"))
    if test.empty:
        raise DataError("predictions", "no TEST patient", "put patients in the test split")
    threshold = threshold_at_sensitivity(val["label"], val["prob"], sensitivity)
    low, high = stratified_auc_ci(test["label"], test["prob"], n_boot, seed)
    videos = predictions[predictions["Split"] == "TEST"]
    report = {
        "n_patients": len(test),
        "n_positive": int(test["label"].sum()),
        "n_videos": len(videos),
        "auc": {"value": roc_auc(test["label"], test["prob"]), "ci_low": low, "ci_high": high},
        "auc_videos": roc_auc(videos["label"], videos["prob"]),
        "specificity_at_sensitivity": specificity_at_sensitivity(
            test["label"], test["prob"], sensitivity
        ),
        "val_threshold": threshold,
        "confusion": None,
    }
    if not math.isnan(threshold):
        report["confusion"] = confusion_at(test["label"], test["prob"], threshold)
    return report


def _undefined(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value) -> str:
    return "n/a" if _undefined(value) else f"{value:.3f}"


def _json_safe(obj):
    """NaN (an undefined AUC or threshold) as null, so the json is standard."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def write_rvfailure_table(predictions: dict[str, str | Path], txt: str | Path,
                          json_path: str | Path, sensitivity: float = 0.8,
                          n_bootstrap: int = 1000, seed: int = 0,
                          plumbing: bool = False) -> dict:  # fmt: skip
    """``results/metrics/rvfailure.txt`` and ``.json``: one row per model.

    Args:
        predictions: model name → its predictions csv (:func:`predict_rvfailure`).
        txt, json_path: the table and its machine-readable twin (written atomically).
        sensitivity: the operating point's sensitivity (the paper: 80 %).
        n_bootstrap, seed: the AUC interval's stratified resamples.
        plumbing: say in the table that the models are demo-sized (not the paper's numbers).
    """
    rows = {}
    for name, path in predictions.items():
        table = pd.read_csv(path, dtype={"FileName": str, "patient_id": str})
        rows[name] = score_model(table, sensitivity, n_bootstrap, seed)
    pct = f"{100 * sensitivity:g} %"
    header = ["model", "patients (pos)", "AUC [CI]", "video AUC", f"spec @ {pct} sens",
              "VAL threshold", "TEST TP FP TN FN", "sens", "spec"]  # fmt: skip
    body = []
    for name, r in rows.items():
        auc = r["auc"]
        interval = f"[{_fmt(auc['ci_low'])}, {_fmt(auc['ci_high'])}]"
        c = r["confusion"] or {}
        counts = " ".join(str(c[k]) for k in ("tp", "fp", "tn", "fn")) if c else "n/a"
        body.append([name, f"{r['n_patients']} ({r['n_positive']})",
                     f"{_fmt(auc['value'])} {interval}", _fmt(r["auc_videos"]),
                     _fmt(r["specificity_at_sensitivity"]), _fmt(r["val_threshold"]), counts,
                     _fmt(c.get("sensitivity")), _fmt(c.get("specificity"))])  # fmt: skip
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    lines = [
        "RV failure after LVAD (severe vs rest), TEST patients (a patient's probability is the "
        "mean of its videos', a video's the mean over its random clips)",
        f"AUC interval: stratified {interval_label(n_bootstrap, seed, ALPHA)}; the threshold is "
        f"the highest reaching {pct} sensitivity on VAL",
        "Published (paper config, 3-D ResNet-152 streams): AUC 0.729, specificity 52 % at "
        "80 % sensitivity",
    ]
    if plumbing:
        lines.append("PLUMBING CHECK: demo-sized networks on the phantom, not the paper's numbers")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    text = "\n".join(line.rstrip() for line in lines) + "\n"
    with atomic_path(txt) as tmp:
        Path(tmp).write_text(text)
    report = {"models": rows, "sensitivity": sensitivity, "n_bootstrap": n_bootstrap,
              "seed": seed, "alpha": ALPHA, "plumbing": plumbing}  # fmt: skip
    write_json(json_path, _json_safe(report))
    log.info("\n%s", text)
    return report


# ---------------------------------------------------------------- guided backpropagation


def guided_backprop(net: torch.nn.Module, clips: list[torch.Tensor]) -> list[torch.Tensor]:
    """Guided-backpropagation maps (Springenberg et al.; captum's ``GuidedBackprop``) of the
    network's single output with respect to each input clip: gradients passed back through
    every ReLU only where both its input and the incoming gradient are positive. ``net``
    must be in eval mode (batch norm as a fixed affine map)."""
    import warnings

    from captum.attr import GuidedBackprop

    inputs = tuple(c.detach().clone().requires_grad_(True) for c in clips)
    with warnings.catch_warnings():  # captum says it hooks the ReLUs for the call: known
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        maps = GuidedBackprop(net).attribute(inputs)
    return [m.detach() for m in maps]


def write_keras_export(net: TwoStreamNet, out_dir: str | Path) -> None:
    """``out_dir/architecture.json`` and ``out_dir/weights.npz``: the network as the TF1
    innvestigate step rebuilds it (:func:`echogen.models.rvfailure.keras_export`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch, weights = keras_export(net)
    write_json(out_dir / "architecture.json", arch)
    np.savez(out_dir / "weights.npz", **weights)


def _explained_rows(rows: pd.DataFrame, n_videos: int) -> list[int]:
    """Up to ``n_videos`` row positions, positives and negatives alternating in file order."""
    labels = pd.to_numeric(rows["label"]).to_numpy()
    positives, negatives = list(np.flatnonzero(labels == 1)), list(np.flatnonzero(labels != 1))
    chosen = []
    while len(chosen) < n_videos and (positives or negatives):
        for queue in (positives, negatives):
            if queue and len(chosen) < n_videos:
                chosen.append(int(queue.pop(0)))
    return chosen


def explain_rvfailure(model_dir: str | Path, rows: pd.DataFrame, out_dir: str | Path,
                      out_gif: str | Path, n_videos: int, seed: int,
                      device: str = "cpu") -> pd.DataFrame:  # fmt: skip
    """Guided-backpropagation maps of ``n_videos`` videos' first evaluation clip (the first
    of the clips their prediction averages; positives and negatives alternating), with the
    inputs they explain.

    ``out_dir`` (written atomically) holds ``inputs/<FileName>_<stream>.npy`` (the z-scored
    clip, ``(C, T, H, W)`` float32: what any other implementation must be fed),
    ``captum/<FileName>_<stream>.npy`` (its map, same shape) and ``index.csv`` (FileName,
    patient_id, label, prob of that clip); ``out_gif`` shows each clip with its maps
    (:func:`echogen.report.saliency_strip_gif`).
    """
    from echogen.numerics import tf32_off

    # Full float32 on GPUs too (TF32 restored after): the TF1 step recomputes these maps and
    # probabilities in float32 on CPU, and TF32 convolutions would move them by ~1e-3 a layer.
    with tf32_off():
        return _explain(model_dir, rows, out_dir, out_gif, n_videos, seed, device)


def _explain(model_dir, rows, out_dir, out_gif, n_videos, seed, device) -> pd.DataFrame:
    net, spec = load_rvfailure_model(model_dir)
    net = net.to(device)
    streams = tuple(net.config.streams)
    dataset = StreamClipSet(rows, spec, streams, "label", train=False, seed=seed)
    chosen = _explained_rows(dataset.rows, n_videos)
    if not chosen:
        raise DataError(rows.attrs.get("source", "rows"), "no video to explain",
                        "put videos in the split the explanation reads")  # fmt: skip
    records = []
    with atomic_dir(out_dir) as tmp:
        for folder in ("inputs", "captum"):
            (tmp / folder).mkdir()
        for index in tqdm(chosen, desc="guided backpropagation", unit="video"):
            row = dataset.rows.iloc[index]
            clips = [c[None].to(device) for c in dataset.evaluation_clips(index, 1)[0]]
            with torch.no_grad():
                prob = float(torch.sigmoid(net(*clips)).item())
            maps = guided_backprop(net, clips)
            for stream, clip, saliency in zip(streams, clips, maps, strict=True):
                name = f"{row['FileName']}_{stream}.npy"
                np.save(tmp / "inputs" / name, clip[0].cpu().numpy().astype(np.float32))
                np.save(tmp / "captum" / name, saliency[0].cpu().numpy().astype(np.float32))
            records.append({"FileName": row["FileName"], "patient_id": row["patient_id"],
                            "label": int(row["label"]), "prob": prob})  # fmt: skip
        index_csv = pd.DataFrame(records)
        index_csv.to_csv(tmp / "index.csv", index=False)
        write_keras_export(net, tmp / "keras")
    saliency_gif(out_dir, Path(out_dir) / "captum", spec, out_gif)
    log.info("guided backpropagation of %d videos -> %s", len(records), out_dir)
    return index_csv


def _explained_clips(explain_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """The index of an explanation folder and its streams (from its Keras export)."""
    index_csv = explain_dir / "index.csv"
    arch = explain_dir / "keras" / "architecture.json"
    for path in (index_csv, arch):
        if not path.is_file():
            raise DataError(path, "missing", "rerun rule explain_rvfailure")
    return pd.read_csv(index_csv), list(json.loads(arch.read_text())["streams"])


def saliency_gif(explain_dir: str | Path, maps_dir: str | Path, spec: StreamClipSpec,
                 out_gif: str | Path) -> None:  # fmt: skip
    """The report GIF (:func:`echogen.report.saliency_strip_gif`) of one implementation's
    maps ``maps_dir/<FileName>_<stream>.npy`` over the clips of :func:`explain_rvfailure`'s
    ``explain_dir``; ``spec`` gives the grey statistics that undo the z-scores (a flow-only
    model shows its flow's magnitude instead)."""
    from echogen.report import saliency_strip_gif

    explain_dir, maps_dir = Path(explain_dir), Path(maps_dir)
    rows, streams = _explained_clips(explain_dir)
    strips = []
    for name in rows["FileName"]:
        strip = {"grey_map": None, "flow_map": None}
        for stream in streams:
            clip = np.load(explain_dir / "inputs" / f"{name}_{stream}.npy")
            saliency = np.load(maps_dir / f"{name}_{stream}.npy")
            # grey: (T, H, W); flow: (2, T, H, W) (the GIF shows its magnitude)
            strip[f"{stream}_map"] = saliency[0] if stream == "grey" else saliency
            if stream == "grey":
                mean, std = spec.statistics("grey")
                strip["grey"] = clip[0] * std + mean
            else:
                magnitude = np.sqrt(np.square(clip).sum(axis=0))
                strip.setdefault("grey", magnitude / max(float(magnitude.max()), 1e-12))
        strips.append(strip)
    saliency_strip_gif(strips, out_gif, size=max(spec.size, 64))


def saliency_agreement(explain_dir: str | Path, other_dir: str | Path,
                       tolerance: float | None) -> dict:  # fmt: skip
    """How far another implementation's guided-backpropagation maps (``other_dir``: the TF1
    innvestigate step's ``<FileName>_<stream>.npy`` and ``index.csv``) are from captum's in
    ``explain_dir``: per clip and stream the relative error ``‖other − captum‖₂ /
    ‖captum‖₂``, the largest absolute difference relative to the largest absolute captum
    value, and their correlation; the probabilities of both networks. With ``tolerance``, a
    relative error above it is an error naming the map.

    The error is the L2 one because the gradient at a tie inside a max-pooling window is not
    unique: where two values of a window differ by less than the frameworks' rounding, each
    may route it to a different element, and one 7³ stem region of the map differs (seen:
    one such window in a phantom flow clip, relative error 0.007, largest difference 0.03);
    a wrongly mirrored network is off everywhere (errors ~0.5)."""
    explain_dir, other_dir = Path(explain_dir), Path(other_dir)
    rows, streams = _explained_clips(explain_dir)
    other_index = other_dir / "index.csv"
    if not other_index.is_file():
        raise DataError(other_index, "missing", "rerun rule innvestigate_rvfailure")
    other_prob = pd.read_csv(other_index).set_index("FileName")["prob"]
    maps = []
    for row in rows.itertuples():
        for stream in streams:
            name = f"{row.FileName}_{stream}.npy"
            ours = np.load(explain_dir / "captum" / name).astype(np.float64)
            path = other_dir / name
            if not path.is_file():
                raise DataError(path, "missing", "rerun rule innvestigate_rvfailure")
            theirs = np.load(path).astype(np.float64)
            if theirs.shape != ours.shape:
                raise DataError(path, f"shape {theirs.shape}, captum's is {ours.shape}",
                                "rerun rule innvestigate_rvfailure")  # fmt: skip
            error = float(np.linalg.norm(theirs - ours)) / max(float(np.linalg.norm(ours)), 1e-30)
            largest = float(np.abs(theirs - ours).max()) / max(float(np.abs(ours).max()), 1e-30)
            correlation = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
            maps.append({"FileName": row.FileName, "stream": stream, "relative_error": error,
                         "relative_difference": largest, "correlation": correlation,
                         "prob": float(row.prob),
                         "prob_other": float(other_prob.get(row.FileName, math.nan))})  # fmt: skip
            log.info("%s: relative error %.2e, largest difference %.2e, correlation %.6f",
                     name, error, largest, correlation)  # fmt: skip
            if tolerance is not None and not error <= tolerance:
                raise DataError(path, f"differs from captum's map by a relative error of "
                                f"{error:.3g} (tolerance {tolerance:g})",
                                "the Keras mirror and the torch network disagree: report it "
                                "with this folder")  # fmt: skip
    return {"maps": maps, "max_relative_error": max(m["relative_error"] for m in maps),
            "max_relative_difference": max(m["relative_difference"] for m in maps),
            "min_correlation": min(m["correlation"] for m in maps),
            "tolerance": tolerance}  # fmt: skip
