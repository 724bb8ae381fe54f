"""Workflow configuration: the JSON schema's keys, documented.

The schema (``config/schemas/config.schema.yaml``, with one fragment per system beside it,
e.g. ``lvdm.schema.yaml``, included by a file ``$ref``) is the single source of truth for
config keys; ``config/README.md`` carries a table generated from it by
:func:`schema_table`, and a test keeps the two equal. Snakemake validates against the files
as they are (it resolves the file references); :func:`load_schema` inlines them for
``jsonschema`` and for the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The schema with every file ``$ref`` (a system's fragment) inlined.

    A reference to the main schema itself (``config.schema.yaml#/$defs/<name>``, as
    fragments write shared definitions) becomes a local ``#/$defs/<name>``.

    Raises:
        ValueError: a fragment uses a local ``#/...`` reference (it would point into the
            main schema once inlined).
    """
    main = Path(path).resolve()

    def inline(node, here: Path):
        if isinstance(node, list):
            return [inline(item, here) for item in node]
        if not isinstance(node, dict):
            return node
        rest = {k: inline(v, here) for k, v in node.items() if k != "$ref"}
        ref = node.get("$ref")
        if ref is None:
            return rest
        file, _, pointer = ref.partition("#")
        if not file:
            if here != main:
                raise ValueError(
                    f"{here.name}: local reference {ref!r}; a schema fragment refers to shared "
                    f"definitions as {main.name}#/$defs/<name>"
                )
            return {"$ref": ref, **rest}
        target = (here.parent / file).resolve()
        if target == main:
            return {"$ref": f"#{pointer}", **rest}
        fragment = yaml.safe_load(target.read_text())
        fragment.pop("$schema", None)
        for part in [p for p in pointer.split("/") if p]:
            fragment = fragment[part]
        return {**inline(fragment, target), **rest}

    return inline(yaml.safe_load(main.read_text()), main)


def _resolve(node: dict, schema: dict) -> dict:
    """Merge ``$ref`` and ``allOf`` parts into one node (enough for this schema's shapes)."""
    node = dict(node)
    if "$ref" in node:
        target = schema
        for part in node.pop("$ref").lstrip("#/").split("/"):
            target = target[part]
        node = {**_resolve(target, schema), **node}
    for part in node.pop("allOf", []):
        resolved = _resolve(part, schema)
        node = {
            **resolved,
            **node,
            "properties": {**resolved.get("properties", {}), **node.get("properties", {})},
        }
    return node


def iter_keys(schema: dict | None = None) -> Iterator[tuple[str, dict]]:
    """Yield ``(dotted key, resolved schema node)`` for every key, depth first."""
    schema = schema or load_schema()

    def walk(node: dict, prefix: str):
        node = _resolve(node, schema)
        for name, child in node.get("properties", {}).items():
            key = f"{prefix}.{name}" if prefix else name
            resolved = _resolve(child, schema)
            yield key, resolved
            yield from walk(resolved, key)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            key = f"{prefix}.<name>"
            resolved = _resolve(extra, schema)
            yield key, resolved
            yield from walk(resolved, key)

    yield from walk(schema, "")


def _type(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "object")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    bounds = []
    for word, symbol in [
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ]:
        if word in node:
            bounds.append(f"{symbol} {node[word]}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def schema_table(schema: dict | None = None) -> str:
    """Markdown table of every config key: key, type and bounds, default, meaning."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, node in iter_keys(schema):
        default = node.get("default", "")
        default = f"`{default}`" if default != "" else "—"
        rows.append(f"| `{key}` | {_type(node)} | {default} | {node.get('description', '')} |")
    return "\n".join(rows) + "\n"
