"""Training one stage of EchoDiffusion's cascade (echogen.training.cascade): the stage learns
on phantom clips, exports online and EMA weights, and a cut run resumes bit for bit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors.torch import load_file
from test_cascade_model import TINY_IMAGEN, TINY_UNET
from trainer_cases import phantom_dynamic

from echogen.training.cascade import (
    EMA_WEIGHTS,
    STAGE_FILE,
    WEIGHTS,
    CascadeTrainSpec,
    train_cascade_stage,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEED = 3
# Stage 2 without cross-attention (as 4SCM's last stage): full attention over every frame's
# pixels is most of a tiny stage's time on CPU.
UNETS = [TINY_UNET, {**TINY_UNET, "layer_cross_attns": False}]
IMAGEN = {**TINY_IMAGEN, "image_sizes": [8, 16]}
TRAIN = {
    "batch_size": 2,
    "max_steps": 2,
    "ignore_time": 0.5,
    "ema_update_after_step": 0,
    "ema_update_every": 1,
    "ema_beta": 0.5,
    "checkpoint_every": 1,
    "log_every": 1,
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    base = tmp_path_factory.mktemp("cascade")
    path = phantom_dynamic(base)
    return pd.read_csv(path, dtype={"FileName": str}), base


def run(manifest, out, state, stage=2, **train):
    rows, root = manifest
    return train_cascade_stage(
        rows, out, state, UNETS, IMAGEN, stage, {**TRAIN, **train},
        SEED, fps=8, duration=1.0, root=root,
    )  # fmt: skip


def test_a_stage_trains_exports_and_resumes(manifest, tmp_path):
    summary = run(manifest, tmp_path / "out", tmp_path / "state")
    out = tmp_path / "out"
    assert summary["steps"] == 2 and summary["n_train"] == 8
    assert {p.name for p in out.iterdir()} >= {WEIGHTS, EMA_WEIGHTS, STAGE_FILE, "train.json"}
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == [1, 2] and log["loss"].notna().all()
    stage = json.loads((out / STAGE_FILE).read_text())
    assert stage["stage"] == 2 and stage["imagen"]["image_sizes"] == [8, 16]
    online, ema = load_file(out / WEIGHTS), load_file(out / EMA_WEIGHTS)
    assert online.keys() == ema.keys()
    assert any(not online[k].equal(ema[k]) for k in online)  # the EMA lags the weights

    # Cut at step 1, then the same command to 2: the straight run's weights, bit for bit.
    run(manifest, tmp_path / "cut", tmp_path / "cut_state", max_steps=1)
    resumed = run(manifest, tmp_path / "cut", tmp_path / "cut_state")
    assert resumed["resumed_from"] == 1
    again = load_file(tmp_path / "cut" / WEIGHTS)
    assert all(again[k].equal(online[k]) for k in online)
    assert all(load_file(tmp_path / "cut" / EMA_WEIGHTS)[k].equal(ema[k]) for k in ema)


def test_base_stage_and_bad_settings(manifest, tmp_path):
    summary = run(manifest, tmp_path / "base", tmp_path / "base_state", stage=1, max_steps=1)
    assert summary["steps"] == 1
    with pytest.raises(ValueError, match="stage must be in 1..2"):
        run(manifest, tmp_path / "x", tmp_path / "xs", stage=3)
    with pytest.raises(ValueError, match="ignore_time"):
        CascadeTrainSpec(ignore_time=1.5)
