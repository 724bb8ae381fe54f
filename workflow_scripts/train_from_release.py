"""Rules import_lidm, import_lvdm, import_privacy: a model folder from released weights, in
place of training (named train_* because it writes what training writes)."""

from typing import TYPE_CHECKING

from echogen.data.io import write_json
from echogen.training import released
from echogen.workflow import provenance, setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake

KINDS = ("lidm", "lvdm", "privacy")


def main(
    kind: str,
    weights: str,
    model_dir: str,
    entry: dict,
    latents: list[str] | None = None,
    text_encoder: str | None = None,
) -> None:
    if kind == "lidm":
        released.import_lidm(weights, list(latents), model_dir, entry)
    elif kind == "lvdm":
        released.import_lvdm(
            weights, list(latents), model_dir, entry, text_encoder_dir=text_encoder
        )
    elif kind == "privacy":
        released.import_privacy(weights, model_dir, entry["preset"], entry.get("model") or None)
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    write_json(f"{model_dir}/provenance.json", provenance(entry, "cpu", weights=weights))


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(
        snakemake.params.kind,
        snakemake.input.weights,
        snakemake.output.model,
        snakemake.params.entry,
        snakemake.input.get("latents"),
        snakemake.input.get("text_encoder"),
    )
