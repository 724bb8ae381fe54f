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
#   results/models|samples|metrics/  trained models, synthetic datasets, metric tables
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
include: "rules/phantom.smk"
include: "rules/ingest.smk"
include: "rules/derived.smk"
include: "rules/metrics.smk"
include: "rules/regressors.smk"


# Everything the activated config produces.
rule all:
    default_target: True
    input:
        data_targets(),
        metric_targets(),
        regressor_targets(),


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
