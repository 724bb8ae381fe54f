"""The synthetic-dataset driver: seeds, block-aligned shards, writing, gathering, refusals.

A toy generator that batches a whole block (one noise draw per block, seeded by the block's
first row) stands in for a system: it checks that shards taking whole blocks give the same
dataset as one job, which is what a batched generator (cascade, D'ARTAGNAN) relies on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echogen.data.errors import DataError
from echogen.data.video import read_video, write_video
from echogen.pipelines.synthetic import (
    BASE_SCHEMA,
    FILELIST,
    Sample,
    check_plan,
    gather_samples,
    parse_scatteritem,
    read_filelist,
    sample_name,
    sample_seed,
    shard_range,
    split_counts,
    split_labels,
    synthetic_manifest,
    typed_filelist,
    write_shard,
)

SCHEMA = {**BASE_SCHEMA, "cond": "str", "seed": "int"}


def test_sample_seed_depends_on_run_seed_and_index_only():
    seeds = [sample_seed(7, i) for i in range(100)]
    assert seeds == [sample_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100
    assert sample_seed(8, 0) != sample_seed(7, 0)
    assert seeds[3] == int(np.random.SeedSequence([7, 3]).generate_state(1)[0])


@pytest.mark.parametrize(("n", "k"), [(5, 3), (10, 4), (2, 3), (7, 1)])
def test_shard_ranges_are_contiguous_and_cover_every_index(n, k):
    ranges = [shard_range(n, s, k) for s in range(1, k + 1)]
    assert [i for r in ranges for i in r] == list(range(n))
    expected = [list(a) for a in np.array_split(np.arange(n), k)]
    assert [list(r) for r in ranges] == expected


@pytest.mark.parametrize(("n", "k", "block"), [(10, 3, 4), (11, 2, 3), (5, 4, 2), (9, 3, 3)])
def test_shards_take_whole_blocks(n, k, block):
    ranges = [shard_range(n, s, k, block) for s in range(1, k + 1)]
    assert [i for r in ranges for i in r] == list(range(n))
    blocks = [list(a) for a in np.array_split(np.arange(-(-n // block)), k)]
    for r, shard_blocks in zip(ranges, blocks, strict=True):
        if len(r):
            assert r.start % block == 0  # a shard starts on a block boundary
            assert r.start == shard_blocks[0] * block
        else:
            assert not shard_blocks
    with pytest.raises(ValueError, match="block"):
        shard_range(5, 1, 2, 0)


def test_parse_scatteritem():
    assert parse_scatteritem("2-of-3") == (2, 3)
    for bad in ("2of3", "0-of-3", "4-of-3", "a-of-b", ""):
        with pytest.raises(DataError, match="shard"):
            parse_scatteritem(bad)
    with pytest.raises(DataError):
        shard_range(5, 0, 3)


def test_split_counts_largest_remainder():
    fractions = {"TRAIN": 0.75, "VAL": 0.125, "TEST": 0.125}
    assert split_counts(8, fractions) == {"TRAIN": 6, "VAL": 1, "TEST": 1}
    # 3.75 / 0.625 / 0.625: floors 3, 0, 0; two leftovers go to the largest remainders.
    assert split_counts(5, fractions) == {"TRAIN": 4, "VAL": 1, "TEST": 0}
    assert sum(split_counts(2048, fractions).values()) == 2048
    assert split_labels(5, fractions) == ["TRAIN"] * 4 + ["VAL"]


def toy_plan(n: int, run_seed: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": range(n),
            "FileName": [sample_name(i) for i in range(n)],
            "EF": [float(20 + 5 * i) for i in range(n)],
            "Split": split_labels(n, {"TRAIN": 0.5, "VAL": 0.25, "TEST": 0.25}),
            "cond": [f"video,{i % 2}" for i in range(n)],  # a comma: quoted in the csv
            "seed": [sample_seed(run_seed, i) for i in range(n)],
        }
    )


class BlockGenerator:
    """Draws one noise tensor for a whole block, seeded by the block's first row.

    The block's videos thus depend on which rows share a block: shards that cut a block
    would change them, shards of whole blocks do not.
    """

    def __init__(self, block: int, latents: bool = True):
        self.block, self.latents, self.calls = block, latents, []

    def generate(self, rows: pd.DataFrame) -> list[Sample]:
        self.calls.append(list(rows["index"]))
        rng = np.random.default_rng(int(rows["seed"].iloc[0]))
        noise = rng.integers(0, 256, size=(self.block, 4, 16, 16), dtype=np.uint8)
        return [
            Sample(
                video=np.clip(noise[k].astype(int) + int(ef), 0, 255).astype(np.uint8),
                latent=noise[k, 0, :2, :2].astype(np.float32) if self.latents else None,
            )
            for k, ef in enumerate(rows["EF"])
        ]


def _write(plan, generator, folder, shard, n_shards, writers=2, **record):
    return write_shard(
        plan,
        generator,
        folder,
        shard=shard,
        n_shards=n_shards,
        schema=SCHEMA,
        fps=25.0,
        quality=90,
        record={"config": {"n_samples": len(plan)}, "seed": 3, **record},
        writers=writers,
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "sampling.json"
    }


def test_block_shards_gathered_equal_one_job(tmp_path):
    plan = toy_plan(7)
    generator = BlockGenerator(block=3)
    whole = _write(plan, generator, tmp_path / "whole", 1, 1)
    assert generator.calls == [[0, 1, 2], [3, 4, 5], [6]]
    for s in (1, 2):
        _write(plan, BlockGenerator(block=3), tmp_path / f"part_{s}", s, 2)
    assert len(read_filelist(tmp_path / "part_2" / FILELIST)) == 1  # blocks {0,1,2},{3,4,5} | {6}
    gather_samples([tmp_path / "part_2", tmp_path / "part_1"], tmp_path / "gathered")
    assert _files(tmp_path / "whole") == _files(tmp_path / "gathered")
    pd.testing.assert_frame_equal(whole, read_filelist(tmp_path / "gathered" / FILELIST, SCHEMA))

    filelist = pd.read_csv(tmp_path / "gathered" / FILELIST)
    assert filelist.columns.tolist() == list(SCHEMA)
    assert filelist["cond"].tolist()[:2] == ["video,0", "video,1"]
    assert (filelist[["FrameHeight", "FrameWidth", "NumberOfFrames"]] == [16, 16, 4]).all().all()
    video = read_video(tmp_path / "gathered" / "Videos" / "sample_00004.mp4")
    assert video.shape == (4, 16, 16)
    assert np.load(tmp_path / "gathered" / "latents" / "sample_00004.npy").dtype == np.float16
    record = json.loads((tmp_path / "gathered" / "sampling.json").read_text())
    assert record["block"] == 3 and record["latents"] is True
    assert record["shards"] == ["1-of-2", "2-of-2"] and record["timing"]["videos"] == 7

    # A block cut in two by the shards would change the videos: the same plan sampled
    # block by block (block=1) differs, so the invariance above is not a tautology.
    _write(plan, BlockGenerator(block=1), tmp_path / "single", 1, 1)
    assert _files(tmp_path / "single") != _files(tmp_path / "whole")


def test_writer_threads_write_what_serial_writing_writes(tmp_path):
    plan = toy_plan(7)
    before = os.umask(0o027)
    try:
        _write(plan, BlockGenerator(block=2), tmp_path / "threads", 1, 1, writers=3)
        _write(plan, BlockGenerator(block=2), tmp_path / "serial", 1, 1, writers=0)
        # the writer threads honour the umask (never a world-writable file or folder)
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(before)
    assert _files(tmp_path / "threads") == _files(tmp_path / "serial")
    modes = {p.stat().st_mode & 0o777 for p in (tmp_path / "threads").rglob("*")}
    assert modes <= {0o640, 0o750}, sorted(oct(m) for m in modes)
    with pytest.raises(ValueError, match="writers"):
        _write(plan, BlockGenerator(block=2), tmp_path / "bad", 1, 1, writers=-1)


def test_a_failed_write_stops_the_shard_and_leaves_nothing(tmp_path, monkeypatch):
    import echogen.pipelines.synthetic as synthetic

    def fail_on_the_third(path, video, fps):
        if path.name == "sample_00002.mp4":
            raise OSError("disk full")
        return write_video(path, video, fps)

    monkeypatch.setattr(synthetic, "write_video", fail_on_the_third)
    with pytest.raises(OSError, match="disk full"):
        _write(toy_plan(6), BlockGenerator(block=2), tmp_path / "out", 1, 1)
    assert list(tmp_path.iterdir()) == []  # no shard, no temporary folder


def test_datasets_without_latents(tmp_path):
    plan = toy_plan(4)
    for s in (1, 2):
        _write(plan, BlockGenerator(block=2, latents=False), tmp_path / f"p{s}", s, 2)
    gather_samples([tmp_path / "p1", tmp_path / "p2"], tmp_path / "all")
    assert list((tmp_path / "all" / "latents").iterdir()) == []  # the folder, empty
    assert len(list((tmp_path / "all" / "Videos").iterdir())) == 4


def test_gather_refuses_shards_of_other_runs_and_missing_ones(tmp_path):
    plan = toy_plan(6)
    parts = []
    for s in (1, 2, 3):
        parts.append(tmp_path / f"part_{s}")
        _write(plan, BlockGenerator(block=2), parts[-1], s, 3)
    with pytest.raises(DataError, match="2-of-3"):
        gather_samples([parts[0], parts[2]], tmp_path / "bad")
    with pytest.raises(DataError, match="part_1"):
        gather_samples([parts[0], *parts], tmp_path / "bad")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="FileList"):
        gather_samples([*parts, tmp_path / "empty"], tmp_path / "bad")
    other = tmp_path / "other"
    _write(plan, BlockGenerator(block=2), other, 3, 3, model="another/model")
    with pytest.raises(DataError, match="model"):
        gather_samples([parts[0], parts[1], other], tmp_path / "bad")
    (parts[1] / "Videos" / "sample_00002.mp4").unlink()
    with pytest.raises(DataError, match="sample_00002"):
        gather_samples(parts, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_write_shard_refuses_bad_plans_and_bad_samples(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        _write(toy_plan(3).drop(columns="seed"), BlockGenerator(1), tmp_path / "a", 1, 1)
    with pytest.raises(ValueError, match="index"):
        check_plan(toy_plan(3).iloc[[0, 2, 1]])

    class Short(BlockGenerator):
        def generate(self, rows):
            return super().generate(rows)[:-1]

    with pytest.raises(ValueError, match="returned 1 samples for 2"):
        _write(toy_plan(4), Short(block=2), tmp_path / "b", 1, 1)

    class Float(BlockGenerator):
        def generate(self, rows):
            return [Sample(video=s.video.astype(float)) for s in super().generate(rows)]

    with pytest.raises(ValueError, match="uint8"):
        _write(toy_plan(2), Float(block=1), tmp_path / "c", 1, 1)
    assert not any((tmp_path / n).exists() for n in "abc")


def test_schema_must_start_with_the_dynamic_columns():
    with pytest.raises(ValueError, match="must start with"):
        typed_filelist(toy_plan(2), {"FileName": "str", "EF": "float"})
    with pytest.raises(ValueError, match="kinds"):
        typed_filelist(toy_plan(2), {**BASE_SCHEMA, "cond": "blob"})


def test_a_synthetic_dataset_as_a_manifest(tmp_path):
    """The regressors read a synthetic dataset through a harmonised manifest."""
    from echogen.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest

    plan = toy_plan(4)
    _write(plan, BlockGenerator(block=2), tmp_path / "set", 1, 1)
    manifest = synthetic_manifest(tmp_path / "set", "lvdm_toy")
    write_manifest(manifest, tmp_path / "manifest.csv")
    back = read_manifest(tmp_path / "manifest.csv")
    assert back.columns.tolist() == MANIFEST_COLUMNS
    assert back["EF"].tolist() == plan["EF"].tolist()
    assert back["Split"].tolist() == plan["Split"].tolist()
    assert (back["Dataset"] == "lvdm_toy").all() and (back["NumberOfFrames"] == 4).all()
    assert back["Path"].iloc[1] == str(tmp_path / "set" / "Videos" / "sample_00001.mp4")
    assert read_video(back["Path"].iloc[1]).shape == (4, 16, 16)
    listed = pd.read_csv(tmp_path / "set" / FILELIST)
    listed.loc[2, "EF"] = None
    listed.to_csv(tmp_path / "set" / FILELIST, index=False)
    with pytest.raises(DataError, match=r"row 4: 1 sample\(s\) have no EF, e.g. sample_00002"):
        synthetic_manifest(tmp_path / "set", "lvdm_toy")
