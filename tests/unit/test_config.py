"""Config schema: both shipped configs validate, and config/README.md documents every key."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from echogen.config import SCHEMA_PATH, iter_keys, load_schema, schema_table

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema():
    return load_schema()


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_validate(schema, name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    jsonschema.Draft202012Validator(schema).validate(config)


def test_every_key_has_description_type_and_default(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    for key, node in iter_keys(schema):
        assert node.get("description"), key
        assert "type" in node or "enum" in node, key
        is_leaf = node.get("type") != "object"
        # Required keys with no sensible default: dataset roots, what a comparison compares,
        # which published weights a regressor starts from, a video folder's path, what an
        # LVDM is conditioned on and trained with, what a synthetic dataset samples from, the
        # path of a dataset's released re-identification weights, the classes of a
        # classification task, a dataset's prompt template, D'ARTAGNAN's expert and
        # independent regressor and what an inference item names.
        no_default = (".root", ".real", ".fake", ".metrics", ".kind", ".weights", ".preset")
        no_default += ("dartagnan.expert", "dartagnan.regressor")
        no_default += (".conditioning", ".datasets", ".model", ".dataset", ".n_samples")
        if (
            is_leaf
            and not key.endswith(no_default)
            and not key.startswith(
                (
                    "regressors.video_folders.",
                    "lvdm.privacy.pretrained.",
                    "evaluation.classification.tasks.",
                    "lvdm.models.<name>.prompt.",
                    "lvdm.models.<name>.prompt_names.",
                    "dartagnan.inference.items.",
                )
            )
        ):
            assert "default" in node, key


def test_readme_table_matches_schema(schema):
    readme = (REPO / "config" / "README.md").read_text()
    assert schema_table(schema) in readme


def test_unknown_key_is_rejected(schema):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"]["dynamic"]["chunk"] = 3
    with pytest.raises(jsonschema.ValidationError, match="chunk"):
        jsonschema.Draft202012Validator(schema).validate(config)


def test_system_fragments_are_inlined(schema):
    """Each system's section lives in its own file; the inlined schema has every key."""
    raw = yaml.safe_load(SCHEMA_PATH.read_text())
    assert raw["properties"]["lvdm"] == {"$ref": "lvdm.schema.yaml"}
    lvdm = schema["properties"]["lvdm"]
    assert "samples" in lvdm["properties"] and "$schema" not in lvdm
    assert lvdm["properties"]["activate"] == {"$ref": "#/$defs/activate"}
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["lvdm"]["samples"]["dynamic"]["stepz"] = 3
    with pytest.raises(jsonschema.ValidationError, match="stepz"):
        jsonschema.Draft202012Validator(schema).validate(config)


def test_a_fragment_with_a_local_reference_is_refused(tmp_path):
    (tmp_path / "main.yaml").write_text("properties:\n  sys: {$ref: sys.yaml}\n")
    (tmp_path / "sys.yaml").write_text("properties:\n  on: {$ref: '#/$defs/activate'}\n")
    with pytest.raises(ValueError, match="sys.yaml: local reference"):
        load_schema(tmp_path / "main.yaml")


@pytest.mark.parametrize(
    "path",
    [
        "echogen.data.ef_clips.ClipSpec",
        "echogen.data.stream_clips.StreamClipSpec",
        "echogen.pipelines.sampling.SampleConfig",
        "echogen.pipelines.lidm_sampling.ImageSampleConfig",
        "echogen.models.lidm.LIDMSpec",
        "echogen.models.lvdm.LVDMSpec",
        "echogen.training.rvfailure.RVTrainSettings",
    ],
)
def test_settings_dataclasses_round_trip_and_refuse_unknown_keys(path):
    """One dict round trip (echogen.settings.DictFields) for every settings dataclass: a
    misspelt key is refused by name, with the known ones listed."""
    import dataclasses
    import importlib

    module, name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    required = {
        f.name: "x" for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }  # fmt: skip
    if required:  # e.g. sampling configs name their model: round trip of a filled one only
        pytest.skip(f"{name} has required fields {sorted(required)}")
    settings = cls()
    assert cls.from_dict(settings.to_dict()) == settings
    with pytest.raises(ValueError, match=r"unknown .*\['no_such_key'\]; known: \["):
        cls.from_dict({**settings.to_dict(), "no_such_key": 1})
