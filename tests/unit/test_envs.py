"""The two ways to get the stack pin the same versions: pyproject.toml (.venv/ through
envs/setup.sh) and envs/echogen.yaml (per-rule conda envs with --sdm conda)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_conda_env_pins_what_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs" / "echogen.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(project["dependencies"])
    assert all("==" in pin for pin in pip)  # exact pins (../shared/STACK.md)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11" and project["requires-python"] == ">=3.11,<3.12"
