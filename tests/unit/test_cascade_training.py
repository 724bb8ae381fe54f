"""Training one stage of EchoDiffusion's cascade (echogen.training.cascade): the stage learns
on phantom clips, exports online and EMA weights, and a cut run resumes bit for bit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors.torch import load_file
from test_cascade_model import TINY_IMAGEN, TINY_UNET
from trainer_cases import phantom_dynamic

from echogen.data.errors import DataError
from echogen.models.cascade import CASCADE_FILE, load_cascade, write_cascade_folder
from echogen.training.cascade import (
    EMA_WEIGHTS,
    STAGE_FILE,
    WEIGHTS,
    CascadeTrainSpec,
    train_cascade_stage,
    train_cascade_stage_from_config,
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


def test_stages_make_a_cascade_folder_that_references_them(manifest, tmp_path):
    """Each stage trains on its own; the cascade folder lists them (nothing merged or
    copied) and loads every stage's EMA weights."""
    stages = tmp_path / "cascade_tiny"
    for stage in (1, 2):
        out = stages / f"stage_{stage}"
        summary = run(manifest, out, tmp_path / f"state_{stage}", stage=stage, max_steps=1)
        assert summary["steps"] == 1
    index = write_cascade_folder(stages, [stages / "stage_1", stages / "stage_2"])
    assert index["stages"] == ["stage_1", "stage_2"]
    assert {p.name for p in stages.iterdir()} == {CASCADE_FILE, "stage_1", "stage_2"}
    model = load_cascade(stages)
    assert not model.training and len(model.unets) == 2
    for i, unet in enumerate(model.unets, 1):
        ema = load_file(stages / f"stage_{i}" / EMA_WEIGHTS)
        assert all(value.equal(ema[key]) for key, value in unet.state_dict().items())
    # A stage.json from before cond_frame assembles with a newer one of the same settings
    # (both conditioned on the window's frame); another conditioning frame does not.
    path = stages / "stage_1" / STAGE_FILE
    info = json.loads(path.read_text())
    del info["video"]["cond_frame"]
    path.write_text(json.dumps(info))
    assert write_cascade_folder(stages, [stages / "stage_1", stages / "stage_2"])["video"] == {
        "fps": 8,
        "frames": 8,
        "channels": 3,
        "cond_frame": "window",
    }
    load_cascade(stages)
    info["video"]["cond_frame"] = "end_diastole"
    path.write_text(json.dumps(info))
    with pytest.raises(DataError, match="another cascade than stage 1"):
        write_cascade_folder(tmp_path / "x", [stages / "stage_1", stages / "stage_2"])
    with pytest.raises(DataError, match="holds stage 2, listed as 1"):
        write_cascade_folder(tmp_path / "x", [stages / "stage_2", stages / "stage_1"])
    with pytest.raises(DataError, match="1 stage folders for a cascade of 2"):
        write_cascade_folder(tmp_path / "x", [stages / "stage_1"])
    with pytest.raises(DataError, match="not a trained cascade stage"):
        write_cascade_folder(tmp_path / "x", [tmp_path, stages / "stage_2"])


def test_config_entries_give_each_stage_its_batch(manifest, tmp_path):
    rows, root = manifest
    path = tmp_path / "manifest.csv"
    rows.to_csv(path, index=False)
    entry = {"structure": "1SCM", "preset": "tiny", "duration": 1.0, "batch_sizes": [3]}
    entry["train"] = {"max_steps": 1, "log_every": 1}
    kwargs = {"out_dir": tmp_path / "o", "state_dir": tmp_path / "s", "seed": 1, "root": root}
    summary = train_cascade_stage_from_config(path, model=entry, stage=1, **kwargs)
    info = json.loads((tmp_path / "o" / "train.json").read_text())
    assert summary["steps"] == 1 and info["train"]["batch_size"] == 3
    assert info["fps"] == 8 and info["clips"]["frames"] == 8
    video = json.loads((tmp_path / "o" / STAGE_FILE).read_text())["video"]
    assert video == {"fps": 8, "frames": 8, "channels": 3, "cond_frame": "window"}
    # The deviation's switch reaches the clips and stage.json (sampling conditions alike).
    ed = {**kwargs, "out_dir": tmp_path / "ed", "state_dir": tmp_path / "ed_state"}
    train_cascade_stage_from_config(path, model={**entry, "cond_frame": "end_diastole"},
                                    stage=1, **ed)  # fmt: skip
    video = json.loads((tmp_path / "ed" / STAGE_FILE).read_text())["video"]
    assert video["cond_frame"] == "end_diastole"
    with pytest.raises(ValueError, match="hold no batch_size"):
        bad = {**entry, "train": {"batch_size": 2}}
        train_cascade_stage_from_config(path, model=bad, stage=1, **kwargs)
    with pytest.raises(ValueError, match="stage must be in 1..1"):
        train_cascade_stage_from_config(path, model=entry, stage=2, **kwargs)


def test_bad_settings(manifest, tmp_path):
    with pytest.raises(ValueError, match="stage must be in 1..2"):
        run(manifest, tmp_path / "x", tmp_path / "xs", stage=3)
    with pytest.raises(ValueError, match="ignore_time"):
        CascadeTrainSpec(ignore_time=1.5)


def test_the_config_schema_defaults_are_the_specs():
    """cascade.models.<name>.train in the schema documents CascadeTrainSpec's fields with its
    defaults (the batch size is per stage: batch_sizes)."""
    from dataclasses import fields

    from echogen.config import load_schema

    models = load_schema()["properties"]["cascade"]["properties"]["models"]
    train = models["additionalProperties"]["properties"]["train"]["properties"]
    spec = {f.name: f.default for f in fields(CascadeTrainSpec) if f.name != "batch_size"}
    assert {key: node["default"] for key, node in train.items()} == spec
