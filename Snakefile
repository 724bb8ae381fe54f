# echogen: echocardiogram video generation and analysis research as one workflow.
#
# Where outputs go (one direction only):
#   resources/phantom/<dataset>/     synthetic raw datasets in their public layouts
#   resources/manifests/<dataset>.csv harmonised manifests (+ _quarantine.csv)
#   resources/<artefact>/<dataset>/  derived data: dartagnan clips, reference_frames, flow,
#                                    cardiacnet videos and frames, camus pngs, rvfailure clips
#   resources/weights/[tiny/]<name>.pt  metric detectors and published weights
#   resources/metric_cache/          cached real-set feature statistics (content-hash keys)
#   results/models/regressor_<name>/ EF regressors (diffusers-style folder + clips.json)
#   results/train_regressor/<name>/state/  resumable training state (not a declared output)
#   results/predictions/regressor_<name>/<videos>.csv  per-video EF predictions
#   results/models/vae/, lvdm_<model>/, privacy/, classifier_cardiacnet_<source>/  models
#   results/train_<kind>/[<name>/]state/  resumable training state (not a declared output)
#   resources/latents/<dataset>/part_<chunk>/<video>.npy + index.csv  VAE latents (32 Hz)
#   results/sample_shards/lvdm_<sample>/<i>-of-<n>/  one sampling job's videos
#   results/samples/lvdm_<sample>/   a synthetic dataset: FileList.csv, Videos/, frames/, latents/
#   results/privacy/lvdm_<sample>/   privacy-filtered FileList.csv, dropped.csv, summary.json
#   results/metrics/<run>.txt|json   metric tables (lvdm_<sample>, ef_fidelity_lvdm_<sample>,
#                                    classification_cardiacnet, regressor_<name>, comparisons)
#   results/metrics/summary.txt|json every synthetic dataset of every system, side by side
#   results/report/                  figures of `snakemake --report results/report.html`
#   logs/<rule>/<wildcards>.log, benchmarks/<rule>/<wildcards>.tsv
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


wildcard_constraints:
    dataset=r"[a-z0-9_]+",
    chunk=r"\d{3}",
    view=r"a4c|psax",
    frames=r"\d+",


include: "rules/common.smk"


# Sampling jobs per synthetic dataset (override: --set-scatter lvdm_shard=N).
scattergather:
    lvdm_shard=lvdm_config()["shards"] if lvdm_on() else 1,


report: "docs/report/workflow.rst"


include: "rules/phantom.smk"
include: "rules/ingest.smk"
include: "rules/derived.smk"
include: "rules/metrics.smk"
include: "rules/regressors.smk"
include: "rules/lvdm.smk"
include: "rules/evaluation.smk"


# Everything the activated config produces.
rule all:
    default_target: True
    input:
        data_targets(),
        metric_targets(),
        regressor_targets(),
        lvdm_targets(),
        evaluation_targets(),


# Every data-preparation artefact: manifests, clips, frame sets, flow, splits.
rule prepare_data:
    input:
        data_targets(),


# Every EF regressor's model and TEST table.
rule train_regressors:
    input:
        regressor_targets(),


# Every configured metric comparison.
rule compute_metrics:
    input:
        metric_targets(),


# Latent video diffusion: synthetic datasets, their tables, EF fidelity, classification, figures.
rule lvdm:
    input:
        lvdm_targets(),
