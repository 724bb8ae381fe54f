"""Model folders from released weights instead of training (EchoNet-Synthetic's releases).

EchoNet-Synthetic publishes its LIDMs and LVDM as diffusers ``unet_ema`` folders and its
re-identification networks as ``<experiment>_best_network.pth`` state dicts. A user who
downloads them on a connected node points the config at them (``lvdm.lidms.<name>.pretrained``,
``lvdm.models.<name>.pretrained``, ``lvdm.privacy.pretrained.<dataset>``) and the workflow
writes the same model folders training would, so everything downstream runs unchanged. The
spec (latent shape, scaling factor, classes) comes from the latent indexes, as for training;
a released network whose channels do not fit them is refused naming both.

Each folder is written atomically with a ``train.json`` saying ``"weights": "released"`` and
where they came from (no ``log.csv``: nothing was trained here).
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffusers import UNetSpatioTemporalConditionModel

from echogen.data.errors import DataError
from echogen.data.io import atomic_dir, write_json
from echogen.models.lidm import UNET_CLASSES, save_lidm
from echogen.models.lvdm import build_scheduler, save_lvdm
from echogen.models.privacy import PrivacyEmbedder, load_reference_weights
from echogen.training.lidm import make_lidm_spec
from echogen.training.lvdm import spec_from_entry
from echogen.training.privacy import resolve_model

log = logging.getLogger(__name__)

RELEASED = "released"


def _load_unet(cls, folder: Path, what: str):
    if not (Path(folder) / "config.json").is_file():
        raise DataError(
            folder,
            f"not a diffusers {cls.__name__} folder (config.json missing)",
            f"point at the released {what}'s unet_ema folder",
        )
    return cls.from_pretrained(folder)


def _record(folder: Path, source: str | Path, **keys) -> None:
    write_json(folder / "train.json", {"weights": RELEASED, "source": str(source), **keys})


def import_lidm(
    unet_dir: str | Path,
    latent_indexes: list[str | Path],
    out_dir: str | Path,
    entry: dict,
    root: str | Path = ".",
) -> dict:
    """An LIDM folder (:func:`~echogen.models.lidm.save_lidm`) from a released ``unet_ema``.

    Args:
        unet_dir: the released UNet folder (``UNet2DModel``; ``UNet2DConditionModel`` for
            class models).
        latent_indexes: the latents it was trained on (shape, scaling factor, classes).
        out_dir: the model folder (replaced atomically).
        entry: the ``lvdm.lidms.<name>`` config (``conditioning``, ``class_null``).
        root: folder the indexes' ``latent_path`` column is relative to.

    Returns:
        The spec written, as a dict.
    """
    spec = make_lidm_spec(
        latent_indexes,
        entry.get("conditioning", "none"),
        root=root,
        class_null=entry.get("class_null", "distinct"),
    )
    unet = _load_unet(UNET_CLASSES[spec.conditioning], Path(unet_dir), "LIDM")
    channels = (unet.config.in_channels, unet.config.out_channels)
    if channels != (spec.latent_channels,) * 2:
        raise DataError(
            unet_dir,
            f"the released UNet takes/gives {channels} channels, the latents have "
            f"{spec.latent_channels}",
            "use the LIDM released with the VAE that encoded these latents",
        )
    with atomic_dir(out_dir) as tmp:
        save_lidm(tmp, unet, spec, build_scheduler())
        _record(tmp, unet_dir, spec=spec.to_dict())
    log.info("LIDM from released weights %s -> %s", unet_dir, out_dir)
    return spec.to_dict()


def import_lvdm(
    unet_dir: str | Path,
    latent_indexes: list[str | Path],
    out_dir: str | Path,
    entry: dict,
    root: str | Path = ".",
    text_encoder_dir: str | Path | None = None,
) -> dict:
    """An LVDM folder (:func:`~echogen.models.lvdm.save_lvdm`) from a released ``unet_ema``.

    Args:
        unet_dir: the released ``UNetSpatioTemporalConditionModel`` folder.
        latent_indexes: the latents it was trained on (shape, fps, scaling factor, classes).
        out_dir: the model folder (replaced atomically).
        entry: the ``lvdm.models.<name>`` config (``conditioning``, ``frames``, ``prompt``,
            ``class_null``, ``padding``: ``noised`` for the released models).
        root: folder the indexes' ``latent_path`` column is relative to.
        text_encoder_dir: the CLIP folder of text models.

    Returns:
        The spec written, as a dict.
    """
    spec = spec_from_entry(latent_indexes, entry, root)
    unet = _load_unet(UNetSpatioTemporalConditionModel, Path(unet_dir), "LVDM")
    channels = (unet.config.in_channels, unet.config.out_channels)
    if channels != (2 * spec.latent_channels, spec.latent_channels):
        raise DataError(
            unet_dir,
            f"the released UNet takes/gives {channels} channels; {spec.latent_channels}-channel "
            f"latents need ({2 * spec.latent_channels}, {spec.latent_channels})",
            "use the LVDM released with the VAE that encoded these latents",
        )
    text_encoder = tokenizer = None
    if spec.conditioning == "text":
        from echogen.models.text import load_text_encoder

        tokenizer, text_encoder = load_text_encoder(text_encoder_dir)
    with atomic_dir(out_dir) as tmp:
        save_lvdm(tmp, unet, spec, build_scheduler(), text_encoder, tokenizer)
        _record(tmp, unet_dir, spec=spec.to_dict())
    log.info("LVDM from released weights %s -> %s", unet_dir, out_dir)
    return spec.to_dict()


def import_privacy(
    weights: str | Path,
    out_dir: str | Path,
    preset: str = "paper_reference",
    overrides: dict | None = None,
) -> dict:
    """A re-identification folder (``PrivacyEmbedder.save_pretrained``) from a released
    ``<experiment>_best_network.pth`` (:func:`~echogen.models.privacy.load_reference_weights`).

    Returns:
        The embedder's config.
    """
    model = PrivacyEmbedder(**resolve_model(preset, overrides))
    load_reference_weights(model, weights)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        _record(tmp, weights, preset=preset)
    log.info("re-identification network from released weights %s -> %s", weights, out_dir)
    return dict(model.config)
