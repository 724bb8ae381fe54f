"""Every ``snakemake.<member>.<name>`` a rule's script reads exists in that rule.

A script that reads ``snakemake.wildcards.sample`` from a rule whose outputs name
``{dataset}`` fails only when the job runs (the e2e tier, minutes later). This reads the
rules and the scripts as text, so a renamed wildcard, output, log or param is caught by the
fast tier. Inputs given by ``unpack(<function>)`` are dynamic and not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULE_RE = re.compile(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", re.M | re.S)
DIRECTIVE_RE = re.compile(r"^    (\w+):(.*?)(?=^    \w+:|\Z)", re.M | re.S)
NAME_RE = re.compile(r"^ {8}(\w+)\s*=", re.M)
WILDCARD_RE = re.compile(r"(?<!\{)\{(\w+)(?:,[^{}]*)?\}(?!\})")
SCRIPT_RE = re.compile(r'"\.\./(workflow_scripts/\w+\.py)"')
ACCESS_RE = re.compile(r"snakemake\.(wildcards|input|output|params|log)\.(\w+)\b(?!\()")
MEMBERS = ("input", "output", "params", "log")


def rules() -> dict[str, dict]:
    """rule name -> {script, wildcards, and the names of each member}."""
    found = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for name, body in RULE_RE.findall(smk.read_text()):
            directives = dict(DIRECTIVE_RE.findall(body))
            script = SCRIPT_RE.search(directives.get("script", ""))
            if script is None:
                continue
            entry = {"script": script.group(1), "file": smk.name}
            for member in MEMBERS:
                text = directives.get(member, "")
                entry[member] = None if "unpack(" in text else set(NAME_RE.findall(text))
            outputs = directives.get("output", "") + directives.get("log", "")
            entry["wildcards"] = set(WILDCARD_RE.findall(outputs))
            found[name] = entry
    return found


RULES = rules()


def test_the_parser_sees_the_rules():
    assert len(RULES) > 30
    gather = RULES["gather_samples"]
    assert gather["wildcards"] == {"dataset"}
    assert gather["output"] == {"filelist", "videos", "frames", "latents"}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_script_reads_only_what_its_rule_declares(rule):
    entry = RULES[rule]
    text = (REPO / entry["script"]).read_text()
    missing = []
    for member, name in ACCESS_RE.findall(text):
        if member == "log" or name in ("get", "keys", "items"):
            continue
        declared = entry["wildcards"] if member == "wildcards" else entry[member]
        if declared is not None and name not in declared:
            missing.append(f"snakemake.{member}.{name}")
    assert not missing, (
        f"{entry['script']} reads {sorted(set(missing))}, which rule {rule} "
        f"(rules/{entry['file']}) does not declare"
    )
