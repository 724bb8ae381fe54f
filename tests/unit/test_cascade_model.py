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

from echogen.models.cascade import (
    IMAGEN_VERSION,
    build_cascade,
    import_imagen,
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
