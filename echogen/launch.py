"""Entry point of ``accelerate launch -m echogen.launch <job.json>`` (see run_distributed).

The json holds ``{"target": "module:function", "kwargs": {...}}``; every process calls the
function with the same arguments and accelerate gives each its rank.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys

from echogen.workflow import LOG_FORMAT


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m echogen.launch <job.json>")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    with open(argv[0]) as handle:
        job = json.load(handle)
    module, name = job["target"].split(":")
    getattr(importlib.import_module(module), name)(**job["kwargs"])


if __name__ == "__main__":
    main()
