# Helpers for every stage: config validation, dataset switches, target builders and
# resource tiers. Stage .smk files only declare rules and call these.
import os
from pathlib import Path

from snakemake.utils import update_config, validate

# Jobs import the echogen package of this checkout, whatever runs them: the shared .venv/, a
# conda environment per rule (under --sdm conda, envs/echogen.yaml holds the dependencies,
# not the package), a SLURM node. Every job is started by a Snakemake process that parsed
# this file, so PYTHONPATH reaches its scripts; no installed copy can shadow the checkout.
_python_path = os.environ.get("PYTHONPATH", "")
if _python_path.split(os.pathsep)[0] != workflow.basedir:
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, _python_path]))
    )

# `--configfile X` means X alone (plus any --config), whatever profile is active: Snakemake
# would otherwise merge X into the Snakefile's demo config, and a paper run would inherit
# the demo's keys (its comparisons, its 30-step budgets) under the paper's name.
if workflow.overwrite_configfiles:
    config.clear()
    update_config(config, workflow.config_settings.overwrite_config)

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
    "cpu_large": {"mem_mb": 16000, "runtime": 240},
    "gpu_infer": {"mem_mb": 16000, "runtime": 240},
    "gpu_train": {"mem_mb": 64000, "runtime": 1440},
}


# Synthetic datasets the active systems register for shared evaluation (rules/synthetic.smk,
# rules/metrics.smk, rules/evaluation.smk): id -> {"system", "real", "metrics", "shards",
# "ef_regressor", "ef_plumbing"}.
SYNTHETIC_DATASETS = {}
# Metric tables a system adds beyond its datasets' own (e.g. an image set after the privacy
# filter): run -> {"real", "fake", "metrics"}, made by compute_generation_metrics.
SYSTEM_COMPARISONS = {}


def evaluation_config(part):
    """A part of the top-level `evaluation:` section ({} when absent)."""
    return config.get("evaluation", {}).get(part, {})


def register_synthetic_dataset(dataset, system, real, metrics, shards, tiny=False):
    """Register results/samples/<dataset>/ (FileList.csv, Videos/, frames/) made by <system>.

    The system writes its shards to results/sample_shards/<dataset>/<i>-of-<n>/
    (echogen.pipelines.synthetic.write_shard), n being its scattergather `shards`; the shared
    rule gather_samples merges them. The dataset gets the generation metrics `metrics`
    against the real frame folder `real` (results/metrics/<dataset>.txt), a GIF strip for
    the report and a row in the summary; EF fidelity (results/metrics/
    ef_fidelity_<dataset>.txt) when `evaluation.ef_fidelity.datasets` names it. `tiny`: the
    generator is a tiny preset, so its EF-fidelity and classification tables are plumbing
    checks.
    """
    if dataset in SYNTHETIC_DATASETS:
        raise WorkflowError(f"synthetic dataset {dataset!r} is registered twice")
    fidelity = evaluation_config("ef_fidelity")
    regressor = fidelity.get("regressor")
    if dataset not in fidelity.get("datasets", []):
        regressor = None
    SYNTHETIC_DATASETS[dataset] = {
        "system": system,
        "real": real,
        "metrics": list(metrics),
        "shards": shards,
        "ef_regressor": regressor,
        # Tiny generators or regressors make the EF-fidelity table a plumbing check.
        "ef_plumbing": bool(regressor)
        and (tiny or config["regressors"]["runs"][regressor].get("preset") == "tiny"),
        "tiny": tiny,
    }


def system_on(system):
    """True when the config has the system's section and it is activated."""
    return system in config and is_activated(system)


# Targets the active systems register; `rule all` is their union with the shared stages'.
SYSTEM_TARGETS = {}


def register_targets(system, targets):
    """What `snakemake` (rule all) makes for an active system."""
    SYSTEM_TARGETS[system] = list(targets)


def system_targets():
    return [target for targets in SYSTEM_TARGETS.values() for target in targets]


def names_pattern(names):
    """Regex matching exactly these names (nothing when there are none)."""
    names = list(names)
    return "|".join(names) if names else "(?!)"


def synthetic(wildcards):
    """The registry entry of the {dataset} wildcard."""
    return SYNTHETIC_DATASETS[wildcards.dataset]


def synthetic_shards(wildcards):
    """Every shard folder of the {dataset} wildcard, by its system's scattergather count."""
    pattern = f"results/sample_shards/{wildcards.dataset}/{{scatteritem}}"
    return getattr(gather, synthetic(wildcards)["shards"])(pattern)


def synthetic_pattern(with_ef=False):
    """Regex of the registered dataset ids (with EF fidelity only, if asked)."""
    names = [
        d for d, e in SYNTHETIC_DATASETS.items() if e["ef_regressor"] or not with_ef
    ]
    return names_pattern(names)


def evaluation_targets(system=None):
    """Per registered dataset (of `system`, or all): its metric table, EF fidelity, report
    figures, the downstream classification trained on it; and the cross-system summary when
    all are asked for."""
    datasets = {
        d: e for d, e in SYNTHETIC_DATASETS.items() if system in (None, e["system"])
    }
    targets = []
    for dataset, entry in datasets.items():
        targets += [f"results/metrics/{dataset}.txt", f"results/metrics/{dataset}.json"]
        targets.append(f"results/report/{dataset}_strip.gif")
        if entry["ef_regressor"]:
            targets.append(f"results/metrics/ef_fidelity_{dataset}.txt")
            targets.append(f"results/report/ef_fidelity_{dataset}.png")
    classification = evaluation_config("classification")
    if (
        classification
        and is_activated("evaluation/classification")
        and classification["dataset"] in datasets
    ):
        targets.append("results/metrics/classification_cardiacnet.txt")
    if system is None and SYNTHETIC_DATASETS:
        targets += ["results/metrics/summary.txt", "results/metrics/summary.json"]
    return targets


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


# --- weights, metrics and regressors --------------------------------------------------


def weights_file(name):
    """Where the workflow reads network file `name` (a key of config['weights'])."""
    entry = config["weights"].get(name)
    if entry is None:
        raise WorkflowError(
            f"weights.{name} is not in the config. Fix: add it under `weights:` with source "
            f"url (and its url) or local (and its path)."
        )
    if entry["source"] == "tiny":
        if name == "clip_text":
            return "resources/weights/tiny/clip_text"
        if name not in ("inception", "i3d"):
            raise WorkflowError(
                f"weights.{name}.source = tiny, but only the metric detectors (inception, i3d) "
                f"and the text encoder (clip_text) have tiny versions. Fix: use source url or "
                f"local."
            )
        return f"resources/weights/tiny/{name}.pt"
    if entry["source"] == "url":
        if not entry.get("url"):
            raise WorkflowError(
                f"weights.{name}.source = url needs weights.{name}.url."
            )
        return f"resources/weights/{name}.pt"
    if not entry.get("path"):
        raise WorkflowError(f"weights.{name}.source = local needs weights.{name}.path.")
    return entry["path"]


def weights_entry(wildcards):
    return config["weights"][wildcards.name]


def detector_params():
    """Detector files and pins for the generation metrics, as echogen.metrics takes them."""
    return {
        name: {
            "path": weights_file(name),
            "sha256": config["weights"][name].get("sha256"),
            "source": config["weights"][name]["source"],
        }
        for name in ("inception", "i3d")
    }


def comparisons():
    """Configured comparisons, one table per registered synthetic dataset, and the tables
    systems registered (register_comparison)."""
    runs = dict(config["metrics"]["comparisons"])
    for dataset, entry in SYNTHETIC_DATASETS.items():
        runs[dataset] = {
            "real": entry["real"],
            "fake": f"results/samples/{dataset}/frames",
            "metrics": entry["metrics"],
        }
    runs.update(SYSTEM_COMPARISONS)
    return runs


def register_comparison(run, real, fake, metrics):
    """A metric table results/metrics/<run>.{txt,json} of frame folder `fake` against `real`."""
    if run in SYSTEM_COMPARISONS or run in SYNTHETIC_DATASETS:
        raise WorkflowError(f"metric table {run!r} is registered twice")
    SYSTEM_COMPARISONS[run] = {"real": real, "fake": fake, "metrics": list(metrics)}


def comparison(wildcards):
    return comparisons()[wildcards.run]


def detector_inputs(metrics):
    """The detector weight files `metrics` need: inception for FID and IS, i3d for FVD."""
    wanted = set()
    for metric in metrics:
        if metric.startswith(("fid", "is")):
            wanted.add("inception")
        elif metric.startswith("fvd"):
            wanted.add("i3d")
    return {name: weights_file(name) for name in sorted(wanted)}


def comparison_inputs(wildcards):
    run = comparison(wildcards)
    inputs = {
        "real": run["real"],
        "fake": run["fake"],
        **detector_inputs(run["metrics"]),
    }
    lpips_weights = config["metrics"]["lpips"]["weights"]
    if "lpips" in run["metrics"] and lpips_weights:
        inputs["lpips_weights"] = weights_file(lpips_weights)
    return inputs


def comparison_pattern():
    """Regex of the configured comparison names (matches nothing when there are none)."""
    names = list(comparisons())
    return "|".join(names) if names else "(?!)"


def metric_targets():
    return expand(
        "results/metrics/{run}.{ext}",
        run=list(config["metrics"]["comparisons"]),
        ext=["txt", "json"],
    )


def regressor_run(wildcards):
    return config["regressors"]["runs"][wildcards.name]


def regressor_pattern():
    names = list(config["regressors"]["runs"])
    return "|".join(names) if names else "(?!)"


def regressor_composed(name):
    """True when the run trains on composed rows (real and synthetic pooled, balanced per EF
    bin, or a random subset): results/train_regressor/<name>/manifest.csv."""
    run = config["regressors"]["runs"][name]
    if run.get("with_real") and not run.get("synthetic"):
        raise WorkflowError(
            f"regressors.runs.{name}.with_real is set but `synthetic` is not. Fix: name the "
            f"synthetic dataset to pool with the real videos (e.g. cascade_1SCM_balanced), or "
            f"drop with_real."
        )
    return bool(run.get("with_real") or run.get("balance") or run.get("limit"))


def regressor_sources(wildcards):
    """The manifests a run's rows come from: the real dataset's, and the synthetic
    dataset's (`synthetic`) checked to be registered."""
    run = regressor_run(wildcards)
    inputs = {"real": f"resources/manifests/{run['dataset']}.csv"}
    synthetic_id = run.get("synthetic")
    if synthetic_id:
        if synthetic_id not in SYNTHETIC_DATASETS:
            raise WorkflowError(
                f"regressors.runs.{wildcards.name}.synthetic = {synthetic_id!r} is not a "
                f"registered synthetic dataset ({sorted(SYNTHETIC_DATASETS)}). Fix: name one "
                f"(<system>_<name>, e.g. lvdm_dynamic) of an active system."
            )
        inputs["synthetic"] = f"results/samples/{synthetic_id}/manifest.csv"
    return inputs


def regressor_inputs(wildcards):
    """The manifest a run trains on: its real dataset's, a synthetic dataset's
    (`synthetic`), or its composed rows (`with_real`, `balance`, `limit`), and the published
    weights it starts from."""
    run = regressor_run(wildcards)
    sources = regressor_sources(wildcards)
    inputs = {"manifest": sources.get("synthetic", sources["real"])}
    if regressor_composed(wildcards.name):
        inputs["manifest"] = f"results/train_regressor/{wildcards.name}/manifest.csv"
    if run.get("pretrained"):
        inputs["weights"] = weights_file(run["pretrained"]["weights"])
    return inputs


def regressor_predictions(wildcards):
    run = regressor_run(wildcards)
    return f"results/predictions/regressor_{wildcards.name}/{run['dataset']}.csv"


def regressor_targets():
    """Every run's table; the side-by-side table when a run trains on synthetic videos."""
    if not is_activated("regressors"):
        return []
    runs = config["regressors"]["runs"]
    targets = expand(
        "results/metrics/regressor_{name}.{ext}", name=list(runs), ext=["txt", "json"]
    )
    if any(
        run.get("synthetic") or regressor_composed(name) for name, run in runs.items()
    ):
        targets.append("results/metrics/regressors.txt")
    return targets


def regressor_records(wildcards):
    return expand(
        "results/metrics/regressor_{name}.json", name=list(config["regressors"]["runs"])
    )


def prediction_inputs(wildcards):
    """Model folder plus the videos to score: a dataset's manifest or a configured folder."""
    inputs = {"model": f"results/models/regressor_{wildcards.name}"}
    folders = config["regressors"].get("video_folders", {})
    if wildcards.videos in folders:
        inputs["folder"] = folders[wildcards.videos]
    elif wildcards.videos in SYNTHETIC_DATASETS:  # Videos/ + FileList.csv beside it
        inputs["folder"] = f"results/samples/{wildcards.videos}/Videos"
        inputs["filelist"] = f"results/samples/{wildcards.videos}/FileList.csv"
    else:
        inputs["manifest"] = f"resources/manifests/{wildcards.videos}.csv"
    return inputs
