rule ingest_dynamic:
    """Check EchoNet-Dynamic files, FileList and tracings; write the harmonised manifest."""
    input:
        root=dataset_root("dynamic"),
    output:
        manifest="resources/manifests/dynamic.csv",
        quarantine="resources/manifests/dynamic_quarantine.csv",
    log:
        "logs/ingest_dynamic/dynamic.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_small"),
    params:
        on_error=on_error("dynamic"),
    script:
        "../workflow_scripts/ingest_dynamic.py"


rule ingest_pediatric:
    """Map EchoNet-Pediatric folds to splits, probe videos; write the harmonised manifest."""
    input:
        root=pediatric_root,
    output:
        manifest="resources/manifests/ped_{view}.csv",
        quarantine="resources/manifests/ped_{view}_quarantine.csv",
    log:
        "logs/ingest_pediatric/{view}.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_small"),
    params:
        on_error=pediatric_on_error,
    script:
        "../workflow_scripts/ingest_pediatric.py"


rule index_cardiacnet:
    """List CardiacNet NIfTI volumes with fixed class ids and a patient-stratified split."""
    input:
        root=dataset_root("cardiacnet"),
    output:
        index="resources/cardiacnet/nifti_index.csv",
        quarantine="resources/cardiacnet/nifti_index_quarantine.csv",
    log:
        "logs/index_cardiacnet/cardiacnet.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_small"),
    params:
        cardiacnet=config["datasets"]["cardiacnet"],
    script:
        "../workflow_scripts/index_cardiacnet.py"


rule convert_cardiacnet:
    """Convert one chunk of CardiacNet NIfTI volumes to grey MP4 (EchoDream's conversion)."""
    input:
        index="resources/cardiacnet/nifti_index.csv",
    output:
        part=directory("resources/cardiacnet/videos/part_{chunk}"),
    log:
        "logs/convert_cardiacnet/{chunk}.log",
    benchmark:
        "benchmarks/convert_cardiacnet/{chunk}.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_chunk"),
        runtime=tier_runtime("cpu_chunk"),
    params:
        cardiacnet=config["datasets"]["cardiacnet"],
        n_chunks=n_chunks("cardiacnet"),
    script:
        "../workflow_scripts/convert_cardiacnet.py"


rule ingest_cardiacnet:
    """Gather converted CardiacNet videos into the harmonised manifest."""
    input:
        parts=part_dirs("resources/cardiacnet/videos/part_{chunk}", "cardiacnet"),
    output:
        manifest="resources/manifests/cardiacnet.csv",
        quarantine="resources/manifests/cardiacnet_quarantine.csv",
    log:
        "logs/ingest_cardiacnet/cardiacnet.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_small"),
    script:
        "../workflow_scripts/ingest_cardiacnet.py"


rule prepare_camus:
    """Export CAMUS images and labels (4CH end-diastolic, as cardiGAN) as png, split as published."""
    input:
        root=dataset_root("camus"),
    output:
        root=directory("resources/camus"),
    log:
        "logs/prepare_camus/camus.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_small"),
    params:
        on_error=on_error("camus"),
        views=config["datasets"]["camus"].get("views", ["4CH"]),
        phases=config["datasets"]["camus"].get("phases", ["ED"]),
    script:
        "../workflow_scripts/prepare_camus.py"


rule index_dicoms:
    """Read DICOM headers: REDCap id, class, split, frame count; no identifying tag kept."""
    input:
        root=dataset_root("rvfailure"),
    output:
        index="resources/rvfailure/dicom_index.csv",
        quarantine="resources/rvfailure/dicom_index_quarantine.csv",
    log:
        "logs/index_dicoms/rvfailure.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_small"),
    params:
        rvfailure=config["datasets"]["rvfailure"],
    script:
        "../workflow_scripts/index_dicoms.py"


rule convert_dicoms:
    """Convert one chunk of DICOMs to grey 112² clips and Farneback flow."""
    input:
        index="resources/rvfailure/dicom_index.csv",
    output:
        part=directory("resources/rvfailure/clips/part_{chunk}"),
    log:
        "logs/convert_dicoms/{chunk}.log",
    benchmark:
        "benchmarks/convert_dicoms/{chunk}.tsv"
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_chunk"),
        runtime=tier_runtime("cpu_chunk"),
    params:
        rvfailure=config["datasets"]["rvfailure"],
        farneback=config["derived"]["flow"]["farneback"],
        n_chunks=n_chunks("rvfailure"),
    script:
        "../workflow_scripts/convert_dicoms.py"


rule ingest_rvfailure:
    """Gather RV-failure clips: manifest, TRAIN statistics and per-split clip lists."""
    input:
        index="resources/rvfailure/dicom_index.csv",
        parts=part_dirs("resources/rvfailure/clips/part_{chunk}", "rvfailure"),
    output:
        manifest="resources/manifests/rvfailure.csv",
        quarantine="resources/manifests/rvfailure_quarantine.csv",
        stats="resources/rvfailure/stats.json",
        splits=expand(
            "resources/rvfailure/splits/{split}.csv", split=["train", "val", "test"]
        ),
    log:
        "logs/ingest_rvfailure/rvfailure.log",
    conda:
        "../envs/echogen.yaml"
    threads: 1
    resources:
        mem_mb=tier_mem("cpu_small"),
        runtime=tier_runtime("cpu_small"),
    params:
        positive_class=config["datasets"]["rvfailure"]["positive_class"],
    script:
        "../workflow_scripts/ingest_rvfailure.py"
