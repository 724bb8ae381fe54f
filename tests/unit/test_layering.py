"""Layering: inference and evaluation never import training code.

Models load with ``from_pretrained`` (or a loader beside the model class), datasets live in
``echogen/data``; so sampling, prediction, filtering, metrics and the report run without the
training modules, and a change to a trainer cannot break them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Everything but echogen/training/ and the training rules' scripts.
INFERENCE = [
    *sorted((REPO / "echogen").rglob("*.py")),
    *sorted((REPO / "workflow_scripts").glob("*.py")),
]
INFERENCE = [
    p
    for p in INFERENCE
    if p.parent != REPO / "echogen" / "training" and not p.name.startswith("train_")
]


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", INFERENCE, ids=lambda p: str(p.relative_to(REPO)))
def test_inference_does_not_import_training(path):
    training = sorted(m for m in imported_modules(path) if m.startswith("echogen.training"))
    assert training == [], f"{path.relative_to(REPO)} imports {training}"
