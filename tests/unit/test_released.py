"""Model folders from released weights (echogen.training.released): what a user who downloads
EchoNet-Synthetic's unet_ema folders and re-identification .pth files gets instead of training."""

from __future__ import annotations

import json

import pytest
import torch
from trainer_cases import toy_latent_index

from echogen.data.errors import DataError
from echogen.models.lidm import build_lidm_unet, load_lidm
from echogen.models.lvdm import build_unet, load_lvdm
from echogen.models.privacy import PRIVACY_PRESETS, PrivacyEmbedder, load_privacy_model
from echogen.training.released import import_lidm, import_lvdm, import_privacy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_PRIVACY = {"widths": (8, 16), "layers": (1, 1), "embedding_dim": 16}


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_released_lidm_and_lvdm_become_model_folders(tmp_path):
    index = toy_latent_index(tmp_path, [12, 10, 9])
    torch.manual_seed(0)
    lidm_unet = build_lidm_unet("tiny", "class")
    lidm_unet.save_pretrained(tmp_path / "released" / "lidm" / "unet_ema")
    entry = {"conditioning": "class", "class_null": "reference"}
    spec = import_lidm(
        tmp_path / "released/lidm/unet_ema", [index], tmp_path / "lidm", entry, tmp_path
    )
    lidm = load_lidm(tmp_path / "lidm")
    assert _same_weights(lidm.unet, lidm_unet)
    assert spec["class_map"] == {"normal": 0, "asd": 1, "pah": 2} and spec["scaling_factor"] == 0.5
    assert lidm.spec.class_null == "reference"
    record = json.loads((tmp_path / "lidm" / "train.json").read_text())
    assert record["weights"] == "released" and record["source"].endswith("unet_ema")

    lvdm_unet = build_unet("tiny", "ef")
    lvdm_unet.save_pretrained(tmp_path / "released" / "lvdm" / "unet_ema")
    entry = {"conditioning": "ef", "frames": 8, "padding": "noised"}
    import_lvdm(tmp_path / "released/lvdm/unet_ema", [index], tmp_path / "lvdm", entry, tmp_path)
    lvdm = load_lvdm(tmp_path / "lvdm")
    assert _same_weights(lvdm.unet, lvdm_unet)
    assert (lvdm.spec.frames, lvdm.spec.padding, lvdm.spec.fps) == (8, "noised", 32.0)

    # A UNet for other latents, or a folder that is not one, is refused by name.
    build_lidm_unet("tiny", "none", {"in_channels": 8, "out_channels": 8}).save_pretrained(
        tmp_path / "wide"
    )
    with pytest.raises(DataError, match="takes/gives"):
        import_lidm(tmp_path / "wide", [index], tmp_path / "x", {}, tmp_path)
    with pytest.raises(DataError, match="config.json missing"):
        import_lvdm(tmp_path / "nothing", [index], tmp_path / "y", entry, tmp_path)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_released_reidentification_network_becomes_a_model_folder(tmp_path):
    torch.manual_seed(2)
    source = PrivacyEmbedder(**{**PRIVACY_PRESETS["tiny"], **TINY_PRIVACY})
    # Saved under the reference's names: SiameseNetwork.model (trunk), .fc_end (head).
    renamed = {
        k.replace("trunk.", "model.", 1).replace("head.", "fc_end.", 1): v
        for k, v in source.state_dict().items()
    }
    torch.save(renamed, tmp_path / "reidentification_dynamic_best_network.pth")
    config = import_privacy(
        tmp_path / "reidentification_dynamic_best_network.pth",
        tmp_path / "privacy_dynamic",
        preset="tiny",
        overrides=TINY_PRIVACY,
    )
    assert config["embedding_dim"] == 16
    assert _same_weights(load_privacy_model(tmp_path / "privacy_dynamic"), source)
    record = json.loads((tmp_path / "privacy_dynamic" / "train.json").read_text())
    assert record["weights"] == "released" and record["preset"] == "tiny"
