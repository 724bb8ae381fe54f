"""Rule innvestigate_rvfailure: the reference's TF1 guided backpropagation (innvestigate
1.0.8 on Keras 2.2.4) of the clips that rule explain_rvfailure explained with captum.

Runs in its own environment (envs/innvestigate.yaml, or the interpreter that config key
rvfailure.innvestigate.python names; Python 3.6) and imports nothing from echogen: it
exchanges files only. It reads, from the explanation folder,

- ``keras/architecture.json``: the 3-D ResNet streams (MONAI's post-activation ResNet: block
  kind, blocks and widths per stage, stem, batch-norm epsilon) and their fusion unit;
- ``keras/weights.npz``: every layer's weights in Keras layout, keyed ``<layer>/<i>``;
- ``inputs/<FileName>_<stream>.npy``: the z-scored clips ``(C, T, H, W)``, and ``index.csv``;

rebuilds the network in Keras (torch's symmetric padding as explicit ``ZeroPadding3D``
before ``valid`` convolutions and pooling, channels last), checks that it reproduces the
torch network's probability of every clip, and writes to the output folder the maps
``<FileName>_<stream>.npy`` (same layout as the inputs), ``index.csv`` (FileName, prob of the
Keras network) and the Keras model ``model.h5``. Usage::

    python innvestigate_rvfailure.py EXPLAIN_DIR OUT_DIR [--threads N] [--start unit|output]
"""

# ruff: noqa: B905 (Python 3.6: zip has no strict=)
import argparse
import csv
import json
import logging
import os
import shutil
import sys

import numpy as np

log = logging.getLogger("innvestigate_rvfailure")
FORMAT = "echogen-rvfailure-keras/1"
PROB_TOLERANCE = 1e-4


class StepError(Exception):
    """A bad input of the step: its message names the file and the fix."""


def first_max_pool(x):
    """3x3x3 max pooling with stride 2 (over an input padded by 1) whose gradient goes to the
    first largest element of each window in (t, h, w) order, as torch's does. Keras'
    MaxPooling3D would give it to every tied element, and the phantom's constant background
    ties everywhere; torch's -inf padding is a zero pad here: the pooled input is a ReLU's
    output, and a zero it picks passes no gradient back through that ReLU either way."""
    import keras.backend as K

    _, t, h, w, _ = K.int_shape(x)
    sizes = [(n - 3) // 2 + 1 for n in (t, h, w)]
    best = None
    for a in range(3):
        for b in range(3):
            for c in range(3):
                view = x[
                    :,
                    a : a + 2 * sizes[0] - 1 : 2,
                    b : b + 2 * sizes[1] - 1 : 2,
                    c : c + 2 * sizes[2] - 1 : 2,
                    :,
                ]
                best = view if best is None else K.switch(K.greater(view, best), view, best)
    return best


def build_network(arch, shapes):
    """The Keras mirror of echogen.models.rvfailure.TwoStreamNet described by ``arch``;
    ``shapes`` maps each stream to its input's channels-last shape ``(T, H, W, C)``."""
    from keras import layers
    from keras.models import Model

    eps = arch["bn_eps"]
    expansion = 4 if arch["block"] == "bottleneck" else 1

    def conv(x, name, filters, kernel, stride, pad, bias=False):
        if any(pad):
            x = layers.ZeroPadding3D(tuple((p, p) for p in pad), name=name + "_pad")(x)
        return layers.Conv3D(
            filters, kernel, strides=stride, padding="valid", use_bias=bias, name=name
        )(x)

    def norm(x, name):
        return layers.BatchNormalization(axis=-1, epsilon=eps, name=name)(x)

    def relu(x, name):
        return layers.Activation("relu", name=name)(x)

    def block(x, name, in_planes, planes, stride):
        if arch["block"] == "bottleneck":
            out = relu(
                norm(conv(x, name + "_conv1", planes, 1, 1, (0, 0, 0)), name + "_bn1"),
                name + "_relu1",
            )
            out = relu(
                norm(conv(out, name + "_conv2", planes, 3, stride, (1, 1, 1)), name + "_bn2"),
                name + "_relu2",
            )
            out = norm(
                conv(out, name + "_conv3", planes * expansion, 1, 1, (0, 0, 0)), name + "_bn3"
            )
        else:
            out = relu(
                norm(conv(x, name + "_conv1", planes, 3, stride, (1, 1, 1)), name + "_bn1"),
                name + "_relu1",
            )
            out = norm(conv(out, name + "_conv2", planes, 3, 1, (1, 1, 1)), name + "_bn2")
        residual = x
        if stride != 1 or in_planes != planes * expansion:
            residual = conv(
                x,
                name + "_downsample_0",
                planes * expansion,
                1,
                stride,
                (0, 0, 0),
                bias=arch["downsample_bias"],
            )
            residual = norm(residual, name + "_downsample_1")
        return relu(layers.Add(name=name + "_add")([out, residual]), name + "_relu_out")

    inputs, features = [], []
    for stream in arch["streams"]:
        x = layers.Input(shape=shapes[stream], name=stream)
        inputs.append(x)
        stem = arch["stem"]
        y = conv(
            x, stream + "_conv1", arch["widths"][0], stem["kernel"], stem["stride"], stem["padding"]
        )
        y = relu(norm(y, stream + "_bn1"), stream + "_relu")
        if arch["max_pool"]:
            y = layers.ZeroPadding3D(((1, 1), (1, 1), (1, 1)), name=stream + "_maxpool_pad")(y)
            y = layers.Lambda(first_max_pool, name=stream + "_maxpool")(y)
        in_planes = arch["widths"][0]
        for stage, (blocks, planes) in enumerate(zip(arch["layers"], arch["widths"])):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                name = f"{stream}_layer{stage + 1}_{i}"
                y = block(y, name, in_planes, planes, stride)
                in_planes = planes * expansion
        features.append(layers.GlobalAveragePooling3D(name=stream + "_avgpool")(y))
    fused = features[0] if len(features) == 1 else layers.Concatenate(name="concat")(features)
    return Model(inputs, layers.Dense(1, name="fc")(fused))


def load_weights(model, weights, source):
    """Set every layer's weights from ``weights`` (``<layer>/<i>``), all keys used."""
    used = set()
    for layer in model.layers:
        count = len(layer.get_weights())
        if not count:
            continue
        keys = [f"{layer.name}/{i}" for i in range(count)]
        missing = [k for k in keys if k not in weights]
        if missing:
            raise StepError(
                f"{source}: no weights for {missing[:3]} (fix: re-export the model with rule "
                "explain_rvfailure)"
            )
        layer.set_weights([weights[k] for k in keys])
        used.update(keys)
    unused = sorted(set(weights) - used)
    if unused:
        raise StepError(
            f"{source}: weights {unused[:3]} match no layer of the Keras network (fix: re-export "
            "with the same echogen version)"
        )


def read_index(path):
    if not os.path.isfile(path):
        raise StepError(f"{path}: missing (fix: rerun rule explain_rvfailure)")
    with open(path) as handle:
        return list(csv.DictReader(handle))


def make_analyzer(model, start):
    """innvestigate's guided backpropagation of the model's output. ``start`` "output" is
    innvestigate 1.0.8's own (its reverse pass starts from the output's value, so a map is
    scaled by the logit and its guidance flips where the logit is negative: the
    reference's maps); "unit" starts from 1, as captum and Springenberg et al. do."""
    from innvestigate import layers as ilayers
    from innvestigate.analyzer.gradient_based import GuidedBackprop

    if start == "output":
        return GuidedBackprop(model, allow_lambda_layers=True)  # the max pooling
    if start != "unit":
        raise StepError(f"--start must be unit or output, got {start!r}")

    class UnitGuidedBackprop(GuidedBackprop):
        def _head_mapping(self, X):
            return ilayers.OnesLike()(X)

    return UnitGuidedBackprop(model, allow_lambda_layers=True)


def explain(explain_dir, out_dir, threads=1, start="unit"):
    arch_path = os.path.join(explain_dir, "keras", "architecture.json")
    weights_path = os.path.join(explain_dir, "keras", "weights.npz")
    for path in (arch_path, weights_path):
        if not os.path.isfile(path):
            raise StepError(f"{path}: missing (fix: rerun rule explain_rvfailure)")
    with open(arch_path) as handle:
        arch = json.load(handle)
    if arch.get("format") != FORMAT:
        raise StepError(
            "{}: format {!r}, expected {!r} (fix: rerun rule explain_rvfailure)".format(
                arch_path, arch.get("format"), FORMAT
            )
        )
    rows = read_index(os.path.join(explain_dir, "index.csv"))
    if not rows:
        raise StepError("{}: no clip to explain".format(os.path.join(explain_dir, "index.csv")))
    streams = arch["streams"]

    def clip_path(row, stream):
        path = os.path.join(explain_dir, "inputs", "{}_{}.npy".format(row["FileName"], stream))
        if not os.path.isfile(path):
            raise StepError(f"{path}: missing (fix: rerun rule explain_rvfailure)")
        return path

    def clip(row, stream):
        return np.transpose(np.load(clip_path(row, stream)), (1, 2, 3, 0))[None]  # (1,T,H,W,C)

    for row in rows:  # every input is there before TensorFlow starts
        for stream in streams:
            clip_path(row, stream)
    first = {s: clip(rows[0], s).shape[1:] for s in streams}
    import keras.backend as K
    import tensorflow as tf

    K.set_session(
        tf.Session(
            config=tf.ConfigProto(
                intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
            )
        )
    )
    K.set_learning_phase(0)  # batch norm with its running statistics, as torch's eval mode
    model = build_network(arch, first)
    with np.load(weights_path) as weights:
        load_weights(model, dict(weights), weights_path)
    analyzer = make_analyzer(model, start)

    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        records = []
        for n, row in enumerate(rows):
            clips = [clip(row, s) for s in streams]
            logit = float(model.predict(clips)[0, 0])
            prob = 1.0 / (1.0 + np.exp(-logit))
            if abs(prob - float(row["prob"])) > PROB_TOLERANCE:
                raise StepError(
                    "{}: the Keras network gives p = {:.6f}, torch gave {:.6f} (fix: the export "
                    "and this step's network disagree; report it with architecture.json)".format(
                        row["FileName"], prob, float(row["prob"])
                    )
                )
            maps = analyzer.analyze(clips)
            if not isinstance(maps, (list, tuple)):
                maps = [maps]
            for stream, saliency in zip(streams, maps):
                saliency = np.transpose(np.asarray(saliency[0], np.float32), (3, 0, 1, 2))
                np.save(os.path.join(tmp, "{}_{}.npy".format(row["FileName"], stream)), saliency)
            records.append({"FileName": row["FileName"], "prob": f"{prob:.8f}"})
            log.info(
                "guided backpropagation %d/%d: %s (p %.4f)", n + 1, len(rows), row["FileName"], prob
            )
        with open(os.path.join(tmp, "index.csv"), "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=["FileName", "prob"])
            writer.writeheader()
            writer.writerows(records)
        model.save(os.path.join(tmp, "model.h5"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written
        raise
    old = out_dir.rstrip("/") + ".old"  # the previous maps go only once the new ones are in
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(out_dir):
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    log.info("innvestigate maps of %d clips -> %s", len(records), out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("explain_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--start",
        choices=("unit", "output"),
        default="unit",
        help="where the reverse pass starts (see make_analyzer)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        explain(args.explain_dir, args.out_dir, args.threads, args.start)
    except StepError as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
