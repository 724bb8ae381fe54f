"""LVDM sampling: plan, the pipeline's stitching and guidance, save/load, shards vs one job."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from echogen.data.errors import DataError
from echogen.data.video import read_video
from echogen.models.lvdm import (
    PROMPT_CLASS,
    PROMPT_EF,
    LVDMSpec,
    build_scheduler,
    build_unet,
    crop_latents,
    make_scheduler,
    pad_latents,
    save_lvdm,
)
from echogen.models.lvdm_pipeline import LVDMPipeline, stitched_prediction, window_starts
from echogen.models.vae import build_vae, load_vae
from echogen.pipelines.sampling import (
    FILELIST_COLUMNS,
    LVDM_SCHEMA,
    SampleConfig,
    plan_samples,
    sample_shard,
)
from echogen.pipelines.synthetic import gather_samples, read_filelist, sample_seed

torch.set_num_threads(1)

SIZE = 32  # pixels; the tiny VAE's factor 8 gives 4x4 latents
LATENT = 4
PAD = 8
CHANNELS = 4
CLASS_MAP = {"normal": 0, "ASD": 1, "PAH": 2}
# Narrower than the "tiny" preset so that 10 sampled videos fit the unit-test budget.
UNET_OVERRIDES = {
    "sample_size": PAD,
    "num_frames": 8,
    "block_out_channels": [32, 32],
    "num_attention_heads": [1, 1],
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 24,
}


def tiny_config(**kw) -> SampleConfig:
    base = dict(n_samples=5, frames=24, window=8, overlap=4, scheduler="ddim", steps=3, fps=32.0)
    return SampleConfig(**{**base, **kw})


def tiny_spec(**kw) -> LVDMSpec:
    base = dict(
        conditioning="ef",
        frames=8,
        fps=32.0,
        latent_channels=CHANNELS,
        latent_size=LATENT,
        pad_to=PAD,
        scaling_factor=0.5,
    )
    return LVDMSpec(**{**base, **kw})


def write_index(root: Path) -> Path:
    """A latent index of 3 fake videos (2 TRAIN of classes 0 and 2, 1 VAL) under ``root``."""
    rng = np.random.default_rng(0)
    records = []
    for name, split, frames, class_id in [
        ("vid_a", "TRAIN", 6, 0),
        ("vid_b", "TRAIN", 9, 2),
        ("vid_c", "VAL", 7, 1),
    ]:
        rel = Path("latents") / f"{name}.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, rng.normal(size=(frames, CHANNELS, LATENT, LATENT)).astype(np.float16))
        records.append(
            {
                "FileName": name,
                "EF": 55.0,
                "Split": split,
                "FPS": 50.0,
                "View": "A4C",
                "class_id": class_id,
                "class_name": [k for k, v in CLASS_MAP.items() if v == class_id][0],
                "latent_path": str(rel),
                "latent_frames": frames,
                "latent_fps": 32.0,
                "scaling_factor": 0.5,
            }
        )
    index = root / "index.csv"
    pd.DataFrame(records).to_csv(index, index=False)
    return index


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    """Tiny random VAE and EF LVDM folders plus a latent index, shared by the slow tests."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vae = build_vae("tiny", {"sample_size": SIZE, "scaling_factor": 0.5})
    vae.save_pretrained(root / "vae")
    unet = build_unet("tiny", "ef", UNET_OVERRIDES)
    save_lvdm(root / "lvdm", unet, tiny_spec(), build_scheduler())
    return SimpleNamespace(root=root, vae=root / "vae", lvdm=root / "lvdm", index=write_index(root))


# --- config, seeds, shards ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"overlap": 8}, "overlap"),
        ({"frames": 4}, "frames"),
        ({"scheduler": "euler"}, "scheduler"),
        ({"ef_range": [10.5, 90]}, "ef_range"),
        ({"ef_range": [90, 10]}, "ef_range"),
        ({"split": {"TRAIN": 0.5, "VAL": 0.2}}, "split"),
        ({"split": {"TRAIN": 0.5, "DEV": 0.5}}, "split"),
        ({"guidance_scale": 0.5}, "guidance_scale"),
        ({"class_ids": [1, 1]}, "class_ids"),
        ({"quality": 101}, "quality"),
        ({"block": 0}, "block"),
        ({"precision": "fp64"}, "precision"),
        ({"precision": ["bf16"]}, "precision"),
        ({"graphs": "yes"}, "graphs"),
        ({"compile": 1}, "compile"),
        ({"graphs": True, "compile": True}, "exclusive"),
    ],
)
def test_config_errors_name_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        tiny_config(**kw)


def test_config_from_dict_round_trip_and_unknown_key():
    config = tiny_config(class_ids=[0, 2])
    assert SampleConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="stepz"):
        SampleConfig.from_dict({"stepz": 3})


# --- plan -----------------------------------------------------------------------------------


def test_plan_ef_run(tmp_path):
    index = write_index(tmp_path)
    config = tiny_config(n_samples=40, ef_range=[20, 25])
    plan = plan_samples(config, tiny_spec(), index, run_seed=3)
    pd.testing.assert_frame_equal(plan, plan_samples(config, tiny_spec(), index, run_seed=3))
    assert not plan.equals(plan_samples(config, tiny_spec(), index, run_seed=4))
    assert plan["FileName"].tolist() == [f"sample_{i:05d}" for i in range(40)]
    ef = plan["EF"].to_numpy()
    assert np.all(ef == np.round(ef)) and ef.min() >= 20 and ef.max() <= 25
    assert len(set(ef)) > 3  # draws vary over the 6 allowed values
    assert set(plan["cond_video"]) == {"vid_a", "vid_b"}  # TRAIN rows only
    frames = {"vid_a": 6, "vid_b": 9}
    assert all(
        0 <= f < frames[v] for v, f in zip(plan["cond_video"], plan["cond_frame"], strict=True)
    )
    assert plan["Split"].tolist() == ["TRAIN"] * 30 + ["VAL"] * 5 + ["TEST"] * 5
    assert plan["seed"].tolist() == [sample_seed(3, i) for i in range(40)]
    assert plan["class_id"].isna().all() and plan["prompt"].isna().all()
    # A sample's draws do not depend on how many samples the run has.
    short = plan_samples(tiny_config(n_samples=7, ef_range=[20, 25]), tiny_spec(), index, 3)
    columns = ["EF", "cond_video", "cond_frame", "seed"]
    pd.testing.assert_frame_equal(short[columns], plan[columns].iloc[:7])


def test_plan_class_and_text_runs(tmp_path):
    index = write_index(tmp_path)
    config = tiny_config(n_samples=30, class_ids=[0, 2])
    plan = plan_samples(config, tiny_spec(conditioning="class", class_map=CLASS_MAP), index, 1)
    assert set(plan["class_id"]) == {0, 2}
    assert plan["EF"].isna().all()
    # Conditioning frames come from TRAIN videos of the requested class.
    assert (plan["cond_video"] == plan["class_id"].map({0: "vid_a", 2: "vid_b"})).all()
    assert (plan["class_name"] == plan["class_id"].map({0: "normal", 2: "PAH"})).all()

    text = tiny_spec(conditioning="text", class_map=CLASS_MAP, prompt=PROMPT_CLASS)
    plan = plan_samples(config, text, index, 1)
    assert [p.split(" with ")[1] for p in plan["prompt"]] == [
        f"{name} condition" for name in plan["class_name"]
    ]
    plan = plan_samples(tiny_config(n_samples=10), tiny_spec(conditioning="text"), index, 1)
    assert plan["prompt"].tolist() == [PROMPT_EF.format(EF=ef) for ef in plan["EF"]]
    assert plan["class_id"].isna().all()

    with pytest.raises(ValueError, match="class_ids"):
        plan_samples(
            tiny_config(class_ids=[5]),
            tiny_spec(class_map=CLASS_MAP, conditioning="class"),
            index,
            1,
        )
    with pytest.raises(DataError, match="class 1"):  # vid_c (class 1) is VAL
        plan_samples(
            tiny_config(class_ids=[1]),
            tiny_spec(class_map=CLASS_MAP, conditioning="class"),
            index,
            1,
        )


def test_plan_picks_the_datasets_template_of_a_multi_dataset_text_model(tmp_path):
    """EchoDream's text model has a template per dataset: the samples' dataset picks it, so
    EF videos draw an EF and no class even though the model also knows CardiacNet's classes."""
    index = write_index(tmp_path)
    spec = tiny_spec(
        conditioning="text",
        class_map=CLASS_MAP,
        prompt={"cardiacnet": PROMPT_CLASS, "dynamic": "EF {EF_int}%"},
    )
    plan = plan_samples(tiny_config(n_samples=6, dataset="dynamic"), spec, index, 1)
    assert plan["prompt"].tolist() == [f"EF {int(ef)}%" for ef in plan["EF"]]
    assert plan["class_id"].isna().all()
    cardiac = tiny_config(n_samples=4, dataset="cardiacnet", class_ids=[0, 2])
    classes = plan_samples(cardiac, spec, index, 1)
    assert classes["EF"].isna().all() and classes["class_id"].notna().all()
    assert [p.split(" with ")[1] for p in classes["prompt"]] == [
        f"{name} condition" for name in classes["class_name"]
    ]
    for dataset in (None, "ped_psax"):
        with pytest.raises(ValueError, match="prompt template per dataset"):
            plan_samples(tiny_config(n_samples=2, dataset=dataset), spec, index, 1)


def test_plan_rejects_bad_index(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        plan_samples(tiny_config(), tiny_spec(), tmp_path / "nope.csv", 0)
    pd.DataFrame({"FileName": ["a"], "Split": ["TRAIN"]}).to_csv(tmp_path / "i.csv", index=False)
    with pytest.raises(DataError, match="latent_path"):
        plan_samples(tiny_config(), tiny_spec(), tmp_path / "i.csv", 0)


# --- windowed denoising ---------------------------------------------------------------------


def test_window_starts():
    assert window_starts(24, 8, 4) == [0, 4, 8, 12, 16]
    assert window_starts(192, 64, 32) == [0, 32, 64, 96, 128]
    assert window_starts(11, 4, 1) == [0, 3, 6, 7]  # the last window is aligned to the end
    assert window_starts(8, 8, 4) == [0]


class PositionUNet(torch.nn.Module):
    """Output of frame f of a window: noisy + f + token + mean of the conditioning channels."""

    dtype = torch.float32
    device = torch.device("cpu")
    config = {"addition_time_embed_dim": 1, "projection_class_embeddings_input_dim": 3}

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, sample, timestep, encoder_hidden_states, added_time_ids, return_dict):
        self.calls.append({"sample": sample, "tokens": encoder_hidden_states})
        channels = sample.shape[2] // 2
        noisy, cond = sample[:, :, :channels], sample[:, :, channels:]
        position = torch.arange(sample.shape[1], dtype=sample.dtype).view(1, -1, 1, 1, 1)
        token = encoder_hidden_states[:, :1, :1].view(-1, 1, 1, 1, 1)
        return (noisy + position + token + cond.mean(dim=2, keepdim=True),)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_stitched_prediction_is_the_window_average(guidance):
    g = torch.Generator().manual_seed(0)
    frames, window, overlap = 11, 4, 1
    latents = torch.randn(frames, 2, 3, 3, generator=g)
    cond = torch.randn(2, 3, 3, generator=g)
    starts = window_starts(frames, window, overlap)
    unet = PositionUNet()
    out = stitched_prediction(
        unet,
        latents,
        torch.tensor(10),
        cond,
        torch.full((1, 1, 1), 0.7),
        torch.zeros(1, 3),
        starts,
        window,
        null_tokens=torch.zeros(1, 1, 1),
        guidance_scale=guidance,
    )
    # Hand computation: frame f is in the windows starting at s with s <= f < s + window;
    # there the model adds (f - s); the conditional part (token + cond mean) is scaled by g
    # because the unconditional pass sees token 0 and a zero conditioning frame.
    expected = torch.empty_like(latents)
    for f in range(frames):
        offsets = [f - s for s in starts if s <= f < s + window]
        expected[f] = latents[f] + sum(offsets) / len(offsets) + guidance * (0.7 + cond.mean(0))
    torch.testing.assert_close(out, expected)
    assert len(unet.calls) == 1  # all windows in one batch
    batch = unet.calls[0]
    assert batch["sample"].shape == (len(starts) * (2 if guidance > 1 else 1), window, 4, 3, 3)


def test_reference_stitching_is_echonet_synthetics_window_halves():
    """sample.py: window 0 whole, then from each later window only its frames after the
    overlap (outputs[r] if r == 0 else outputs[r][:, OT:]), written out for 192/64/32."""
    g = torch.Generator().manual_seed(0)
    frames, window, overlap = 192, 64, 32
    latents = torch.randn(frames, 1, 2, 2, generator=g)
    starts = window_starts(frames, window, overlap)
    args = (latents, torch.tensor(3), torch.zeros(1, 2, 2), torch.zeros(1, 1, 1))
    args += (torch.zeros(1, 3), starts, window)
    out = stitched_prediction(PositionUNet(), *args, stitching="reference")
    per_window = [latents[s : s + window] + torch.arange(window).view(-1, 1, 1, 1) for s in starts]
    reference = torch.cat([w if r == 0 else w[overlap:] for r, w in enumerate(per_window)])
    torch.testing.assert_close(out, reference)
    mean = stitched_prediction(PositionUNet(), *args)
    assert not torch.allclose(mean, out)  # the two stitchings differ on the overlaps
    torch.testing.assert_close(mean[:32], out[:32])  # ... and agree where one window runs
    with pytest.raises(ValueError, match="stitching"):
        stitched_prediction(PositionUNet(), *args, stitching="median")


def test_guidance_blank_token_keeps_the_frame_in_the_unconditional_pass():
    """EchoDream's guidance zeroes encoder_hidden_states only; echogen's default also zeroes
    the conditioning frame. With PositionUNet the conditional part is token + cond mean."""
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(8, 2, 3, 3, generator=g)
    cond = torch.randn(2, 3, 3, generator=g)
    args = (latents, torch.tensor(5), cond, torch.full((1, 1, 1), 0.7), torch.zeros(1, 3))
    args += ([0, 4], 4)
    kwargs = {"null_tokens": torch.zeros(1, 1, 1), "guidance_scale": 3.0}
    token = stitched_prediction(PositionUNet(), *args, **kwargs, guidance_blank="token")
    both = stitched_prediction(PositionUNet(), *args, **kwargs)
    position = torch.arange(4, dtype=torch.float32).repeat(2).view(-1, 1, 1, 1)
    # token: uncond keeps the frame, so only the token is scaled by g.
    torch.testing.assert_close(token, latents + position + cond.mean(0) + 3.0 * 0.7)
    torch.testing.assert_close(both, latents + position + 3.0 * (0.7 + cond.mean(0)))
    with pytest.raises(ValueError, match="guidance_blank"):
        stitched_prediction(PositionUNet(), *args, **kwargs, guidance_blank="frame")


def _position_pipeline(spec: LVDMSpec) -> LVDMPipeline:
    """A pipeline around :class:`PositionUNet` with the training DDPM's config as DDIM."""
    return LVDMPipeline(
        unet=PositionUNet(),
        scheduler=make_scheduler("ddim", dict(build_scheduler().config)),
        vae=None,
        spec=spec.to_dict(),
    )


def test_pipeline_matches_a_window_by_window_reference():
    spec = tiny_spec()
    pipe = _position_pipeline(spec)
    cond = torch.randn(CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(1))
    out = pipe(
        cond,
        40.0,
        frames=12,
        window=8,
        overlap=4,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(123),
        output_type="latent",
    )
    assert out.frames is None

    # Reference: one window at a time, averaged with explicit per-frame counts.
    g = torch.Generator().manual_seed(123)
    scheduler = make_scheduler("ddim", dict(build_scheduler().config))
    scheduler.set_timesteps(2)
    x = torch.randn(12, CHANNELS, PAD, PAD, generator=g) * scheduler.init_noise_sigma
    padded = pad_latents(cond, PAD)
    for t in scheduler.timesteps:
        total, count = torch.zeros_like(x), torch.zeros(12)
        for s in (0, 4):
            chunk = x[s : s + 8] + torch.arange(8.0).view(-1, 1, 1, 1) + 0.4
            total[s : s + 8] += chunk + padded.mean(0)
            count[s : s + 8] += 1
        x = scheduler.step(total / count.view(-1, 1, 1, 1), t, x, generator=g).prev_sample
    torch.testing.assert_close(out.latents, crop_latents(x, LATENT))
    assert out.latents.shape == (12, CHANNELS, LATENT, LATENT)


def test_noised_padding_pads_the_unet_input_at_every_step():
    """EchoNet-Synthetic's sample.py: unpadded noise; each step replicate-pads the UNet input
    (noisy + conditioning latent), crops its output and steps the scheduler unpadded."""
    spec = tiny_spec(padding="noised")
    pipe = _position_pipeline(spec)
    cond = torch.randn(CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(1))
    kwargs = {"frames": 8, "window": 8, "num_inference_steps": 2, "output_type": "latent"}
    out = pipe(cond, 40.0, generator=torch.Generator().manual_seed(5), **kwargs)

    g = torch.Generator().manual_seed(5)
    scheduler = make_scheduler("ddim", dict(build_scheduler().config))
    scheduler.set_timesteps(2)
    x = torch.randn(8, CHANNELS, LATENT, LATENT, generator=g) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        sample = pad_latents(torch.cat([x, cond.expand(8, -1, -1, -1)], dim=1), PAD)
        noisy, conditioning = sample[:, :CHANNELS], sample[:, CHANNELS:]
        output = noisy + torch.arange(8.0).view(-1, 1, 1, 1) + 0.4 + conditioning.mean(1, True)
        x = scheduler.step(crop_latents(output, LATENT), t, x, generator=g).prev_sample
    torch.testing.assert_close(out.latents, x)
    other = _position_pipeline(tiny_spec())(
        cond, 40.0, generator=torch.Generator().manual_seed(5), **kwargs
    )
    assert not torch.allclose(other.latents, out.latents)  # the noise itself differs in size


def _pipeline(models, scheduler="ddim") -> LVDMPipeline:
    from echogen.models.lvdm import load_lvdm

    pipe = LVDMPipeline.from_parts(load_lvdm(models.lvdm), load_vae(models.vae), scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(pipe, cond, value, seed, **kw):
    kw = {"frames": 12, "window": 8, "overlap": 4, "num_inference_steps": 2, **kw}
    return pipe(cond, value, generator=torch.Generator().manual_seed(seed), **kw)


def test_guidance_uses_null_conditioning_and_changes_the_video(models):
    pipe = _pipeline(models)
    seen = []
    pipe.unet.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append((args[0], kwargs["encoder_hidden_states"])),
        with_kwargs=True,
    )
    cond = torch.randn(CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(2))
    plain = _call(pipe, cond, 60.0, 5).latents
    assert len(seen) == 2 and seen[0][1].shape == (2, 1, 1)
    torch.testing.assert_close(seen[0][1], torch.full((2, 1, 1), 0.6))
    assert torch.equal(plain, _call(pipe, cond, 60.0, 5).latents)
    assert not torch.equal(plain, _call(pipe, cond, 60.0, 6).latents)

    seen.clear()
    guided = _call(pipe, cond, 60.0, 5, guidance_scale=4.0).latents
    sample, tokens = seen[0]
    assert sample.shape[0] == 4  # 2 windows, conditional then unconditional
    torch.testing.assert_close(tokens[:2], torch.full((2, 1, 1), 0.6))
    assert torch.count_nonzero(tokens[2:]) == 0  # EF models' null token
    assert torch.count_nonzero(sample[2:, :, CHANNELS:]) == 0  # zero conditioning frame
    padded = pad_latents(cond, PAD)
    assert torch.equal(sample[:2, :, CHANNELS:], padded.expand(2, 8, *padded.shape))
    assert not torch.allclose(plain, guided)


def test_compile_is_ignored_on_the_cpu_and_exclusive_with_graphs(models):
    pipe = _pipeline(models)
    cond = torch.randn(CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(2))
    plain = _call(pipe, cond, 60.0, 5).latents
    assert torch.equal(_call(pipe, cond, 60.0, 5, compile=True).latents, plain)
    assert getattr(pipe, "_compiled", None) is None  # nothing compiled on the CPU
    with pytest.raises(ValueError, match="exclusive"):
        _call(pipe, cond, 60.0, 5, compile=True, graphs=True)


def test_pipeline_save_pretrained_round_trip(models, tmp_path):
    pipe = _pipeline(models, "dpm")
    cond = torch.randn(CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(3))
    before = _call(pipe, cond, 35.0, 9)
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "LVDMPipeline"
    assert index["spec"] == tiny_spec().to_dict()
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"]
    loaded = LVDMPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.lvdm_spec == tiny_spec()
    after = _call(loaded, cond, 35.0, 9)
    assert torch.equal(before.latents, after.latents)
    assert before.frames.dtype == np.uint8 and before.frames.shape == (12, SIZE, SIZE)
    assert np.array_equal(before.frames, after.frames)
    # The VAE inside the pipeline folder is what load_vae reads from a pipeline folder.
    assert load_vae(tmp_path / "pipe").config.scaling_factor == 0.5


def test_text_pipeline_saves_and_loads_its_text_encoder(tmp_path):
    from echogen.models.text import load_text_encoder, write_tiny_text_encoder

    write_tiny_text_encoder(tmp_path / "clip", hidden_size=32, max_length=16)
    tokenizer, text_encoder = load_text_encoder(tmp_path / "clip")
    torch.manual_seed(0)
    unet = build_unet("tiny", "text", UNET_OVERRIDES, cross_attention_dim=32)
    spec = tiny_spec(conditioning="text")
    vae = build_vae("tiny", {"sample_size": SIZE, "scaling_factor": 0.5})
    pipe = LVDMPipeline(unet, build_scheduler(), vae, text_encoder, tokenizer, spec.to_dict())
    pipe.set_progress_bar_config(disable=True)
    cond = torch.randn(CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(4))
    prompt = "EF 40%"  # character tokens: the 16-token limit keeps it whole
    kw = {"num_inference_steps": 2, "output_type": "latent"}
    before = _call(pipe, cond, prompt, 1, **kw).latents
    assert not torch.equal(before, _call(pipe, cond, prompt.replace("40", "70"), 1, **kw).latents)
    pipe.save_pretrained(tmp_path / "pipe")
    assert {"text_encoder", "tokenizer"} <= {p.name for p in (tmp_path / "pipe").iterdir()}
    loaded = LVDMPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(before, _call(loaded, cond, prompt, 1, **kw).latents)


def test_pipeline_needs_a_spec():
    with pytest.raises(ValueError, match="spec"):
        LVDMPipeline(unet=PositionUNet(), scheduler=build_scheduler(), vae=None)


# --- shards and gathering -------------------------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "sampling.json"
    }


@pytest.mark.parametrize("block", [1, 2])
def test_shards_gathered_equal_one_job(models, tmp_path, block):
    """One job equals three shards gathered, byte for byte; with blocks of 2 the 5 samples
    are blocks [0, 1], [2, 3], [4] (the last padded to 2), one per shard."""
    config = tiny_config(block=block)
    common = dict(
        lvdm_dir=models.lvdm,
        vae_dir=models.vae,
        cond_index_csv=models.index,
        config=config,
        run_seed=11,
        root=models.root,
    )
    whole = sample_shard(out_dir=tmp_path / "whole", shard=1, n_shards=1, **common)
    for s in (1, 2, 3):
        sample_shard(out_dir=tmp_path / f"part_{s}", shard=s, n_shards=3, **common)
    assert len(read_filelist(tmp_path / "part_3" / "FileList.csv")) == 1  # 2 + 2 + 1
    gather_samples([tmp_path / f"part_{s}" for s in (3, 1, 2)], tmp_path / "gathered")
    merged = read_filelist(tmp_path / "gathered" / "FileList.csv", LVDM_SCHEMA)

    one, many = _files(tmp_path / "whole"), _files(tmp_path / "gathered")
    assert sorted(one) == sorted(many)
    assert len([k for k in one if k.endswith(".mp4")]) == 5
    assert len([k for k in one if k.endswith(".jpg")]) == 5 * 24
    for key in one:
        assert one[key] == many[key], key
    pd.testing.assert_frame_equal(whole, merged)

    filelist = pd.read_csv(tmp_path / "gathered" / "FileList.csv")
    assert filelist.columns.tolist() == FILELIST_COLUMNS == list(LVDM_SCHEMA)
    assert filelist["FileName"].tolist() == [f"sample_{i:05d}" for i in range(5)]
    assert (
        (filelist[["FrameHeight", "FrameWidth", "NumberOfFrames"]] == [SIZE, SIZE, 24]).all().all()
    )
    assert (filelist["FPS"] == 32.0).all()
    assert filelist["Split"].tolist() == ["TRAIN"] * 4 + ["VAL"]
    ef = filelist["EF"].to_numpy()
    assert np.all(ef == np.round(ef)) and ef.min() >= 10 and ef.max() <= 90
    video = read_video(tmp_path / "gathered" / "Videos" / "sample_00002.mp4")
    assert video.shape == (24, SIZE, SIZE)
    latent = np.load(tmp_path / "gathered" / "latents" / "sample_00002.npy")
    assert latent.dtype == np.float16 and latent.shape == (CHANNELS, LATENT, LATENT)
    record = json.loads((tmp_path / "gathered" / "sampling.json").read_text())
    assert record["shards"] == ["1-of-3", "2-of-3", "3-of-3"] and record["seed"] == 11
    # Sampling cost, summed over the shards (the summary table's seconds per video).
    parts = [json.loads((tmp_path / f"part_{s}" / "sampling.json").read_text()) for s in (1, 2, 3)]
    assert record["timing"]["videos"] == 5 == sum(p["timing"]["videos"] for p in parts)
    assert record["timing"]["seconds"] == pytest.approx(sum(p["timing"]["seconds"] for p in parts))
    assert record["timing"]["seconds"] > 0
    assert record["config"] == config.to_dict() and record["block"] == block
    # Refusals of bad shard sets are the driver's: tests/unit/test_synthetic.py.


def test_sample_shard_refuses_a_vae_of_another_scaling(models, tmp_path):
    build_vae("tiny", {"sample_size": SIZE, "scaling_factor": 0.25}).save_pretrained(tmp_path / "v")
    with pytest.raises(DataError, match="scales by 0.25"):
        sample_shard(
            models.lvdm, tmp_path / "v", models.index, tmp_path / "out", tiny_config(), 0, 1, 1
        )
    assert not (tmp_path / "out").exists()


# --- conditioning on a synthetic image set (LIDM -> privacy filter -> LVDM) -----------------


def write_image_set(root: Path, classes: list[int], filtered: bool = True) -> tuple[Path, Path]:
    """An image set folder (latents/<name>.npy of shape (C, h, w)) and its kept image list."""
    rng = np.random.default_rng(1)
    (root / "images" / "latents").mkdir(parents=True)
    names = [f"sample_{i:05d}" for i in range(len(classes))]
    for name in names:
        latent = rng.normal(size=(CHANNELS, LATENT, LATENT)).astype(np.float16)
        np.save(root / "images" / "latents" / f"{name}.npy", latent)
    names_of = {v: k for k, v in CLASS_MAP.items()}
    kept = root / "privacy"
    kept.mkdir()
    rows = {"FileName": names, "class_id": classes, "class_name": [names_of[c] for c in classes]}
    pd.DataFrame(rows).iloc[::-1].to_csv(kept / "FileList.csv", index=False)  # order: any
    if filtered:
        (kept / "summary.json").write_text("{}")
    return root / "images", kept / "FileList.csv"


def test_plan_takes_image_set_images_in_order_one_per_video(tmp_path):
    images, kept = write_image_set(tmp_path, [0, 2, 0, 2, 0])
    plan = plan_samples(tiny_config(n_samples=4), tiny_spec(), kept, 3, images_dir=images)
    assert plan["cond_video"].tolist() == [f"sample_{i:05d}" for i in range(4)]
    assert (plan["cond_frame"] == 0).all()
    # The EF draws are those of a real-frame run: only the conditioning source changes.
    real = plan_samples(tiny_config(n_samples=4), tiny_spec(), write_index(tmp_path), 3)
    assert plan["EF"].tolist() == real["EF"].tolist()

    # Class runs: the k-th video of a class gets the k-th image of that class.
    spec = tiny_spec(conditioning="class", class_map=CLASS_MAP)
    plan = plan_samples(tiny_config(n_samples=6, class_ids=[0, 2]), spec, kept, 3, images)
    assert plan["class_id"].tolist() == [0, 2, 0, 2, 0, 2]
    expected = ["sample_00000", "sample_00001", "sample_00002", "sample_00003", "sample_00004"]
    assert plan["cond_video"].tolist() == [*expected, "sample_00001"]  # class 2 wraps round
    with pytest.raises(DataError, match="class 1"):
        plan_samples(tiny_config(class_ids=[1]), spec, kept, 3, images)
    pd.DataFrame({"FileName": []}).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(DataError, match="kept none"):
        plan_samples(tiny_config(), tiny_spec(), tmp_path / "empty.csv", 3, images)


def test_sample_shard_animates_image_set_latents_and_records_privacy(models, tmp_path):
    images, kept = write_image_set(tmp_path, [0, 0])
    common = dict(
        lvdm_dir=models.lvdm,
        vae_dir=models.vae,
        config=tiny_config(n_samples=2),
        run_seed=2,
        shard=1,
        n_shards=1,
    )
    sample_shard(cond_index_csv=kept, out_dir=tmp_path / "s", images_dir=images, **common)
    record = json.loads((tmp_path / "s" / "sampling.json").read_text())
    assert record["conditioning"] == {"frames": "synthetic", "private": True, "source": str(kept)}
    filelist = pd.read_csv(tmp_path / "s" / "FileList.csv")
    assert filelist["cond_video"].tolist() == ["sample_00000", "sample_00001"]
    # The conditioning latent changes the video: another image, another video.
    other_images, other = write_image_set(tmp_path / "o", [0, 0], filtered=False)
    np.save(other_images / "latents" / "sample_00000.npy", np.zeros((CHANNELS, LATENT, LATENT)))
    sample_shard(cond_index_csv=other, out_dir=tmp_path / "t", images_dir=other_images, **common)
    first = read_video(tmp_path / "s" / "Videos" / "sample_00000.mp4")
    assert not np.array_equal(first, read_video(tmp_path / "t" / "Videos" / "sample_00000.mp4"))
    same = read_video(tmp_path / "s" / "Videos" / "sample_00001.mp4")
    assert np.array_equal(same, read_video(tmp_path / "t" / "Videos" / "sample_00001.mp4"))
    record = json.loads((tmp_path / "t" / "sampling.json").read_text())
    assert record["conditioning"]["private"] is False  # not filtered
    sample_shard(cond_index_csv=models.index, out_dir=tmp_path / "r", root=models.root, **common)
    record = json.loads((tmp_path / "r" / "sampling.json").read_text())
    assert record["conditioning"]["frames"] == "real" and not record["conditioning"]["private"]


def _block_call(pipe, conds, values, seeds, **kw):
    kw = {"frames": 20, "window": 8, "overlap": 4, "num_inference_steps": 4, **kw}
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(conds, values, generator=gens, output_type="latent", **kw).latents


def test_a_block_equals_its_videos_sampled_one_by_one(models):
    """K videos in one call follow their own noise and conditioning: each equals the video
    sampled alone (to float rounding), with DDPM's per-step noise drawn per video too."""
    pipe = _pipeline(models, "ddpm")
    conds = torch.randn(3, CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(2))
    values, seeds = [20.0, 50.0, 80.0], [5, 6, 7]
    block = _block_call(pipe, conds, values, seeds, guidance_scale=2.0)
    assert block.shape == (3, 20, CHANNELS, LATENT, LATENT)
    for i in range(3):
        alone = _block_call(pipe, conds[i : i + 1], values[i : i + 1], seeds[i : i + 1],
                            guidance_scale=2.0)  # fmt: skip
        torch.testing.assert_close(block[i], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(block[0], block[1], atol=1e-3)


def test_block_needs_a_generator_per_video(models):
    pipe = _pipeline(models)
    conds = torch.zeros(2, CHANNELS, LATENT, LATENT)
    kw = dict(frames=8, num_inference_steps=1, output_type="latent")
    with pytest.raises(ValueError, match="list of 2 seeded generators"):
        pipe(conds, [30.0, 40.0], generator=torch.Generator(), **kw)
    with pytest.raises(ValueError, match="2 videos need 2 generators"):
        pipe(conds, [30.0, 40.0], generator=[torch.Generator()], **kw)
    with pytest.raises(ValueError, match="2 conditioning frames but 1"):
        pipe(conds, [30.0], generator=[torch.Generator(), torch.Generator()], **kw)
    with pytest.raises(ValueError, match="precision"):
        pipe(conds[0], 30.0, precision="fp8", **kw)


def test_bf16_autocast_stays_near_fp32_and_keeps_float32_latents(models):
    """bf16 autocast changes the UNet's arithmetic only: the result is float32, close to
    the fp32 one, and not identical to it."""
    pipe = _pipeline(models, "ddim")
    conds = torch.randn(2, CHANNELS, LATENT, LATENT, generator=torch.Generator().manual_seed(4))
    short = {"frames": 8, "num_inference_steps": 2}
    fp32 = _block_call(pipe, conds, [30.0, 60.0], [1, 2], **short)
    bf16 = _block_call(pipe, conds, [30.0, 60.0], [1, 2], precision="bf16", **short)
    assert bf16.dtype == torch.float32
    assert not torch.equal(fp32, bf16)
    assert (bf16 - fp32).abs().max() < 0.05 * fp32.abs().max()


def test_a_short_last_block_is_padded_to_the_full_block(models, monkeypatch):
    """The last block of a run is padded to K rows (one UNet shape per run); only the real
    rows' samples come back."""
    from echogen.pipelines.sampling import LVDMGenerator, plan_samples

    config = tiny_config(block=3, n_samples=5)
    pipe = _pipeline(models)
    calls = []
    real_call = LVDMPipeline.__call__

    def spy(self, cond_latent, cond_value, **kw):
        calls.append((tuple(cond_latent.shape), list(cond_value), len(kw["generator"])))
        return real_call(self, cond_latent, cond_value, **kw)

    monkeypatch.setattr(LVDMPipeline, "__call__", spy)
    plan = plan_samples(config, pipe.lvdm_spec, models.index, 11)
    generator = LVDMGenerator(pipe, config, models.index, models.root)
    samples = generator.generate(plan.iloc[3:5])
    assert len(samples) == 2 and samples[0].video.shape == (24, SIZE, SIZE)
    shape, values, n_generators = calls[0]
    assert shape[0] == 3 and n_generators == 3
    assert values == [*plan["EF"].iloc[3:5], plan["EF"].iloc[4]]  # the last row again
