# Helpers for every stage: config validation, dataset switches, target builders and
# resource tiers. Stage .smk files only declare rules and call these.
from pathlib import Path

from snakemake.utils import validate

validate(config, "../config/schemas/config.schema.yaml")


PHANTOM_DATASETS = [
    "dynamic",
    "ped_a4c",
    "ped_psax",
    "cardiacnet",
    "camus",
    "rvfailure",
]
PEDIATRIC_VIEWS = {"a4c": "ped_a4c", "psax": "ped_psax"}
# Datasets whose harmonised manifest lists videos (rvfailure lists DICOM clips).
VIDEO_MANIFESTS = ["dynamic", "ped_a4c", "ped_psax", "cardiacnet", "rvfailure"]

# Resource tiers (nf-core style); attempt scales memory and runtime on retries.
TIERS = {
    "cpu_small": {"mem_mb": 2000, "runtime": 30},
    "cpu_chunk": {"mem_mb": 4000, "runtime": 120},
}


def tier_mem(tier):
    return lambda wildcards, attempt: TIERS[tier]["mem_mb"] * attempt


def tier_runtime(tier):
    return lambda wildcards, attempt: TIERS[tier]["runtime"] * attempt


def is_activated(section):
    """True when the config section (a dpath like 'datasets/dynamic') is switched on."""
    return lookup(dpath=f"{section}/activate", within=config, default=True)


def dataset_root(dataset):
    """Raw dataset folder from config; an existing folder, or the phantom's output path."""
    root = config["datasets"][dataset]["root"]
    if (
        is_activated(f"datasets/{dataset}")
        and not Path(root).exists()
        and Path(root) != Path("resources/phantom") / dataset
    ):
        raise WorkflowError(
            f"datasets.{dataset}.root = {root!r} does not exist. Fix: download the dataset "
            f"there, point datasets.{dataset}.root at it, or set it to "
            f"'resources/phantom/{dataset}' to use the embedded phantom."
        )
    return root


def on_error(dataset):
    return config["datasets"][dataset].get("on_error", "raise")


def phantom_params(wildcards):
    return config["phantom"][wildcards.dataset]


def pediatric_root(wildcards):
    return dataset_root(PEDIATRIC_VIEWS[wildcards.view])


def pediatric_on_error(wildcards):
    return on_error(PEDIATRIC_VIEWS[wildcards.view])


def n_chunks(dataset):
    return config["datasets"][dataset].get("chunks", 1)


def chunk_ids(dataset):
    return [f"{i:03d}" for i in range(n_chunks(dataset))]


def part_dirs(pattern, dataset):
    """Part folders of a chunked artefact, e.g. 'resources/flow/{dataset}/part_{chunk}'."""
    return expand(pattern, dataset=dataset, chunk=chunk_ids(dataset))


def manifest_targets():
    targets = []
    for dataset in VIDEO_MANIFESTS:
        if is_activated(f"datasets/{dataset}"):
            targets.append(f"resources/manifests/{dataset}.csv")
    return targets


def data_targets():
    """Every data-preparation artefact of the activated datasets and stages."""
    targets = manifest_targets()
    derived = config["derived"]
    if is_activated("datasets/camus"):
        targets.append("resources/camus")
    if is_activated("datasets/rvfailure"):
        targets += expand(
            "resources/rvfailure/splits/{split}.csv", split=["train", "val", "test"]
        )
    if is_activated("derived/dartagnan_clips"):
        for dataset in derived["dartagnan_clips"]["datasets"]:
            if is_activated(f"datasets/{dataset}"):
                targets.append(f"resources/dartagnan/{dataset}/metainfo.csv")
    if is_activated("derived/reference_frames"):
        for dataset, lengths in derived["reference_frames"]["sets"].items():
            if is_activated(f"datasets/{dataset}"):
                targets += expand(
                    "resources/reference_frames/{dataset}_{frames}f.csv",
                    dataset=dataset,
                    frames=lengths,
                )
    if is_activated("derived/cardiacnet_frames") and is_activated(
        "datasets/cardiacnet"
    ):
        targets.append("resources/cardiacnet/frames.csv")
    if is_activated("derived/flow"):
        for dataset in derived["flow"]["datasets"]:
            if is_activated(f"datasets/{dataset}"):
                targets.append(f"resources/flow/{dataset}/index.csv")
    return targets


def chunks_of(wildcards):
    return n_chunks(wildcards.dataset)


def dataset_on_error(wildcards):
    return on_error(wildcards.dataset)


def dartagnan_parts(wildcards):
    return part_dirs("resources/dartagnan/{dataset}/part_{chunk}", wildcards.dataset)


def flow_parts(wildcards):
    return part_dirs("resources/flow/{dataset}/part_{chunk}", wildcards.dataset)
