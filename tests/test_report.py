"""``zeroshot report``: what the page holds for runs with failed rows, missing predictions, clicks and merged shards;
same run, same bytes; the slice images and their drawing; refusals. The page in a real browser: test_report_browser.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from zeroshot.cli import main
from zeroshot.errors import ZeroshotError, ZeroshotWarning
from zeroshot.report import BUDGET_MB_PER_100_ENTRIES, write_report
from zeroshot.report.cases import NOT_SAVED, choose_slices
from zeroshot.report.images import Crop, dice_along_z_svg, entry_crop, slice_png
from zeroshot.report.sources import PromptMarks
from zeroshot.report.tables import format_number


def _entries(page: str) -> list[str]:
    return re.findall(r'<article class="case" id="(e\d{4})"', page)


def _article(page: str, entry: str) -> str:
    start = page.index(f'<article class="case" id="{entry}"')
    return page[start : page.index("</article>", start)]


@pytest.fixture(scope="module")
def merged_report(report_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    output = write_report(
        [report_runs.run], out, compare_dir=report_runs.compare, figures_dir=report_runs.figures, progress=False
    )
    return output, out, (out / "index.html").read_text(encoding="utf-8")


def test_merged_sharded_run_with_failed_rows_and_missing_predictions_renders(report_runs, merged_report):
    output, out, page = merged_report
    results = pd.read_parquet(report_runs.run / "results.parquet")
    assert output.entries == len(results) == 12 and len(_entries(page)) == 12
    # Failed rows: in the failures table with their reason, and their entries say so.
    failed = results.loc[results["failed"]]
    assert len(failed) == 2 and set(failed["sequence"]) == {"OOP"}
    failures = page[page.index('<section id="failures">') :]
    assert failures.count("cannot read as NIfTI") == 2
    assert page.count("the row failed: no prediction") == 2
    # The second shard saved no predictions: its entries say so; the first shard's entries show their slices.
    saved = results.loc[~results["failed"] & (results["prediction"].fillna("") != "")]
    unsaved = results.loc[~results["failed"] & (results["prediction"].fillna("") == "")]
    assert len(saved) > 0 and len(unsaved) > 0
    assert page.count(NOT_SAVED) == len(unsaved)
    images = sorted((out / "cases").glob("*.png"))
    assert output.images == len(images) and 0 < len(images) <= 4 * len(saved)
    for image in images:
        assert f'data-src="cases/{image.name}"' in page
        assert Image.open(image).format == "PNG"
    # Tables of zeroshot compare (with their CSV copies) and every figure, all by relative paths.
    for name in ("summary", "cross_sequence", "paired"):
        assert f'id="table-{name}"' in page and (out / "tables" / f"{name}.csv").is_file()
    pngs = sorted(p.name for p in report_runs.figures.glob("*.png"))
    assert pngs and sorted(p.name for p in (out / "figures").glob("*.png")) == pngs
    assert all(f'src="figures/{name}"' in page for name in pngs)
    assert str(out) not in page and "http://" not in page and "https://" not in page


def test_provenance_shows_models_strategies_versions_and_invocations(report_runs, merged_report):
    _, _, page = merged_report
    provenance = page[page.index('<section id="provenance">') : page.index("</section>")]
    assert "box-fill" in provenance and "none (weight-free baseline)" in provenance
    assert "box-mid" in provenance and "point-center" in provenance and "jitter_percent" in provenance
    assert "torch" in provenance and "numpy" in provenance
    assert provenance.count('class="status-finished"') == 2  # both shards' invocations, merged
    assert "<td>0/2</td>" in provenance and "<td>1/2</td>" in provenance
    assert "cases&#39; file hashes: see run.json" in provenance  # the per-case hashes are left to run.json


def test_case_entries_carry_metrics_filters_and_slices(report_runs, merged_report):
    _, out, page = merged_report
    rows = re.findall(r'<tr data-f-sequence="([^"]+)" data-f-model="([^"]+)" data-f-strategy="([^"]+)" '
                      r'data-f-center="([^"]+)" data-entry="(e\d{4})"', page)  # fmt: skip
    results = pd.read_parquet(report_runs.run / "results.parquet")
    assert len(rows) == len(results)
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), key=["T1", "T2", "OOP"].index)
    shown = [entry for entry in _entries(page) if 'data-src="cases/' in _article(page, entry)]
    article = _article(page, shown[0])
    assert "<svg" in article and "(prompted)" in article and "dice" in article
    assert len(re.findall(r"<img data-src", article)) == len(list((out / "cases").glob(f"{shown[0]}-z*.png")))


def test_interactive_run_renders_every_round_with_its_clicks(report_runs, tmp_path):
    output = write_report([report_runs.clicks], tmp_path / "report", progress=False)
    page = output.index.read_text(encoding="utf-8")
    results = pd.read_parquet(report_runs.clicks / "results.parquet")
    assert sorted(results["round"]) == [0, 1, 2] and output.entries == 3
    assert "round 2" in page and '<th scope="col" data-type="num" tabindex="0">round</th>' in page
    assert "<dt>n_clicks</dt><dd>2</dd>" in page  # a count, shown as one
    last = _article(page, _entries(page)[-1])
    clicked = {int(z) for z in results.loc[results["round"] == 2, "key_slices"].iloc[0].split()}
    shown = {int(z) for z in re.findall(r"alt=\"slice z (\d+)\"", last)}
    assert max(clicked) in shown  # the slice clicked last is among those shown


def test_same_run_gives_the_same_bytes(report_runs, merged_report, tmp_path):
    _, first, _ = merged_report
    second = tmp_path / "again"
    write_report([report_runs.run], second, compare_dir=report_runs.compare, figures_dir=report_runs.figures,
                 progress=False)  # fmt: skip
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # Rewriting a report in place clears its old images and gives the same files again.
    write_report([report_runs.run], second, progress=False)
    assert not (second / "figures").exists() and not (second / "tables").exists()
    assert sorted(p.name for p in (second / "cases").iterdir()) == sorted(p.name for p in (first / "cases").iterdir())


def test_size_budget_holds(merged_report):
    output, out, _ = merged_report
    images = sum(p.stat().st_size for p in (out / "cases").iterdir())
    assert output.bytes_entries == images + (out / "index.html").stat().st_size
    assert output.bytes_total > output.bytes_entries  # the figures and tables come on top
    assert 0 < output.mb_per_100_entries <= BUDGET_MB_PER_100_ENTRIES


def test_a_report_above_its_budget_says_so(report_runs, tmp_path, monkeypatch):
    import zeroshot.report.build

    monkeypatch.setattr(zeroshot.report.build, "BUDGET_MB_PER_100_ENTRIES", 0.001)
    with pytest.warns(ZeroshotWarning, match=r"MB per 100 case entries, above its budget"):
        write_report([report_runs.clicks], tmp_path / "report", progress=False)


def test_command_line_writes_the_report_and_prints_its_page(report_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(report_runs.run), "--compare", str(report_runs.compare), "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert str(out / "index.html") in printed and "12 case entries" in printed


def test_refuses_an_output_folder_that_is_not_a_report(report_runs, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ZeroshotError, match=r"holds files but no report \(index.html\)"):
        write_report([report_runs.run], out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


def test_refuses_compare_and_figures_folders_without_their_files(report_runs, tmp_path):
    with pytest.raises(ZeroshotError, match=r"--compare .*holds none of summary.csv"):
        write_report([report_runs.run], tmp_path / "a", compare_dir=report_runs.figures, progress=False)
    with pytest.raises(ZeroshotError, match=r"--figures .*holds no PNG"):
        write_report([report_runs.run], tmp_path / "b", figures_dir=report_runs.compare, progress=False)
    with pytest.raises(ZeroshotError, match=r"--compare .*no such folder"):
        write_report([report_runs.run], tmp_path / "c", compare_dir=tmp_path / "nowhere", progress=False)
    with pytest.raises(ZeroshotError, match="no such run directory"):
        write_report([tmp_path / "nowhere"], tmp_path / "d", progress=False)


def test_choose_slices_prefers_key_slices_then_the_worst_then_the_quarters():
    gt = np.zeros((20, 8, 8), bool)
    gt[4:17, 2:6, 2:6] = True
    dice = {z: 0.9 for z in range(4, 17)} | {12: 0.2}
    assert choose_slices([10], gt, dice) == [7, 10, 12, 13]  # key, worst, a quarter and three quarters through
    assert choose_slices([10, 15], gt, dice) == [7, 10, 12, 15]
    assert choose_slices([], np.zeros((6, 4, 4), bool), {}) == [3]  # nothing to show: the middle slice


def test_slice_png_draws_outlines_and_prompt_in_their_colours_and_is_deterministic():
    image = np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(40, 50)
    gt = np.zeros((40, 50), bool)
    gt[10:20, 10:30] = True
    pred = np.zeros_like(gt)
    pred[12:20, 14:30] = True
    marks = [PromptMarks(z=0, box=(10, 10, 29, 19), points=((20, 15),), labels=(1,))]
    crop = entry_crop((40, 50), [gt, pred], marks)
    assert crop.rows == slice(0, 32) and crop.cols == slice(0, 42) and crop.scale == 4.0
    data = slice_png(image, gt, pred, marks, crop, (0.0, 1.0))
    assert data == slice_png(image, gt, pred, marks, crop, (0.0, 1.0))
    picture = Image.open(io.BytesIO(data))
    assert picture.mode == "P" and picture.size == (42 * 4, 32 * 4)
    palette = picture.getpalette()
    pixels = np.asarray(picture)

    def colour(y, x):
        index = int(pixels[y, x])
        return "#" + "".join(f"{v:02X}" for v in palette[3 * index : 3 * index + 3])

    assert colour(4 * 25, 4 * 5) not in ("#009E73", "#E69F00", "#56B4E9")  # background: gray
    assert colour(4 * 15 + 2, 4 * 20 + 2) == "#56B4E9"  # the positive point, at its pixel's centre
    assert colour(4 * 19 + 3, 4 * 24 + 2) == "#E69F00"  # the prediction's last row
    assert colour(4 * 20, 4 * 24 + 2) == "#009E73"  # just outside the structure's last row: its wide outline
    assert colour(4 * 10 - 1, 4 * 12) == "#56B4E9"  # the box's top edge, just outside the structure's first row
    assert colour(4 * 10, 4 * 12) == "#009E73"  # the structure's outline inside the box stays visible


def test_crop_of_a_large_slice_is_reduced_and_nothing_to_draw_gives_the_whole_slice():
    crop = entry_crop((600, 500), [], [])
    assert isinstance(crop, Crop) and crop.display_shape == (256, 213)
    data = slice_png(np.zeros((600, 500), np.float32), np.zeros((600, 500), bool), None, [], crop, (0.0, 1.0))
    assert Image.open(io.BytesIO(data)).size == (213, 256)


def test_dice_along_z_breaks_where_dice_is_undefined():
    svg = dice_along_z_svg([(0, 0.5), (1, 0.6), (2, math.nan), (3, 0.7), (4, 0.8), (5, math.nan), (6, 0.2)],
                           depth=7, key_slices=[3], shown=[1, 3])  # fmt: skip
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 1
    assert svg.count('class="key"') == 1 and svg.count('class="shown"') == 2


@pytest.mark.parametrize(
    ("value", "text", "sort"),
    [(0.81234, "0.812", "0.81234"), (math.inf, "∞", "Infinity"), (math.nan, "–", ""), (3, "3", "3.0"),
     (0.0001234, "0.000123", "0.0001234"), (True, "yes", None)],
)  # fmt: skip
def test_numbers_show_rounded_and_sort_by_their_full_value(value, text, sort):
    cell = format_number(value)
    assert (cell.text, cell.sort) == (text, sort)


READER_ONLY = (
    "read_parquet", "read_csv", "json.load", "RunDir", "stored_prompts", "prompt_path", "prediction_path", "load_runs",
)  # fmt: skip


def test_report_reads_runs_only_through_its_reader():
    """The run store will change (issue 16): only zeroshot/report/sources.py may know the run's files."""
    folder = Path(__file__).resolve().parents[1] / "zeroshot" / "report"
    for module in folder.glob("*.py"):
        if module.name == "sources.py":
            continue
        text = module.read_text(encoding="utf-8")
        for needle in READER_ONLY:
            assert needle not in text, f"{module.name} reads run files ({needle}); go through sources.py"


def test_runs_without_prediction_column_or_slices_table_render(phantom_data, tmp_path):
    """Runs written before the ``prediction`` column: their saved predictions are found where --save-pred writes."""
    from fixtures_runs import write_synthetic_run

    run = write_synthetic_run(tmp_path / "run", phantom_data, sequences=("T1",), models=("medsam2",),
                              strategies=("box-mid",), with_slices=False, with_predictions=True)  # fmt: skip
    results = pd.read_parquet(run / "results.parquet")
    assert "prediction" not in results.columns
    output = write_report([run], tmp_path / "report", progress=False)
    page = output.index.read_text(encoding="utf-8")
    saved = int((results["seed"] == 0).sum())  # the fixture saves seed 0's predictions; seed 1's are absent
    assert output.entries == len(results) and output.images > 0
    assert len({p.name.split("-")[0] for p in (tmp_path / "report" / "cases").iterdir()}) == saved
    assert "<svg" not in page  # no per-slice table: no Dice along z
    assert "CUDA out of memory" in page  # the fixture's failed row, from the results (no failures.csv)


def test_a_paired_comparison_is_filtered_by_both_its_methods():
    from zeroshot.report.tables import row_filters

    columns = ("sequence", "metric", "method_a", "method_b")
    filters = dict(row_filters(columns, ("OOP", "dice", "medsam2 / box-mid", "grabcut / box-mid")))
    assert filters == {"sequence": "OOP", "metric": "dice", "model": "grabcut|medsam2", "strategy": "box-mid"}
    supervised = dict(row_filters(columns, ("T1", "dice", "nnunet-T1", "medsam2 / box-mid")))
    assert supervised["model"] == "medsam2|nnunet-T1" and supervised["strategy"] == "box-mid"
