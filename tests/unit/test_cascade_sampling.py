"""A cascade's factual and counterfactual videos (echogen.pipelines.cascade_sampling): the
plan, one video per (VAL video, draw), and the same bytes whatever the shard count."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from trainer_cases import phantom_dynamic

from echogen.data.errors import DataError
from echogen.data.manifest import read_manifest
from echogen.data.video import read_video, resize_frames, write_video
from echogen.models.cascade import write_cascade_folder
from echogen.pipelines.cascade_sampling import (
    CASCADE_SCHEMA,
    CascadeSampleConfig,
    plan_cascade_samples,
    sample_cascade_shard,
    source_clip,
    source_clips,
    source_rows,
)
from echogen.pipelines.cascade_scoring import score_samples, write_paired_frames
from echogen.pipelines.synthetic import gather_samples, read_filelist, sample_seed
from echogen.training.cascade import train_cascade_stage_from_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEED = 5
# 2SCM's two stage kinds at 16-frame clips, one training step each: weights, not quality.
ENTRY = {
    "structure": "2SCM",
    "preset": "tiny",
    "fps": 16,
    "duration": 1.0,
    "imagen": {"num_sample_steps": [2, 2]},
    "train": {"max_steps": 1, "log_every": 1},
}


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    base = tmp_path_factory.mktemp("cascade_sampling")
    manifest = phantom_dynamic(base)
    folder = base / "cascade_tiny"
    for stage in (1, 2):
        train_cascade_stage_from_config(
            manifest, folder / f"stage_{stage}", base / f"state_{stage}", ENTRY, stage,
            SEED, root=base,
        )  # fmt: skip
    write_cascade_folder(folder, [folder / "stage_1", folder / "stage_2"])
    return {"folder": folder, "manifest": manifest, "root": base}


def test_plans_draws_of_each_video(cascade):
    manifest = read_manifest(cascade["manifest"])
    sources = source_rows(manifest, CascadeSampleConfig(resamples=3))
    assert list(sources["FileName"]) == sorted(manifest.loc[manifest.Split == "VAL", "FileName"])
    factual = plan_cascade_samples(sources, CascadeSampleConfig(mode="factual"), SEED)
    assert len(factual) == 3 * len(sources) and list(factual["index"]) == list(range(6))
    assert (factual["EF"] == factual["SourceEF"]).all()
    assert list(factual["Resample"]) == [0, 1, 2, 0, 1, 2]
    assert list(factual["seed"]) == [sample_seed(SEED, i) for i in range(6)]
    counter = plan_cascade_samples(sources, CascadeSampleConfig(), SEED)
    targets = counter.groupby("video")["EF"]
    assert (targets.nunique() == 1).all() and counter["EF"].between(15, 85).all()
    assert counter.groupby("video")["EF"].first().nunique() == len(sources)
    # A video's target does not depend on how many videos are planned.
    one = plan_cascade_samples(sources.head(1), CascadeSampleConfig(), SEED)
    assert one["EF"].iloc[0] == counter["EF"].iloc[0]
    with pytest.raises(DataError, match="no TEST videos") as error:
        source_rows(manifest[manifest.Split != "TEST"], CascadeSampleConfig(split="TEST"))
    assert "split" in error.value.fix
    with pytest.raises(ValueError, match="mode must be one of"):
        CascadeSampleConfig(mode="both")
    with pytest.raises(ValueError, match="ef_range"):
        CascadeSampleConfig(ef_range=[50, 40])


def test_source_clips_condition_as_the_cascade_trained(cascade):
    """The stage's ``video.cond_frame`` picks the conditioning frames of sampling: a frame of
    each draw's window (absent or "window"), or the video's traced ED frame for every draw."""
    sources = source_rows(read_manifest(cascade["manifest"]), CascadeSampleConfig())
    video = json.loads((cascade["folder"] / "cascade.json").read_text())["video"]
    assert video["cond_frame"] == "window"
    video = {**video, "size": 32}
    ed = source_clips(sources, {**video, "cond_frame": "end_diastole"}, SEED, cascade["root"])
    window = source_clips(sources, video, SEED, cascade["root"])
    old = {key: value for key, value in video.items() if key != "cond_frame"}
    before = source_clips(sources, old, SEED, cascade["root"])
    row = sources.iloc[0]
    grey = resize_frames(read_video(cascade["root"] / row["Path"]), 32)[int(row["EDFrame"])]
    expected = torch.from_numpy(grey.astype(np.float32) / 255).expand(3, 32, 32)
    for draw in range(3):
        clip, ef, cond = source_clip(ed, 0, draw)
        assert torch.equal(cond, expected)
        assert torch.equal(clip, source_clip(window, 0, draw)[0])
        assert torch.equal(source_clip(before, 0, draw)[2], source_clip(window, 0, draw)[2])


def test_balanced_plan_fills_the_histogram_from_shuffled_anatomies():
    efs = [22.5, 40.2, 40.7, 41.1, 43.9, 60.0, 61.5]
    sources = pd.DataFrame({"FileName": [f"v{i}" for i in range(7)], "EF": efs,
                            "Split": "TRAIN"})  # fmt: skip
    config = CascadeSampleConfig(mode="balanced", split="TRAIN", ef_range=[40, 45], per_bin=2)
    plan = plan_cascade_samples(sources, config, SEED)
    # Bins 40..44 filled up to 2 videos: 40 has 2, 41 and 43 one, 42 and 44 none.
    assert sorted(plan["EF"].astype(int)) == [41, 42, 42, 43, 44, 44]
    assert plan["EF"].is_monotonic_increasing and plan["EF"].between(40, 45).all()
    assert list(plan["index"]) == list(range(6)) and list(plan["FileName"]) == [
        f"sample_{i:05d}" for i in range(6)
    ]
    # Anatomies in turn from one shuffle (7 sources > 6 targets): none used twice.
    assert plan["Source"].is_unique and (plan["Resample"] == 0).all()
    assert (plan["SourceEF"] == plan["video"].map(dict(enumerate(efs)))).all()
    assert plan.equals(plan_cascade_samples(sources, config, SEED))
    assert not plan["Source"].equals(plan_cascade_samples(sources, config, SEED + 1)["Source"])
    # More targets than anatomies: a second shuffle, Resample counts the earlier uses.
    wide = plan_cascade_samples(sources.head(2), CascadeSampleConfig(
        mode="balanced", split="TRAIN", ef_range=[50, 55], per_bin=1), SEED)  # fmt: skip
    assert len(wide) == 5 and sorted(wide["Resample"]) == [0, 0, 1, 1, 2]
    for _, uses in wide.groupby("Source")["Resample"]:
        assert list(uses) == list(range(len(uses)))
    # The balanced mode's defaults are the reference's, not the evaluation's.
    defaults = CascadeSampleConfig.from_settings({"mode": "balanced"})
    assert (defaults.split, defaults.ef_range, defaults.per_bin, defaults.cond_scale) == (
        "TRAIN", [10.0, 90.0], 100, 1.0)  # fmt: skip
    assert CascadeSampleConfig.from_settings({"mode": "factual"}).split == "VAL"
    assert CascadeSampleConfig.from_settings({"mode": "balanced", "split": "VAL"}).split == "VAL"
    with pytest.raises(DataError, match="nothing to generate") as error:
        plan_cascade_samples(sources, CascadeSampleConfig(
            mode="balanced", split="TRAIN", ef_range=[40, 41], per_bin=2), SEED)  # fmt: skip
    assert "per_bin" in error.value.fix


def test_shards_give_the_same_videos(cascade, tmp_path):
    config = {"mode": "counterfactual", "resamples": 2}
    args = (cascade["folder"], cascade["manifest"])
    kwargs = {"run_seed": SEED, "root": cascade["root"]}
    whole = sample_cascade_shard(*args, tmp_path / "1-of-1", config, shard=1, n_shards=1,
                                 **kwargs)  # fmt: skip
    assert len(whole) == 4 and list(whole.columns) == list(CASCADE_SCHEMA)
    assert (whole["NumberOfFrames"] == 16).all() and (whole["FrameHeight"] == 16).all()
    assert (whole["FPS"] == 16).all()
    parts = [tmp_path / f"{i}-of-3" for i in (1, 2, 3)]
    for i, part in enumerate(parts, 1):
        sample_cascade_shard(*args, part, config, shard=i, n_shards=3, **kwargs)
    gathered = tmp_path / "gathered"
    gather_samples(parts, gathered)
    assert read_filelist(gathered / "FileList.csv", CASCADE_SCHEMA).equals(whole)
    for name in whole["FileName"]:
        video = f"Videos/{name}.mp4"
        assert (gathered / video).read_bytes() == (tmp_path / "1-of-1" / video).read_bytes()
    # Two draws of one video differ (their noise, their clip and conditioning frame).
    first, second = (
        (tmp_path / "1-of-1" / f"Videos/sample_0000{i}.mp4").read_bytes() for i in (0, 1)
    )
    assert first != second


def test_scoring_pairs_each_sample_with_the_clip_it_was_conditioned_on(cascade, tmp_path):
    """score_samples re-derives each sample's real clip from sampling.json: a dataset whose
    videos are those very clips scores SSIM near 1 (the MP4 codec's loss only), the
    cascade's own videos far less; EFs come from the prediction tables by name."""
    config = {"mode": "factual", "resamples": 1}
    kwargs = {"run_seed": SEED, "root": cascade["root"]}
    folder = tmp_path / "samples"
    sample_cascade_shard(cascade["folder"], cascade["manifest"], tmp_path / "1-of-1", config,
                         shard=1, n_shards=1, **kwargs)  # fmt: skip
    gather_samples([tmp_path / "1-of-1"], folder)
    filelist = read_filelist(folder / "FileList.csv", CASCADE_SCHEMA)
    generated, real = tmp_path / "generated.csv", tmp_path / "real.csv"
    pd.DataFrame({"FileName": filelist["FileName"], "EF_pred_all": [30.0, 60.0]}).to_csv(
        generated, index=False
    )
    pd.DataFrame({"FileName": filelist["Source"], "EF_pred_all": [41.0, 52.0]}).to_csv(
        real, index=False
    )
    args = (folder, cascade["manifest"], generated, real)
    scores = score_samples(*args, size=32, root=cascade["root"])
    assert list(scores["EF_gen"]) == [30.0, 60.0] and list(scores["EF_ref"]) == [41.0, 52.0]
    assert scores["lpips"].isna().all() and scores["ssim"].between(-1, 0.9).all()

    record = json.loads((folder / "sampling.json").read_text())
    sources = source_rows(read_manifest(cascade["manifest"]), CascadeSampleConfig(**config))
    clips = source_clips(sources, {**record["video"], "size": 32}, SEED, cascade["root"])
    for v, name in enumerate(filelist["FileName"]):
        grey = (source_clip(clips, v, 0)[0].mean(dim=0) * 255).round().byte().numpy()
        write_video(folder / "Videos" / f"{name}.mp4", grey, record["video"]["fps"])
    same = score_samples(*args, size=32, root=cascade["root"])
    assert (same["ssim"] > 0.9).all() and (same["ssim"] > scores["ssim"] + 0.3).all()
    # FID/FVD frame folders: each first draw beside its real clip, frame names zero-padded.
    paired = tmp_path / "paired"
    assert write_paired_frames(folder, cascade["manifest"], paired, size=32,
                               root=cascade["root"]) == 2  # fmt: skip
    for v, name in enumerate(filelist["FileName"]):
        real_frames = sorted((paired / "real" / name).iterdir())
        assert [p.name for p in real_frames[:2]] == ["0000.jpg", "0001.jpg"]
        assert len(real_frames) == len(list((paired / "fake" / name).iterdir())) == 16
        clip = (source_clip(clips, v, 0)[0].mean(dim=0) * 255).round().byte().numpy()
        first = np.asarray(Image.open(real_frames[0]))
        assert first.shape == (32, 32) and np.abs(first.astype(int) - clip[0]).mean() < 3
    with pytest.raises(DataError, match="no prediction"):
        score_samples(folder, cascade["manifest"], generated, generated, size=32,
                      root=cascade["root"])  # fmt: skip


def test_bf16_autocast_changes_the_arithmetic_not_the_videos_shape(cascade, tmp_path):
    """precision bf16 runs the UNets under autocast: same plan and shapes, other pixels, and
    a setting outside fp32/bf16/fp16 is refused by name; graphs change nothing on the CPU."""
    args = (cascade["folder"], cascade["manifest"])
    kwargs = {"run_seed": SEED, "root": cascade["root"], "shard": 1, "n_shards": 1}
    config = {"mode": "factual", "resamples": 1, "max_videos": 1}
    fp32 = sample_cascade_shard(*args, tmp_path / "fp32", config, **kwargs)
    bf16 = sample_cascade_shard(*args, tmp_path / "bf16", {**config, "precision": "bf16"},
                                **kwargs)  # fmt: skip
    assert fp32.equals(bf16)  # the FileList: plan, EFs and shapes alike
    video = f"Videos/{fp32['FileName'].iloc[0]}.mp4"
    assert (tmp_path / "fp32" / video).read_bytes() != (tmp_path / "bf16" / video).read_bytes()
    record = json.loads((tmp_path / "bf16" / "sampling.json").read_text())
    assert record["config"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision"):
        CascadeSampleConfig(precision="fp64")
    graphed = sample_cascade_shard(*args, tmp_path / "graphs", {**config, "graphs": True},
                                   **kwargs)  # fmt: skip
    assert graphed.equals(fp32)  # graphs are a GPU switch: the CPU ignores them
    fp32_video = (tmp_path / "fp32" / video).read_bytes()
    assert (tmp_path / "graphs" / video).read_bytes() == fp32_video
    with pytest.raises(ValueError, match="graphs"):
        CascadeSampleConfig(graphs="yes")
