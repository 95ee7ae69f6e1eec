"""The run store: tables equal to the layout before it, torn records, kill -9 during compaction, migration."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_runner import SHAPE, Counting, comparable, config_for, write_strategies, write_tiny_dataset

from zeroshot.cli import main
from zeroshot.errors import ConfigError
from zeroshot.interactive import ClickSettings
from zeroshot.runner import RowKey, RunDir, merge_runs, run_eval
from zeroshot.runner.rundir import write_json
from zeroshot.store import PromptKey, RowRecord, RunStore, build_tables
from zeroshot.store import store as store_module
from zeroshot.store.log import HEADER, MAGIC, read_segment, segment_path, slice_block
from zeroshot.store.parts import compact_segment
from zeroshot.store.paths import legacy_prompt_path, legacy_row_path
from zeroshot.store.records import json_default
from zeroshot.store.schema import IDENTITY_COLUMNS, SLICE_COLUMNS, SLICE_DTYPES
from zeroshot.store.tables import gather_slices

TESTS = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------------------- helpers
def legacy_tables(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The oracle: results and slices as the layout before the store built them from row files in key order.

    ``records`` are ``{"row", "slices"}`` documents as the row files held them (after a JSON round trip).
    """
    rows = []
    slice_columns: dict[str, list] = {name: [] for name in (*IDENTITY_COLUMNS, "round", *SLICE_COLUMNS)}
    for record in records:
        row = record["row"]
        rows.append(row)
        slices = record.get("slices") or {}
        count = len(slices.get("z", ()))
        if not count:
            continue
        for name in (*IDENTITY_COLUMNS, "round"):
            slice_columns[name].extend([row.get(name)] * count)
        for name in SLICE_COLUMNS:
            slice_columns[name].extend(slices[name])
    results = pd.DataFrame(rows)
    if not results.empty:
        for column in ("seed", "round", "n_clicks"):
            if column in results:
                results[column] = results[column].astype("int64")
        for flag in ("failed", "empty_gt", "empty_pred", "offloaded"):
            if flag in results:
                results[flag] = results[flag].astype(bool)
        for column in results.columns:
            if column.startswith("oracle_"):
                results[column] = results[column].fillna(False).astype(bool)
        results["error"] = results["error"].fillna("").astype(str)
    if all(value is None for value in slice_columns["round"]):
        del slice_columns["round"]
    slices_frame = pd.DataFrame(slice_columns)
    if not slices_frame.empty:
        for column in ("seed", "round"):
            if column in slices_frame:
                slices_frame[column] = slices_frame[column].astype("int64")
    return results, slices_frame


def segment_documents(segments: list[Path]) -> list[dict]:
    """The records of log segments as the row files of the layout before the store held them, in key order."""
    latest = {}
    for path in sorted(segments, key=lambda p: p.name):
        contents = read_segment(path)
        for index, (key, block) in enumerate(zip(contents.keys, contents.slices, strict=True)):
            slices = {n: block[i].astype(SLICE_DTYPES[n]).tolist() for i, n in enumerate(SLICE_COLUMNS)}
            latest[RowKey.from_tuple(key)] = {"row": contents.row(index), "slices": slices if block.shape[1] else {}}
    return [json.loads(json.dumps(latest[key])) for key in sorted(latest)]


def _document(record: RowRecord) -> dict:
    return {"row": dict(record.row), "slices": dict(record.slices), "info": dict(record.info)}


def write_legacy_layout(out: Path) -> None:
    """Rewrite a run's store as the layout before it: one JSON file per row and per prompt set."""
    rundir = RunDir(out)
    for record in rundir.store.records():
        write_json(legacy_row_path(out, record.key), _document(record))
    for key, text in rundir.store.prompt_sets().items():
        legacy_prompt_path(out, key).parent.mkdir(parents=True, exist_ok=True)
        legacy_prompt_path(out, key).write_text(text + "\n")
    shutil.rmtree(rundir.store.folder)


def fabricated_record(index: int, *, slices: int = 6) -> RowRecord:
    key = RowKey("T1", f"case_{index // 4:03d}", "sam2", f"s{index % 2}", index % 4 // 2)
    failed = index % 5 == 4
    row = {
        "case_id": key.case_id,
        "sequence": key.sequence,
        "center": "c1",
        "split": "test",
        "model": key.model,
        "strategy": key.strategy,
        "seed": key.seed,
        "dice": float("nan") if failed else index / 100,
        "hd95_mm": float("inf") if index % 7 == 3 else 2.5,
        "failed": failed,
        "error": "SegmenterError: boom" if failed else "",
        "oracle_gt_prompt": True,
    }
    z = np.arange(0 if failed else slices)
    table = {name: (z * (i + 1) / 3 if "mm" in name or "dice" in name else z * (i + 1)).tolist() for i, name in
             enumerate(SLICE_COLUMNS)}  # fmt: skip
    return RowRecord(key, row, table if not failed else {}, {"index": index})


def write_segment(root: Path, count: int) -> Path:
    """A store with one uncompacted segment of ``count`` rows and their prompt sets; returns the segment."""
    store = RunStore(root)
    for index in range(count):
        record = fabricated_record(index)
        key = PromptKey(record.key.sequence, record.key.case_id, record.key.strategy, record.key.seed)
        store.append_prompts(key, json.dumps({"case_id": key.case_id, "index": index}))
        store.append_row(record)
    store.close(compact=False)
    (segment,) = store.segments()
    return segment


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), subjects=2)


@pytest.fixture(scope="module")
def strategies(tmp_path_factory):
    return write_strategies(tmp_path_factory.mktemp("strategies"))


# -------------------------------------------------------------------------------------------- the tables
@pytest.mark.parametrize("clicks", [None, ClickSettings(rounds=2)])
def test_tables_equal_those_of_the_layout_before_the_store(dataset, strategies, tmp_path, clicks, monkeypatch):
    """The oracle reads the records as written (log segments kept aside before compaction), not the parts."""
    kept = tmp_path / "segments"
    kept.mkdir()

    def keep_then_compact(parts, log, stem, contents=None):
        if segment_path(log, stem).is_file():
            shutil.copy(segment_path(log, stem), kept / segment_path(log, stem).name)
        return compact_segment(parts, log, stem, contents)  # from the writer's memory: checked against the file

    monkeypatch.setattr(store_module, "compact_segment", keep_then_compact)
    out = tmp_path / "run"
    (tmp_path / "data").mkdir()
    for path in dataset.parent.iterdir():  # a case whose image cannot be read: failed rows with no slices
        target = tmp_path / "data" / path.name
        target.write_bytes(b"not a nifti" if path.name == "T2_phantom_001_0000.nii.gz" else path.read_bytes())
    options = {"models": ("grabcut",), "sequences": ("T2",), "clicks": clicks} if clicks else {}
    build = Counting().build if clicks else None
    run_eval(config_for(tmp_path / "data" / dataset.name, strategies, out, **options), progress=False, build=build)
    results, slices = legacy_tables(segment_documents(list(kept.iterdir())))
    assert results["failed"].any() and not results["failed"].all()
    assert ("round" in results.columns) == (clicks is not None)
    written = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(written, results)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "slices.parquet"), slices)
    assert (out / "results.csv").read_text() == results.to_csv(index=False)
    failures = build_tables(RunDir(out).store).failures
    assert (out / "failures.csv").read_text() == failures.to_csv(index=False) and len(failures) > 0
    assert len(slices) == (~results["failed"]).sum() * SHAPE[0]


def test_parts_of_differing_columns_give_the_columns_of_one_frame(tmp_path):
    store = RunStore(tmp_path, rotate_rows=2)
    records = [fabricated_record(i) for i in range(6)]
    extra = RowRecord(records[3].key, {**records[3].row, "oracle_gt_roi_crop": True}, records[3].slices)
    for record in [*records[:3], extra, *records[4:]]:
        store.append_row(record)
    store.close()
    assert len(store.stems()) == 3 and not store.segments()
    documents = [json.loads(json.dumps(_document(r))) for r in sorted([*records[:3], extra, *records[4:]],
                                                                        key=lambda r: r.key)]  # fmt: skip
    results, slices = legacy_tables(documents)
    tables = build_tables(store)
    pd.testing.assert_frame_equal(tables.results, results)
    pd.testing.assert_frame_equal(tables.slices, slices)
    assert tables.results["oracle_gt_roi_crop"].sum() == 1


def test_a_row_written_again_replaces_the_earlier_one(tmp_path):
    first, second = RunStore(tmp_path, session=1), RunStore(tmp_path, session=2)
    failed, other = fabricated_record(4), fabricated_record(1)  # a failed row, made again by --retry-failed
    first.append_row(failed)
    first.append_row(other)
    first.close()
    again = fabricated_record(0)
    second.append_row(RowRecord(failed.key, {**failed.row, "failed": False, "error": ""}, again.slices, {}))
    second.close()
    tables = build_tables(RunStore(tmp_path))
    assert tables.results["failed"].tolist() == [False, False] and len(RunStore(tmp_path).done_keys()) == 2
    by_row = tables.slices.groupby(["case_id", "strategy", "seed"], sort=False)["gt_area_mm2"].apply(list)
    assert by_row[(failed.key.case_id, failed.key.strategy, failed.key.seed)] == again.slices["gt_area_mm2"]
    assert by_row[(other.key.case_id, other.key.strategy, other.key.seed)] == other.slices["gt_area_mm2"]


# ------------------------------------------------------------------------------------------- torn records
def test_a_truncated_last_record_is_dropped_and_only_its_row_is_made_again(dataset, strategies, tmp_path):
    reference = run_eval(config_for(dataset, strategies, tmp_path / "reference"), progress=False)
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copy(tmp_path / "reference" / "run.json", killed / "run.json")
    source, store = RunDir(tmp_path / "reference").store, RunStore(killed)
    for key, text in source.prompt_sets().items():
        store.append_prompts(key, text)
    records = sorted(source.records(), key=lambda r: r.key)
    for record in records:
        store.append_row(record)
    store.close(compact=False)  # as a kill -9 leaves it: a segment, not compacted
    (segment,) = store.segments()
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 200])  # the last record torn mid-write
    present = RunDir(killed).done_keys()
    assert len(present) == len(records) - 1 and records[-1].key not in present

    resumed = run_eval(config_for(dataset, strategies, killed), progress=False)
    assert resumed.rows_computed == 1
    pd.testing.assert_frame_equal(comparable(resumed.results), comparable(reference.results))
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "slices.parquet"), pd.read_parquet(tmp_path / "reference" / "slices.parquet")
    )
    assert not RunDir(killed).store.segments()


def json_lines_segment(records: list[RowRecord], prompt_sets: dict[PromptKey, str]) -> bytes:
    """A segment as the store's first release wrote it (JSON Lines; per-slice block as base64 float64)."""
    lines = [{"kind": "prompts", "key": list(key.astuple()), "prompts": text} for key, text in prompt_sets.items()]
    for record in records:
        block = slice_block(record.slices)
        row = {name: json.loads(json.dumps(value, default=json_default)) for name, value in record.row.items()}
        lines.append(
            {
                "kind": "row",
                "key": list(record.key.astuple()),
                "row": row,
                "info": json.dumps(dict(record.info), default=json_default),
                "slices": base64.b64encode(block.tobytes()).decode("ascii") if block.size else "",
            }
        )
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_a_json_lines_segment_of_the_first_store_is_read_and_resumed_without_making_a_row_again(
    dataset, strategies, tmp_path
):
    """A run killed under the store's first release (JSON Lines segments) resumes: its rows count, none lost."""
    reference = run_eval(config_for(dataset, strategies, tmp_path / "reference"), progress=False)
    killed = tmp_path / "killed"
    (killed / "store" / "log").mkdir(parents=True)
    shutil.copy(tmp_path / "reference" / "run.json", killed / "run.json")
    source = RunDir(tmp_path / "reference").store
    records = sorted(source.records(), key=lambda r: r.key)
    data = json_lines_segment(records, source.prompt_sets())
    segment = killed / "store" / "log" / "0001-20261201T000000000000-host-1-1.jsonl"
    segment.write_bytes(data[: len(data) - 40])  # and its last line torn by the kill
    assert segment_path(segment.parent, segment.name[: -len(".jsonl")]) == segment
    present = RunDir(killed).done_keys()
    assert len(present) == len(records) - 1 and records[-1].key not in present
    assert RunDir(killed).store.prompt_sets() == source.prompt_sets()

    resumed = run_eval(config_for(dataset, strategies, killed), progress=False)
    assert resumed.rows_computed == 1  # the torn row; the others were read from the JSON Lines segment
    pd.testing.assert_frame_equal(comparable(resumed.results), comparable(reference.results))
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "slices.parquet"), pd.read_parquet(tmp_path / "reference" / "slices.parquet")
    )
    assert not segment.exists() and not RunDir(killed).store.segments()  # compacted into parts like any segment


def record_offsets(segment: Path) -> list[int]:
    """Where each record of a segment starts (from the headers' lengths)."""
    data, offsets = segment.read_bytes(), [0]
    while offsets[-1] < len(data):
        _, length, _ = HEADER.unpack_from(data, offsets[-1])
        offsets.append(offsets[-1] + HEADER.size + length)
    return offsets[:-1]


def test_a_record_one_byte_short_is_torn_too(tmp_path):
    segment = write_segment(tmp_path, 3)
    segment.write_bytes(segment.read_bytes()[:-1])
    assert len(RunStore(tmp_path).done_keys()) == 2 and read_segment(segment).torn


@pytest.mark.parametrize("tail", [b"\0" * 5000, b"\0" * 7])
def test_a_tail_of_zeros_is_dropped(tmp_path, tail):
    """What a crash of the machine may leave past the last flush: the length grew, the data never came."""
    segment = write_segment(tmp_path, 3)
    segment.write_bytes(segment.read_bytes() + tail)
    assert len(RunStore(tmp_path).done_keys()) == 3 and read_segment(segment).torn


def test_a_last_record_failing_its_checksum_is_dropped(tmp_path):
    segment = write_segment(tmp_path, 3)
    data = bytearray(segment.read_bytes())
    data[-10] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert len(RunStore(tmp_path).done_keys()) == 2


def test_a_damaged_record_inside_a_segment_is_named(tmp_path):
    segment = write_segment(tmp_path, 3)
    second = record_offsets(segment)[1]
    data = bytearray(segment.read_bytes())
    data[second + HEADER.size + 3] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=rf"{segment.name}, record 2 \(byte {second}\): not a zeroshot log record "
                       r"\(the checksum fails\)"):  # fmt: skip
        RunStore(tmp_path).done_keys()


def test_a_record_naming_a_class_is_refused_not_imported(tmp_path):
    """Records are pickles of plain values: one naming a class or function (not written by zeroshot) is refused."""
    segment = write_segment(tmp_path, 1)
    payload = pickle.dumps(("prompts", ("T1", "c", "s", 0), os.system), protocol=5)
    segment.write_bytes(HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload + segment.read_bytes())
    with pytest.raises(ConfigError, match=r"record 1 \(byte 0\): .*plain values only, not posix.system"):
        RunStore(tmp_path).done_keys()


def test_row_values_read_back_as_the_writer_kept_them(tmp_path):
    """numpy scalars and tuples are stored as JSON gives them back, in the file and in the writer's memory."""
    record = fabricated_record(0)
    odd = RowRecord(record.key, {**record.row, "dice": np.float32(0.5), "key_slices": (3, 4)}, record.slices)
    store = RunStore(tmp_path)
    store.append_row(odd)
    store.append_row(fabricated_record(1))
    store.append_row(fabricated_record(2))
    kept = store._writer.contents
    store.close(compact=False)
    (segment,) = store.segments()
    read = read_segment(segment)
    assert read.values == kept.values and read.infos == kept.infos and read.keys == kept.keys
    assert read.row(0)["dice"] == 0.5 and type(read.row(0)["dice"]) is float and read.row(0)["key_slices"] == [3, 4]
    assert read.columns[2] is read.columns[1] != read.columns[0]  # a row of the previous row's columns names none


# ------------------------------------------------------------------------------------- kill -9, compaction
COMPACT_SCRIPT = """
import os, signal, sys
from pathlib import Path
from zeroshot.store import RunStore

step, calls = int(sys.argv[2]), [0]

def killing(original):
    def call(*args, **kwargs):
        if calls[0] == step:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return original(*args, **kwargs)
    return call

os.replace = killing(os.replace)  # the three part renames
Path.unlink = killing(Path.unlink)  # removing the segment
RunStore(sys.argv[1]).compact_all()
"""


@pytest.mark.parametrize("step", range(5))
def test_kill_9_during_compaction_neither_loses_nor_duplicates_a_row(tmp_path, step):
    """Killed before each part's rename, before removing the segment, or not at all (step 4)."""
    root = tmp_path / "run"
    write_segment(root, 10)
    expected = build_tables(RunStore(root))
    prompts = RunStore(root).prompt_sets()
    script = tmp_path / "compact.py"
    script.write_text(COMPACT_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(root), str(step)], capture_output=True, check=False)
    assert done.returncode == (0 if step == 4 else -signal.SIGKILL), done.stderr.decode()
    for attempt in ("after the kill", "after the next compaction"):
        store = RunStore(root)
        tables = build_tables(store)
        pd.testing.assert_frame_equal(tables.results, expected.results, obj=attempt)
        pd.testing.assert_frame_equal(tables.slices, expected.slices, obj=attempt)
        assert store.prompt_sets() == prompts and len(store.done_keys()) == 10
        store.compact_all()  # what the next run does first, holding the lock
    assert not RunStore(root).segments()
    assert sorted(p.name.split(".", 1)[1] for p in (root / "store" / "parts").iterdir()) == [
        "prompts.parquet",
        "rows.parquet",
        "slices.parquet",
    ]


def test_segments_roll_into_parts_and_the_file_count_stays_small(tmp_path):
    store = RunStore(tmp_path, rotate_rows=4)
    for index in range(10):
        store.append_row(fabricated_record(index))
    store.sync()  # full segments are rolled into parts in a thread: sync waits for it
    assert len(store.segments()) == 1 and len(list(store.parts_folder.glob("*.rows.parquet"))) == 2
    store.close()
    assert store.file_count() == 3 * 3 and len(store.done_keys()) == 10
    assert [r.info["index"] for r in store.records()] == list(range(10))


# ----------------------------------------------------------------------------------------------- migration
def test_a_run_in_the_layout_before_the_store_is_refused_then_migrated(dataset, strategies, tmp_path, capsys):
    out = tmp_path / "run"
    reference = run_eval(config_for(dataset, strategies, out), progress=False)
    csv = (out / "results.csv").read_text()
    write_legacy_layout(out)
    assert len(list((out / "rows").rglob("*.json"))) == len(reference.results) == 24
    with pytest.raises(ConfigError, match=rf"convert it once with `zeroshot migrate {out}`"):
        run_eval(config_for(dataset, strategies, out), progress=False)
    with pytest.raises(ConfigError, match="zeroshot migrate"):
        merge_runs([out], tmp_path / "merged")

    assert main(["migrate", str(out)]) == 0
    assert "moved 24 row(s) and 24 prompt set(s) into the run store (48 files -> 3)" in capsys.readouterr().out
    assert not (out / "rows").exists() and not (out / "prompts").exists()
    assert (out / "results.csv").read_text() == csv
    again = run_eval(config_for(dataset, strategies, out), progress=False)
    assert again.rows_computed == 0
    pd.testing.assert_frame_equal(comparable(again.results), comparable(reference.results))
    assert main(["migrate", str(out)]) == 0
    assert "nothing to migrate" in capsys.readouterr().out


def test_migrate_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert main(["migrate", str(tmp_path)]) == 2
    assert "has no run.json" in capsys.readouterr().err


def test_a_migration_killed_midway_starts_over(dataset, strategies, tmp_path):
    out = tmp_path / "run"
    run_eval(config_for(dataset, strategies, out), progress=False)
    expected = pd.read_parquet(out / "results.parquet")
    write_legacy_layout(out)
    partial = RunStore(out)  # what a migration killed after some rows left behind
    partial.append_row(next(iter(RunStore(tmp_path).records()), fabricated_record(0)))
    partial.close()
    assert main(["migrate", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), expected)
    assert len(RunDir(out).done_keys()) == len(expected)


def test_stores_pickle_without_their_writer(tmp_path):
    import pickle

    store = RunStore(tmp_path, session=3)
    store.append_row(fabricated_record(0))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.session == 3 and copy._writer is None
    store.close()
    assert os.listdir(tmp_path / "store" / "parts")


@pytest.mark.parametrize("order", ["runs", "shuffled"])
def test_slices_are_gathered_row_by_row_in_the_order_asked(order):
    """Run by run (rows that follow one another in a part) or slice by slice: the same columns as indexing."""
    rng = np.random.default_rng(3)
    counts_by_part = [rng.choice([0, 3, 5], size=n) for n in (40, 1, 25)]  # failed rows have no slices
    parts = [{name: rng.random(int(c.sum())) for name in SLICE_COLUMNS} for c in counts_by_part]
    counts = np.concatenate(counts_by_part).astype(np.int64)
    starts = np.cumsum(counts) - counts
    rows = np.arange(len(counts))
    if order == "runs":  # blocks of rows moved around, as table order moves a case's rows
        rows = np.concatenate([rows[40:66], rows[10:40], rows[:10]])
    else:
        rng.shuffle(rows)
    gathered = gather_slices(parts, starts[rows], counts[rows])
    take = np.concatenate([np.arange(starts[r], starts[r] + counts[r]) for r in rows])
    for name in SLICE_COLUMNS:
        np.testing.assert_array_equal(gathered[name], np.concatenate([p[name] for p in parts])[take])


def test_a_compaction_failing_in_its_thread_is_raised_and_loses_no_row(tmp_path, monkeypatch):
    def disk_full(parts, log, stem, contents=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "compact_segment", disk_full)
    store = RunStore(tmp_path, rotate_rows=2)
    for index in range(3):  # the third row goes to a new segment while the first is compacted (and fails)
        store.append_row(fabricated_record(index))
    with pytest.raises(OSError, match="No space left on device"):
        store.close(compact=False)  # the thread's error, not one of a compaction run here
    monkeypatch.undo()
    assert len(store.segments()) == 2 and len(RunStore(tmp_path).done_keys()) == 3
    RunStore(tmp_path).compact_all()  # what the next run does first
    assert not store.segments() and len(RunStore(tmp_path).done_keys()) == 3
