"""Rule download_weights: fetch a public network file and record its SHA-256."""

from typing import TYPE_CHECKING

from echogen.weights import download
from echogen.workflow import setup_logging

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(entry: dict, weights: str, sha256_out: str) -> None:
    digest = download(entry["url"], weights, entry.get("sha256"))
    with open(sha256_out, "w") as f:
        f.write(f"{digest}  {entry['url']}\n")


if "snakemake" in globals():
    setup_logging(snakemake.log[0])
    main(snakemake.params.entry, snakemake.output.weights, snakemake.output.sha256)
