# echogen: echocardiogram video generation and analysis research as one workflow.
#
# Data flows one way: raw data (or the phantom) -> resources/ -> results/models/ ->
# results/samples/ -> results/metrics/ -> results/report.html. The one map of the outputs is
# README.md, section "Where outputs go"; docs/architecture.md says where each idea lives.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    chunk=r"\d{3}",
    view=r"a4c|psax",
    frames=r"\d+",


include: "rules/common.smk"


report: "docs/report/workflow.rst"


include: "rules/phantom.smk"
include: "rules/ingest.smk"
include: "rules/derived.smk"
include: "rules/regressors.smk"


# Systems, each only when active; they register their synthetic datasets for the shared
# evaluation stages below.
if system_on("lvdm"):

    include: "rules/lvdm.smk"


if system_on("cascade"):

    include: "rules/cascade.smk"


if system_on("dartagnan"):

    include: "rules/dartagnan.smk"


if system_on("cardigan"):

    include: "rules/cardigan.smk"


if system_on("rvfailure"):

    include: "rules/rvfailure.smk"


include: "rules/synthetic.smk"
include: "rules/metrics.smk"
include: "rules/evaluation.smk"


# Everything the activated config produces.
rule all:
    default_target: True
    input:
        data_targets(),
        metric_targets(),
        regressor_targets(),
        system_targets(),
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
