"""EchoDiffusion's cascade models (echogen.models.cascade): the released models' state dicts.

The fixtures in tests/data/echodiffusion/ hold every key and shape of the three released
models as the reference's own code (HReynaud/imagen-pytorch, the fork EchoDiffusion trains
with) builds them from the published configs (tests/data/echodiffusion/dump_reference.py).
Models are built on the meta device: shapes without memory or initialisation time.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from echogen.data.errors import DataError
from echogen.models.cascade import (
    CASCADE_PRESETS,
    IMAGEN_VERSION,
    build_cascade,
    cascade_preset,
    import_imagen,
    import_released_cascade,
    load_cascade,
    load_released_cascade,
    released_state_dict,
    resolve_cascade,
    state_dict_shapes,
)

FIXTURES = Path(__file__).parents[1] / "data" / "echodiffusion"
# Released models (EchoDiffusionWeights/<folder>) -> the config they were trained with.
RELEASED = {"1SCM_v2": "1SCM", "2SCM_v6": "2SCM", "4SCM_v2": "4SCM_v2"}
STAGES = {"1SCM": 1, "2SCM": 2, "4SCM_v2": 4}


def reference(name: str) -> dict:
    with gzip.open(FIXTURES / f"{name}.json.gz", "rt") as handle:
        return json.load(handle)


@pytest.mark.parametrize("release", sorted(RELEASED))
def test_released_model_keys_and_shapes_match_the_reference(release):
    """A released merged.pt's `model` entry loads into echogen's cascade: the same keys, the
    same shapes, built from the same published config."""
    fixture = reference(RELEASED[release])
    assert "HReynaud/imagen-pytorch@" in fixture["source"]["imagen_pytorch"]
    with torch.device("meta"):
        model = build_cascade(fixture["unets"], fixture["imagen"])
    ours = state_dict_shapes(model)
    theirs = fixture["state_dict"]
    assert sorted(set(theirs) - set(ours)) == [] and sorted(set(ours) - set(theirs)) == []
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}
    stages = {key.split(".")[1] for key in ours}
    assert stages == {str(i) for i in range(STAGES[RELEASED[release]])}
    # A real load: the reference's shapes as tensors go in with strict=True.
    with torch.device("meta"):
        weights = {k: torch.empty(v) for k, v in theirs.items()}
    model.load_state_dict(weights, strict=True, assign=True)


def test_the_pinned_library_and_the_attention_it_fixes():
    imagen = import_imagen()
    assert imagen.__version__ == IMAGEN_VERSION == "1.21.6"
    # 1.22.x's attention has learned q_scale/k_scale; the reference's (and 1.21.6's) has none.
    fixture = reference("1SCM")
    assert not any(k.endswith(("q_scale", "k_scale")) for k in fixture["state_dict"])
    with pytest.raises(ImportError, match="needs 9.9.9"):
        import_imagen(version="9.9.9")


def test_stages_after_the_first_are_low_resolution_conditioned():
    fixture = reference("2SCM")
    with torch.device("meta"):
        model = build_cascade(fixture["unets"], fixture["imagen"])
    assert [unet.lowres_cond for unet in model.unets] == [False, True]
    assert list(model.image_sizes) == [56, 112]
    with pytest.raises(ValueError, match="at least one stage"):
        build_cascade([], fixture["imagen"])


# A two-stage cascade small enough to build and save in a second on CPU: base 16 px, then a
# super-resolution stage to 32 px at twice the frame rate.
TINY_UNET = {
    "dim": 8,
    "dim_mults": [1, 2],
    "num_resnet_blocks": 1,
    "max_text_len": 1,
    "layer_attns": False,
    "layer_cross_attns": [False, True],
    "cond_images_channels": 3,
    "attend_at_middle": False,
}
TINY_IMAGEN = {
    "elucidated": True,
    "condition_on_text": True,
    "text_embed_dim": 1,
    "image_sizes": [16, 32],
    "num_sample_steps": [2, 2],
    "temporal_downsample_factor": [2, 1],
    "sigma_min": 0.002,
    "sigma_max": 80,
    "sigma_data": 0.25,
    "rho": 7,
    "P_mean": -1.2,
    "P_std": 1.2,
    "S_noise": 1.003,
}


def released_folder(folder: Path) -> tuple[torch.nn.Module, dict]:
    """A model folder in the released layout: the training config.yaml and a merged.pt as
    EchoDiffusion's merge_models.py writes it (online weights, ImagenTrainer's EMA copies,
    version, steps, time), the EMA weights made to differ from the online ones."""
    import yaml
    from ema_pytorch import EMA

    torch.manual_seed(0)
    model = build_cascade([TINY_UNET, TINY_UNET], TINY_IMAGEN)
    emas = torch.nn.ModuleList([EMA(unet, beta=0.9) for unet in model.unets])
    with torch.no_grad():
        for ema in emas:
            for parameter in ema.ema_model.parameters():
                parameter.add_(0.5)
    folder.mkdir()
    config = {
        "unets": {"unet1": TINY_UNET, "unet2": TINY_UNET},
        "imagen": TINY_IMAGEN,
        "trainer": {"lr": 5e-4},
        "dataset": {"fps": 32, "duration": 2.0},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    merged = {
        "model": model.state_dict(),
        "ema": emas.state_dict(),
        "version": "1.22.2",
        "steps": torch.tensor([10, 12]),
        "time_elapsed": 3.0,
    }
    torch.save(merged, folder / "merged.pt")
    return model, merged


def test_released_folder_loads_ema_or_online_weights(tmp_path):
    model, merged = released_folder(tmp_path / "2SCM_tiny")
    assert any(k.startswith("0.ema_model.") for k in merged["ema"])
    ema = load_released_cascade(tmp_path / "2SCM_tiny")
    online = load_released_cascade(tmp_path / "2SCM_tiny", weights="model")
    assert not ema.training
    # ElucidatedImagen.state_dict moves every stage to one device: take each once.
    loaded_ema, loaded_online = ema.state_dict(), online.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded_online[key], value), key
        stage, rest = key.split(".", 2)[1:]
        expected = merged["ema"][f"{stage}.ema_model.{rest}"]
        assert torch.equal(loaded_ema[key], expected), key
    assert not torch.equal(
        ema.unets[1].init_conv.convs[0].weight, model.unets[1].init_conv.convs[0].weight
    )


def test_a_release_becomes_a_cascade_folder_like_a_trained_one(tmp_path):
    """import_released_cascade writes stage folders and cascade.json: load_cascade gives the
    release's EMA weights, each stage's online file its online weights."""
    from safetensors.torch import load_file

    model, merged = released_folder(tmp_path / "2SCM_tiny")
    index = import_released_cascade(tmp_path / "2SCM_tiny", tmp_path / "cascade", stages=2)
    assert index["stages"] == ["released/stage_1", "released/stage_2"]
    assert index["video"] == {"fps": 32.0, "frames": 64, "channels": 3, "cond_frame": "window"}
    loaded = load_cascade(tmp_path / "cascade").state_dict()
    expected = load_released_cascade(tmp_path / "2SCM_tiny").state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    online = load_file(tmp_path / "cascade/released/stage_2/unet.safetensors")
    for key, value in online.items():
        assert torch.equal(value, merged["model"][f"unets.1.{key}"]), key
    with pytest.raises(DataError, match="has 2 stages, the config's structure 4"):
        import_released_cascade(tmp_path / "2SCM_tiny", tmp_path / "other", stages=4)
    assert not (tmp_path / "other").exists()


def test_released_folder_errors_name_the_file(tmp_path):
    _, merged = released_folder(tmp_path / "m")
    (tmp_path / "m" / "merged.pt").rename(tmp_path / "m" / "other.pt")
    with pytest.raises(DataError, match="merged.pt: file does not exist") as error:
        load_released_cascade(tmp_path / "m")
    assert "EchoDiffusionWeights" in error.value.fix
    merged["ema"] = {k: v for k, v in merged["ema"].items() if not k.startswith("1.")}
    torch.save(merged, tmp_path / "m" / "merged.pt")
    with pytest.raises(DataError, match="no weights of stage 1"):
        load_released_cascade(tmp_path / "m")
    with pytest.raises(ValueError, match="weights must be one of"):
        released_state_dict(merged, 2, "online")


# Presets -> the reference config their paper preset must equal.
PRESET_CONFIGS = {"1SCM": "1SCM", "2SCM": "2SCM", "4SCM": "4SCM_v2"}


@pytest.mark.parametrize("structure", sorted(CASCADE_PRESETS))
def test_paper_presets_are_the_published_configs(structure):
    """The paper preset is the reference config (every unet and imagen key), the tiny one
    keeps its structure: stages, frame rates, where cross-attention is, the crop ratio."""
    fixture = reference(PRESET_CONFIGS[structure])
    paper = cascade_preset(structure)
    assert paper["unets"] == fixture["unets"]
    assert paper["imagen"] == {k: v for k, v in fixture["imagen"].items() if k != "elucidated"}
    assert paper["duration"] == 2.0 and paper["fps"] == (8 if structure == "1SCM" else 32)
    tiny = cascade_preset(structure, "tiny")
    assert len(tiny["unets"]) == len(paper["unets"]) == len(tiny["batch_sizes"])
    for small, big in zip(tiny["unets"], paper["unets"], strict=True):
        assert small["dim"] == 8 and bool(small["layer_cross_attns"]) == bool(
            big["layer_cross_attns"]
        )
        assert small.get("memory_efficient") == big.get("memory_efficient")
        assert small["attend_at_middle"] is False  # the one structural cut (a CPU's time)
    for key in ("temporal_downsample_factor", "S_churn", "sigma_data"):
        assert tiny["imagen"][key] == paper["imagen"][key]
    assert [s * 7 for s in tiny["imagen"]["image_sizes"]] == paper["imagen"]["image_sizes"]
    with torch.device("meta"):
        model = build_cascade(tiny["unets"], tiny["imagen"])
    assert len(model.unets) == len(paper["unets"])


def test_a_config_entry_overrides_its_preset():
    entry = {
        "structure": "2SCM",
        "preset": "tiny",
        "unet": {"dim": 4},
        "imagen": {"num_sample_steps": [3, 5]},
        "fps": 16,
        "batch_sizes": [3, 1],
    }
    cascade = resolve_cascade(entry)
    assert [u["dim"] for u in cascade["unets"]] == [4, 4]
    assert cascade["imagen"]["num_sample_steps"] == [3, 5]
    assert cascade["imagen"]["image_sizes"] == [8, 16]
    assert (cascade["fps"], cascade["duration"], cascade["batch_sizes"]) == (16, 2.0, [3, 1])
    with pytest.raises(ValueError, match="one batch size per stage"):
        resolve_cascade({**entry, "batch_sizes": [2]})
    with pytest.raises(ValueError, match="unknown cascade '3SCM'"):
        cascade_preset("3SCM")
    with pytest.raises(ValueError, match="unknown cascade preset"):
        cascade_preset("1SCM", "small")


def test_the_workflow_plans_each_presets_stages():
    """rules/cascade_helpers.smk plans one job per stage without importing the library: its
    stage counts are the presets'."""
    import ast
    import re

    text = (Path(__file__).parents[2] / "rules" / "cascade_helpers.smk").read_text()
    table = ast.literal_eval(re.search(r"^CASCADE_STAGES = (\{.*\})$", text, re.M).group(1))
    assert table == {name: len(preset["unets"]) for name, preset in CASCADE_PRESETS.items()}
