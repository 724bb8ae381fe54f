"""EchoDiffusion's cascaded video diffusion models: imagen-pytorch's ``Unet3D`` stages inside
an ``ElucidatedImagen`` (EDM) cascade.

Why the pinned library and not a module of echogen's own (issue 15's deciding criteria):

- **Published weights.** EchoDiffusion trains with HReynaud/imagen-pytorch (a fork whose version
  string says 1.22.2, HEAD ``69088d0`` read 2026-12-03). Its modules are those of PyPI's
  ``imagen-pytorch==1.21.6``: the two differ only in an unused ``image_embed_dim`` argument of
  ``Unet``/``Unet3D`` (removed in the fork) and, in training alone, an optional temporal
  smoothness loss, a "part_det" noise option, the augmentation of ``cond_images`` with the
  images, a Lion optimiser option in the trainer and a distillation helper
  (``distiller.py``). No module, parameter or buffer of the models differs, so the released
  ``merged.pt`` state dicts load into 1.21.6 models; ``tests/unit/test_cascade_model.py``
  checks every key and shape of the three released models against the fork's own
  (``tests/data/echodiffusion/``). PyPI
  1.22.x replaced the attention (query/key RMS-norm with learned ``q_scale``/``k_scale`` and a
  fixed scale 8): other keys, other outputs.
- **Speed.** The same modules as the reference, so the same cost per network call; any
  speed-up has to come from how sampling is run (batching, sharding, steps), not from
  another network.
- **Code echogen keeps.** This adapter (a few hundred lines) instead of the ~2,800 lines of
  ``imagen_video.py`` and ``elucidated_imagen.py`` that a re-implementation with the same
  parameter names would repeat.

imagen-pytorch 1.21.6 reads the T5 encoder's width from the Hugging Face hub while it is
imported (a default argument of ``Unet3D``); :func:`import_imagen` answers it locally, so the
import works offline, and loads only the model modules (not the package's trainer and data
helpers). EchoDiffusion conditions on EF/100 as a one-token, width-1 "text" embedding and
never uses T5.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import torch
import yaml
from safetensors.torch import load_file, save_file

from echogen.data.errors import DataError
from echogen.data.io import atomic_dir, write_json

IMAGEN_VERSION = "1.21.6"
T5_WIDTH = 768  # d_model of google/t5-v1_1-base, imagen-pytorch's default text encoder
# ElucidatedImagen arguments of the reference configs that are not the model's: EchoDiffusion's
# train.py pops ``elucidated`` (which class to build).
NOT_MODEL_ARGS = ("elucidated",)
# Which weights of a released merged.pt: the trainer's EMA copies (what EchoDiffusion samples
# with: ImagenTrainer.sample uses the EMA unets) or the online weights.
RELEASED_WEIGHTS = ("ema", "model")
RELEASE_FILES = ("config.yaml", "merged.pt")


def import_imagen(version: str | None = IMAGEN_VERSION) -> ModuleType:
    """The ``imagen_pytorch`` package, imported offline.

    Args:
        version: the version it must be (None: any, e.g. to read the reference's fork).

    Raises:
        ImportError: imagen-pytorch missing or of another version (named, with the fix).
    """
    imagen = sys.modules.get("imagen_pytorch")
    if imagen is None or "imagen_pytorch.imagen_video" not in sys.modules:
        imagen = _import_offline()
    if version is not None and imagen.__version__ != version:
        raise ImportError(
            f"imagen-pytorch {imagen.__version__} is installed; echogen needs {version} "
            "(other versions change the attention's parameters, so published weights would "
            f"not load). Fix: pip install imagen-pytorch=={version}"
        )
    return imagen


def _import_offline() -> ModuleType:
    """Import the model modules only (``imagen_video``, ``imagen_pytorch``,
    ``elucidated_imagen``), not the package's ``__init__``: that one also imports the trainer,
    its data helpers and configs (``datasets``, ``pytorch_warmup``, pydantic-1 validators),
    which echogen does not use and which take seconds to import."""
    spec = importlib.util.find_spec("imagen_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"imagen-pytorch is not installed. Fix: pip install imagen-pytorch=={IMAGEN_VERSION} "
            "(bash envs/setup.sh installs it)"
        )
    root = Path(spec.submodule_search_locations[0])
    package = ModuleType("imagen_pytorch", "imagen-pytorch's model modules, loaded by echogen")
    package.__path__ = [str(root)]
    package.__package__ = "imagen_pytorch"
    sys.modules["imagen_pytorch"] = package
    try:
        version = _load(root / "version.py", "imagen_pytorch.version")
        package.__version__ = version.__version__
        # Unet3D's default text width is T5's d_model, read from the hub when the class is
        # defined: answer it with the local value first.
        t5 = _load(root / "t5.py", "imagen_pytorch.t5")
        from transformers import T5Config

        t5.T5_CONFIGS.setdefault(t5.DEFAULT_T5_NAME, {"config": T5Config(d_model=T5_WIDTH)})
        video = importlib.import_module("imagen_pytorch.imagen_video")
        elucidated = importlib.import_module("imagen_pytorch.elucidated_imagen")
    except BaseException:
        for name in [
            n for n in sys.modules if n == "imagen_pytorch" or n.startswith("imagen_pytorch.")
        ]:
            del sys.modules[name]
        raise
    package.Unet3D = video.Unet3D
    package.ElucidatedImagen = elucidated.ElucidatedImagen
    return package


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_cascade(
    unets: list[dict], imagen: dict, library: ModuleType | None = None
) -> torch.nn.Module:
    """An ``ElucidatedImagen`` cascade as EchoDiffusion's ``train.py`` builds it.

    Stage ``i`` is ``Unet3D(**unets[i], lowres_cond=i > 0)`` (every stage after the first is
    conditioned on the previous stage's upsampled video); the cascade takes ``imagen``'s
    arguments (image sizes, temporal downsampling, EDM settings, sampling steps).

    Args:
        unets: one dict of ``Unet3D`` arguments per stage, as the reference configs' ``unets``.
        imagen: ``ElucidatedImagen`` arguments, as the reference configs' ``imagen`` section
            (an ``elucidated`` key is dropped: every EchoDiffusion model is elucidated).
        library: the ``imagen_pytorch`` package to build with (default: :func:`import_imagen`).

    Returns:
        The cascade (``torch.nn.Module``); its ``state_dict`` keys are ``unets.<i>.<...>``,
        those of the released ``merged.pt``'s ``model`` entry.
    """
    if not unets:
        raise ValueError("a cascade needs at least one stage (unets is empty)")
    module = library or import_imagen()
    stages = [module.Unet3D(**dict(kwargs), lowres_cond=i > 0) for i, kwargs in enumerate(unets)]
    kwargs = {k: v for k, v in dict(imagen).items() if k not in NOT_MODEL_ARGS}
    return module.ElucidatedImagen(unets=stages, **kwargs)


def state_dict_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    """``{key: shape}`` of a model's state dict (what a weights file must match)."""
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def released_state_dict(checkpoint: dict, n_stages: int, weights: str = "ema") -> dict:
    """The cascade state dict held by a released ``merged.pt``.

    EchoDiffusion's ``merge_models.py`` keeps, per stage ``i``, the online weights under
    ``model`` (keys ``unets.<i>.<...>``, the cascade's own) and ``ImagenTrainer``'s EMA copy
    under ``ema`` (keys ``<i>.ema_model.<...>``, beside ``<i>.initted``, ``<i>.step`` and,
    with ema_pytorch's default ``include_online_model``, ``<i>.online_model.<...>``).

    Args:
        checkpoint: the loaded ``merged.pt``.
        n_stages: the cascade's stages.
        weights: ``"ema"`` or ``"model"`` (:data:`RELEASED_WEIGHTS`).

    Raises:
        KeyError: the entry or a stage's EMA weights are missing (named).
    """
    if weights not in RELEASED_WEIGHTS:
        raise ValueError(f"weights must be one of {RELEASED_WEIGHTS}, got {weights!r}")
    if weights not in checkpoint:
        raise KeyError(f"the checkpoint has no {weights!r} entry (it has {sorted(checkpoint)})")
    if weights == "model":
        return dict(checkpoint["model"])
    state = {}
    for stage in range(n_stages):
        prefix = f"{stage}.ema_model."
        found = {k[len(prefix) :]: v for k, v in checkpoint["ema"].items() if k.startswith(prefix)}
        if not found:
            raise KeyError(f"the checkpoint's 'ema' entry has no weights of stage {stage}")
        state.update({f"unets.{stage}.{k}": v for k, v in found.items()})
    return state


def load_released_cascade(folder: str | Path, weights: str = "ema") -> torch.nn.Module:
    """A released EchoDiffusion model (``EchoDiffusionWeights/<model>/``: the training
    ``config.yaml`` and ``merged.pt``) as a cascade in eval mode.

    Args:
        folder: the model's folder.
        weights: ``"ema"`` (default; what the reference samples with) or ``"model"``.

    Raises:
        DataError: a file is missing, the config has no ``unets``/``imagen`` sections, or the
            weights do not fit the config's cascade (the file is named).
    """
    folder = Path(folder)
    config, checkpoint = _read_release(folder)
    model = build_cascade(list(config["unets"].values()), config["imagen"])
    _load_released(model, checkpoint, folder, weights)
    return model.eval()


def _read_release(folder: Path) -> tuple[dict, dict]:
    """A released folder's ``config.yaml`` (checked for its sections) and ``merged.pt``."""
    fix = "download the model folder (config.yaml + merged.pt) from EchoDiffusionWeights"
    for name in RELEASE_FILES:
        if not (folder / name).is_file():
            raise DataError(folder / name, "file does not exist", fix)
    config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    sections = [s for s in ("unets", "imagen") if not isinstance(config.get(s), dict)]
    if sections:
        raise DataError(folder / "config.yaml", f"sections {sections} are missing", fix)
    checkpoint = torch.load(folder / "merged.pt", map_location="cpu", weights_only=True)
    return config, checkpoint


def _load_released(model: torch.nn.Module, checkpoint: dict, folder: Path, weights: str) -> dict:
    """Load a release's ``weights`` into its cascade (strict); the state dict loaded."""
    try:
        state = released_state_dict(checkpoint, len(model.unets), weights)
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as error:
        raise DataError(
            folder / "merged.pt",
            f"its {weights!r} weights do not fit config.yaml's cascade ({error})",
            "use the merged.pt released with this config.yaml",
        ) from error
    return state


# --- published and tiny cascades -------------------------------------------------------------

# EchoDiffusion's stage: Unet3D dim 64, mults 1/2/4, 2 ResNet blocks, cross-attention at the
# deepest level only, image-conditioned (diffusion/configs/*.yaml of HReynaud/EchoDiffusion).
_PAPER_UNET = {
    "dim": 64,
    "num_resnet_blocks": 2,
    "dim_mults": [1, 2, 4],
    "max_text_len": 1,
    "layer_attns": False,
    "layer_cross_attns": [False, False, True],
    "cond_images_channels": 3,
}
# The EDM settings every published cascade shares.
_PAPER_EDM = {
    "condition_on_text": True,
    "text_embed_dim": 1,
    "sigma_min": 0.002,
    "sigma_max": 80,
    "sigma_data": 0.25,
    "rho": 7,
    "P_mean": -1.2,
    "P_std": 1.2,
    "S_tmin": 0.05,
    "S_tmax": 50,
    "S_noise": 1.003,
}
_SSR_UNET = {**_PAPER_UNET, "layer_cross_attns": False, "attend_at_middle": False}
_TSR_UNET = {**_PAPER_UNET, "memory_efficient": True}

# structure -> the reference config's unets, imagen, dataset fps and duration, and the
# per-process batch of each stage's training job (diffusion/slurms/train_<model>_stage<i>.sh).
# 1SCM = configs/1SCM.yaml (released 1SCM_v2), 2SCM = 2SCM.yaml (2SCM_v6), 4SCM = 4SCM_v2.yaml.
CASCADE_PRESETS = {
    "1SCM": {
        "unets": [{**_PAPER_UNET, "attend_at_middle": False}],
        "imagen": {
            **_PAPER_EDM,
            "image_sizes": [112],
            "num_sample_steps": 64,
            "temporal_downsample_factor": [1],
            "S_churn": 160,
        },
        "fps": 8,
        "duration": 2.0,
        "batch_sizes": [4],
    },
    "2SCM": {
        "unets": [_PAPER_UNET, _TSR_UNET],
        "imagen": {
            **_PAPER_EDM,
            "image_sizes": [56, 112],
            "num_sample_steps": [32, 64],
            "random_crop_sizes": [None, 56],
            "temporal_downsample_factor": [4, 1],
            "S_churn": [80, 160],
            "resize_mode": "trilinear",
        },
        "fps": 32,
        "duration": 2.0,
        "batch_sizes": [16, 10],
    },
    "4SCM": {
        "unets": [_PAPER_UNET, _TSR_UNET, _TSR_UNET, _SSR_UNET],
        "imagen": {
            **_PAPER_EDM,
            "image_sizes": [56, 56, 56, 112],
            "num_sample_steps": [32, 32, 32, 64],
            "random_crop_sizes": [None, None, None, 56],
            "temporal_downsample_factor": [4, 2, 1, 1],
            "S_churn": [40, 80, 160, 160],
        },
        "fps": 32,
        "duration": 2.0,
        "batch_sizes": [16, 20, 8, 5],
    },
}
# The tiny preset: the same stages at width 8, two levels, one ResNet block, 2 attention
# heads of 16, no middle attention, frames a seventh of the paper's side (16 px output), 4
# sampling steps a stage; cross-attention stays at the deepest level (none in 4SCM's spatial
# super-resolution stage).
TINY_UNET = {
    "dim": 8,
    "dim_mults": [1, 2],
    "num_resnet_blocks": 1,
    # The paper's base and temporal stages attend over every frame's pixels at the middle
    # (one attention over frames x pixels): with it a tiny 4SCM video took 51 s on this
    # CPU (another job running), without it 3.8 s.
    "attend_at_middle": False,
    # Unet3D's attention width is its own (8 heads of 64 by default), not dim's: 2 of 16
    # make a tiny stage 3x faster on CPU.
    "attn_heads": 2,
    "attn_dim_head": 16,
}
TINY_SCALE = 7
TINY_STEPS = 4


def cascade_preset(structure: str, preset: str = "paper") -> dict:
    """A cascade's settings: ``unets`` (one dict per stage), ``imagen``, ``fps``, ``duration``
    and ``batch_sizes`` (per stage, per process).

    Args:
        structure: ``1SCM``, ``2SCM`` or ``4SCM`` (:data:`CASCADE_PRESETS`).
        preset: ``paper`` (the reference's) or ``tiny`` (the same stages, small).

    Raises:
        ValueError: an unknown structure or preset.
    """
    if structure not in CASCADE_PRESETS:
        raise ValueError(f"unknown cascade {structure!r}; one of {sorted(CASCADE_PRESETS)}")
    if preset not in ("paper", "tiny"):
        raise ValueError(f"unknown cascade preset {preset!r}; 'paper' or 'tiny'")
    paper = copy.deepcopy(CASCADE_PRESETS[structure])
    if preset == "paper":
        return paper
    unets = []
    for unet in paper["unets"]:
        cross = unet["layer_cross_attns"]
        unets.append({**unet, **TINY_UNET, "layer_cross_attns": [False, True] if cross else False})
    imagen = dict(paper["imagen"])
    imagen["image_sizes"] = [size // TINY_SCALE for size in imagen["image_sizes"]]
    if "random_crop_sizes" in imagen:
        imagen["random_crop_sizes"] = [
            None if size is None else size // TINY_SCALE for size in imagen["random_crop_sizes"]
        ]
    steps = imagen["num_sample_steps"]
    imagen["num_sample_steps"] = (
        [TINY_STEPS] * len(steps) if isinstance(steps, list) else TINY_STEPS
    )
    return {**paper, "unets": unets, "imagen": imagen, "batch_sizes": [2] * len(unets)}


def resolve_cascade(entry: dict) -> dict:
    """A ``cascade.models.<name>`` config entry as the cascade it trains: its preset
    (:func:`cascade_preset` of ``structure`` and ``preset``) with ``unet`` merged into every
    stage, ``imagen`` into the cascade's arguments, and ``fps``, ``duration`` and
    ``batch_sizes`` replaced where the entry names them.

    Raises:
        ValueError: ``batch_sizes`` does not give one size per stage.
    """
    resolved = cascade_preset(entry["structure"], entry.get("preset", "paper"))
    resolved["unets"] = [{**unet, **(entry.get("unet") or {})} for unet in resolved["unets"]]
    resolved["imagen"] = {**resolved["imagen"], **(entry.get("imagen") or {})}
    for key in ("fps", "duration", "batch_sizes"):
        if entry.get(key) is not None:
            resolved[key] = entry[key]
    if len(resolved["batch_sizes"]) != len(resolved["unets"]):
        raise ValueError(
            f"batch_sizes {resolved['batch_sizes']} must give one batch size per stage "
            f"({len(resolved['unets'])} stages in {entry['structure']})"
        )
    return resolved


# --- exported stages and cascade folders -----------------------------------------------------

STAGE_FILE = "stage.json"
STAGE_WEIGHTS = {"ema": "unet_ema.safetensors", "model": "unet.safetensors"}
CASCADE_FILE = "cascade.json"
CASCADE_FORMAT = "echogen-cascade/1"


class CascadeStage:
    """One trained stage folder (``stage.json`` + ``unet.safetensors`` +
    ``unet_ema.safetensors``, what :mod:`echogen.training.cascade` exports) as its ``Unet3D``."""

    @staticmethod
    def from_pretrained(folder: str | Path, weights: str = "ema") -> torch.nn.Module:
        """The stage's ``Unet3D`` with its EMA (default, what the reference samples with) or
        online weights, in eval mode.

        Raises:
            DataError: a file is missing or the weights do not fit ``stage.json``.
        """
        folder = Path(folder)
        info = _read_stage(folder)
        if weights not in STAGE_WEIGHTS:
            raise ValueError(f"weights must be one of {sorted(STAGE_WEIGHTS)}, got {weights!r}")
        # The cascade casts each stage's text width, channels and low-resolution input.
        unet = build_cascade(info["unets"], info["imagen"]).unets[info["stage"] - 1]
        _load_weights(unet, folder / STAGE_WEIGHTS[weights])
        return unet.eval()


def _read_stage(folder: Path) -> dict:
    path = folder / STAGE_FILE
    if not path.is_file():
        raise DataError(path, "not a trained cascade stage", "re-run its train_cascade_stage job")
    info = json.loads(path.read_text())
    missing = [k for k in ("stage", "unets", "imagen", "video") if k not in info]
    if missing:
        raise DataError(path, f"keys {missing} are missing", "re-run its train_cascade_stage job")
    _with_cond_frame(info["video"])
    return info


def _with_cond_frame(video: dict) -> dict:
    """A stage's or cascade's ``video`` with ``cond_frame`` filled in: stages written before
    the key (and released models) were trained on the window's frame, so they assemble with
    newer stages of the same settings."""
    video.setdefault("cond_frame", "window")
    return video


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise DataError(path, "weights file does not exist", "re-run the stage's training job")
    try:
        module.load_state_dict(load_file(path), strict=True)
    except RuntimeError as error:
        raise DataError(path, f"the weights do not fit the stage's config ({error})",
                        "re-run the stage's training job") from error  # fmt: skip


def write_cascade_folder(folder: str | Path, stage_dirs: list[str | Path]) -> dict:
    """Write ``<folder>/cascade.json``: the cascade that the stage folders make, referencing
    them by path relative to ``folder`` (no weights are copied or merged), with the stages'
    ``unets``, ``imagen`` and ``video`` (output fps, frames, channels).

    Raises:
        DataError: a stage folder is missing, stages are out of order, or their cascade
            configurations differ (named).
    """
    folder = Path(folder)
    infos = [_read_stage(Path(d)) for d in stage_dirs]
    for position, (stage_dir, info) in enumerate(zip(stage_dirs, infos, strict=True), 1):
        if info["stage"] != position:
            raise DataError(stage_dir, f"holds stage {info['stage']}, listed as {position}",
                            "list the stage folders in cascade order")  # fmt: skip
        cascade = ("unets", "imagen", "video")
        if any(info[key] != infos[0][key] for key in cascade):
            raise DataError(stage_dir, "was trained for another cascade than stage 1",
                            "re-run the stages with one config")  # fmt: skip
    if len(infos) != len(infos[0]["unets"]):
        raise DataError(folder, f"{len(infos)} stage folders for a cascade of "
                        f"{len(infos[0]['unets'])} stages", "list every stage")  # fmt: skip
    index = {
        "format": CASCADE_FORMAT,
        "stages": [os.path.relpath(Path(d).resolve(), folder.resolve()) for d in stage_dirs],
        "unets": infos[0]["unets"],
        "imagen": infos[0]["imagen"],
        "video": infos[0]["video"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CASCADE_FILE, index)
    return index


def load_cascade(folder: str | Path, weights: str = "ema") -> torch.nn.Module:
    """A cascade folder (``cascade.json`` and the stage folders it references) as an
    ``ElucidatedImagen`` in eval mode, each stage with its EMA (default) or online weights.

    Raises:
        DataError: ``cascade.json`` or a stage is missing or does not fit.
    """
    if weights not in STAGE_WEIGHTS:
        raise ValueError(f"weights must be one of {sorted(STAGE_WEIGHTS)}, got {weights!r}")
    folder = Path(folder)
    index = read_cascade_index(folder)
    model = build_cascade(index["unets"], index["imagen"])
    for position, (unet, stage_dir) in enumerate(zip(model.unets, index["stages"], strict=True)):
        info = _read_stage(folder / stage_dir)
        cascade = ("unets", "imagen", "video")
        if info["stage"] != position + 1 or any(info[k] != index[k] for k in cascade):
            raise DataError(folder / stage_dir / STAGE_FILE, "does not match cascade.json "
                            f"(stage {info['stage']} listed as {position + 1}, or another "
                            "cascade's settings)", "re-run assemble_cascade")  # fmt: skip
        _load_weights(unet, folder / stage_dir / STAGE_WEIGHTS[weights])
    return model.eval()


def read_cascade_index(folder: str | Path) -> dict:
    """A cascade folder's ``cascade.json`` (:func:`write_cascade_folder`).

    Raises:
        DataError: it is missing or lacks a key (named).
    """
    path = Path(folder) / CASCADE_FILE
    if not path.is_file():
        raise DataError(path, "not a cascade folder", "run its assemble_cascade rule")
    index = json.loads(path.read_text())
    missing = [k for k in ("format", "stages", "unets", "imagen", "video") if k not in index]
    if missing:
        raise DataError(path, f"keys {missing} are missing", "re-run its assemble_cascade rule")
    _with_cond_frame(index["video"])
    return index


def output_size(imagen: dict) -> int:
    """The frame size a cascade's last stage generates."""
    sizes = imagen["image_sizes"]
    return int(sizes[-1] if isinstance(sizes, list | tuple) else sizes)


def import_released_cascade(
    release: str | Path, folder: str | Path, stages: int | None = None, subdir: str = "released"
) -> dict:
    """A released EchoDiffusion model as a cascade folder: ``<folder>/<subdir>/stage_<i>/``
    (``stage.json``, the EMA weights as ``unet_ema.safetensors``, the online ones as
    ``unet.safetensors``, as a trained stage) and ``<folder>/cascade.json`` referencing them,
    so sampling and scoring treat published and trained cascades alike.

    The output clips' fps and frame count come from the release's ``dataset`` section
    (``fps``, ``duration``), as EchoDiffusion's evaluation reads them; the channels are the
    cascade's (3: its ``grayscale`` option also yields 3-channel clips).

    Args:
        release: the released folder (``config.yaml`` + ``merged.pt``).
        folder: the cascade folder to write.
        stages: the number of stages the workflow expects (its ``structure``), checked.
        subdir: where the stage folders go inside ``folder``.

    Raises:
        DataError: a file is missing, the weights do not fit the config, or the release has
            another number of stages than ``stages`` (named).
    """
    release, folder = Path(release), Path(folder)
    config, checkpoint = _read_release(release)
    unets = [dict(unet) for unet in config["unets"].values()]
    if stages is not None and len(unets) != stages:
        raise DataError(
            release / "config.yaml",
            f"has {len(unets)} stages, the config's structure {stages}",
            "set the entry's structure to the release's",
        )
    imagen = {k: v for k, v in config["imagen"].items() if k not in NOT_MODEL_ARGS}
    dataset = config.get("dataset") or {}
    missing = [k for k in ("fps", "duration") if k not in dataset]
    if missing:
        raise DataError(
            release / "config.yaml",
            f"dataset keys {missing} are missing",
            "use the config.yaml released with this merged.pt",
        )
    fps = float(dataset["fps"])
    frames = round(fps * float(dataset["duration"]))
    # `grayscale: True` in EchoDiffusion still yields 3 channels (Grayscale(3)): the stages'
    # conditioning and output channels are the cascade's.
    video = {"fps": fps, "frames": frames, "channels": int(imagen.get("channels", 3))}
    model = build_cascade(unets, imagen)
    states = {name: _load_released(model, checkpoint, release, name) for name in STAGE_WEIGHTS}
    info = {"unets": unets, "imagen": imagen, "video": video, "released": str(release)}
    with atomic_dir(folder / subdir) as tmp:
        for index in range(len(unets)):
            stage_dir = tmp / f"stage_{index + 1}"
            stage_dir.mkdir()
            prefix = f"unets.{index}."
            for name, state in states.items():
                tensors = {
                    k[len(prefix) :]: v.contiguous()
                    for k, v in state.items()
                    if k.startswith(prefix)
                }
                save_file(tensors, stage_dir / STAGE_WEIGHTS[name])
            write_json(stage_dir / STAGE_FILE, {"stage": index + 1, **info})
    stage_dirs = [folder / subdir / f"stage_{i + 1}" for i in range(len(unets))]
    return write_cascade_folder(folder, stage_dirs)
