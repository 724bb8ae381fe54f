"""Write the state-dict keys and shapes of EchoDiffusion's released models, as the reference's
own code builds them, for ``tests/unit/test_cascade_model.py``.

Run it beside checkouts of HReynaud/EchoDiffusion (the configs) and HReynaud/imagen-pytorch
(the fork EchoDiffusion trains with; its ``imagen_pytorch`` package first on ``PYTHONPATH``):

    PYTHONPATH=<imagen-pytorch checkout>:. .venv/bin/python \\
        tests/data/echodiffusion/dump_reference.py <EchoDiffusion>/diffusion/configs \\
        --fork-commit <imagen-pytorch HEAD> --configs-commit <EchoDiffusion HEAD>

It writes ``<model>.json.gz`` here for 1SCM, 2SCM and 4SCM_v2 (the released
``EchoDiffusionWeights/{1SCM_v2,2SCM_v6,4SCM_v2}`` use these configs): the ``unets`` and
``imagen`` sections and ``{key: shape}`` of the cascade built as ``diffusion/train.py`` builds
it (``Unet3D(**unet, lowres_cond=i > 0)`` inside ``ElucidatedImagen``).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import torch
import yaml

from echogen.models.cascade import build_cascade, import_imagen, state_dict_shapes

MODELS = ("1SCM", "2SCM", "4SCM_v2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", type=Path, help="EchoDiffusion's diffusion/configs folder")
    parser.add_argument("--fork-commit", required=True)
    parser.add_argument("--configs-commit", required=True)
    args = parser.parse_args()
    library = import_imagen(version=None)
    for name in MODELS:
        config = yaml.safe_load((args.configs / f"{name}.yaml").read_text())
        unets = list(config["unets"].values())
        with torch.device("meta"):
            model = build_cascade(unets, config["imagen"], library=library)
        record = {
            "source": {
                "imagen_pytorch": f"HReynaud/imagen-pytorch@{args.fork_commit}",
                "configs": f"HReynaud/EchoDiffusion@{args.configs_commit}"
                f":diffusion/configs/{name}.yaml",
            },
            "unets": unets,
            "imagen": config["imagen"],
            "state_dict": state_dict_shapes(model),
        }
        out = Path(__file__).parent / f"{name}.json.gz"
        with gzip.GzipFile(out, "wb", mtime=0) as handle:  # mtime 0: the same bytes each run
            handle.write(json.dumps(record, indent=1).encode())
        print(f"{out}: {len(record['state_dict'])} tensors")


if __name__ == "__main__":
    main()
