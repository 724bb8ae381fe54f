# echogen: echocardiogram video generation and analysis research as one workflow.
#
# Where outputs go (one direction only):
#   resources/phantom/<dataset>/     synthetic raw datasets in their public layouts
#   resources/manifests/<dataset>.csv harmonised manifests (+ _quarantine.csv)
#   resources/<artefact>/<dataset>/  derived data: dartagnan clips, reference_frames, flow,
#                                    cardiacnet videos and frames, camus pngs, rvfailure clips
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


# Everything the activated config produces.
rule all:
    default_target: True
    input:
        data_targets(),


# Every data-preparation artefact: manifests, clips, frame sets, flow, splits.
rule prepare_data:
    input:
        data_targets(),
