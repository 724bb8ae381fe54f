# The synthetic-dataset contract (echogen/pipelines/synthetic.py): a system writes the shards
# of a registered dataset to results/sample_shards/<dataset>/<i>-of-<n>/; one rule gathers
# them into results/samples/<dataset>/, whatever system made them.


rule gather_samples:
    """Merge the shards of a synthetic dataset: FileList.csv, Videos/, frames/, latents/."""
    input:
        shards=synthetic_shards,
    output:
        filelist="results/samples/{dataset}/FileList.csv",
        videos=directory("results/samples/{dataset}/Videos"),
        frames=directory("results/samples/{dataset}/frames"),
        latents=directory("results/samples/{dataset}/latents"),
    log:
        "logs/gather_samples/{dataset}.log",
    wildcard_constraints:
        dataset=synthetic_pattern(),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/gather_samples.py"


rule synthetic_manifest:
    """A synthetic dataset as a harmonised manifest (Path = its Videos/), for the regressors."""
    input:
        filelist="results/samples/{dataset}/FileList.csv",
        videos="results/samples/{dataset}/Videos",
    output:
        manifest="results/samples/{dataset}/manifest.csv",
    log:
        "logs/synthetic_manifest/{dataset}.log",
    wildcard_constraints:
        dataset=synthetic_pattern(),
    localrule: True
    conda:
        "../envs/echogen.yaml"
    script:
        "../workflow_scripts/synthetic_manifest.py"
